"""Predictions of many videos on this machine, in guarded worker processes; `actionrec.runtime.on_ray`
does the same on Ray. Both yield a `BatchResult` per video."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from actionrec.errors import RegionsError, VideoError
from actionrec.runtime.answer import Prediction
from actionrec.runtime.processes import GuardedPool
from actionrec.runtime.results import BatchResult
from actionrec.video import DecodeLimits
from actionrec.video.regions import RegionSpec


class _PathPredictor:
    """What a batch worker process runs: its own recognizer (made by `make`, the Recognizer class),
    one video path at a time."""

    def __init__(self, make: Callable, model_path: Path, threads: int, limits: DecodeLimits,
                 uncertain_below: float | None, top_k: int, segments: bool, regions: RegionSpec | None = None,
                 explain: bool = False) -> None:
        self.recognizer = make(model_path, threads=threads, limits=limits, uncertain_below=uncertain_below)
        self.top_k, self.segments, self.regions, self.explain = top_k, segments, regions, explain

    def __call__(self, path: Path) -> Prediction:
        return self.recognizer.predict(path, top_k=self.top_k, segments=self.segments, regions=self.regions,
                                       explain=self.explain)


def predict_paths(recognizer: Any, paths: Iterable[str | os.PathLike], *, workers: int | None = None, top_k: int = 5,
                  segments: bool = False, timeout_s: float | None = 300.0,
                  regions: RegionSpec | None = None, explain: bool = False) -> Iterator[BatchResult]:
    """`recognizer.predict_many(paths, ...)` (a `Recognizer`; see there)."""
    videos = [Path(path) for path in paths]
    workers = os.cpu_count() or 1 if workers is None else workers
    if workers <= 1 or len(videos) <= 1:
        for path in videos:
            try:
                yield BatchResult(path, recognizer.predict(path, top_k=top_k, segments=segments, regions=regions,
                                                           explain=explain))
            except (VideoError, RegionsError) as exc:
                yield BatchResult(path, error=str(exc), reason=exc.reason)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    factory = partial(_PathPredictor, type(recognizer), recognizer.model_path, threads, recognizer.limits,
                      recognizer.uncertain_below, top_k, segments, regions, explain)
    for path, outcome in GuardedPool(factory, workers, timeout_s).run(videos):
        if outcome.kind == "ok":
            yield BatchResult(path, outcome.value)
        else:
            message = outcome.message if outcome.kind == "video_error" else f"{path}: {outcome.message}"
            yield BatchResult(path, error=message, reason=outcome.reason)
