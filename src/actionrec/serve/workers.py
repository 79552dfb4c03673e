"""Decode worker processes: uploads are decoded away from the server, so a crash costs one worker.

FFmpeg can crash outright or hang on a damaged stream. Each upload is decoded in a worker
process with a time limit; a worker that dies or overruns is killed and replaced at once, and
the upload gets an error instead of taking the server down. A job's results come back as they
are produced (decoded frames in chunks), so the server works on them while the worker decodes
on. Workers import no model: they stay small.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from actionrec.errors import (
    DecodeCrashed,
    DecodeFailed,
    DecodersBusy,
    DecodeTimedOut,
    RegionsError,
    VideoError,
    WorkerLost,
)
from actionrec.runtime.processes import start_child, worker_context

T = TypeVar("T")

log = logging.getLogger("actionrec.server")

WORKER_START_TIMEOUT_S = 120.0
WORKER_RESTART_ALLOWANCE_S = 30.0
WORKER_MEMORY_HEADROOM = 3 * 1024**3  # address space a decode worker may add to what it has at start

# What a worker runs for each upload: stream_prediction_frames' signature, (source, spec, limits, timeline),
# returning an iterator of messages that the worker sends back one by one.
DecodeFunction = Callable[..., Iterator[Any]]
Job = tuple[Callable[..., Any], tuple, dict]  # a module-level function, its arguments


def _limit_memory(headroom: int) -> None:
    """Cap this process's address space at what it uses now plus `headroom`: a file that makes a
    decoder allocate more (a frame FFmpeg sizes while probing, before our pixel limit applies, as
    FLV and MPEG-PS streams are) fails in this worker, and the server answers 422, with its memory
    intact."""
    try:
        with open("/proc/self/status") as status:
            used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        wanted = used + headroom
        if hard == resource.RLIM_INFINITY or wanted < hard:
            resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    except (OSError, ValueError, StopIteration):
        pass  # not Linux, or not allowed: FFmpeg's own pixel limit still applies


def _widen_send_buffer(conn: Connection, size: int = 4 * 1024 * 1024) -> None:
    """Let a chunk of decoded frames (four 224 px frames are 0.6 MB, three times the socket's default
    buffer) go to the server in one write while the server still encodes the last one, so that it
    is there to read at once when the server asks for it. The kernel caps `size` at its limit."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:
        pass  # not a socket: the chunk goes in several writes, as before


def _decode_worker_main(conn: Connection) -> None:
    """Body of a worker process: run jobs from `conn` until told to stop or the parent goes.

    A job's result is sent as ("message", item) for each item it yields (or once, for a plain
    value), then ("end", None); a VideoError (or a RegionsError: regions the video cannot have) as
    ("video_error", error); anything else as ("error", text).
    """
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the server finishes the
    # requests in progress (which need their workers) and then stops the workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _limit_memory(WORKER_MEMORY_HEADROOM)
    _widen_send_buffer(conn)
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        function, args, kwargs = job
        del job
        try:
            result = function(*args, **kwargs)
            for item in (result if isinstance(result, Iterator) else [result]):
                conn.send(("message", item))
            reply: tuple[str, Any] = ("end", None)
        except (VideoError, RegionsError) as exc:
            reply = ("video_error", exc)
        except Exception:  # an upload must never take the worker loop down; the server logs this
            reply = ("error", traceback.format_exc(limit=20))
        del args, kwargs
        conn.send(reply)


# Signals that come from outside (a kill, a shutdown), not from decoding a file.
_STOPPED_FROM_OUTSIDE = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


def _death(exitcode: int | None) -> Exception:
    """Why a worker died: the file made it crash (422), or it was stopped from outside (503, retry)."""
    if exitcode is not None and exitcode < 0 and -exitcode in _STOPPED_FROM_OUTSIDE:
        return WorkerLost(f"the decode worker was stopped from outside ({signal.Signals(-exitcode).name})")
    return DecodeCrashed(f"exit code {exitcode}")


