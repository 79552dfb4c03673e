"""Resident memory of a process and everything it started, read from /proc (Linux), and a sampler
that keeps the peak while some work runs. Used by the benchmarks and the load test."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from types import TracebackType


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 where /proc cannot tell)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *descendants(child)]
    return found


def memory_mb(pid: int) -> tuple[float, float]:
    """(the process, the process and every process it started) resident MB."""
    main = rss_mb(pid)
    return main, main + sum(rss_mb(child) for child in descendants(pid))


class PeakMemory:
    """`with PeakMemory(pid) as peak:` samples every `interval_s`; then `peak.process_mb` and
    `peak.total_mb` (with its children) are the largest seen."""

    def __init__(self, pid: int | None = None, interval_s: float = 0.05) -> None:
        self.pid, self.interval_s = pid or os.getpid(), interval_s
        self.process_mb = self.total_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            main, total = memory_mb(self.pid)
            self.process_mb, self.total_mb = max(self.process_mb, main), max(self.total_mb, total)
            if self._done.wait(self.interval_s):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()


INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # instructions that make int8 convolutions fast


@functools.cache  # the CPU does not change while a process runs; /v1/model asks on every page load
def cpu_facts() -> dict:
    """This machine's CPU: architecture, cores, the vector instructions that matter for inference,
    and whether int8 models can be expected to pay (VNNI or AMX present)."""
    import platform

    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split())
    except (OSError, IndexError):
        flags = set()
    listed = [name for name in ("avx2", "avx512f", *INT8_FLAGS) if name in flags]
    return {"machine": platform.machine(), "cores": os.cpu_count(), "features": listed,
            "int8_pays": any(name in flags for name in INT8_FLAGS)}


def describe_cpu(facts: dict | None = None) -> str:
    facts = facts or cpu_facts()
    return f"{facts['machine']}, {facts['cores']} cores ({', '.join(facts['features']) or 'no AVX2'})"
