"""The benchmarks' inputs, made here so that every machine measures the same: an untrained model of
the UCF101 recipe's shape, a long H.264 video, a short clip, and a UCF101-shaped training tree."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import av
import numpy as np

UCF101_CLIP_S = 7.0  # UCF101's clips last about 7 s on average: the recipe model's timeline window


def prepare_inputs(folder: Path, minutes: float = 10.0, height: int = 720, fps: int = 25,
                   keyframe_s: float = 2.0) -> dict[str, Path]:
    """The benchmark's inputs, made once in `folder`: an untrained model of the UCF101 recipe's
    shape (MobileNetV2 1.0 + LSTM 512, 16 frames of 224 px, 101 classes, 7 s windows), a long
    H.264 video (`minutes` at `height`p, a keyframe every `keyframe_s`) and a short 320x240 clip
    (6.6 s, a UCF101 clip's length). Making the model needs the train extra."""
    from actionrec.testing import make_untrained_model

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model": folder / "ucf101-shaped-16x224.onnx",
             "long": folder / f"{minutes:g}min_{height}p.mp4",
             "short": folder / "short_320x240.mp4"}
    if not paths["model"].exists():
        make_untrained_model(paths["model"], labels=[f"action_{i:03d}" for i in range(101)], num_frames=16,
                             image_size=224, width_mult=1.0, hidden_size=512, clip_duration_s=UCF101_CLIP_S)
    if not paths["long"].exists():
        _write_benchmark_video(paths["long"], round(minutes * 60 * fps), height * 16 // 9, height, fps,
                               round(keyframe_s * fps))
    if not paths["short"].exists():
        _write_benchmark_video(paths["short"], 165, 320, 240, fps, 250)
    return paths


def prepare_training_tree(folder: Path, groups: int = 20, classes: int = 101) -> Path:
    """A UCF101-shaped tree for `benchmark-train` and the memory goal, made once: `classes` classes
    x `groups` groups of one 320x240 XviD-style AVI each (6.6 s at 25 fps, as UCF101's clips),
    showing the synthetic actions, with the official split lists. Written by one process per core."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from actionrec.testing.ucf101 import make_fake_ucf101

    root = folder / f"ucf101-shaped-{classes * groups}"
    if (root / "done").exists():
        return root
    planned: list[tuple[Path, str]] = []
    make_fake_ucf101(root, [f"Action{i:03d}" for i in range(classes)], groups=groups, clips_per_group=1,
                     write_clip=lambda path, name: planned.append((path, name)))
    with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_training_clip, planned, chunksize=16))
    (root / "done").write_text("")
    return root


def _write_training_clip(job: tuple[Path, str]) -> None:
    from actionrec.datasets.synth import CLASSES, render_clip
    from actionrec.testing.ucf101 import release_codec
    from actionrec.video.encode import write_video

    path, name = job
    label = int(name.removeprefix("Action"))
    small = render_clip(CLASSES[label % len(CLASSES)], np.random.default_rng([label, zlib.crc32(path.name.encode())]),
                        80, 60, num_frames=165)
    write_video(small.repeat(4, axis=1).repeat(4, axis=2), path, fps=25, codec=release_codec())


def _write_benchmark_video(path: Path, count: int, width: int, height: int, fps: int, gop: int) -> None:
    """A moving square over a gradient with faint grain: about 3 Mbit/s at 720p, as phone footage."""
    from actionrec.files import atomic_output

    rng = np.random.default_rng(0)
    grain = rng.integers(0, 6, (8, height, width, 1), dtype=np.uint8)
    base = np.repeat((np.arange(width) * 255 // width).astype(np.uint8)[None, :, None], height, 0).repeat(3, 2)
    side = height // 4
    with atomic_output(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23", "g": str(gop)}
        for i in range(count):
            image = base.copy()
            x = (i * 7) % max(1, width - side)
            y = int((height - side) / 2 * (1 + np.sin(i / 40)))
            image[y : y + side, x : x + side] = (200, 80, (i * 3) % 255)
            image += grain[i % 8]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
