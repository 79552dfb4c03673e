"""actionrec: which human action does a video show, and how sure is it.

`Recognizer` (ONNX Runtime) is all that serving needs; importing this package never imports torch.
"""

from actionrec.errors import ActionrecError, ModelFileError, VideoError

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("Recognizer", "Prediction"):
        from actionrec import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'actionrec' has no attribute {name!r}")


__all__ = ["ActionrecError", "ModelFileError", "Prediction", "Recognizer", "VideoError", "__version__"]
