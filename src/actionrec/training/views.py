"""What training decodes from a video: temporal views of it, the same for a seed in every run.

No torch here: worker processes that decode for the cache (or for each epoch, with
`--decode-on-the-fly`) import only this, PyAV and NumPy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from actionrec.datasets import Sample, evenly
from actionrec.errors import VideoError
from actionrec.training.config import TRAINING_LIMITS
from actionrec.video import ClipSpec, probe, read_clip, read_views


def clip_rng(seed: int, video: Path, *more: int) -> np.random.Generator:
    """Each video's own stream of random draws, the same in every run with this seed (and epoch),
    wherever the dataset lies: a clip is known by its class folder and file name, not its whole path."""
    digest = hashlib.sha1(f"{video.parent.name}/{video.name}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little"), *more])


@dataclass(frozen=True)
class ViewDecoder:
    """(V, T, S, S, 3) frames of a video: view 0 at segment centres, the others at random moments,
    each of those mirrored with probability 1/2 when `flip`. Picklable, for worker processes."""

    spec: ClipSpec
    views: int
    seed: int
    flip: bool

    def __call__(self, video: Path) -> np.ndarray:
        rng = clip_rng(self.seed, video)
        clips = read_views(video, self.spec, views=self.views, rng=rng, limits=TRAINING_LIMITS)
        frames = np.stack([c.frames for c in clips])
        if self.flip:
            for view in range(1, self.views):
                if rng.random() < 0.5:
                    frames[view] = frames[view, :, :, ::-1]
        return frames


@dataclass(frozen=True)
class EpochView:
    """A fresh random view of a video for each epoch (`--decode-on-the-fly`): random moments inside
    each segment, mirrored half the time when `flip`. (T, S, S, 3)."""

    spec: ClipSpec
    seed: int
    flip: bool

    def __call__(self, video: Path, epoch: int) -> np.ndarray:
        rng = clip_rng(self.seed, video, epoch)
        frames = read_clip(video, self.spec, rng=rng, limits=TRAINING_LIMITS).frames
        if self.flip and rng.random() < 0.5:
            frames = np.ascontiguousarray(frames[:, :, ::-1])
        return frames


def typical_duration(samples: list[Sample], at_most: int = 200) -> float | None:
    """The median duration of (up to `at_most`, evenly picked) clips, from their packets alone.

    Exported models record it: a timeline's windows are as long as the clips the model learned from.
    """
    picked = evenly(samples, at_most)
    durations = []
    for sample in picked:
        try:
            durations.append(probe(sample.path, TRAINING_LIMITS).info.duration_s)
        except VideoError:
            continue  # unreadable clips are reported when they are cached
    return round(float(np.median(durations)), 3) if durations else None
