"""Load and abuse a real `actionrec serve`: many clients at once, bad uploads among good ones, and
clients that hold connections open doing nothing or sending their bodies a few bytes at a time.

    python -m actionrec.testing.loadtest --requests 2000 --concurrency 32 --slow 100 --idle 1000
    (or: make loadtest)

It starts the server itself (with `--model`, or an untrained model it exports, which needs the
train extra), then prints:
- for the load: throughput, latency percentiles of the answered uploads, every status seen, and
  the answers a client should never get (a 5xx other than 503, a 503 without Retry-After, a good
  video refused, a bad one answered);
- for the abuse: a normal upload's time with the slow and idle clients connected, against its
  time on an idle server;
- the resident memory of the server and its decode workers before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

from actionrec.runtime.resources import memory_mb

GOOD, BAD = "good", "bad"


def uploads() -> list[tuple[str, bytes, str]]:
    """(kind, body, content type): three good clips and the bad uploads real clients send."""
    from actionrec.datasets.synth import render_clip
    from actionrec.video.encode import write_video

    rng = np.random.default_rng(5)
    good = []
    for label in ("grow", "brighten", "widen"):
        buffer = io.BytesIO()
        write_video(render_clip(label, rng, num_frames=50), buffer, 25, container_format="mp4")
        good.append(buffer.getvalue())
    return [(GOOD, body, "video/mp4") for body in good] + [
        (BAD, b"", "video/mp4"),
        (BAD, rng.integers(0, 256, 30_000, dtype=np.uint8).tobytes(), "video/mp4"),
        (BAD, good[0][: len(good[0]) // 3], "video/mp4"),
        (BAD, b'{"video": "not really"}', "application/json"),
    ]


def _rss_mb(pid: int) -> float:
    return memory_mb(pid)[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def given_or_untrained(model: Path | None, folder: Path) -> Path:
    """`model`, or an untrained one exported into `folder` (which needs the train extra)."""
    if model is not None:
        return model
    from actionrec.testing import make_untrained_model

    return make_untrained_model(folder / "model.onnx")


def start_server(model: Path, port: int, workers: int, log: Path | None,
                 options: tuple[str, ...] = ()) -> subprocess.Popen:
    """`actionrec serve` as its own process, free of this one's ACTIONREC_* settings, once ready."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
    output = open(log, "wb") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "actionrec.cli", "serve", str(model), "--port", str(port),
                                "--workers", str(workers), *options], stdout=output, stderr=subprocess.STDOUT,
                               env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start" + (f"; see {log}" if log else ""))
        time.sleep(0.2)


async def load(url: str, bodies: list, requests: int, concurrency: int) -> dict:
    statuses: Counter = Counter()
    wrong: Counter = Counter()
    latencies: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for number in range(requests):
        queue.put_nowait(bodies[number % len(bodies)])

    async def client() -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            while not queue.empty():
                kind, body, content_type = queue.get_nowait()
                started = time.perf_counter()
                try:
                    response = await http.post(url + "/", content=body, headers={"Content-Type": content_type})
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1
                    wrong["no answer"] += 1
                    continue
                seconds = time.perf_counter() - started
                status = response.status_code
                statuses[status] += 1
                if status == 200:
                    latencies.append(seconds)
                if status >= 500 and status != 503:
                    wrong[f"{status}"] += 1
                elif status == 503 and "retry-after" not in response.headers:
                    wrong["503 without Retry-After"] += 1
                elif kind == GOOD and status not in (200, 503):
                    wrong[f"good video got {status}"] += 1
                elif kind == BAD and status == 200:
                    wrong["bad upload answered 200"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else float("nan")

    return {"requests": requests, "concurrency": concurrency, "seconds": round(elapsed, 2),
            "requests_per_s": round(requests / elapsed, 1), "statuses": {str(k): v for k, v in statuses.items()},
            "answered_ms": {"p50": percentile(0.50), "p95": percentile(0.95), "p99": percentile(0.99)},
            "wrong_answers": dict(wrong)}


def upload_seconds(url: str, body: bytes, times: int = 5) -> float:
    results = []
    for _ in range(times):
        started = time.perf_counter()
        response = httpx.post(url + "/", content=body, headers={"Content-Type": "video/mp4"}, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"a normal upload got {response.status_code}: {response.text}")
        results.append(time.perf_counter() - started)
    return statistics.median(results)


def abuse(url: str, body: bytes, slow: int, idle: int) -> dict:
    """Normal uploads while `slow` clients dribble bodies and `idle` clients hold connections open."""
    host, port = url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets: list[socket.socket] = []
    for _ in range(idle):
        sockets.append(socket.create_connection((host, int(port))))
    dribblers = []
    for _ in range(slow):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        dribblers.append(sock)

    def dribble() -> None:
        position = 0
        while not stop.is_set():
            for sock in dribblers:
                try:
                    sock.send(body[position % len(body) : position % len(body) + 4])
                except OSError:
                    pass
            position += 4
            time.sleep(0.5)

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)
        seconds = upload_seconds(url, body)
    finally:
        stop.set()
        thread.join()
        for sock in sockets + dribblers:
            sock.close()
    return {"slow_clients": slow, "idle_connections": idle, "normal_upload_s": round(seconds, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an exported model.onnx (default: an untrained one)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--slow", type=int, default=100, help="clients sending their bodies a few bytes at a time")
    parser.add_argument("--idle", type=int, default=1000, help="connections opened and left silent")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="actionrec-loadtest-"))
    model = given_or_untrained(args.model, folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    bodies = uploads()
    process = start_server(model, port, args.workers, folder / "server.log")
    try:
        time.sleep(1.0)
        report: dict = {"model": str(model), "workers": args.workers,
                        "memory_before_mb": round(_rss_mb(process.pid), 1)}
        report["unloaded_upload_s"] = round(upload_seconds(url, bodies[0][1]), 3)
        report["load"] = asyncio.run(load(url, bodies, args.requests, args.concurrency))
        report["abuse"] = abuse(url, bodies[0][1], args.slow, args.idle)
        unloaded = report["unloaded_upload_s"]
        report["abuse"]["ratio_to_unloaded"] = round(report["abuse"]["normal_upload_s"] / unloaded, 2)
        time.sleep(3.0)
        report["memory_after_mb"] = round(_rss_mb(process.pid), 1)
        report["memory_growth_mb"] = round(report["memory_after_mb"] - report["memory_before_mb"], 1)
        report["healthy_after"] = httpx.get(url + "/readyz", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(30)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        loaded = report["load"]
        print(f"load: {loaded['requests']} requests at concurrency {loaded['concurrency']} in {loaded['seconds']} s "
              f"({loaded['requests_per_s']} requests/s)")
        print(f"  statuses: {loaded['statuses']}")
        print(f"  answered uploads: p50 {loaded['answered_ms']['p50']} ms, p95 {loaded['answered_ms']['p95']} ms, "
              f"p99 {loaded['answered_ms']['p99']} ms")
        print(f"  answers a client should never get: {loaded['wrong_answers'] or 'none'}")
        abused = report["abuse"]
        print(f"abuse: with {abused['slow_clients']} slow-body clients and {abused['idle_connections']} idle "
              f"connections, a normal upload took {abused['normal_upload_s']} s against "
              f"{report['unloaded_upload_s']} s unloaded ({abused['ratio_to_unloaded']}x)")
        print(f"memory (server and workers): {report['memory_before_mb']} MB before, {report['memory_after_mb']} MB "
              f"after ({report['memory_growth_mb']:+} MB); healthy after: {report['healthy_after']}")
    failed = report["load"]["wrong_answers"] or not report["healthy_after"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
