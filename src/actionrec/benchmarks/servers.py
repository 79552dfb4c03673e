"""Real `actionrec serve`s measured from outside, as clients see them: one client's answers beside
the same answers in process, many clients at once with the load generator's share of the cores, a
server's memory answering timelines, and dynamic batching off and on. Each server runs the model
file as given (`--precision fp32`), as the in-process figures do.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from actionrec.benchmarks.inference import cpu_seconds, median_seconds
from actionrec.runtime.recognizer import Recognizer
from actionrec.runtime.resources import PeakMemory, memory_mb


def benchmark_http(model_path: Path, video: Path, recognizer: Recognizer, clients: int = 8,
                   requests_per_client: int = 6, workers: tuple[int, ...] = (2,), rounds: int = 3, pairs: int = 15,
                   options: tuple[str, ...] = ()) -> dict[int, dict[int, dict]]:
    """Real `actionrec serve`s (default settings but `options`; one for each count of decode `workers`)
    answering `video`, all started at once and measured in turns so that a busy moment of a shared
    machine falls on each alike. For each worker count: one client (`1`: `pairs` requests, each beside
    an in-process answer of the same video by `recognizer` run just before it, so that the two are
    compared on the same moment's machine), and `clients` at once (medians of `rounds` runs of
    `requests_per_client` each), with the CPU this process spent sending them: the load generator's
    share of the cores."""
    from actionrec.testing.loadtest import GOOD, free_port, start_server

    data = Path(video).read_bytes()
    body = [(GOOD, data, "video/mp4")]
    servers: dict[int, tuple[str, Any]] = {}
    try:
        for count in workers:
            port = free_port()
            # The file as given, as the in-process figures run it (not an int8 copy picked by --precision auto).
            servers[count] = (f"http://127.0.0.1:{port}", start_server(
                model_path, port, count, None, ("--max-pending", str(clients * 2), "--precision", "fp32", *options)))
        recognizer.predict(video)
        one = _one_client(servers, video, body, recognizer, pairs)
        many = _many_clients(servers, body, clients, requests_per_client, rounds)
        return {count: _figures(one[count], many[count], clients) for count in workers}
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=60)


def _one_client(servers: dict[int, tuple[str, Any]], video: Path, body: list, recognizer: Recognizer,
                pairs: int) -> dict[int, dict[str, list]]:
    """One client, its connection kept alive: `pairs` requests to each server, each just after an
    in-process answer of the same video."""
    import asyncio

    import httpx

    from actionrec.testing.loadtest import load

    data = body[0][1]
    one: dict[int, dict[str, list]] = {count: {"http": [], "in_process": [], "statuses": []} for count in servers}
    with httpx.Client(timeout=120) as http:  # one client, its connection kept alive
        for url, _ in servers.values():
            asyncio.run(load(url, body, 3, 1))  # warm up
        for _ in range(pairs):
            for count, (url, _) in servers.items():
                one[count]["in_process"].append(median_seconds(lambda: recognizer.predict(video), 1))
                started = time.perf_counter()
                response = http.post(url + "/", content=data, headers={"Content-Type": "video/mp4"})
                one[count]["statuses"].append(str(response.status_code))
                if response.status_code == 200:
                    one[count]["http"].append(time.perf_counter() - started)
    return one


def _many_clients(servers: dict[int, tuple[str, Any]], body: list, clients: int, requests_per_client: int,
                  rounds: int) -> dict[int, dict[str, list]]:
    """`clients` at once, `rounds` times at each server in turn, with this process's CPU a request."""
    import asyncio

    from actionrec.testing.loadtest import load

    many: dict[int, dict[str, list]] = {count: {"rate": [], "p50": [], "cpu": [], "statuses": []} for count in servers}
    for _ in range(rounds):
        for count, (url, _) in servers.items():
            cpu = cpu_seconds()
            run = asyncio.run(load(url, body, clients * requests_per_client, clients))
            many[count]["cpu"].append((cpu_seconds() - cpu) / (clients * requests_per_client))
            many[count]["rate"].append(run["requests_per_s"])
            many[count]["p50"].append(run["answered_ms"]["p50"])
            many[count]["statuses"].append(run["statuses"])
    return many


