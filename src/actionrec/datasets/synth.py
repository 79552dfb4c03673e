"""A synthetic action dataset: real H.264 MP4 clips of one shape that changes over time.

Each class has a partner that differs only in the order of its frames (a ``grow`` clip played
backwards is a valid ``shrink`` clip), so a model that ignores frame order cannot tell the
partners apart, while one that reads the sequence can. Everything else (shape, colour,
background, noise, speed, start and end state, position, drift, duration) is random, drawn from
a generator seeded by ``(seed, class name, clip index)``.

The changes are in size, brightness, hue and proportions rather than position: a MobileNetV2
trained from scratch on a few hundred clips learns what globally pooled frame features show
(how big, how bright, what colour, how wide) far faster than where things are, and the demo must
train in minutes on two CPU cores.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from actionrec.files import atomic_output, write_text
from actionrec.video.encode import write_video

# Each pair: (class rendered as drawn, class rendered as the same clip reversed in time).
ORDER_PAIRS: tuple[tuple[str, str], ...] = (
    ("grow", "shrink"),
    ("brighten", "darken"),
    ("warm_to_cool", "cool_to_warm"),
    ("widen", "narrow"),
)
CLASSES: tuple[str, ...] = tuple(label for pair in ORDER_PAIRS for label in pair)

SHAPES: tuple[str, ...] = ("ellipse", "box", "diamond")
BACKGROUNDS: tuple[str, ...] = ("gradient", "blobs", "stripes", "checker")

MIN_FRAMES, MAX_FRAMES = 24, 72

_LUMA = np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------------------
# Rendering


def _partner_and_reversed(label: str) -> tuple[str, bool]:
    """The class that is drawn for `label`, and whether the drawn clip is then reversed."""
    for drawn, reversed_partner in ORDER_PAIRS:
        if label == drawn:
            return drawn, False
        if label == reversed_partner:
            return drawn, True
    raise ValueError(f"unknown class {label!r}; expected one of: {', '.join(CLASSES)}")


def _easing(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Progress 0..1 over normalised time `t`. The set of curves is closed under time reversal
    (ease-in reversed is ease-out), so reversing a clip keeps it in distribution."""
    kind = rng.integers(4)
    if kind == 0:
        return t
    if kind == 1:
        return t * t * (3 - 2 * t)
    if kind == 2:
        return t * t
    return 1 - (1 - t) ** 2


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of a shape in its own coordinates (u, v in [-1, 1])."""
    if shape == "ellipse":
        return u * u + v * v <= 1
    if shape == "box":
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.15
    raise ValueError(f"unknown shape {shape!r}")


def _colour(rng: np.random.Generator, luminance: float, saturation: float) -> np.ndarray:
    """An RGB colour (float, 0..255) of the given luminance (before clipping) and a random hue."""
    hue = rng.normal(size=3)
    hue -= hue.mean()
    hue /= np.linalg.norm(hue) + 1e-6
    colour = luminance + saturation * hue
    colour += luminance - colour @ _LUMA
    return np.clip(colour, 0, 255)


def _background(rng: np.random.Generator, width: int, height: int, dark: bool) -> np.ndarray:
    """A static (H, W, 3) float32 background: gradient, smooth blobs, stripes or checkerboard."""
    # Textures are faint next to the object, whose features must dominate a global average.
    base = rng.uniform(20, 90) if dark else rng.uniform(160, 230)
    colour_a = _colour(rng, base, rng.uniform(10, 40))
    colour_b = np.clip(colour_a + rng.uniform(-18, 18, size=3), 0, 255)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs /= max(width, height)
    ys /= max(width, height)
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    angle = rng.uniform(0, 2 * np.pi)
    along = xs * np.cos(angle) + ys * np.sin(angle)
    if kind == "gradient":
        mix = (along - along.min()) / (np.ptp(along) + 1e-6)
    elif kind == "blobs":
        grid = rng.uniform(0, 1, size=(rng.integers(3, 7), rng.integers(3, 7))).astype(np.float32)
        gy = np.linspace(0, grid.shape[0] - 1, height, dtype=np.float32)
        gx = np.linspace(0, grid.shape[1] - 1, width, dtype=np.float32)
        y0 = np.minimum(gy.astype(int), grid.shape[0] - 2)
        x0 = np.minimum(gx.astype(int), grid.shape[1] - 2)
        fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
        top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
        bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
        mix = top * (1 - fy) + bottom * fy
    elif kind == "stripes":
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 10) * along + rng.uniform(0, 2 * np.pi))
    else:
        cell = rng.uniform(0.06, 0.2)
        across = -xs * np.sin(angle) + ys * np.cos(angle)
        mix = ((np.floor(along / cell) + np.floor(across / cell)) % 2).astype(np.float32)
    mix = mix[..., None].astype(np.float32)
    return (colour_a * (1 - mix) + colour_b * mix).astype(np.float32)


def _hsv_to_rgb(hue: np.ndarray, saturation: float, value: np.ndarray) -> np.ndarray:
    """(T,) hues in turns and values in 0..1 -> (T, 3) RGB in 0..255."""
    h6 = (hue % 1.0) * 6
    channel = lambda n: value * (1 - saturation * np.clip(np.minimum(4 - (h6 + n) % 6, (h6 + n) % 6), 0, 1))  # noqa: E731
    return np.stack([channel(5), channel(3), channel(1)], axis=1) * 255


def _changes(action: str, rng: np.random.Generator, height: int, progress: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame radius (pixels), aspect (width/height), value (brightness 0..1) and hue (turns)
    of the clip as drawn (growing, brightening, warm to cool, widening). The start and end
    states are random, so no single frame tells the class, only their order."""
    count = len(progress)
    state = {
        "radius": np.full(count, rng.uniform(0.22, 0.32) * height),
        "aspect": np.full(count, rng.uniform(0.8, 1.25)),
        "value": np.full(count, rng.uniform(0.45, 0.75)),
        "hue": np.full(count, rng.uniform(0, 1)),
    }
    if action == "grow":
        state["radius"] = rng.uniform(0.08, 0.12) * height * rng.uniform(2.8, 3.5) ** progress
    elif action == "brighten":
        state["value"] = rng.uniform(0.1, 0.3) + rng.uniform(0.5, 0.65) * progress
    elif action == "warm_to_cool":  # red/orange round the colour wheel to cyan/blue
        state["hue"] = rng.uniform(-0.05, 0.08) + rng.uniform(0.5, 0.62) * progress
    elif action == "widen":  # tall to wide: the aspect grows by 4-8x
        start = rng.uniform(0.35, 0.5)
        state["aspect"] = start * (rng.uniform(2.2, 2.9) / start / start) ** progress
    return state


