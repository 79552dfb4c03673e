"""actionrec: which human action does a video show, and how sure is it.

`Recognizer` (ONNX Runtime) is all that serving needs; importing this package never imports torch,
and changes nothing in the process (the `actionrec` command sets what it needs where it starts).
"""

from actionrec.errors import ActionrecError, ModelFileError, VideoError

__version__ = "0.3.0"


def __getattr__(name: str):
    if name in ("Recognizer", "Prediction"):
        from actionrec.runtime import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'actionrec' has no attribute {name!r}")


__all__ = ["ActionrecError", "ModelFileError", "Prediction", "Recognizer", "VideoError", "__version__"]
