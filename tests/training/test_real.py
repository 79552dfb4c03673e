"""The frozen ImageNet recipe on real UCF101 clips, with the defaults a newcomer gets: trained on
four actions, it learns them, it flags the two it was not taught, and its timelines find where one
clip ends and the next begins. Synthetic shapes cannot show any of this.

Needs the ImageNet checkpoint (where torch.hub looks: `make test` copies ../shared/weights' there)
and real clips laid out as UCF101 is (ACTIONREC_REAL_CLIPS, `make test`: ../shared/real/ucf101-6);
skipped, saying why, without them. The clips are split by group, never by clip: groups 8-19 train,
20-25 are held out.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from actionrec.cli import app  # noqa: E402
from actionrec.video.encode import write_video  # noqa: E402

pytestmark = pytest.mark.slow

TRAINING_GROUPS, HELD_OUT_GROUPS = range(8, 20), range(20, 26)
UNKNOWN = ("BasketballDunk", "PlayingPiano")  # left out of the four-action model


def group(path: Path) -> int:
    return int(path.stem.split("_g")[1][:2])


def split_folder(real_clips: Path, out: Path, classes: list[str]) -> Path:
    """A folder dataset of links to the real clips, its split in train.txt/test.txt by group."""
    lists: dict[str, list[str]] = {"train.txt": [], "test.txt": []}
    for name in classes:
        (out / name).mkdir(parents=True)
        for clip in sorted((real_clips / name).glob("*.avi")):
            (out / name / clip.name).symlink_to(clip)
            if group(clip) in TRAINING_GROUPS or group(clip) in HELD_OUT_GROUPS:
                lists["train.txt" if group(clip) in TRAINING_GROUPS else "test.txt"].append(f"{name}/{clip.name}")
    for name, lines in lists.items():
        (out / name).write_text("\n".join(lines) + "\n")
    return out


def held_out(real_clips: Path, name: str) -> list[Path]:
    return [clip for clip in sorted((real_clips / name).glob("*.avi")) if group(clip) in HELD_OUT_GROUPS]


@pytest.fixture(scope="module")
def run(imagenet_checkpoint, real_clips, tmp_path_factory) -> Path:
    """`actionrec train DATA --out RUN` with its defaults, then `actionrec export RUN`, on four of
    the actions: the other two are what it was never taught."""
    root = tmp_path_factory.mktemp("real")
    classes = sorted(folder.name for folder in real_clips.iterdir() if folder.is_dir() and folder.name not in UNKNOWN)
    data = split_folder(real_clips, root / "data", classes)
    for command in (["train", data, "--out", root / "run", "--cache-dir", root / "cache"], ["export", root / "run"]):
        result = CliRunner().invoke(app, [str(part) for part in command])
        assert result.exit_code == 0, result.output
    return root / "run"


def test_the_default_recipe_learns_real_clips(run, real_clips):
    from actionrec.runtime.recognizer import Recognizer

    history = json.loads((run / "history.json").read_text())
    assert history[-1]["val_acc"] >= 0.9, history[-1]  # the last epoch, on held-out groups
    config = json.loads((run / "config.json").read_text())
    steps = len(history) * -(-config["num_train"] // config["train"]["batch_size"])
    assert steps >= 600, steps  # trained to the end of its schedule, not a fixed 15 epochs
    recognizer = Recognizer(run / "model.onnx")  # what serve and predict answer
    clips = [clip for name in recognizer.labels for clip in held_out(real_clips, name)[::2]]
    right = [recognizer.predict(clip).action == clip.parent.name for clip in clips]
    assert np.mean(right) >= 0.9, f"{sum(right)} of {len(right)} held-out clips right"


def test_export_keeps_an_int8_copy_that_loses_no_held_out_clip(run):
    from actionrec.runtime.precision import KEEP_RULE

    comparison = json.loads((run / "int8_comparison.json").read_text())
    fp32, int8 = comparison["models"]
    assert comparison["kept"] and (run / "model.int8.onnx").is_file(), comparison  # on this CPU or any other
    assert comparison["keep_rule"] == KEEP_RULE and comparison["num_clips"] == 48
    assert int8["lost_vs_first"] == 0 and int8["top1"] >= fp32["top1"] - 0.01, int8
    assert int8["agreement_with_first"] >= 0.97, int8  # one of 48 may be a near tie fp32 gets wrong


def test_actions_the_model_was_not_taught_are_flagged(run, real_clips):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(run / "model.onnx")
    rule = recognizer.describe()["unknown"]
    assert rule["score"] == "similarity_and_confidence" and 0.0 < rule["known_flagged"] <= 0.1, rule
    known = [clip for name in recognizer.labels for clip in held_out(real_clips, name)[::2]]
    unknown = [clip for name in UNKNOWN for clip in held_out(real_clips, name)]
    known_flagged = np.mean([recognizer.predict(clip).uncertain for clip in known])
    answers = [recognizer.predict(clip) for clip in unknown]
    unknown_flagged = np.mean([answer.uncertain for answer in answers])
    # Measured on these clips with 0.3's similarity rule: 4% of the 24 known and 92% of the 24 unknown
    # ones flagged; a fixed 0.5 confidence flagged 12% and 33%.
    assert known_flagged <= 0.15 and unknown_flagged >= 0.7, (known_flagged, unknown_flagged)
    assert all(answer.unknown_check.score == "similarity_and_confidence" for answer in answers)


def test_a_timeline_of_real_clips_joined_end_to_end_finds_each_boundary(run, real_clips, tmp_path):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(run / "model.onnx")
    frames, truth, start = [], [], 0.0
    for name in ("PlayingViolin", "Archery", "HorseRace", "Surfing"):
        # Clips the model recognises alone: how often it does is the other test's business.
        chosen = next(clip for clip in held_out(real_clips, name) if recognizer.predict(clip).action == name)
        with av.open(str(chosen)) as container:
            clip = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        frames += clip
        truth.append((name, start, start + len(clip) / 25))
        start += len(clip) / 25
    joined = tmp_path / "joined.mp4"
    write_video(np.stack(frames), joined, fps=25)

    segments = recognizer.predict(joined, segments=True).segments
    moments = np.arange(0, start, 0.04)
    right = np.mean([next(s.action for s in segments if s.start_s <= t < s.end_s or s is segments[-1]) ==
                     next(name for name, a, b in truth if a <= t < b or b == truth[-1][2]) for t in moments])
    boundaries = [s.start_s for s in segments[1:]]
    misses = [round(min(abs(b - a) for b in boundaries), 2) for _, a, _ in truth[1:]] if boundaries else [None]
    assert right >= 0.9 and all(m is not None and m <= 0.5 for m in misses), (right, misses, segments)


def test_teaching_six_actions_from_two_clips_each(run, real_clips, tmp_path):
    """`actionrec teach` on the run's model as base: all six actions, two of them new to it, from
    two clips each of different training groups (README measured 95.8% on all 72 held-out clips)."""
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.teaching.flow import teach

    examples = {}
    for name in sorted(folder.name for folder in real_clips.iterdir() if folder.is_dir()):
        training = [clip for clip in sorted((real_clips / name).glob("*.avi")) if group(clip) in TRAINING_GROUPS]
        by_group = {group(clip): clip for clip in training}  # one clip of each group
        examples[name] = [by_group[g] for g in sorted(by_group)[::6][:2]]
    result = teach(run / "model.onnx", examples, tmp_path / "taught.onnx")
    assert result.timings_s["total"] < 60, result.timings_s
    taught = Recognizer(result.path)
    clips = [clip for name in taught.labels for clip in held_out(real_clips, name)[::2]]
    right = [taught.predict(clip).action == clip.parent.name for clip in clips]
    assert np.mean(right) >= 0.85, f"{sum(right)} of {len(right)} held-out clips right"


def test_each_quarter_of_a_mosaic_of_real_clips_is_named(run, real_clips, tmp_path):
    """`benchmark-regions`' videos: 2 x 2 mosaics of four held-out clips of the four actions, and pairs
    side by side (640 x 240), answered with grid:2x2 and grid:2x1 (docs/regions.md's figures are
    the six-action model's, on more videos)."""
    from actionrec.benchmarks.regions import build_videos, held_out_clips, measure
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(run / "model.onnx")
    clips = held_out_clips(real_clips, recognizer.labels, set(HELD_OUT_GROUPS))
    result = measure(recognizer, build_videos(clips, tmp_path, mosaics=6, pairs=6), people=False)
    assert result["mosaic"]["regions"] == 24 and result["mosaic"]["named_right"] >= 0.9, result
    assert result["pair"]["regions"] == 12 and result["pair"]["named_right"] >= 0.9, result


def test_explanations_are_faithful_on_real_clips(run, real_clips, tmp_path):
    """Why an answer, on held-out real clips (docs/explain.md): removing the 4 highest-weighted moments
    lowers the answer more than 4 random ones; in a video spliced from an unknown clip, a known one and
    another unknown one, answered with the known action, the strongest moment and most of the positive
    weight lie in the known clip; in a 2 x 2 mosaic answered with the known action, the map points to
    its quadrant. Ten videos of each, not docs/explain.md's forty, to keep the suite's time: one video
    is 10-17% of those answered with the known action, so the bars are looser than the issue's (runs
    here: the strongest moment in the known clip in 5 of 6 spliced videos; the map on the known clip in
    3 of the 5 mosaics answered with it, where chance is 1 in 4)."""
    from actionrec.evaluation import faithfulness
    from actionrec.evaluation.model_files import read_clips
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(run / "model.onnx")
    known = [(clip, name) for name in recognizer.labels for clip in held_out(real_clips, name)]
    unknown = [clip for name in UNKNOWN for clip in held_out(real_clips, name)]
    deletion = faithfulness.deletion(recognizer, read_clips([clip for clip, _ in known[::2]], recognizer))
    assert deletion["top_beats_random"] >= 0.8 and deletion["top_at_least_twice_random"], deletion
    spliced = faithfulness.splicing(recognizer, known, unknown, tmp_path / "spliced", count=10)
    assert spliced["answered_known"] >= 3, spliced
    assert spliced["peak_inside_known"] >= 0.75 and spliced["positive_weight_inside_known_mean"] >= 0.6, spliced
    pointing = faithfulness.pointing(recognizer, known, unknown, tmp_path / "mosaics", count=10)
    assert pointing["answered_known"] < 3 or pointing["strongest_quadrant_known_where_answered"] >= 0.5, pointing
