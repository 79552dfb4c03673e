"""On-disk cache of per-clip arrays (decoded frames or backbone features).

One `.npy` file per video, named by the video's identity (path, size, modification time), inside
a folder named by everything that shapes the array (sampling, views, backbone). Each file is
written atomically, so an interrupted run resumes where it stopped and never reads half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from actionrec.files import atomic_output, write_text


def default_cache_root() -> Path:
    return Path(os.environ.get("ACTIONREC_CACHE", Path.home() / ".cache" / "actionrec"))


def settings_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


STALE_TEMPORARY_S = 3600  # a file being written is renamed within seconds; one this old was abandoned


class ClipCache:
    def __init__(self, root: Path, settings: dict) -> None:
        self.folder = Path(root) / settings_key(settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned_files()
        settings_file = self.folder / "settings.json"
        if not settings_file.exists():
            write_text(settings_file, json.dumps(settings, indent=2, sort_keys=True))

    def _remove_abandoned_files(self) -> None:
        """A process killed while writing (SIGKILL, power loss) leaves its temporary file: never
        read, since entries appear only by rename, and removed here once it is clearly old."""
        now = time.time()
        for leftover in self.folder.glob(".*.tmp*"):
            try:
                if now - leftover.stat().st_mtime > STALE_TEMPORARY_S:
                    leftover.unlink()
            except OSError:
                continue

    def path_for(self, video: Path) -> Path:
        stat = video.stat()
        identity = f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return self.folder / (hashlib.sha1(identity.encode()).hexdigest()[:24] + ".npy")

    def missing(self, videos: Iterable[Path]) -> list[Path]:
        return [v for v in videos if not self.path_for(v).exists()]

    def put(self, video: Path, array: np.ndarray) -> None:
        with atomic_output(self.path_for(video)) as tmp:
            np.save(tmp, array)

    def get(self, video: Path) -> np.ndarray:
        return np.load(self.path_for(video), mmap_mode="r")


_Item = TypeVar("_Item")
_Loaded = TypeVar("_Loaded")


def prefetch(items: list[_Item], load: Callable[[_Item], _Loaded], depth: int = 2
             ) -> Iterator[tuple[_Item, _Loaded | Exception]]:
    """Yield (item, load(item)) with loading done ahead in a thread (PyAV releases the GIL); where
    loading raised an Exception, (item, that exception)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(_safe, load, item) for item in items[:depth]]
        for i, item in enumerate(items):
            result = pending[i].result()
            if i + depth < len(items):
                pending.append(pool.submit(_safe, load, items[i + depth]))
            yield item, result


def _safe(load: Callable[[_Item], _Loaded], item: _Item) -> _Loaded | Exception:
    try:
        return load(item)
    except Exception as exc:  # handed to the consumer, which decides what is fatal
        return exc
