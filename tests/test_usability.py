"""Daily use: prediction over folders with resumable results, the conventions a command line is
expected to keep, packaging without the optional parts, settings files, and the Python client."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from actionrec.datasets.synth import generate_dataset
from tests.conftest import serve_command

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
LABELS = ["grow", "shrink", "brighten", "darken"]


def actionrec(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actionrec.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("usability") / "model.onnx", labels=LABELS)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder tree of clips, with a file that is not a video and one that claims to be."""
    root = tmp_path_factory.mktemp("videos")
    generate_dataset(root / "clips", clips_per_class=2, seed=4, width=64, height=48)
    (root / "clips" / "notes.txt").write_text("not a video, and not picked up from a folder")
    (root / "clips" / "grow" / "broken.mp4").write_bytes(b"not a video at all")
    return root


# --------------------------------------------------------------------------- predict over many videos


def test_predict_takes_folders_and_patterns_and_writes_resumable_results(model_path: Path, videos: Path,
                                                                         tmp_path: Path):
    output = tmp_path / "results.jsonl"
    first = actionrec("predict", model_path, videos / "clips" / "grow", f"{videos}/clips/s*/*.mp4",
                      "--output", output, "--workers", "2")
    assert first.returncode == 1, first.stderr  # the broken file
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 5  # grow/ (2 clips and the broken one) and shrink/ (2 clips), each once
    answered = [row for row in rows if row["action"]]
    assert len(answered) == 4 and all(row["action"] in LABELS and row["top_k"] for row in answered)
    broken = next(row for row in rows if row["error"])
    assert broken["path"].endswith("broken.mp4") and broken["reason"] == "not_a_video"
    assert "4 answered, 1 failed (not_a_video: 1)" in " ".join(first.stderr.split())

    again = actionrec("predict", model_path, videos / "clips", "--output", output, "--workers", "2")
    assert "5 skipped (answered, or failed for good" in " ".join(again.stderr.split())  # the broken one too
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len([row for row in rows if row["action"]]) == 16  # the 12 others now, the 4 not again
    assert len(rows) == len({row["path"] for row in rows}) == 17  # one row per video

    # a failure a retry can mend (here: a timeout on a busy machine) is tried again, its row replaced
    index = next(i for i, row in enumerate(rows) if row["action"])
    timed_out = rows[index]["path"]
    rows[index] = {"path": timed_out, "action": None, "error": "took longer than 300 s", "reason": "decode_timeout"}
    output.write_text("".join(json.dumps(row) + "\n" for row in rows))
    third = actionrec("predict", model_path, videos / "clips", "--output", output, "--workers", "0")
    assert "1 answered, 0 failed, 16 skipped" in " ".join(third.stderr.split()), third.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 17 and next(row for row in rows if row["path"] == timed_out)["action"] in LABELS

    broken_alone = actionrec("predict", model_path, videos / "clips" / "grow" / "broken.mp4")
    assert broken_alone.stderr.count("broken.mp4") == 1, broken_alone.stderr  # named once, not twice


def test_predict_writes_csv(model_path: Path, videos: Path, tmp_path: Path):
    output = tmp_path / "results.csv"
    result = actionrec("predict", model_path, videos / "clips" / "widen", "--output", output, "--workers", "0")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(output.open()))
    assert [set(row) for row in rows][0] == {"path", "action", "confidence", "top_k", "uncertain", "error", "reason"}
    assert len(rows) == 2 and all(row["action"] in LABELS and json.loads(row["top_k"]) for row in rows)


def test_predict_exit_codes(model_path: Path, videos: Path, tmp_path: Path):
    clip = next((videos / "clips" / "darken").glob("*.mp4"))
    assert actionrec("predict", model_path, clip).returncode == 0
    assert actionrec("predict", model_path, tmp_path / "nowhere").returncode == 2  # a usage error
    empty = tmp_path / "empty"
    empty.mkdir()
    no_videos = actionrec("predict", model_path, empty)
    assert no_videos.returncode == 2 and "no videos found" in no_videos.stderr
    no_model = actionrec("predict", tmp_path / "missing.onnx", clip)
    assert no_model.returncode == 3 and "no such model file" in no_model.stderr


def test_predict_many_yields_each_result_once(model_path: Path, videos: Path):
    from actionrec.inference import Recognizer

    paths = sorted((videos / "clips").rglob("*.mp4"))
    results = list(Recognizer(model_path).predict_many(paths, workers=2))
    assert sorted(result.path for result in results) == paths
    assert sum(result.prediction is not None for result in results) == len(paths) - 1


# --------------------------------------------------------------------------- conventions


def test_version_choices_and_completion():
    from actionrec import __version__

    assert actionrec("--version").stdout.strip() == f"actionrec {__version__}"
    wrong = actionrec("train", "data", "--out", "run", "--dataset", "ucf", "--temporal", "lstm")
    assert wrong.returncode == 2 and "ucf101" in wrong.stderr
    help_text = actionrec("train", "--help").stdout
    assert "folder|ucf101" in help_text.replace(" ", "") and "lstm|mean" in help_text.replace(" ", "")
    assert "--install-completion" in actionrec("--help").stdout
    predict_help = actionrec("predict", "--help", env=os.environ | {"COLUMNS": "160"}).stdout
    assert "--json" in predict_help and "<bool>" not in predict_help  # flags take no value
    assert "<int" in predict_help  # options that take one say so