def render_clip(label: str, rng: np.random.Generator, width: int = 128, height: int = 96,
                num_frames: int | None = None) -> np.ndarray:
    """Render one clip of class `label` as a (T, H, W, 3) uint8 RGB array.

    The two classes of an order pair consume `rng` identically: the clip of one, reversed in
    time, is exactly the clip of the other for the same generator state. The duration is drawn
    from 24-72 frames unless `num_frames` is given.
    """
    drawn_label, reverse = _partner_and_reversed(label)
    if width < 16 or height < 16:
        raise ValueError(f"clip size {width}x{height} is too small; use at least 16x16")
    drawn_frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    count = drawn_frames if num_frames is None else int(num_frames)
    if count < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")

    background = _background(rng, width, height, dark=bool(rng.integers(2)))
    progress = _easing(rng, np.linspace(0, 1, count))
    state = _changes(drawn_label, rng, height, progress)
    colours = _hsv_to_rgb(state["hue"], rng.uniform(0.6, 0.95), state["value"]).astype(np.float32)
    shape = SHAPES[rng.integers(len(SHAPES))]
    drift = rng.uniform(-0.15, 0.15, size=2) * (progress[:, None] - 0.5)
    cx = (rng.uniform(0.35, 0.65) + drift[:, 0]) * width + rng.normal(0, 0.5, count)
    cy = (rng.uniform(0.35, 0.65) + drift[:, 1]) * height + rng.normal(0, 0.5, count)
    noise_sigma = rng.uniform(2, 6)

    def per_frame(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)[:, None, None]

    # Object coordinates of every pixel; x and y offsets broadcast as (T, 1, W) and (T, H, 1).
    half_width = per_frame(state["radius"] * np.sqrt(state["aspect"]))
    half_height = per_frame(state["radius"] / np.sqrt(state["aspect"]))
    u = (np.arange(width, dtype=np.float32)[None, None, :] - per_frame(cx)) / half_width
    v = (np.arange(height, dtype=np.float32)[None, :, None] - per_frame(cy)) / half_height
    mask = _shape_mask(shape, u, v)

    frames = np.empty((count, height, width, 3), dtype=np.float32)
    frames[:] = background
    frames[mask] = np.broadcast_to(colours[:, None, None, :], frames.shape)[mask]
    noise = rng.standard_normal((count, height, width, 1), dtype=np.float32)
    noise *= noise_sigma
    frames += noise
    clip = np.clip(frames, 0, 255, out=frames).astype(np.uint8)
    return np.ascontiguousarray(clip[::-1]) if reverse else clip