def _figures(alone: dict[str, list], loaded: dict[str, list], clients: int) -> dict[int, dict]:
    """One client's and many clients' medians, and every answer's status, for one server."""
    statuses: dict[str, int] = {}
    for seen in loaded["statuses"]:
        for status, number in seen.items():
            statuses[status] = statuses.get(status, 0) + number
    return {
        1: {"p50_ms": round(statistics.median(alone["http"]) * 1000, 1) if alone["http"] else float("nan"),
            "in_process_ms": round(statistics.median(alone["in_process"]) * 1000, 1),
            "statuses": {status: alone["statuses"].count(status) for status in set(alone["statuses"])}},
        clients: {"answers_per_s": statistics.median(loaded["rate"]),
                  "p50_ms": statistics.median(loaded["p50"]),
                  "load_generator_cpu_ms": round(statistics.median(loaded["cpu"]) * 1000, 1),
                  "statuses": statuses}}


def benchmark_server(model_path: Path, videos: list[Path], workers: int = 2) -> dict:
    """Resident memory of `actionrec serve` idle, and at its peak answering a timeline request."""
    import httpx

    from actionrec.testing.loadtest import free_port, start_server

    port = free_port()
    process = start_server(model_path, port, workers, None,
                           ("--max-upload-mb", "4096", "--max-duration-s", "1200", "--decode-timeout-s", "600",
                            "--precision", "fp32"))
    url = f"http://127.0.0.1:{port}"
    try:
        time.sleep(1.0)
        result: dict = {"workers": workers, "idle_mb": dict(zip(("server", "with_workers"), memory_mb(process.pid))),
                        "requests": []}
        for path in videos:
            with PeakMemory(process.pid, interval_s=0.02) as peak, open(path, "rb") as body:
                started = time.perf_counter()
                response = httpx.post(url + "/v1/predictions", params={"segments": "true"}, content=body,
                                      headers={"Content-Type": "video/mp4"}, timeout=900)
                seconds = time.perf_counter() - started
            peaks = (peak.process_mb, peak.total_mb)
            result["requests"].append({"video": str(path), "status": response.status_code,
                                       "seconds": round(seconds, 2), "peak_server_mb": round(peaks[0], 1),
                                       "peak_with_workers_mb": round(peaks[1], 1),
                                       "segments": len(response.json().get("segments") or [])})
        time.sleep(3.0)  # the server gives memory back once idle for a second
        result["idle_after_mb"] = dict(zip(("server", "with_workers"), memory_mb(process.pid)))
        return result
    finally:
        process.terminate()
        process.wait(timeout=30)


def benchmark_batching(model_path: Path, video: Path, concurrencies: tuple[int, ...] = (1, 8, 32),
                       requests_per_client: int = 4, workers: int = 4, window_ms: float = 0.0) -> dict:
    """Answers a second and latency of a real server at each concurrency, with dynamic batching
    off and on, in one run on the same video; both servers alike but for batching."""
    import asyncio
    import tempfile

    from actionrec.testing.loadtest import GOOD, free_port, load, start_server

    body = [(GOOD, Path(video).read_bytes(), "video/mp4")]
    results: dict = {"video": str(video), "workers": workers, "runs": []}
    with tempfile.TemporaryDirectory(prefix="actionrec-batching-") as scratch:
        for batching in (False, True):
            port = free_port()
            options = ("--max-pending", str(max(concurrencies) * 2), "--batching" if batching else "--no-batching",
                       "--batch-window-ms", str(window_ms))
            server = start_server(model_path, port, workers, Path(scratch) / f"server-{batching}.log", options)
            try:
                url = f"http://127.0.0.1:{port}"
                asyncio.run(load(url, body, 2, 1))  # warm up
                for concurrency in concurrencies:
                    run = asyncio.run(load(url, body, concurrency * requests_per_client, concurrency))
                    results["runs"].append({"batching": batching, "concurrency": concurrency,
                                            "answers_per_s": run["requests_per_s"], "p50_ms": run["answered_ms"]["p50"],
                                            "p95_ms": run["answered_ms"]["p95"], "statuses": run["statuses"]})
            finally:
                server.terminate()
                server.wait(timeout=60)
    return results
