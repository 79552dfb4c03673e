"""actionrec: which human action does a video show, and how sure is it.

`Recognizer` (ONNX Runtime) is all that serving needs; importing this package never imports torch,
and changes nothing in the process (the `actionrec` command sets what it needs where it starts).
"""

from actionrec.errors import ActionrecError, ModelFileError, VideoError

__version__ = "0.4.1"


# The public names, each imported from its room only when asked for (so that `import actionrec` stays
# light): the recognizer and its answer, a model file's card, teaching, and models on the Hub.
_LAZY = {
    "Recognizer": "actionrec.runtime.recognizer",
    "Prediction": "actionrec.runtime.answer",
    "ModelCard": "actionrec.modelfile.card",
    "read_card": "actionrec.modelfile.card",
    "resolve_model": "actionrec.modelfile.hub",
    "teach": "actionrec.teaching.flow",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actionrec' has no attribute {name!r}")


__all__ = ["ActionrecError", "ModelCard", "ModelFileError", "Prediction", "Recognizer", "VideoError", "__version__",
           "read_card", "resolve_model", "teach"]
