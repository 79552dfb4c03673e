"""Measure what three attacks cost a real `actionrec serve` on this machine (loopback only):

- an image bomb: a 1 MB PNG that declares 16000 x 16000 pixels, posted as a video; the peak
  resident memory of the server and its decode workers while it is answered;
- 30 uploads of 100 MB at once: the peak size of the server's temporary upload folder;
- four clients that send 2 MB and then a byte every 8 s with `--max-uploads 4`: how long a normal
  upload, retried every second, waits for a 200.

    python -m actionrec.testing.attacks [--model model.onnx] [--json]

It starts the server itself (with `--model`, or an untrained model it exports, which needs the
train extra). Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import glob
import json
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

from actionrec.runtime.resources import memory_mb
from actionrec.testing.loadtest import (
    GOOD,
    free_port,
    given_or_untrained,
    start_server,
    uploads,
)


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG of `width` x `height` black RGB pixels: under a megabyte, gigabytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(1 + width * 3)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


_Result = TypeVar("_Result")


def peak_while(work: Callable[[], _Result], sample: Callable[[], float]) -> tuple[float, _Result]:
    """(the largest `sample()` seen every 50 ms while `work()` ran, what `work()` returned)."""
    peak = [sample()]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], sample())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = work()
    finally:
        done.set()
        watcher.join()
    return peak[0], result


def _upload_folder(started_before: set[str]) -> str:
    return (set(glob.glob(f"{tempfile.gettempdir()}/actionrec-uploads-*")) - started_before).pop()


def bomb(url: str, pid: int) -> dict:
    data = png_bomb(16000, 16000)
    before = memory_mb(pid)[1]
    started = time.perf_counter()
    peak, answer = peak_while(lambda: httpx.post(url + "/v1/predictions", content=data, timeout=120,
                                                 headers={"Content-Type": "video/mp4"}),
                              lambda: memory_mb(pid)[1])
    return {"png_bytes": len(data), "memory_before_mb": round(before), "memory_peak_mb": round(peak),
            "seconds": round(time.perf_counter() - started, 2), "status": answer.status_code,
            "reason": answer.json().get("reason")}


def many_large_uploads(url: str, folder: str, count: int = 30, megabytes: int = 100) -> dict:
    statuses: list[str] = []
    chunk = bytes(1024 * 1024)

    def upload() -> None:
        try:
            answer = httpx.post(url + "/", content=(chunk for _ in range(megabytes)), timeout=120,
                                headers={"Content-Type": "video/mp4", "Content-Length": str(megabytes * len(chunk))})
            statuses.append(str(answer.status_code))
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)

    def all_at_once() -> None:
        threads = [threading.Thread(target=upload) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def folder_mb() -> float:
        return sum(Path(f).stat().st_size for f in glob.glob(folder + "/*") if Path(f).is_file()) / 1e6

    started = time.perf_counter()
    peak, _ = peak_while(all_at_once, folder_mb)
    return {"uploads": count, "upload_mb": megabytes, "temp_peak_mb": round(peak),
            "statuses": {status: statuses.count(status) for status in sorted(set(statuses))},
            "seconds": round(time.perf_counter() - started, 1)}


def trickle(url: str, port: int, clip: bytes, clients: int = 4, limit_s: float = 120) -> dict:
    sockets = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: video/mp4\r\nContent-Length: 100000000\r\n"
                     b"\r\n" + bytes(2 * 1024 * 1024))
        sockets.append(sock)
    stop = threading.Event()

    def send_a_byte_now_and_then() -> None:
        while not stop.wait(8):
            for sock in sockets:
                try:
                    sock.sendall(b"x")
                except OSError:
                    pass

    threading.Thread(target=send_a_byte_now_and_then, daemon=True).start()
    started = time.monotonic()
    tries = 0
    status: int | str = 0  # the HTTP status, or the name of the error that ended the request
    try:
        while time.monotonic() - started < limit_s:
            tries += 1
            try:
                status = httpx.post(url + "/", content=clip, headers={"Content-Type": "video/mp4"},
                                    timeout=60).status_code
            except httpx.HTTPError as exc:  # a refusal that closes the connection early may read as a reset
                status = type(exc).__name__
            if status == 200:
                break
            time.sleep(1)
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    return {"trickling_clients": clients, "normal_upload_waited_s": round(time.monotonic() - started, 1),
            "tries": tries, "last_status": status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an exported model.onnx (default: an untrained one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="actionrec-attacks-"))
    model = given_or_untrained(args.model, folder)
    clip = next(body for kind, body, _ in uploads() if kind == GOOD)
    report: dict = {}
    for name, options in (("default", ()), ("max_uploads_4", ("--max-uploads", "4"))):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        existing = set(glob.glob(f"{tempfile.gettempdir()}/actionrec-uploads-*"))
        process = start_server(model, port, 2, folder / f"server-{name}.log", options)
        try:
            if name == "default":
                report["bomb"] = bomb(url, process.pid)
                report["large_uploads"] = many_large_uploads(url, _upload_folder(existing))
            else:
                report["trickle"] = trickle(url, port, clip)
        finally:
            process.terminate()
            process.wait(30)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        b, u, t = report["bomb"], report["large_uploads"], report["trickle"]
        print(f"image bomb ({b['png_bytes']:,} byte PNG, 16000 x 16000): server and workers {b['memory_before_mb']} -> "
              f"{b['memory_peak_mb']} MB at peak, answered {b['status']} {b['reason']} in {b['seconds']} s")
        print(f"{u['uploads']} uploads of {u['upload_mb']} MB at once: temporary folder peak {u['temp_peak_mb']} MB; "
              f"statuses {u['statuses']} in {u['seconds']} s")
        print(f"{t['trickling_clients']} clients trickling with --max-uploads 4: a normal upload waited "
              f"{t['normal_upload_waited_s']} s ({t['tries']} tries, last {t['last_status']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
