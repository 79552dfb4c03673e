"""Worker processes for long batches, where one bad file must cost one result and never the batch.

`GuardedPool(factory, workers)` starts `workers` child processes; each builds its handler once
(`factory()`, e.g. a model loaded from its file) and then handles items one at a time. An item
whose handling crashes the child (a segfault inside FFmpeg) or overruns `timeout_s` comes back as
an outcome saying so, and a fresh child takes the dead one's place; the batch goes on.

The server has its own pool (`actionrec.serve.workers.DecodePool`): long-lived workers shared by
requests on an event loop, each job's results streamed back in chunks, failures told apart as the
HTTP answers need (docs/contributing.md, "Two guarded pools", says why it is not this one). Both
start their children with `worker_context` and `start_child`.
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from actionrec.errors import RegionsError, VideoError


def worker_context(preload: Sequence[str] = ()) -> BaseContext:
    """How worker processes start: from a fork server where there is one (a clean, single-threaded
    process; plain fork is unsafe in a parent that runs threads), else spawned. `preload`: modules
    the fork server imports once, so that each child (a replacement too) starts in milliseconds."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    return context


def start_child(context: BaseContext, target: Callable[..., None], *args: Any,
                name: str | None = None) -> tuple[Connection, BaseProcess]:
    """A daemon child running `target(its end of a pipe, *args)`, and the parent's end. The child's
    end is closed here, so that the parent's death reads as EOF in the child."""
    conn, child_end = context.Pipe()
    process = context.Process(target=target, args=(child_end, *args), name=name, daemon=True)  # type: ignore[attr-defined]
    process.start()
    child_end.close()
    return conn, process


@dataclass(frozen=True)
class Outcome:
    """What became of one item: `kind` is "ok" (then `value`), "video_error" (then `reason` and
    `message`), "unexpected" (an exception that is not the input's known fault), "crash" or "timeout"."""

    kind: str
    value: Any = None
    reason: str | None = None
    message: str | None = None


def _child(conn: Connection, factory: Callable[[], Callable[[Any], Any]]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        handle = factory()
    except Exception as exc:
        conn.send(Outcome("start_failed", message=f"{type(exc).__name__}: {exc}"))
        return
    try:
        conn.send("ready")
    except OSError:  # the batch ended (and the parent hung up) before this child was needed
        return
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):  # the parent hung up: the batch ended, or it was stopped
            return
        try:
            outcome = Outcome("ok", value=handle(item))
        except (VideoError, RegionsError) as exc:  # the file (or the regions asked of it)
            outcome = Outcome("video_error", reason=exc.reason, message=str(exc))
        except Exception as exc:
            outcome = Outcome("unexpected", reason="internal_error", message=f"{type(exc).__name__}: {exc}\n"
                                                                              f"{traceback.format_exc(limit=8)}")
        try:
            conn.send(outcome)
        except OSError:  # the parent stopped waiting for it (interrupted, or gone)
            return


def ready_made(handler: Callable[[Any], Any]) -> Callable[[], Callable[[Any], Any]]:
    """A factory for a handler that needs no building (it must be picklable, and its module light
    to import: each child imports it)."""
    return functools.partial(_same, handler)


def _same(value: Any) -> Any:
    return value


class _Child:
    def __init__(self, context: BaseContext, factory: Callable) -> None:
        self.conn, self.process = start_child(context, _child, factory)
        self.item: Any = None
        self.started = time.monotonic()  # when it started, then when it was given its item
        self.ready = False

    def stop(self) -> None:
        self.conn.close()
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class GuardedPool:
    def __init__(self, factory: Callable[[], Callable[[Any], Any]], workers: int, timeout_s: float | None = None,
                 start_timeout_s: float = 120.0) -> None:
        self.context = worker_context()
        self.factory, self.workers, self.timeout_s = factory, max(1, workers), timeout_s
        self.start_timeout_s = start_timeout_s

    def run(self, items: Iterable[Any]) -> Iterator[tuple[Any, Outcome]]:
        """(item, outcome) for every item, in the order they finish."""
        waiting = deque(items)
        children = [_Child(self.context, self.factory) for _ in range(min(self.workers, len(waiting)))]
        try:
            while waiting or any(child.item is not None for child in children):
                for child in children:
                    if child.ready and child.item is None and waiting:
                        child.item, child.started = waiting.popleft(), time.monotonic()
                        child.conn.send(child.item)
                ready = wait([child.conn for child in children], timeout=1.0)
                now = time.monotonic()
                for index, child in enumerate(children):
                    finished: Outcome | None = None
                    if child.conn in ready:
                        try:
                            message = child.conn.recv()
                        except (EOFError, OSError):
                            child.process.join(5)
                            if not child.ready:
                                raise RuntimeError(f"a worker process failed to start (exit code "
                                                   f"{child.process.exitcode})") from None
                            finished = Outcome("crash", reason="decoder_crashed",
                                               message=f"the worker died (exit code {child.process.exitcode})")
                        else:
                            if message == "ready":
                                child.ready = True
                                continue
                            if message.kind == "start_failed":
                                raise RuntimeError(f"a worker process failed to start: {message.message}")
                            finished = message
                    elif not child.ready and now - child.started > self.start_timeout_s:
                        raise RuntimeError("a worker process did not start in time")
                    elif child.item is not None and self.timeout_s and now - child.started > self.timeout_s:
                        finished = Outcome("timeout", reason="decode_timeout",
                                           message=f"took longer than {self.timeout_s:g} s and was stopped")
                    if finished is None:
                        continue
                    item = child.item
                    if finished.kind in ("crash", "timeout"):
                        child.stop()
                        children[index] = child = _Child(self.context, self.factory)
                    child.item = None
                    if item is not None:
                        yield item, finished
        finally:
            for child in children:
                child.stop()
