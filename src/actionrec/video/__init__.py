"""Video in, model-ready frames out: the one definition of frame sampling and preprocessing.

    spec.py    ClipSpec, DecodeLimits, VideoInfo, Clip, Timeline and the sampling rule (pure NumPy)
    probe.py   PyAV: open a video and read its packets (count, times, keyframes) without decoding
    decode.py  PyAV: decode only the sampled frames (seeking where it can), convert them to RGB
    stream.py  the frames a prediction needs, handed out in bounded chunks as they are decoded
    encode.py  PyAV: write videos (the synthetic dataset and test fixtures)

Training and evaluation read videos through `read_clip` and `read_views`, serving through
`stream_prediction_frames`; all pick frames with the same sampling rule, so a model is served
exactly the frames it was trained on.
"""

from actionrec.errors import VideoError
from actionrec.video.decode import read_clip, read_views
from actionrec.video.probe import VideoProbe, VideoSource, probe
from actionrec.video.spec import (
    SAMPLING_RULE,
    SAMPLING_VERSION,
    Clip,
    ClipSpec,
    DecodeLimits,
    Timeline,
    VideoInfo,
    sample_indices,
)
from actionrec.video.stream import stream_prediction_frames

__all__ = [
    "Clip",
    "ClipSpec",
    "DecodeLimits",
    "SAMPLING_RULE",
    "SAMPLING_VERSION",
    "VideoError",
    "Timeline",
    "VideoInfo",
    "VideoProbe",
    "VideoSource",
    "probe",
    "read_clip",
    "read_views",
    "sample_indices",
    "stream_prediction_frames",
]
