"""What training reads: each clip decoded once into cached frames, or into frozen-backbone features.

Frozen backbone (transfer learning): each clip's frame features are extracted once and cached: by
ONNX Runtime on a CPU (several times faster than eager PyTorch there), by PyTorch in large mixed-
precision batches on a GPU. End to end: the decoded frames themselves are cached (unless they are
decoded afresh each epoch). Clips are decoded in `workers` processes, so a GPU is not left waiting
on one decoding thread, and a clip that crashes the decoder costs one worker and is reported; in a
distributed run each rank caches its share of the missing clips.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from actionrec.datasets import Sample
from actionrec.errors import TrainingError, VideoError
from actionrec.files import atomic_output
from actionrec.modelfile.card import FEATURES_OUTPUT, INPUT_NAME
from actionrec.runtime.network import Encoder
from actionrec.runtime.processes import GuardedPool, ready_made
from actionrec.training.cache import ClipCache, default_cache_root, prefetch
from actionrec.training.config import TrainConfig
from actionrec.training.devices import Runtime, cores_per_process, gather
from actionrec.training.export import to_onnx
from actionrec.training.model import ActionModel, FrameFeatures
from actionrec.training.views import ViewDecoder
from actionrec.video import spec as sampling

FeatureFunction = Callable[[np.ndarray], np.ndarray]


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def frame_feature_graph(model: ActionModel, folder: Path) -> Path:
    """The backbone alone as an encoder graph (frames -> frame features, what `Encoder` runs),
    exported once into `folder` and checked against PyTorch; raises if it cannot be made or does not
    reproduce PyTorch's features (and then leaves no file behind for the next run or a Ray worker
    to trust)."""
    wrapped = FrameFeatures(model).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "frame_features.onnx"
    try:
        if not path.exists():
            # Its own generator: whether this file was already made must not change what training draws.
            example = torch.randint(0, 256, (2, 2, 32, 32, 3), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(0))
            with atomic_output(path) as tmp:
                to_onnx(wrapped, example, tmp, INPUT_NAME, FEATURES_OUTPUT,
                        {INPUT_NAME: {0: "n", 1: "t", 2: "h", 3: "w"}, FEATURES_OUTPUT: {0: "n", 1: "t"}})
        encoder = Encoder.from_file(path, options=ort.SessionOptions())
        probe = np.random.default_rng(0).integers(0, 256, (1, 2, 64, 64, 3), dtype=np.uint8)
        with torch.inference_mode():
            expected = wrapped(torch.from_numpy(probe)).to(torch.float16).float().numpy()
        difference = np.abs(encoder.encode_clips(probe) - expected).max()
        if difference > 1e-2:
            raise ValueError(f"its features differ from PyTorch's by up to {difference:.3g}")
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return path


def feature_extractor(model: ActionModel, folder: Path, console: Console | None = None) -> FeatureFunction:
    """frames (N, T, S, S, 3) uint8 -> features (N, T, num_features) float16, run by ONNX Runtime.

    The exported extractor is kept in `folder` for the next run with the same backbone.
    On two CPU cores ONNX Runtime runs MobileNetV2 several times faster than eager PyTorch, and
    this is most of the time a frozen-backbone run takes. If the exported extractor cannot be made
    or does not reproduce PyTorch's features, this says so once and extracts with PyTorch.
    """
    try:
        encoder = Encoder.from_file(frame_feature_graph(model, folder), options=ort.SessionOptions())
    except Exception as exc:  # an exporter or runtime problem costs speed, not correctness
        message = (f"ONNX Runtime cannot extract the frame features ({type(exc).__name__}: {exc}); "
                   "extracting them with PyTorch instead, which is several times slower on a CPU.")
        (console or Console(stderr=True)).print(f"[yellow]warning:[/yellow] {message}")
        wrapped = FrameFeatures(model).eval()

        def with_torch(frames: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return wrapped(torch.from_numpy(np.ascontiguousarray(frames))).to(torch.float16).numpy()

        return with_torch
    return lambda frames: encoder.encode_clips(frames).astype(np.float16)


def cache_root(config: TrainConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else default_cache_root()


def gpu_extractor(model: ActionModel, runtime: Runtime) -> FeatureFunction:
    """frames (N, T, S, S, 3) uint8 -> features float16, by PyTorch on the GPU in mixed precision."""
    wrapped = FrameFeatures(model).to(runtime.device).eval().to(memory_format=torch.channels_last)

    def extract(frames: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(frames)).pin_memory().to(runtime.device, non_blocking=True)
        with torch.inference_mode(), runtime.autocast():
            return wrapped(batch).to(torch.float16).cpu().numpy()

    return extract


class FeatureSource:
    """How `build_cache` gets frozen-backbone features: `extract`, made once on first use (ONNX
    Runtime on a CPU, PyTorch on a GPU); `onnx_graph` the exported graph Ray's workers run, whichever
    device this process uses."""

    def __init__(self, model: ActionModel, folder: Path, console: Console, runtime: Runtime | None) -> None:
        self.model, self.folder, self.console, self.runtime = model, folder, console, runtime

    @functools.cached_property
    def extract(self) -> FeatureFunction:
        if self.runtime is not None and self.runtime.cuda:
            return gpu_extractor(self.model, self.runtime)
        return feature_extractor(self.model, self.folder, self.console)

    def onnx_graph(self) -> Path:
        return frame_feature_graph(self.model, self.folder)


def extractor_for(config: TrainConfig, model: ActionModel, backbone_id: str, console: Console,
                  runtime: Runtime | None = None) -> FeatureSource | None:
    """What `build_cache` needs to extract features; None end to end."""
    if config.end_to_end:
        return None
    return FeatureSource(model, extractor_folder(config, backbone_id), console, runtime)


def extractor_folder(config: TrainConfig, backbone_id: str) -> Path:
    """Where the exported frame-feature graph of this backbone is kept for the next run."""
    return cache_root(config) / "extractors" / f"{backbone_id}-w{config.width_mult}"


def cache_for(config: TrainConfig, views: int, backbone_id: str) -> ClipCache:
    settings = {
        "spec": config.spec.to_dict(),
        "sampling_version": sampling.SAMPLING_VERSION,  # another rule never reuses these frames or features
        "views": views,
        "flip": config.flip,
        "seed": config.seed,
        "draws": "by-class-and-name",  # how each clip's random views are seeded (views.clip_rng)
        "content": "frames" if config.end_to_end else f"features:{backbone_id}:w{config.width_mult}",
    }
    return ClipCache(cache_root(config), settings)


def build_cache(
    config: TrainConfig,
    samples: list[Sample],
    views: int,
    backbone_id: str,
    console: Console,
    what: str,
    extractor: FeatureSource | None = None,
    runtime: Runtime | None = None,
) -> tuple[ClipCache, list[Sample], dict[Path, str]]:
    """Make sure every sample has its cached array. Returns the cache, usable samples, failures
    (every rank's, in a distributed run).

    `extractor` makes the feature function (frozen backbone), only when some clip is missing.
    """
    cache = cache_for(config, views, backbone_id)
    rank, world = (runtime.rank, runtime.world) if runtime else (0, 1)
    # Shard the clips, not the missing ones: another rank may already be filling in its share.
    missing = cache.missing([s.path for s in samples[rank::world]])
    failures: dict[Path, str] = {}
    if missing and config.ray:
        failures = _build_on_ray(config, cache, missing, views, backbone_id, console, what, extractor)
    elif missing:
        extract = None if extractor is None else extractor.extract
        batch = GPU_EXTRACTION_BATCH if runtime is not None and runtime.cuda else CPU_EXTRACTION_BATCH
        pending: list[tuple[Path, np.ndarray]] = []
        started = time.perf_counter()
        with progress_bar(console) as progress:
            task = progress.add_task(f"{what}: {len(missing)} clips", total=len(missing), status="")
            decoder = ViewDecoder(config.spec, views, config.seed, bool(config.flip))
            for video, frames, error in _decoded(missing, decoder, _workers(config)):
                if error is not None:
                    failures[video] = error
                else:
                    assert frames is not None  # _decoded yields either frames or an error
                    pending.append((video, frames))
                if len(pending) >= batch:
                    _store(cache, pending, extract)
                progress.advance(task)
            _store(cache, pending, extract)
        seconds = time.perf_counter() - started
        done = len(missing) - len(failures)
        console.print(
            f"{what}: {done} clips in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} clips/s, "
            f"{done * views * config.frames / max(seconds, 1e-9):.0f} frames/s; "
            f"{views} view(s) x {config.frames} frames at {config.image_size}px)"
        )
    if runtime is not None:
        failures = {video: error for part in gather(runtime, failures) for video, error in part.items()}
    for video, error in failures.items():
        console.print(f"[yellow]skipped[/yellow] {video}: {error}")
    usable = [s for s in samples if s.path not in failures]
    return cache, usable, failures


def _build_on_ray(config: TrainConfig, cache: ClipCache, missing: list[Path], views: int, backbone_id: str,
                  console: Console, what: str, extractor: FeatureSource | None) -> dict[Path, str]:
    """The same cache, built by Ray tasks and actors (`actionrec.runtime.on_ray`)."""
    from actionrec.runtime.on_ray import ray_build_cache

    graph = None
    if extractor is not None:
        try:
            graph = extractor.onnx_graph()
        except Exception as exc:
            raise TrainingError(f"--ray: the backbone could not be exported for ONNX Runtime ({type(exc).__name__}: "
                                f"{exc}), and Ray's workers extract with ONNX Runtime. Train without --ray.") from exc
    started = time.perf_counter()
    with progress_bar(console) as progress:
        task = progress.add_task(f"{what} on Ray: {len(missing)} clips", total=len(missing), status="")
        failures = ray_build_cache(missing, ViewDecoder(config.spec, views, config.seed, bool(config.flip)), cache,
                                   graph, address=config.ray_address, progress=lambda: progress.advance(task))
    seconds = time.perf_counter() - started
    done = len(missing) - len(failures)
    console.print(f"{what} on Ray: {done} clips in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} clips/s)")
    return failures


CPU_EXTRACTION_BATCH, GPU_EXTRACTION_BATCH = 4, 64  # clips whose frames are encoded together


def _workers(config: TrainConfig) -> int:
    return cores_per_process() if config.workers is None else config.workers


def _decoded(videos: list[Path], decode: ViewDecoder, workers: int) -> Iterator[tuple[Path, np.ndarray | None,
                                                                                       str | None]]:
    """(video, frames, None) or (video, None, why not) for each video: in `workers` guarded processes
    (as each is done), or here with the next video decoded ahead on a thread."""
    if workers > 1 and len(videos) > workers:
        for video, outcome in GuardedPool(ready_made(decode), workers).run(videos):
            if outcome.kind == "ok":
                yield video, outcome.value, None
            else:
                yield video, None, outcome.message if outcome.kind == "video_error" else f"{outcome.message} " \
                                                                                         f"({outcome.kind})"
        return
    for video, frames in prefetch(videos, decode):
        if isinstance(frames, VideoError):
            yield video, None, str(frames)
        elif isinstance(frames, Exception):
            raise frames
        else:
            yield video, frames, None


def _store(cache: ClipCache, pending: list[tuple[Path, np.ndarray]], extract: FeatureFunction | None) -> None:
    """Cache the pending clips' arrays: their frames, or features extracted from all of them at once."""
    if not pending:
        return
    if extract is None:
        for video, frames in pending:
            cache.put(video, frames)
    else:
        views = [len(frames) for _, frames in pending]
        features = extract(np.concatenate([frames for _, frames in pending]))
        for (video, _), start, count in zip(pending, np.cumsum([0, *views[:-1]]), views):
            cache.put(video, features[start : start + count])
    pending.clear()
