"""Sharing a model on the Hugging Face Hub (`actionrec push`): its `model.onnx`, and a `README.md`
model card generated from the model's own card, with the Hub's metadata header."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from actionrec.errors import ModelFileError
from actionrec.modelfile.card import TEMPORAL_HEADS, read_card
from actionrec.modelfile.hub import EXTRA, MODEL_FILE


def model_card_text(model: Path, repo_id: str, run_dir: Path | None = None, license_id: str = "apache-2.0") -> str:
    """The README.md the Hub shows for `model`: its metadata header (library, task, labels, dataset,
    the measured accuracy and how it was measured, the base model, the licence), then a page."""
    card = read_card(model)
    metrics = _run_metrics(run_dir)
    accuracy, measured_on = _accuracy(card, metrics)
    taught = card.model.get("taught")
    weights = str(card.model.get("backbone_weights") or "")
    base_model = "torchvision mobilenet_v2 (IMAGENET1K_V1)" if weights.startswith("imagenet") else None
    head = card.model.get("temporal")
    known = TEMPORAL_HEADS.get(str(head))
    reads = known.description if known else f"{head or 'a temporal head'} over the frames"
    header: dict[str, Any] = {
        "library_name": "actionrec", "pipeline_tag": "video-classification", "license": license_id,
        "tags": ["action-recognition", "onnx", "mobilenet_v2", str(head or "video")],  # motion, lstm, mean, taught_motion
    }
    if card.dataset:
        header["datasets"] = [card.dataset]
    if accuracy is not None:
        header["model-index"] = [{"name": card.name, "results": [{
            "task": {"type": "video-classification", "name": "Video classification"},
            "dataset": {"name": card.dataset or "its own clips", "type": card.dataset or "custom"},
            "metrics": [{"type": "accuracy", "value": round(accuracy, 4), "name": f"top-1 accuracy ({measured_on})"}],
        }]}]
    lines = ["---", *_yaml(header), "---", "", f"# {card.name} {card.version}", "",
             f"A video action recognition model made with [actionrec](https://pypi.org/project/actionrec/): "
             f"it names which of {len(card.labels)} actions a video shows, and says when it shows none of them.", "",
             "```python", "from actionrec import Recognizer", "",
             f'recognizer = Recognizer("hf://{repo_id}")', 'print(recognizer.predict("video.mp4", top_k=5))', "```",
             "", f"Or `actionrec predict hf://{repo_id} video.mp4`, `actionrec serve hf://{repo_id}`.", "",
             "## Model", "",
             f"- Input: {card.num_frames} frames of {card.image_size} x {card.image_size}, sampled as the model "
             "file's card says (`actionrec` reads it; no settings to copy).",
             f"- Network: MobileNetV2 per frame ({weights or 'weights not recorded'}), then "
             f"{reads}.",
             f"- Base model: {base_model or 'none recorded'}."]
    if taught:
        lines.append(f"- Taught on {taught.get('base')} from {sum(taught.get('clips', {}).values())} example clips "
                     "(`actionrec teach`).")
    lines += ["", "## Actions", "", ", ".join(card.labels), "", "## Evaluation", ""]
    lines.append(f"Top-1 accuracy {accuracy:.1%} ({measured_on})." if accuracy is not None else
                 "No accuracy was measured for this file.")
    if run_dir is not None and (run_dir / "confusion.png").is_file():
        lines += ["", "![Confusion matrix](confusion.png)"]
    if run_dir is not None and (run_dir / "curves.png").is_file():
        lines += ["", "![Training curves](curves.png)"]
    return "\n".join(lines) + "\n"


def _run_metrics(run_dir: Path | None) -> dict:
    try:
        return json.loads((run_dir / "metrics.json").read_text()) if run_dir is not None else {}
    except (OSError, ValueError):
        return {}


def _accuracy(card: Any, metrics: dict) -> tuple[float | None, str]:
    """The accuracy to publish and how it was measured: the run's evaluation, else the card's
    validation row, else a taught model's leave-one-clip-out estimate."""
    if isinstance(metrics.get("top1"), (int, float)):
        return float(metrics["top1"]), f"`actionrec evaluate` on {metrics.get('num_clips', 'the')} held-out clips"
    validation = card.validation or {}
    for key in ("val_acc", "val_accuracy", "accuracy"):
        if isinstance(validation.get(key), (int, float)):
            epoch = validation.get("epoch", "?")
            return float(validation[key]), f"the training run's validation clips at epoch {epoch}"
    taught = card.model.get("taught") or {}
    if isinstance(taught.get("leave_one_out_accuracy"), (int, float)):
        return float(taught["leave_one_out_accuracy"]), "leaving each example clip out in turn"
    return None, ""


def _yaml(data: Any, indent: int = 0) -> list[str]:
    """A small YAML writer for the card header (JSON scalars are valid YAML scalars)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                lines.append(f"{pad}{key}:")
                lines += _yaml(value, indent + 2)
            else:
                lines.append(f"{pad}{key}: {json.dumps(value)}")
    else:
        for item in data:
            if isinstance(item, dict):
                first, *rest = _yaml(item, indent + 2)
                lines.append(f"{pad}- {first.strip()}")
                lines += rest
            else:
                lines.append(f"{pad}- {json.dumps(item)}")
    return lines


def push_files(source: Path, repo_id: str, folder: Path) -> list[Path]:
    """Lay out in `folder` what `push` uploads: `model.onnx`, `README.md`, and a run's report images."""
    run_dir = source if source.is_dir() else None
    model = source / MODEL_FILE if run_dir is not None else source
    if not model.is_file():
        raise ModelFileError(f"{source}: no {MODEL_FILE} there. Export the run first (`actionrec export {source}`), "
                             "or give the model file.")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, folder / MODEL_FILE)
    (folder / "README.md").write_text(model_card_text(model, repo_id, run_dir), encoding="utf-8")
    for image in ("confusion.png", "curves.png"):
        if run_dir is not None and (run_dir / image).is_file():
            shutil.copyfile(run_dir / image, folder / image)
    return sorted(folder.iterdir())


def push(source: Path, repo_id: str, private: bool = False) -> str:
    """Upload `source` (a run folder with its exported model, or a model file) to the Hub as
    `repo_id`, creating the repository; returns its URL."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ModelFileError(f"pushing a model needs huggingface_hub: `{EXTRA}`.") from None
    with tempfile.TemporaryDirectory(prefix="actionrec-push-") as folder:
        push_files(source, repo_id, Path(folder))
        api = HfApi(library_name="actionrec")
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=f"Upload {source.name} with actionrec")
    return str(url)
