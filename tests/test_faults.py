"""Faults from outside: training killed with SIGKILL and resumed, decode workers killed, and the
server stopped with SIGTERM (alone and with its process group) while requests are in flight."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from actionrec.datasets.synth import generate_dataset, render_clip
from actionrec.video.encode import write_video
from tests.conftest import free_port

torch = pytest.importorskip("torch", reason="training and test models need the train extra (torch)")
pytestmark = pytest.mark.slow

TINY = ["--frames", "4", "--image-size", "32", "--width-mult", "0.35", "--hidden-size", "32", "--batch-size", "4",
        "--dropout", "0.5"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "data"
    generate_dataset(root, clips_per_class=6, seed=3, width=64, height=48)
    return root


def train_command(data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "actionrec.cli", "train", str(data), "--out", str(out), "--cache-dir", str(cache),
            *TINY, *extra]


def run_result(run: Path) -> tuple[list[tuple], bytes]:
    history = json.loads((run / "history.json").read_text())
    return [(row["epoch"], row["train_loss"], row["val_loss"], row["val_acc"]) for row in history], \
        (run / "model.safetensors").read_bytes()


def kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "the moment to kill never came"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def test_resume_after_sigkill_mid_epoch_equals_an_uninterrupted_run(dataset: Path, tmp_path: Path):
    epochs = ["--epochs", "4", "--backbone-weights", "none"]
    subprocess.run(train_command(dataset, tmp_path / "whole", tmp_path / "cache", *epochs), check=True,
                   capture_output=True, timeout=600)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(train_command(dataset, interrupted, tmp_path / "cache", *epochs),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def in_epoch_two() -> bool:
        history = interrupted / "history.json"
        if not history.exists():
            return False
        rows = json.loads(history.read_text())
        if len(rows) != 1:
            return False
        time.sleep(rows[0]["seconds"] * 0.4)  # well into the second epoch
        return True

    kill_when(process, in_epoch_two)
    assert len(json.loads((interrupted / "history.json").read_text())) < 4
    resumed = subprocess.run(train_command(dataset, interrupted, tmp_path / "cache", *epochs, "--resume"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming after epoch" in resumed.stdout
    assert run_result(interrupted) == run_result(tmp_path / "whole")


def test_resume_after_sigkill_during_feature_caching(dataset: Path, tmp_path: Path):
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    backbone = mobilenet_v2(weights=None, width_mult=0.35).train()
    with torch.no_grad():
        backbone(torch.randn(4, 3, 32, 32))  # batch-norm statistics that fit real inputs
    torch.save(backbone.state_dict(), weights)
    frozen = ["--epochs", "2", "--backbone-weights", str(weights)]
    subprocess.run(train_command(dataset, tmp_path / "whole", tmp_path / "cache-whole", *frozen), check=True,
                   capture_output=True, timeout=600)
    cache = tmp_path / "cache-killed"
    process = subprocess.Popen(train_command(dataset, tmp_path / "killed", cache, *frozen),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(process, lambda: len(list(cache.glob("*/*.npy"))) >= 5)
    assert not (tmp_path / "killed" / "history.json").exists()
    for entry in cache.glob("*/[!.]*.npy"):  # what a reader takes: only complete files (a killed write
        np.load(entry)                       # may leave a hidden temporary file, never an entry)
    resumed = subprocess.run(train_command(dataset, tmp_path / "killed", cache, *frozen, "--resume"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert run_result(tmp_path / "killed") == run_result(tmp_path / "whole")


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("fault-model") / "model.onnx")


@pytest.fixture(scope="module")
def clip() -> bytes:
    buffer = io.BytesIO()
    write_video(render_clip("grow", np.random.default_rng(1), num_frames=50), buffer, 25, container_format="mp4")
    return buffer.getvalue()


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def descendants(pid: int) -> set[int]:
    found = children(pid)
    for child in list(found):
        found |= descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


class SlowServer:
    """`actionrec serve` whose decoding takes a second per upload (uploads that start with SLOW),
    in its own process group, with its own temporary folder."""

    def __init__(self, model: Path, folder: Path, workers: int = 2) -> None:
        (folder / "slow_app.py").write_text(
            "import os\n"
            "from actionrec.serve.app import serve\n"
            "from actionrec.serve.settings import ServerSettings\n"
            "from tests.faults import decode_with_faults\n"
            "if __name__ == '__main__':  # decode workers start from this file too\n"
            "    serve(ServerSettings(model_path=os.environ['MODEL'], port=int(os.environ['PORT']), workers=%d,\n"
            "                         drain_timeout_s=20), decode=decode_with_faults)\n" % workers)
        self.tmp = folder / "tmp"
        self.tmp.mkdir()
        self.port = free_port()
        env = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
        env |= {"MODEL": str(model), "PORT": str(self.port), "TMPDIR": str(self.tmp),
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(folder)])}
        self.log = folder / "server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, str(folder / "slow_app.py")], stdout=log,
                                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.process.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def post_in_background(self, body: bytes, count: int) -> tuple[list, list[threading.Thread]]:
        answers: list = []

        def post() -> None:
            try:
                answers.append(httpx.post(self.url + "/", content=body, headers={"Content-Type": "video/mp4"},
                                          timeout=60))
            except httpx.HTTPError as exc:
                answers.append(exc)

        threads = [threading.Thread(target=post) for _ in range(count)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while httpx.get(self.url + "/readyz").json()["pending"] < count:
            assert time.monotonic() < deadline, "the requests never started"
            time.sleep(0.02)
        return answers, threads


@pytest.mark.parametrize("whole_group", [False, True], ids=["server", "process group"])
def test_sigterm_lets_requests_in_flight_finish_and_leaves_nothing(model_path: Path, clip: bytes, tmp_path: Path,
                                                                  whole_group: bool):
    server = SlowServer(model_path, tmp_path)
    children = descendants(server.process.pid)
    assert children  # the forkserver and the decode workers
    answers, threads = server.post_in_background(b"SLOW" + clip, 2)
    if whole_group:
        os.killpg(server.process.pid, signal.SIGTERM)  # what systemd and container runtimes send
    else:
        server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    assert [getattr(answer, "status_code", answer) for answer in answers] == [200, 200]
    assert server.process.wait(30) in (0, -signal.SIGTERM)  # uvicorn ends by re-raising the signal it drained on
    time.sleep(0.5)
    assert not [pid for pid in children if alive(pid)], server.log.read_text()
    # No pymp-* folder, no upload folder. (".ses" is ONNX Runtime's own, one file kept across runs.)
    assert not [path for path in server.tmp.iterdir() if path.name != ".ses"]


def test_a_worker_killed_from_outside_gets_a_retryable_answer(model_path: Path, clip: bytes, tmp_path: Path):
    server = SlowServer(model_path, tmp_path, workers=1)
    try:
        answers, threads = server.post_in_background(b"SLOW" + clip, 1)
        # The server's child is the forkserver; the decode workers are its children.
        workers = descendants(server.process.pid) - children(server.process.pid)
        assert len(workers) == 1
        os.kill(workers.pop(), signal.SIGKILL)
        threads[0].join(60)
        answer = answers[0]
        assert answer.status_code == 503, answer.text
        assert answer.json()["reason"] == "worker_lost" and int(answer.headers["Retry-After"]) > 0
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/readyz").json().get("workers", {}).get("running") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.post(server.url + "/", content=clip, headers={"Content-Type": "video/mp4"},
                          timeout=60).status_code == 200
    finally:
        server.process.terminate()
        server.process.wait(30)

