"""Measure where prediction time goes: decoding versus the model, on this machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from actionrec.inference import Recognizer


def benchmark_model(model_path: str | os.PathLike, video: str | os.PathLike, *, repeats: int = 10,
                    threads: int | None = None, batch_size: int = 1) -> dict:
    """Median decode and inference times for `video` with `model_path`, over `repeats` runs."""
    recognizer = Recognizer(model_path, threads=threads)
    data = Path(video).read_bytes()
    decoded = recognizer.decode(data)  # warm-up: first session run allocates
    frames = np.repeat(decoded.clips[0].frames[None], batch_size, axis=0)
    recognizer.classify(frames)
    decode_ms, inference_ms = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        decoded = recognizer.decode(data)
        decode_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        recognizer.classify(frames)
        inference_ms.append((time.perf_counter() - started) * 1000 / batch_size)
    decode, inference = statistics.median(decode_ms), statistics.median(inference_ms)
    spec = recognizer.spec
    return {
        "model": str(model_path),
        "video": str(video),
        "video_info": decoded.clips[0].info.to_dict(),
        "frames_per_clip": spec.num_frames,
        "image_size": spec.image_size,
        "threads": threads or "onnxruntime default",
        "batch_size": batch_size,
        "decode_ms": round(decode, 1),
        "inference_ms_per_clip": round(inference, 1),
        "clips_per_s": round(1000 / (decode + inference), 2),
        "model_frames_per_s": round(spec.num_frames * 1000 / inference, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
    }