def test_importing_the_package_changes_nothing_in_the_process():
    environment = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    code = "import os, actionrec, actionrec.inference, actionrec.cli; assert 'OMP_WAIT_POLICY' not in os.environ"
    subprocess.run([sys.executable, "-c", code], check=True, env=environment)


BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {"fastapi", "pydantic_settings", "uvicorn", "starlette", "torch", "torchvision"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    from actionrec.cli import main
    sys.argv = ["actionrec", *sys.argv[1:]]
    main()
""")


def test_the_base_install_predicts_and_says_which_extra_serving_needs(model_path: Path, videos: Path,
                                                                      tmp_path: Path):
    """Without the serve and train extras: predict works, serve names the extra to install."""
    script = tmp_path / "without_extras.py"
    script.write_text(BLOCKER)
    clip = next((videos / "clips" / "brighten").glob("*.mp4"))
    predicted = subprocess.run([sys.executable, str(script), "predict", str(model_path), str(clip), "--json"],
                               capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["action"] in LABELS
    served = subprocess.run([sys.executable, str(script), "serve", str(model_path)], capture_output=True, text=True,
                            timeout=60)
    assert served.returncode == 1 and "pip install 'actionrec[serve]'" in " ".join(served.stderr.split())
    trained = subprocess.run([sys.executable, str(script), "train", "data", "--out", "run"], capture_output=True,
                             text=True, timeout=60)
    assert trained.returncode == 1 and "actionrec[train]" in " ".join(trained.stderr.split())


def test_ray_without_what_ray_data_needs_names_the_extra(model_path: Path, videos: Path, tmp_path: Path):
    """`pip install ray` alone lacks pandas: --ray says which extra to install, not a traceback."""
    script = tmp_path / "without_pandas.py"
    script.write_text(BLOCKER.replace('BLOCKED = {"fastapi", "pydantic_settings", "uvicorn", "starlette", "torch", '
                                      '"torchvision"}', 'BLOCKED = {"pandas"}'))
    clip = next((videos / "clips" / "brighten").glob("*.mp4"))
    result = subprocess.run([sys.executable, str(script), "predict", str(model_path), str(clip), "--ray"],
                            capture_output=True, text=True, timeout=120)
    said = " ".join(result.stderr.split())
    assert result.returncode == 3 and "Traceback" not in said, result.stderr
    assert "pandas is missing" in said and "pip install 'actionrec[ray]'" in said


# --------------------------------------------------------------------------- settings files


TINY = {"frames": 4, "image_size": 32, "width_mult": 0.35, "hidden_size": 16, "batch_size": 8,
        "backbone_weights": "none"}


@pytest.mark.slow
def test_train_from_a_toml_file_and_resume_a_run_from_its_own_config(videos: Path, tmp_path: Path):
    settings = tmp_path / "tiny.toml"
    lines = [f"{key} = {json.dumps(value)}" for key, value in TINY.items()]
    settings.write_text("\n".join(["[train]", f'data_dir = "{videos / "clips"}"', "epochs = 1",
                                   f'cache_dir = "{tmp_path / "cache"}"', *lines]) + "\n")
    run = tmp_path / "run"
    first = actionrec("train", "--config", settings, "--out", run)
    assert first.returncode == 0, first.stderr
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["frames"] == 4 and saved["hidden_size"] == 16 and saved["epochs"] == 1

    resumed = actionrec("train", "--out", run, "--resume", "--epochs", "2")  # no other flag retyped
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after epoch 1" in resumed.stdout
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [1, 2]

    again = actionrec("train", "--config", run / "config.json", "--out", tmp_path / "again", "--epochs", "1")
    assert again.returncode == 0, again.stderr  # a run's config.json is a settings file too
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 3\n")
    refused = actionrec("train", "--config", bad, "--out", tmp_path / "x")
    assert refused.returncode == 1 and "unknown setting(s) epochz" in " ".join(refused.stderr.split())


# --------------------------------------------------------------------------- the API docs and the client


def test_api_docs_work_offline(model_path: Path, tmp_path: Path):
    import httpx

    with serve_command([str(model_path), "--workers", "1"], tmp_path / "server.log") as url:
        page = httpx.get(url + "/docs").text
        assert "/static/docs/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
            assert httpx.get(f"{url}/static/docs/{asset}").status_code == 200


def test_the_client_against_a_real_server(model_path: Path, videos: Path, tmp_path: Path):
    from actionrec.client import Client, ClientError

    clip = next((videos / "clips" / "narrow").glob("*.mp4"))
    with serve_command([str(model_path), "--workers", "1"], tmp_path / "server.log",
                       {"ACTIONREC_API_KEY": "client-key"}) as url:
        client = Client(url, api_key="client-key")
        assert client.ready() and client.model()["labels"] == LABELS
        answer = client.predict(clip, top_k=2, segments=True)
        assert answer["action"] in LABELS and len(answer["top_k"]) == 2 and answer["segments"]
        assert set(client.action(clip.read_bytes())) == {"action", "confidence", "message"}
        with open(clip, "rb") as file:
            assert client.predict(file)["action"] in LABELS
        with pytest.raises(ClientError) as refused:
            Client(url, api_key="wrong").predict(clip)
        assert refused.value.status == 401 and refused.value.reason == "api_key_wrong"
        with pytest.raises(ClientError) as bad:
            client.predict(b"not a video")
        assert bad.value.status == 422 and bad.value.reason == "not_a_video"


def test_the_client_waits_and_retries_when_the_server_is_busy(tmp_path: Path):
    from actionrec.client import Client, ClientError

    calls = []

    class Busy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(self.path)
            if len(calls) < 3:
                body, status, headers = b'{"detail": "busy", "reason": "busy"}', 503, {"Retry-After": "0.2"}
            else:
                body, status, headers = b'{"action": "grow", "confidence": 0.9, "message": "Success"}', 200, {}
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert Client(url, retries=3).action(b"video")["action"] == "grow" and len(calls) == 3
        calls.clear()
        with pytest.raises(ClientError) as gave_up:
            Client(url, retries=1).action(b"video")
        assert gave_up.value.status == 503 and gave_up.value.retry_after == 0.2
    finally:
        server.shutdown()


def _history(train: list[float], val: list[float]) -> list[dict]:
    return [{"epoch": epoch, "train_acc": t, "val_acc": v} for epoch, (t, v) in enumerate(zip(train, val), 1)]


def test_training_says_what_to_change_when_it_memorises_its_clips():
    from actionrec.training.advice import overfitting_advice

    # The run: 97.7% on training clips, validation stalled near 42%.
    memorising = _history([0.2, 0.4, 0.55, 0.7, 0.8, 0.88, 0.93, 0.96, 0.977],
                          [0.2, 0.3, 0.38, 0.42, 0.41, 0.40, 0.42, 0.41, 0.40])
    advice = overfitting_advice(memorising, num_train=256, end_to_end=True, flip=False)
    assert advice and "since epoch 4" in advice and "97.7%" in advice
    assert "--backbone-weights imagenet" in advice and "--train-views 4" in advice and "--flip" in advice
    assert "256" in advice

    learning = _history([0.2, 0.4, 0.6, 0.7, 0.8, 0.9], [0.2, 0.35, 0.5, 0.6, 0.7, 0.8])
    assert overfitting_advice(learning, 256, True, False) is None
    plateau_together = _history([0.5] * 8, [0.45, 0.5, 0.48, 0.47, 0.49, 0.48, 0.47, 0.46])
    assert overfitting_advice(plateau_together, 256, True, False) is None  # not memorising: underfitting
    assert overfitting_advice(memorising[:4], 256, True, False) is None  # too early to tell
    # The run in README: training accuracy near 99%, validation still creeping up to about 50%.
    saturated = _history([0.2, 0.5, 0.7, 0.85, 0.94, 0.97, 0.988], [0.12, 0.13, 0.2, 0.3, 0.4, 0.45, 0.5])
    assert overfitting_advice(saturated, 256, True, False) is None  # still improving: not yet, during the run
    assert "only 50.0%" in overfitting_advice(saturated, 256, True, False, final=True)  # but said at the end
    settling = _history([0.2, 0.3, 0.4, 0.45, 0.5, 0.55], [0.125] * 6)  # batch-norm statistics settling
    assert overfitting_advice(settling, 256, True, False, final=True) is None
    assert "a larger --shift than 0.125" in overfitting_advice(memorising, 256, True, False, shift=0.125)


def test_a_folder_datasets_schedule_follows_its_size():
    from actionrec.training.config import MIN_HEAD_STEPS, TrainConfig

    def schedule(clips: int, **settings) -> tuple[int, int]:
        config = TrainConfig(data_dir="d", out="o", **settings)
        config.resolve_schedule(clips)
        return config.epochs, config.batch_size

    assert schedule(70) == (67, 8)  # 9 steps an epoch: 603 steps, not the 45 of 15 epochs of 32
    assert schedule(144) == (67, 16)
    assert schedule(2000) == (15, 32)  # large enough: 15 epochs are over 600 steps
    for clips in (10, 70, 144, 500, 2000):
        epochs, batch = schedule(clips)
        assert epochs * -(-clips // batch) >= MIN_HEAD_STEPS or epochs == 200
    assert schedule(70, backbone_weights="none") == (15, 8)  # end to end: each step costs the backbone
    assert schedule(70, epochs=5, batch_size=4) == (5, 4)  # what is given stays
    assert schedule(5000, dataset="ucf101") == (20, 64)  # the UCF101 recipe's own
