"""actionrec: which human action does a video show, and how sure is it.

`Recognizer` (ONNX Runtime) is all that serving needs; importing this package never imports torch.
"""

import os

# OpenMP threads that spin while waiting make PyTorch on a small, busy machine 10x slower (measured
# here: MobileNetV2 training steps took 7.7 s instead of 0.85 s on 2 cores with one other busy
# process). OpenMP reads this once, when torch loads, so it is set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from actionrec.errors import ActionrecError, ModelFileError, VideoError

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("Recognizer", "Prediction"):
        from actionrec import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'actionrec' has no attribute {name!r}")


__all__ = ["ActionrecError", "ModelFileError", "Prediction", "Recognizer", "VideoError", "__version__"]
