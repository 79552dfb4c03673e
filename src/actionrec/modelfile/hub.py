"""Models shared by name on the Hugging Face Hub: `hf://OWNER/NAME` (or `hf://OWNER/NAME@REVISION`)
wherever a model file is taken (`actionrec.modelfile.publish` shares one: `actionrec push`).

    Recognizer("hf://someone/ucf101-mobilenet")      # downloaded once, then from the cache
    actionrec predict hf://someone/ucf101-mobilenet@v1 clip.mp4
    actionrec push runs/ucf101 someone/ucf101-mobilenet

Everything goes through `huggingface_hub` (the `hub` extra): its cache, its offline mode
(`HF_HUB_OFFLINE=1`), its login and `HF_TOKEN`. A repository holds `model.onnx` (the model with its
card: labels, preprocessing, the "none of these" rule) and a `README.md` model card that the Hub
shows, generated from the model's own card.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from actionrec.errors import ModelFileError

PREFIX = "hf://"
MODEL_FILE = "model.onnx"
NAME_PATTERN = re.compile(r"^hf:/{1,2}([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")
EXTRA = "pip install 'actionrec[hub]'"


def is_hub_name(source: str | os.PathLike) -> bool:
    """Whether `source` names a Hub model (`hf://...`; a Path of it reads `hf:/...`)."""
    return str(source).startswith("hf:/")


def resolve_model(source: str | os.PathLike) -> Path:
    """The local file of a model: `source` itself, or for `hf://OWNER/NAME[@REVISION]` its
    `model.onnx` from the Hub (or its cache). ModelFileError with what to do when it cannot be had."""
    if not is_hub_name(source):
        return Path(source)
    match = NAME_PATTERN.match(str(source))
    if match is None:
        raise ModelFileError(f"{source}: not a Hub model name. Write hf://OWNER/NAME, or hf://OWNER/NAME@REVISION.")
    repo_id, revision = match.group(1), match.group(2)
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError:
        raise ModelFileError(f"{source}: loading a model by name needs huggingface_hub: `{EXTRA}`.") from None
    from actionrec import __version__

    name = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, MODEL_FILE, revision=revision, library_name="actionrec",
                                                    library_version=__version__))
    except errors.GatedRepoError:
        raise ModelFileError(f"{name}: this repository is gated: accept its terms on the Hub, then log in "
                             "(`hf auth login`, or set HF_TOKEN).") from None
    except errors.RepositoryNotFoundError:
        raise ModelFileError(f"{name}: no such model repository on the Hub, or it is private: check the name, or "
                             "log in (`hf auth login`, or set HF_TOKEN).") from None
    except errors.RevisionNotFoundError:
        raise ModelFileError(f"{name}: the repository has no revision {revision!r} "
                             "(a branch, tag or commit).") from None
    except errors.LocalEntryNotFoundError:
        if _cached_without_model(repo_id):
            raise ModelFileError(f"{name}: the repository in this machine's Hugging Face cache has no {MODEL_FILE}. "
                                 f"An actionrec model repository holds the exported {MODEL_FILE} (`actionrec push` "
                                 "uploads one).") from None
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        raise ModelFileError(f"{name}: not in this machine's Hugging Face cache, and {why}. Load it once with the "
                             f"network on (it is cached then), or give the path of a {MODEL_FILE}.") from None
    except errors.EntryNotFoundError:
        raise ModelFileError(f"{name}: the repository has no {MODEL_FILE}. An actionrec model repository holds "
                             f"the exported {MODEL_FILE} (`actionrec push` uploads one).") from None
    except (OSError, errors.HfHubHTTPError) as exc:
        raise ModelFileError(f"{name}: could not be downloaded ({exc}). Try again, or give the path of a "
                             f"{MODEL_FILE}.") from None


def _cached_without_model(repo_id: str) -> bool:
    """Whether the Hub cache holds snapshots of `repo_id`, none with a model file."""
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    found = [folder for folder in snapshots.iterdir() if folder.is_dir()] if snapshots.is_dir() else []
    return bool(found) and not any((folder / MODEL_FILE).exists() for folder in found)
