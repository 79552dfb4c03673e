"""Worker processes killed from outside: a clip that kills training's decoding process costs that clip
alone (the guarded pool), a decode worker of the server killed mid-request gets a retryable answer,
and SIGTERM to the server (alone or with its process group) lets requests in flight finish and leaves
no process and no temporary folder behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from actionrec.testing.processes import alive, children, descendants, free_port

torch = pytest.importorskip("torch", reason="training and test models need the train extra (torch)")


@pytest.fixture(scope="module")
def dataset(synthetic_dataset: Path) -> Path:
    return synthetic_dataset


# --------------------------------------------------------------------------- training's decoding


def test_a_clip_that_kills_its_decoding_process_is_skipped_and_named(dataset: Path, tmp_path: Path):
    from actionrec.testing.faults import DecoderThatCrashes
    from actionrec.training.features import _decoded
    from actionrec.training.views import ViewDecoder
    from actionrec.video import ClipSpec

    videos = sorted(dataset.rglob("*.mp4"))[:5]
    poison = tmp_path / "poison.mp4"
    poison.write_bytes(b"CRASH" + videos[0].read_bytes())
    decode = DecoderThatCrashes(ViewDecoder(ClipSpec(4, 32), 1, 0, False))
    outcomes = {video: (frames, error) for video, frames, error in _decoded([*videos[:2], poison, *videos[2:]],
                                                                             decode, workers=2)}
    assert len(outcomes) == 6
    assert outcomes[poison][0] is None and "died" in outcomes[poison][1]
    assert all(outcomes[video][0].shape == (1, 4, 32, 32, 3) for video in videos)


# --------------------------------------------------------------------------- the server's decode workers


class SlowServer:
    """`actionrec serve` whose decoding takes a second per upload (uploads that start with SLOW),
    in its own process group, with its own temporary folder."""

    def __init__(self, model: Path, folder: Path, workers: int = 2) -> None:
        (folder / "slow_app.py").write_text(
            "import os\n"
            "from actionrec.serve.app import serve\n"
            "from actionrec.serve.settings import ServerSettings\n"
            "from actionrec.testing.faults import decode_with_faults\n"
            "if __name__ == '__main__':  # decode workers start from this file too\n"
            "    serve(ServerSettings(model_path=os.environ['MODEL'], port=int(os.environ['PORT']),\n"
            f"                         workers={workers}, drain_timeout_s=20), decode=decode_with_faults)\n")
        self.tmp = folder / "tmp"
        self.tmp.mkdir()
        self.port = free_port()
        env = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
        env |= {"MODEL": str(model), "PORT": str(self.port), "TMPDIR": str(self.tmp),
                "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), str(folder)])}
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


@pytest.mark.server
@pytest.mark.slow
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


@pytest.mark.server
@pytest.mark.slow
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
