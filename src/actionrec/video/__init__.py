"""Video in, model-ready frames out: the one definition of frame sampling and preprocessing.

    spec.py    ClipSpec, DecodeLimits, VideoInfo, Clip, and the sampling rule (pure NumPy)
    decode.py  PyAV: probe, decode only the sampled frames, convert to RGB
    encode.py  PyAV: write videos (the synthetic dataset and test fixtures)

Training, evaluation, export and serving all read videos through `read_clip`, `read_views` and
`read_windows`, so a model is served exactly the frames it was trained on.
"""

from actionrec.errors import VideoError
from actionrec.video.decode import VideoSource, read_clip, read_views, read_windows
from actionrec.video.spec import (
    SAMPLING_RULE,
    Clip,
    ClipSpec,
    DecodeLimits,
    VideoInfo,
    sample_indices,
    window_bounds,
)

__all__ = [
    "Clip",
    "ClipSpec",
    "DecodeLimits",
    "SAMPLING_RULE",
    "VideoError",
    "VideoInfo",
    "VideoSource",
    "read_clip",
    "read_views",
    "read_windows",
    "sample_indices",
    "window_bounds",
]
