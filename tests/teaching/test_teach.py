"""Teaching new actions from a few clips: a model file that predicts them, written without torch,
with its own "none of these"; and bad examples refused with what to do.

The base is a small untrained model (its batch norm fitted, so frames of different colours give
different features); real clips and the measured figures are README's, "Teach it your own actions"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from actionrec.cli import app
from actionrec.testing.media import COLOURS, colour_clip
from actionrec.video.encode import write_video


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="making the base model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("base") / "base.onnx", fitted_batch_norm=True)


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("examples")
    for name in ("red", "blue"):
        for i in range(3):
            colour_clip(root / name / f"{name}{i}.mp4", COLOURS[name], seed=i)
    return root


@pytest.fixture(scope="module")
def taught(base_model: Path, examples: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("taught") / "colours.onnx"
    result = CliRunner().invoke(app, ["teach", str(base_model), str(examples), "--out", str(out), "--name", "colours"])
    assert result.exit_code == 0, result.output
    assert "Taught 2 actions from 6 clips" in result.output
    return out


def test_a_taught_model_predicts_its_actions(taught: Path, tmp_path: Path):
    from actionrec.runtime.recognizer import Recognizer

    recognizer = Recognizer(taught)
    assert recognizer.labels == ["blue", "red"]
    card = recognizer.card
    assert card.name == "colours" and card.model["temporal"] == "taught_motion"
    assert card.model["taught"]["clips"] == {"blue": 3, "red": 3}
    assert card.model["taught"]["base"] == "untrained-test-model"
    assert card.unknown_rule.score == "centered_similarity"
    for name in ("red", "blue"):
        prediction = recognizer.predict(colour_clip(tmp_path / f"{name}.mp4", COLOURS[name], seed=9))
        assert prediction.action == name, prediction.top_k
        assert prediction.unknown_check.score == "centered_similarity"
    # timelines read the same head on windows of features
    long = tmp_path / "long.mp4"
    write_video(np.concatenate([np.full((45, 48, 64, 3), COLOURS["red"], np.uint8),
                                np.full((45, 48, 64, 3), COLOURS["blue"], np.uint8)]), long, 15.0)
    segments = recognizer.predict(long, segments=True).segments
    assert [s.action for s in segments] == ["red", "blue"], segments


def test_teaching_runs_without_torch(base_model: Path, examples: Path, tmp_path: Path):
    """The serving install teaches: torch cannot even be imported here."""
    out = tmp_path / "no-torch.onnx"
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            "from actionrec.cli import app\n"
            f"app([ 'teach', {str(base_model)!r}, {str(examples)!r}, '--out', {str(out)!r}, '--json'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["labels"] == ["blue", "red"] and out.is_file()


def with_class_means(base_model: Path, tmp_path: Path) -> Path:
    """A copy of the base whose card has class means of its actions, as keep_base needs."""
    from actionrec.modelfile.card import update_card
    from actionrec.modelfile.unknown import FEATURE_SIMILARITY, UnknownRule, unit
    from actionrec.runtime.recognizer import Recognizer

    base = tmp_path / "base.onnx"
    base.write_bytes(base_model.read_bytes())
    recognizer = Recognizer(base)
    means = unit(np.random.default_rng(0).random((len(recognizer.labels), recognizer.card.num_features)))
    update_card(base, unknown=UnknownRule(FEATURE_SIMILARITY, 0.5, means).to_dict())
    return base


def test_keep_base_keeps_the_base_actions(base_model: Path, examples: Path, tmp_path: Path):
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.teaching.flow import teach

    base = with_class_means(base_model, tmp_path)
    recognizer = Recognizer(base)
    result = teach(base, {"red": sorted((examples / "red").iterdir()), "blue": sorted((examples / "blue").iterdir())},
                   tmp_path / "kept.onnx", keep_base=True)
    assert Recognizer(result.path).labels == ["red", "blue", *recognizer.labels]


@pytest.mark.parametrize("problem, words", [
    ("one_action", "at least two actions"),
    ("empty_name", "name is empty"),
    ("absurd_name", "characters a name cannot have"),
    ("long_name", "keep it to 40"),
    ("same_name", "same name"),
    ("look_alike_names", "same name"),
    ("keep_base_look_alike", "one of the base's own actions"),
    ("no_clip_reads", "No clip of 'blue' could be read"),
    ("keep_base_without_means", "--keep-base needs the class means"),
])
def test_bad_examples_get_clear_errors(base_model: Path, examples: Path, tmp_path: Path, problem: str, words: str):
    from actionrec.teaching.flow import TeachError, teach

    red = sorted((examples / "red").iterdir())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    cases = {"one_action": {"red": red}, "empty_name": {"red": red, "  ": red}, "absurd_name": {"red": red, "<b>": red},
             "long_name": {"red": red, "x" * 41: red}, "same_name": {"red": red, "RED": red},
             "look_alike_names": {"r\u0435d": red, "\uff52\uff45\uff44": red},  # Cyrillic e; fullwidth
             "keep_base_look_alike": {"red": red, "GR\u043eW": red},  # a base action, Cyrillic o
             "no_clip_reads": {"red": red, "blue": [broken]}, "keep_base_without_means": {"red": red, "blue": red}}
    out = tmp_path / "out.onnx"
    base = base_model
    if problem == "keep_base_look_alike":
        base = with_class_means(base_model, tmp_path)
    with pytest.raises(TeachError, match=words):
        teach(base, cases[problem], out, keep_base=problem.startswith("keep_base"))
    assert not out.exists()  # nothing half-written


def test_an_action_no_clip_of_which_reads_is_named_with_its_own_clip(base_model: Path, examples: Path,
                                                                     tmp_path: Path):
    from actionrec.teaching.flow import TeachError, teach

    blue_broken, red_broken = tmp_path / "blue-broken.mp4", tmp_path / "red-broken.mp4"
    for path in (blue_broken, red_broken):
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    blue = sorted((examples / "blue").iterdir())
    with pytest.raises(TeachError, match="No clip of 'red' could be read") as refused:
        teach(base_model, {"blue": [blue_broken, *blue], "red": [red_broken]}, tmp_path / "out.onnx")
    assert "red-broken.mp4" in str(refused.value) and "blue-broken.mp4" not in str(refused.value)


def test_a_clip_that_does_not_decode_is_skipped_and_named(base_model: Path, examples: Path, tmp_path: Path):
    from actionrec.teaching.flow import teach

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    red, blue = sorted((examples / "red").iterdir()), sorted((examples / "blue").iterdir())
    result = teach(base_model, {"red": red + [broken], "blue": blue}, tmp_path / "out.onnx")
    assert list(result.skipped) == [str(broken)] and result.clips == {"red": 3, "blue": 3}


def test_the_command_line_refuses_a_folder_without_actions(base_model: Path, tmp_path: Path):
    (tmp_path / "data" / "wave").mkdir(parents=True)
    result = CliRunner().invoke(app, ["teach", str(base_model), str(tmp_path / "data"),
                                      "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "no video clips in this action's folder" in result.output
