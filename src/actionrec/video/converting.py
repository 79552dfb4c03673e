"""Frames converted on a thread of their own while the decoder goes on with the next ones."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import Any, TypeVar

T = TypeVar("T")

CONVERT_AHEAD = 4  # decoded frames that may wait for their conversion


def converted_ahead(frames: Generator[tuple[int, T], None, None], convert: Callable[[T], Any],
                    depth: int = CONVERT_AHEAD) -> Iterator[tuple[int, Any]]:
    """(index, `convert(frame)`) for each of `frames`, in order, each frame converted on a thread of
    its own while the decoder goes on with the next ones (FFmpeg's scaler and decoder both let go
    of the GIL): a timeline's reading then costs the decode alone, not the decode and then each
    sample's conversion. At most `depth` decoded frames wait for conversion. Where `frames` fails,
    the frames before the failure still come, then the failure is raised."""
    pending: deque[tuple[int, Future]] = deque()
    failure: Exception | None = None
    with closing(frames), ThreadPoolExecutor(1, thread_name_prefix="actionrec-convert") as pool:
        while failure is None:
            try:
                index, frame = next(frames)
            except StopIteration:
                break
            except Exception as exc:  # raised once the frames decoded before it are handed out
                failure = exc
                break
            pending.append((index, pool.submit(convert, frame)))
            if len(pending) > depth:
                index, conversion = pending.popleft()
                yield index, conversion.result()
        while pending:
            index, conversion = pending.popleft()
            yield index, conversion.result()
    if failure is not None:
        raise failure
