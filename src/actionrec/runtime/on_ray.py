"""Collections of videos on Ray (the `ray` extra): predictions, and feature extraction for training.

Predictions are a Ray Data pipeline: the files are read where they are (local or shared paths,
or any object store Ray's readers reach: s3://, gs://, ...), each video is decoded by a CPU
task into the frames a prediction reads (the same frames as `Recognizer.predict`), and the model
runs in a pool of actors, one GPU each when asked for. A video that cannot be read is a row with
its error and reason, as locally. `ray.init(address)` joins a cluster; with no address, Ray
starts on this machine.

Feature extraction writes the per-clip cache that `actionrec train` reads, so a cluster extracts
a dataset too big for one machine and one GPU trains on the cache (the cache folder must be
shared storage that every node sees at the same path, as the dataset must).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from actionrec.errors import VideoError
from actionrec.modelfile.card import ModelCard, read_card
from actionrec.runtime.answer import Prediction, VideoFacts
from actionrec.runtime.network import Encoder, open_session
from actionrec.runtime.recognizer import Recognizer
from actionrec.runtime.results import BatchResult
from actionrec.video import ClipSpec, DecodeLimits, read_clip
from actionrec.video.probe import is_video_name


def check_ray_installed() -> None:
    """ImportError naming what is missing and the extra that brings it: a plain `pip install ray`
    lacks what Ray Data needs (pandas, pyarrow), and would fail deep inside a run otherwise."""
    for name in ("ray", "ray.data", "pandas", "pyarrow"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing = exc.name or name
            raise ImportError(f"Ray Data is not usable here ({missing} is missing): `pip install 'actionrec[ray]'` "
                              "installs Ray with everything it needs.") from None


def start_ray(address: str | None = None) -> Any:
    """Join the Ray cluster at `address` (or $RAY_ADDRESS), else start Ray on this machine."""
    check_ray_installed()
    import ray
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, log_to_driver=False,
                 include_dashboard=False, logging_level=logging.ERROR)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the command shows its own
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return ray


# --------------------------------------------------------------------------- predictions


def _decode(row: dict, spec: ClipSpec, limits: DecodeLimits) -> dict:
    """A CPU task: the frames a prediction of this video reads, or why it cannot be read."""
    try:
        clip = read_clip(bytes(row["bytes"]), spec, limits=limits, name=row["path"])
    except VideoError as exc:
        return {"path": row["path"], "frames": b"", "error": str(exc), "reason": exc.reason, "facts": ""}
    facts = asdict(VideoFacts.read(clip.info, clip.frame_indices, clip.frame_times)) | {"warnings": clip.warnings}
    return {"path": row["path"], "frames": clip.frames.tobytes(), "error": "", "reason": "",
            "facts": json.dumps(facts)}


class _Classifier:
    """An actor: the model, loaded once from its bytes, classifying decoded clips."""

    def __init__(self, model: bytes, top_k: int, threads: int | None) -> None:
        folder = Path(tempfile.mkdtemp(prefix="actionrec-ray-"))
        (folder / "model.onnx").write_bytes(model)
        device = "auto" if _has_gpu() else "cpu"
        self.recognizer = Recognizer(folder / "model.onnx", threads=threads, device=device)
        self.top_k = top_k

    def __call__(self, row: dict) -> dict:
        if row["error"]:
            return {"path": row["path"], "answer": "", "error": row["error"], "reason": row["reason"]}
        spec = self.recognizer.spec
        frames = np.frombuffer(row["frames"], np.uint8).reshape(spec.num_frames, spec.image_size, spec.image_size, 3)
        units = self.recognizer.encode(frames)
        top, check = self.recognizer.rank(self.recognizer.head(units[None])[0], self.top_k, units)
        facts = json.loads(row["facts"])
        warnings = facts.pop("warnings")
        prediction = Prediction.ranked(top, check, VideoFacts(**facts), warnings=warnings)
        return {"path": row["path"], "answer": json.dumps(prediction.to_dict()), "error": "", "reason": ""}


DECODE_CPUS = 0.5


def _actor_pool(ray: Any, actors: int | None, gpus_per_actor: float) -> Any:
    """A fixed pool of model actors: one per GPU they ask for, else one per two CPUs."""
    if not actors:
        resources = ray.cluster_resources()
        actors = int(resources.get("GPU", 0) // gpus_per_actor) if gpus_per_actor else int(resources.get("CPU", 2) // 2)
    return ray.data.ActorPoolStrategy(size=max(1, actors))


def _has_gpu() -> bool:
    try:
        import ray

        return bool(ray.get_gpu_ids())
    except Exception:
        return False


def list_videos(uri: str) -> list[str]:
    """The videos behind an object-store URI (`s3://bucket/videos/`, `gs://...`, `file:///...`): the
    file itself, or the video files under it, searched recursively, as URIs."""
    try:
        from pyarrow import fs
    except ImportError:
        raise ImportError("Reading URIs needs pyarrow: `pip install 'actionrec[ray]'`.") from None
    scheme = uri.split("://", 1)[0]
    filesystem, root = fs.FileSystem.from_uri(uri)
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.File:
        return [uri]
    if info.type != fs.FileType.Directory:
        raise FileNotFoundError(f"{uri}: nothing there.")
    found = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    return sorted(f"{scheme}://{entry.path}" for entry in found
                  if entry.type == fs.FileType.File and is_video_name(entry.path))


def ray_predict(model_path: Path, sources: list[str], *, address: str | None = None, top_k: int = 5,
                actors: int | None = None, gpus_per_actor: float = 0, threads: int | None = None,
                card: ModelCard | None = None) -> Iterator[BatchResult]:
    """Predict every video in `sources` (local paths, or object-store URIs as `list_videos` gives
    them) on Ray; yields a BatchResult per video as the pipeline delivers them, its path a Path for
    a local file and the URI as given for one in an object store. `card`: the model's, if read."""
    if not sources:
        return
    ray = start_ray(address)
    # Ray names a file by its path in its file system: `bucket/key` for `s3://bucket/key`.
    given = {source.split("://", 1)[-1]: source for source in sources}
    card = card or read_card(model_path)
    videos = ray.data.read_binary_files(sources, include_paths=True, ignore_missing_paths=False)
    # Decoding takes half a CPU a task, the actors a whole one (or a GPU): different resources keep
    # Ray from fusing the two steps into the actors.
    decoded = videos.map(_decode, fn_kwargs={"spec": card.spec, "limits": DecodeLimits()}, num_cpus=DECODE_CPUS)
    answered = decoded.map(_Classifier, fn_constructor_kwargs={"model": Path(model_path).read_bytes(), "top_k": top_k,
                                                               "threads": threads},
                           compute=_actor_pool(ray, actors, gpus_per_actor), num_cpus=1,
                           num_gpus=gpus_per_actor or None)
    for row in answered.iter_rows():
        source = given.get(row["path"], row["path"])
        path: Path | str = source if "://" in source else Path(source)
        if row["error"]:
            yield BatchResult(path, None, row["error"], row["reason"])
            continue
        yield BatchResult(path, Prediction.from_dict(json.loads(row["answer"])))


