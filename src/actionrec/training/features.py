"""What training reads: each clip decoded once into cached frames, or into frozen-backbone features.

Frozen backbone (transfer learning): each clip's frame features are extracted once, by ONNX
Runtime (several times faster than eager PyTorch on a CPU), and cached. End to end: the decoded
frames themselves are cached. Either way an epoch then reads arrays, not videos.
"""

from __future__ import annotations

import functools
import hashlib
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from actionrec.datasets import Sample
from actionrec.errors import VideoError
from actionrec.export import to_onnx
from actionrec.files import atomic_output
from actionrec.model import ActionModel, FrameFeatures
from actionrec.training.cache import ClipCache, default_cache_root, prefetch
from actionrec.training.config import TRAINING_LIMITS, TrainConfig
from actionrec.video import probe, read_views

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


def clip_rng(seed: int, video: Path) -> np.random.Generator:
    """Each video's own stream of random views, the same in every run with this seed."""
    digest = hashlib.sha1(str(video).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def typical_duration(samples: list[Sample], at_most: int = 200) -> float | None:
    """The median duration of (up to `at_most`, evenly picked) clips, from their packets alone.

    Exported models record it: a timeline's windows are as long as the clips the model learned from.
    """
    picked = samples[:: max(1, len(samples) // at_most)]
    durations = []
    for sample in picked:
        try:
            durations.append(probe(sample.path, TRAINING_LIMITS).info.duration_s)
        except VideoError:
            continue  # unreadable clips are reported when they are cached
    return round(float(np.median(durations)), 3) if durations else None


def view_decoder(config: TrainConfig, views: int) -> Callable[[Path], np.ndarray]:
    """(V, T, S, S, 3) frames of a video: view 0 at segment centres, the others random moments,
    each of those mirrored with probability 1/2 when `config.flip`."""

    def decode(video: Path) -> np.ndarray:
        rng = clip_rng(config.seed, video)
        clips = read_views(video, config.spec, views=views, rng=rng, limits=TRAINING_LIMITS)
        frames = np.stack([c.frames for c in clips])
        if config.flip:
            for view in range(1, views):
                if rng.random() < 0.5:
                    frames[view] = frames[view, :, :, ::-1]
        return frames

    return decode


def feature_extractor(model: ActionModel, folder: Path, console: Console | None = None) -> FeatureFunction:
    """frames (N, T, S, S, 3) uint8 -> features (N, T, num_features) float16, run by ONNX Runtime.

    The exported extractor is kept in `folder` for the next run with the same backbone.

    On two CPU cores ONNX Runtime runs MobileNetV2 several times faster than eager PyTorch, and
    this is most of the time a frozen-backbone run takes. If the exported extractor cannot be made
    or does not reproduce PyTorch's features, this says so once and extracts with PyTorch.
    """
    import onnxruntime as ort

    wrapped = FrameFeatures(model).eval()
    folder.mkdir(parents=True, exist_ok=True)

    def with_torch(frames: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return wrapped(torch.from_numpy(np.ascontiguousarray(frames))).to(torch.float16).numpy()

    path = folder / "frame_features.onnx"
    try:
        if not path.exists():
            # Its own generator: whether this file was already made must not change what training draws.
            example = torch.randint(0, 256, (2, 2, 32, 32, 3), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(0))
            with atomic_output(path) as tmp:
                to_onnx(wrapped, example, tmp, "frames", "features",
                        {"frames": {0: "n", 1: "t", 2: "h", 3: "w"}, "features": {0: "n", 1: "t"}})
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        probe = np.random.default_rng(0).integers(0, 256, (1, 2, 64, 64, 3), dtype=np.uint8)
        difference = np.abs(session.run(None, {"frames": probe})[0] - with_torch(probe).astype(np.float32)).max()
        if difference > 1e-2:
            raise ValueError(f"its features differ from PyTorch's by up to {difference:.3g}")
    except Exception as exc:  # an exporter or runtime problem costs speed, not correctness
        message = (f"ONNX Runtime cannot extract the frame features ({type(exc).__name__}: {exc}); "
                   "extracting them with PyTorch instead, which is several times slower on a CPU.")
        (console or Console(stderr=True)).print(f"[yellow]warning:[/yellow] {message}")
        return with_torch
    return lambda frames: session.run(None, {"frames": np.ascontiguousarray(frames)})[0].astype(np.float16)


def cache_root(config: TrainConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else default_cache_root()


def extractor_for(config: TrainConfig, model: ActionModel, backbone_id: str,
                  console: Console) -> Callable[[], FeatureFunction] | None:
    """What `build_cache` needs to extract features: made once, on first use; None end to end."""
    if config.end_to_end:
        return None
    folder = cache_root(config) / "extractors" / f"{backbone_id}-w{config.width_mult}"
    return functools.cache(lambda: feature_extractor(model, folder, console))


def cache_for(config: TrainConfig, views: int, backbone_id: str) -> ClipCache:
    settings = {
        "spec": config.spec.to_dict(),
        "views": views,
        "flip": config.flip,
        "seed": config.seed,
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
    extractor: Callable[[], FeatureFunction] | None = None,
) -> tuple[ClipCache, list[Sample], dict[Path, str]]:
    """Make sure every sample has its cached array. Returns the cache, usable samples, failures.

    `extractor` makes the feature function (frozen backbone), only when some clip is missing.
    """
    cache = cache_for(config, views, backbone_id)
    missing = cache.missing([s.path for s in samples])
    failures: dict[Path, str] = {}
    if missing:
        decode = view_decoder(config, views)
        extract = None if extractor is None else extractor()
        started = time.perf_counter()
        with progress_bar(console) as progress:
            task = progress.add_task(f"{what}: {len(missing)} clips", total=len(missing), status="")
            for video, frames in prefetch(missing, decode):
                if isinstance(frames, VideoError):  # skip the clip, report it
                    failures[video] = str(frames)
                elif isinstance(frames, Exception):
                    raise frames
                else:
                    cache.put(video, frames if extract is None else extract(frames))
                progress.advance(task)
        seconds = time.perf_counter() - started
        done = len(missing) - len(failures)
        console.print(
            f"{what}: {done} clips in {seconds:.1f} s ({done / max(seconds, 1e-9):.2f} clips/s, "
            f"{done * views * config.frames / max(seconds, 1e-9):.0f} frames/s; "
            f"{views} view(s) x {config.frames} frames at {config.image_size}px)"
        )
    for video, error in failures.items():
        console.print(f"[yellow]skipped[/yellow] {video}: {error}")
    usable = [s for s in samples if s.path not in failures]
    return cache, usable, failures


def load_arrays(cache: ClipCache, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample's cached array stacked, (N, V, ...), and their labels."""
    arrays = np.stack([np.asarray(cache.get(s.path)) for s in samples])
    labels = torch.tensor([s.label for s in samples])
    return torch.from_numpy(arrays), labels
