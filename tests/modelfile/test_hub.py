"""Models by name on the Hugging Face Hub, without the network: a model put into a cache folder the
way huggingface_hub lays one out, then loaded by name with HF_HUB_OFFLINE=1 (in fresh processes, as
the library reads its settings once); and `push` up to the library's call (the files and the card
it would send)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actionrec.datasets.synth import render_clip
from actionrec.modelfile.card import TEMPORAL_HEADS
from actionrec.video.encode import write_video

pytest.importorskip("huggingface_hub", reason="the hub extra is not installed (pip install 'actionrec[hub]')")
yaml = pytest.importorskip("yaml")
LABELS = ["grow", "shrink", "brighten", "darken"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="making the test model needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("hub") / "model.onnx", labels=LABELS)


def put_in_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = "main",
                 commit: str = "a" * 40) -> None:
    """`files` as huggingface_hub caches a download of `repo_id` at `revision`: blobs, a snapshot
    of links to them, and the ref naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for name, source in files.items():
        blob = repo / "blobs" / f"{commit[:8]}-{name}"
        shutil.copyfile(source, blob)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)


@pytest.fixture(scope="module")
def cache(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    put_in_cache(cache, "someone/colours", {"model.onnx": model})
    put_in_cache(cache, "someone/colours", {"model.onnx": model}, revision="v1", commit="b" * 40)
    notes = cache.parent / "notes.txt"
    notes.write_text("not a model")
    put_in_cache(cache, "someone/no-model", {"notes.txt": notes})
    return cache


def offline(cache: Path, code: str) -> subprocess.CompletedProcess:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("HF_", "ACTIONREC_"))}
    environment |= {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *code], capture_output=True, text=True, timeout=120, env=environment)


def test_a_model_loads_by_name_from_the_cache_with_the_network_off(cache: Path, tmp_path: Path):
    clip = tmp_path / "grow.mp4"
    write_video(render_clip("grow", np.random.default_rng(1), num_frames=40), clip, 25)
    code = ("from actionrec import Recognizer\n"
            "for name in ('hf://someone/colours', 'hf://someone/colours@v1'):\n"
            "    recognizer = Recognizer(name)\n"
            f"    print(recognizer.model_path, recognizer.predict({str(clip)!r}).action)\n")
    loaded = offline(cache, ["-c", code])
    assert loaded.returncode == 0, loaded.stderr
    (main_path, main_action), (v1_path, _) = (line.rsplit(" ", 1) for line in loaded.stdout.splitlines())
    assert main_path.startswith(str(cache)) and "a" * 40 in main_path and main_action in LABELS
    assert "b" * 40 in v1_path  # the revision asked for
    predicted = offline(cache, ["-m", "actionrec.cli", "predict", "hf://someone/colours", str(clip), "--json"])
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["action"] in LABELS


@pytest.mark.parametrize(("name", "said"), [
    ("hf://someone/missing", "not in this machine's Hugging Face cache, and HF_HUB_OFFLINE is set"),
    ("hf://someone/no-model", "has no model.onnx"),
    ("hf://someone", "not a Hub model name"),
])
def test_a_name_that_cannot_be_had_says_what_to_do(cache: Path, tmp_path: Path, name: str, said: str):
    clip = tmp_path / "clip.mp4"
    write_video(render_clip("grow", np.random.default_rng(1), num_frames=20), clip, 25)
    result = offline(cache, ["-m", "actionrec.cli", "predict", name, str(clip)])
    assert result.returncode == 3, result.stderr  # nothing could run
    assert said in " ".join(result.stderr.split()) and "Traceback" not in result.stderr


def card_header(readme: str) -> dict:
    _, header, _ = readme.split("---\n", 2)
    return yaml.safe_load(header)


def test_push_writes_the_card_it_would_upload(model: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from actionrec.cli import app

    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(model, run / "model.onnx")
    (run / "metrics.json").write_text(json.dumps({"top1": 0.9375, "num_clips": 48}))
    (run / "confusion.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "would-upload"
    result = CliRunner().invoke(app, ["push", str(run), "someone/colours", "--dry-run", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "confusion.png", "model.onnx"]
    readme = (out / "README.md").read_text()
    header = card_header(readme)
    assert header["library_name"] == "actionrec" and header["pipeline_tag"] == "video-classification"
    assert header["license"] == "apache-2.0" and header["datasets"]
    metric = header["model-index"][0]["results"][0]["metrics"][0]
    assert metric["type"] == "accuracy" and metric["value"] == 0.9375 and "48 held-out clips" in metric["name"]
    assert all(label in readme for label in LABELS) and 'Recognizer("hf://someone/colours")' in readme
    assert "![Confusion matrix](confusion.png)" in readme
    assert "lstm" in header["tags"] and f"then {TEMPORAL_HEADS['lstm'].description}." in readme  # from the table

    missing = CliRunner().invoke(app, ["push", str(tmp_path), "someone/colours", "--dry-run", str(out)])
    assert missing.exit_code == 1 and "no model.onnx there" in missing.output
    wrong = CliRunner().invoke(app, ["push", str(run), "not a repo", "--dry-run", str(out)])
    assert wrong.exit_code == 2 and "OWNER/NAME" in wrong.output


def test_a_taught_models_page_says_what_its_head_is(model: Path, tmp_path: Path):
    from actionrec.modelfile.card import read_card, update_card
    from actionrec.modelfile.publish import model_card_text
    from actionrec.teaching.flow import HEAD

    assert HEAD in TEMPORAL_HEADS and not TEMPORAL_HEADS[HEAD].trainable  # `teach` makes it, `train` does not
    taught = tmp_path / "taught.onnx"
    shutil.copyfile(model, taught)
    update_card(taught, model=read_card(taught).model | {"temporal": HEAD})
    readme = model_card_text(taught, "someone/taught")
    assert f"then {TEMPORAL_HEADS[HEAD].description}." in readme and "over the frames" not in readme
    assert HEAD in card_header(readme)["tags"]


def test_push_hands_those_files_to_huggingface_hub(model: Path, monkeypatch, tmp_path: Path):
    import huggingface_hub
    from typer.testing import CliRunner

    from actionrec.cli import app

    calls: dict = {}

    def create_repo(self, repo_id, *, private=False, exist_ok=False, **_):
        calls["create_repo"] = (repo_id, private, exist_ok)
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id, folder_path, **_):
        calls["upload_folder"] = (repo_id, {path.name: path.read_bytes() for path in Path(folder_path).iterdir()})

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    result = CliRunner().invoke(app, ["push", str(model), "someone/colours", "--private"])
    assert result.exit_code == 0, result.output
    assert calls["create_repo"] == ("someone/colours", True, True)
    repo_id, files = calls["upload_folder"]
    assert repo_id == "someone/colours" and sorted(files) == ["README.md", "model.onnx"]
    assert files["model.onnx"] == model.read_bytes()
    assert card_header(files["README.md"].decode())["library_name"] == "actionrec"
    assert "hf://someone/colours" in " ".join(result.output.split())