# --------------------------------------------------------------------------- training's cache


def _decode_views(row: dict, decoder: Any) -> dict:
    """A CPU task: the training views of one clip (a ViewDecoder), or why it cannot be read."""
    try:
        frames = decoder(Path(row["path"]))
    except VideoError as exc:
        return {"path": row["path"], "array": b"", "shape": [], "error": str(exc)}
    return {"path": row["path"], "array": frames.tobytes(), "shape": list(frames.shape), "error": ""}


class _Extractor:
    """An actor: the frozen backbone's encoder graph, run by ONNX Runtime on its CPU."""

    def __init__(self, model: bytes) -> None:
        import onnxruntime as ort

        self.encoder = Encoder(open_session(model, Path("frame_features.onnx"), ort.SessionOptions()))

    def __call__(self, row: dict) -> dict:
        if row["error"]:
            return row
        frames = np.frombuffer(row["array"], np.uint8).reshape(row["shape"])
        features = self.encoder.encode_clips(frames).astype(np.float16)
        return row | {"array": features.tobytes(), "shape": list(features.shape), "dtype": "float16"}


def _store(row: dict, cache: Any) -> dict:
    """A task: the clip's array into the shared cache, written atomically as locally."""
    if not row["error"]:
        array = np.frombuffer(row["array"], row.get("dtype", "uint8")).reshape(row["shape"])
        cache.put(Path(row["path"]), array)
    return {"path": row["path"], "error": row["error"]}


def ray_build_cache(videos: list[Path], decoder: Any, cache: Any, extractor: Path | None, *,
                    address: str | None = None, progress: Any = None) -> dict[Path, str]:
    """Cache every video's array as `build_cache` does locally: decoded by CPU tasks, features
    (when `extractor`, an exported frame-feature graph, is given) by a pool of actors. Returns the
    videos that failed, with why."""
    ray = start_ray(address)
    items = ray.data.from_items([{"path": str(video)} for video in videos])
    rows = items.map(_decode_views, fn_kwargs={"decoder": decoder}, num_cpus=DECODE_CPUS)
    if extractor is not None:
        rows = rows.map(_Extractor, fn_constructor_kwargs={"model": extractor.read_bytes()},
                        compute=_actor_pool(ray, None, 0), num_cpus=1)
    failures: dict[Path, str] = {}
    for row in rows.map(_store, fn_kwargs={"cache": cache}).iter_rows():
        if row["error"]:
            failures[Path(row["path"])] = row["error"]
        if progress is not None:
            progress()
    return failures