def _suspended(pid: int | None) -> bool:
    """Whether process `pid` is stopped by a signal (state T in /proc; False where that cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] in (b"T", b"t")
    except (OSError, IndexError):
        return False


class DecodeProcess:
    """One worker process and its pipe. Blocking methods: call them from a thread."""

    def __init__(self, context: BaseContext) -> None:
        self.conn, self.process = start_child(context, _decode_worker_main, name="actionrec-decode")
        self.idle = True  # False while a job's replies are still coming

    def wait_ready(self, timeout: float) -> bool:
        try:
            return self.conn.poll(timeout) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            return False

    def results(self, job: Job, timeout: float) -> Iterator[Any]:
        """Send `job` and yield what it produces as it comes. `timeout` bounds the time spent
        waiting for the worker, not the time the caller takes between items. The caller marks the
        worker busy before it hands the job over."""
        budget = timeout
        try:
            self.conn.send(job)
            while True:
                waited = time.monotonic()
                if not self.conn.poll(budget):
                    if _suspended(self.process.pid):  # SIGSTOP from outside: not the file's fault
                        raise WorkerLost("the decode worker was suspended from outside (SIGSTOP) and did not answer")
                    raise DecodeTimedOut()
                kind, payload = self.conn.recv()
                budget -= time.monotonic() - waited
                if kind == "message":
                    yield payload
                    continue
                self.idle = True
                if kind == "end":
                    return
                if kind == "video_error":
                    raise payload
                raise DecodeFailed(payload)
        except (EOFError, OSError):
            self.process.join(1)
            raise _death(self.process.exitcode) from None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def stop(self, timeout: float = 2.0) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout)
        self.kill()
        self.conn.close()


class DecodePool:
    """A fixed number of decode worker processes; one that crashes or hangs is killed and replaced.

    A dedicated process per worker (not a shared ProcessPoolExecutor) so that killing a stuck
    decode does not disturb the uploads other workers are decoding.
    """

    def __init__(self, size: int, timeout_s: float) -> None:
        self.size = size
        self.timeout_s = timeout_s
        self._context = worker_context(preload=[__name__])  # a replacement starts in milliseconds
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="decode-wait")
        self._idle: asyncio.Queue[DecodeProcess] = asyncio.Queue()
        self._all: set[DecodeProcess] = set()
        self._replacements: set[asyncio.Task] = set()
        self._closed = False

    @property
    def running(self) -> int:
        return len(self._all)

    def pids(self) -> set[int]:
        return {worker.process.pid for worker in self._all if worker.process.pid is not None}

    def _start_one(self) -> DecodeProcess | None:
        worker = DecodeProcess(self._context)
        if worker.wait_ready(WORKER_START_TIMEOUT_S):
            return worker
        worker.kill()
        return None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        started = await asyncio.gather(*(loop.run_in_executor(self._threads, self._start_one)
                                          for _ in range(self.size)))
        for worker in started:
            if worker is not None:
                self._add(worker)
        if not self._all:
            raise RuntimeError("no decode worker process could be started")

    def _add(self, worker: DecodeProcess) -> None:
        self._all.add(worker)
        self._idle.put_nowait(worker)

    async def run(self, job: Job, consume: Callable[[Iterator[Any]], T], wait_s: float | None = None) -> T:
        """Run `job` in a worker and return `consume(its results as they come)`; `consume` runs
        on a thread. Raises VideoError, DecodeCrashed, DecodeFailed, WorkerLost, DecodeTimedOut,
        DecodersBusy, or what `consume` raises. A worker left half way through a job is replaced,
        never reused. `wait_s` bounds the wait for a free worker (default: until one must be free)."""
        worker = await self._idle_worker(wait_s)
        worker.idle = False  # from here until its results say the job is over
        loop = asyncio.get_running_loop()

        def consume_all() -> T:
            results = worker.results(job, self.timeout_s)
            value = consume(results)
            for _ in results:  # what `consume` left, up to the end of the job
                pass
            return value

        try:
            value = await loop.run_in_executor(self._threads, consume_all)
        except BaseException:
            if worker.idle:
                self._idle.put_nowait(worker)
            else:
                self._replace(worker)
            raise
        self._idle.put_nowait(worker)
        return value

    async def _idle_worker(self, wait_s: float | None = None) -> DecodeProcess:
        # A busy worker is free within timeout_s (it is killed then); a replacement takes seconds.
        deadline = time.monotonic() + (self.timeout_s + WORKER_RESTART_ALLOWANCE_S if wait_s is None else wait_s)
        while True:
            try:
                worker = await asyncio.wait_for(self._idle.get(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise DecodersBusy() from None
            if worker.process.is_alive():
                return worker
            log.warning("a decode worker died while idle (exit code %s); replacing it", worker.process.exitcode)
            self._replace(worker)

    def _replace(self, worker: DecodeProcess) -> None:
        """Take `worker` out of service now; kill it and start another in the background."""
        self._all.discard(worker)
        task = asyncio.create_task(self._kill_and_replace(worker))
        self._replacements.add(task)
        task.add_done_callback(self._replacements.discard)

    async def _kill_and_replace(self, worker: DecodeProcess) -> None:
        await asyncio.to_thread(worker.kill)
        delay = 0.5
        while not self._closed:
            replacement = await asyncio.to_thread(self._start_one)
            if replacement is not None:
                if self._closed:
                    await asyncio.to_thread(replacement.stop)
                else:
                    self._add(replacement)
                return
            log.error("a decode worker failed to start; retrying in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._replacements):
            task.cancel()
        workers = list(self._all)
        self._all.clear()
        await asyncio.gather(*(asyncio.to_thread(worker.stop) for worker in workers))
        self._threads.shutdown(wait=False, cancel_futures=True)
