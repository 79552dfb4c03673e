"""Processes for tests: `actionrec` commands run to their end, `actionrec serve` as a real process on a
free port, and what a process left running (its children, whether one is still alive). Linux /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from actionrec.testing.loadtest import free_port

__all__ = ["alive", "children", "descendants", "free_port", "run_checked", "run_cli", "serve_command"]


def run_cli(*args: str | os.PathLike, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`actionrec ARGS...` in a fresh interpreter, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "actionrec.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_checked(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`command` with one OpenMP thread, which must succeed (else an AssertionError with its output's end)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@contextmanager
def serve_command(options: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`actionrec serve` as a real process on a free port, with no ACTIONREC_* variables but `env`;
    yields its URL once /readyz answers and stops it at the end. A server that does not start within
    90 s is an AssertionError carrying its log."""
    import httpx

    port = free_port()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("ACTIONREC_")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "actionrec.cli", "serve", *options, "--host", "127.0.0.1",
                                    "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=environment | (env or {}))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{log_path.read_text(errors='replace')}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def children(pid: int) -> set[int]:
    """The process ids of `pid`'s children (of all its threads)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def descendants(pid: int) -> set[int]:
    """`pid`'s children, their children, and so on."""
    found = children(pid)
    for child in list(found):
        found |= descendants(child)
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def wait_for_job(get_json: Callable[[str], Any], job_id: str, timeout_s: float = 180) -> dict:
    """A teaching job's record once it is done or failed; `get_json(path)` reads a route's JSON (from a
    real server or an in-process client). AssertionError when it is still running at `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    while time.monotonic() < deadline:
        job = get_json(f"/v1/teach/jobs/{job_id}")
        if job.get("state") in ("done", "failed"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")