# ---------------------------------------------------------------------------------------
# Dataset


def clip_rng(seed: int, label: str, index: int) -> np.random.Generator:
    """The generator of clip `index` of class `label`: independent of how many clips are made."""
    return np.random.default_rng([seed, zlib.crc32(label.encode()), index])


_PARAMETERS_PREFIX = "parameters: "
# Bump whenever rendering changes, so clips of two versions never mix in one folder.
_DATASET_VERSION = 2


def _readme_text(parameters: str) -> str:
    return (
        "Synthetic action dataset made by actionrec.datasets.synth.generate_dataset.\n"
        "\n"
        "Each clip shows one shape (ellipse, box or diamond) on a faintly textured background\n"
        "(gradient, blobs, stripes or checkerboard) that drifts a little while one property\n"
        "changes: its size (grow/shrink), its brightness (brighten/darken), its hue from\n"
        "red-orange to cyan-blue (warm_to_cool/cool_to_warm), or its proportions from tall to\n"
        "wide (widen/narrow). Start and end states, speed, easing, colour and noise are random.\n"
        "Classes come in pairs that differ only in frame order: "
        + ", ".join(f"{a}/{b}" for a, b in ORDER_PAIRS) + ".\n"
        "Layout: <class>/<class>_<index>.mp4 (H.264). Same parameters, same clips.\n"
        "\n"
        f"{_PARAMETERS_PREFIX}{parameters}\n"
    )


def generate_dataset(out_dir: str | os.PathLike, clips_per_class: int = 40, seed: int = 0,
                     width: int = 128, height: int = 96, fps: float = 25.0,
                     progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write `clips_per_class` clips of every class to ``out_dir/<class>/<class>_<index:04d>.mp4``
    and return their paths. Existing clips are kept, so an interrupted run resumes; an
    existing dataset made with other parameters is refused. `progress(done, total)` is called
    after each clip."""
    if clips_per_class < 0:
        raise ValueError(f"clips_per_class must be >= 0, got {clips_per_class}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    readme = root / "README.txt"
    parameters = f"version={_DATASET_VERSION} seed={seed} width={width} height={height} fps={fps:g}"
    if readme.exists():
        for line in readme.read_text().splitlines():
            existing = line.removeprefix(_PARAMETERS_PREFIX)
            if line.startswith(_PARAMETERS_PREFIX) and existing != parameters:
                raise ValueError(f"{root} already holds a dataset made with {existing}; use another "
                                 f"folder, or delete this one to make a dataset with {parameters}")
    write_text(readme, _readme_text(parameters))

    total = clips_per_class * len(CLASSES)
    paths: list[Path] = []
    for label in CLASSES:
        class_dir = root / label
        class_dir.mkdir(exist_ok=True)
        for index in range(clips_per_class):
            path = class_dir / f"{label}_{index:04d}.mp4"
            if not path.exists():
                frames = render_clip(label, clip_rng(seed, label, index), width, height)
                with atomic_output(path) as partial:
                    write_video(frames, partial, fps, container_format="mp4")
            paths.append(path)
            if progress is not None:
                progress(len(paths), total)
    return paths
