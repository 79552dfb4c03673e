"""A run directory: what training writes, and what evaluation and export read back.

    config.json        everything needed to rebuild the model and reproduce the run, and the version
                       of the frame sampling its clips were cached with (resume and export check it)
    model.safetensors  the best epoch's weights (by validation accuracy)
    history.json/.csv  per-epoch loss, accuracy, learning rate and time
    labels.txt         the class names, one per line, in label order
    train_state.pt     the last completed epoch, for --resume (tensors only, loaded weights_only)
    model.onnx         written by `actionrec export`

Nothing is ever unpickled: weights load from safetensors, the state with weights_only=True.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actionrec import __version__
from actionrec.errors import TrainingError
from actionrec.evaluation.scores import best_epoch_index
from actionrec.files import atomic_output, write_json, write_text
from actionrec.modelfile.card import ModelCard, update_card
from actionrec.modelfile.unknown import UnknownRule
from actionrec.training.config import TrainConfig, resolved
from actionrec.training.export import export_model
from actionrec.training.model import ActionModel, ModelConfig
from actionrec.video import spec as sampling


class RunDir:
    """One training run's folder. Reading methods raise TrainingError when a file is missing."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    weights_path = property(lambda self: self.path / "model.safetensors")
    history_path = property(lambda self: self.path / "history.json")
    state_path = property(lambda self: self.path / "train_state.pt")
    model_path = property(lambda self: self.path / "model.onnx")

    # -- writing ------------------------------------------------------------------------------

    def write_config(self, config: TrainConfig, model_config: ModelConfig, labels: list[str], *,
                     dataset: str, backbone_id: str, num_train: int, num_val: int,
                     skipped: dict[Path, str], clip_duration_s: float | None,
                     runtime: dict[str, Any] | None = None) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, {
            "actionrec_version": __version__,
            "sampling_version": sampling.SAMPLING_VERSION,  # what its cached frames and features were sampled by
            "train": asdict(config),
            "model": model_config.to_dict(),
            "spec": config.spec.to_dict(),
            "labels": labels,
            "dataset": dataset,
            "backbone_id": backbone_id,
            "num_train": num_train,
            "num_val": num_val,
            "clip_duration_s": clip_duration_s,
            "runtime": runtime or {},  # where it trained: device, precision, processes
            "skipped": {str(path): error for path, error in skipped.items()},
        })
        write_text(self.path / "labels.txt", "\n".join(labels) + "\n")

    def save_weights(self, model: ActionModel) -> None:
        from safetensors.torch import save_file

        with atomic_output(self.weights_path) as tmp:
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))

    def write_history(self, history: list[dict]) -> None:
        write_json(self.history_path, history)
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_text(self.path / "history.csv", table.getvalue())

    def save_state(self, state: dict[str, Any]) -> None:
        with atomic_output(self.state_path) as tmp:
            torch.save(state, tmp)

    # -- reading ------------------------------------------------------------------------------

    @cached_property
    def saved(self) -> dict[str, Any]:
        """config.json as written by `write_config`."""
        for path in (self.config_path, self.weights_path):
            if not path.is_file():
                raise TrainingError(f"{self.path}: no {path.name}; is this the --out folder of `actionrec train`?")
        return json.loads(self.config_path.read_text())

    @property
    def config(self) -> TrainConfig:
        return TrainConfig(**self.saved["train"])

    @property
    def labels(self) -> list[str]:
        return list(self.saved["labels"])

    @property
    def backbone_id(self) -> str:
        return str(self.saved["backbone_id"])

    def load_model(self) -> ActionModel:
        """The best epoch's model, in eval mode."""
        from safetensors.torch import load_file

        model = ActionModel(ModelConfig(**self.saved["model"]))
        model.load_state_dict(load_file(str(self.weights_path)))
        return model.eval()

    def check_sampling(self, doing: str) -> None:
        """Refuse to `doing` ("resume", "export") a run whose clips were sampled by another version of
        the frame sampling than this actionrec's: its weights learnt from frames unlike those it would
        now be given. A config.json without the field (written before it was recorded) counts as
        version 1; a folder without one holds no run to check."""
        try:
            saved = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        version = saved.get("sampling_version", 1) if isinstance(saved, dict) else 1
        current = sampling.SAMPLING_VERSION
        if version == current:
            return
        todo = ("start a new run with another --out" if doing == "resume" else
                "train a new run (`actionrec train DATA_DIR --out NEW_RUN`) and export that")
        if isinstance(version, int) and version > current:
            todo = f"upgrade actionrec (`pip install -U actionrec`) to {doing} it, or {todo}"
        raise TrainingError(
            f"{self.path} was trained on clips sampled by version {version!r} of the frame sampling, and this "
            f"actionrec samples by version {current}: it would see clips unlike those it learnt from, so it "
            f"cannot be {'resumed' if doing == 'resume' else 'exported'}. To go on, {todo}.")

    def history(self) -> list[dict]:
        return json.loads(self.history_path.read_text()) if self.history_path.is_file() else []

    def best_epoch(self) -> dict | None:
        """The history row of the best epoch (see `best_epoch_index`), or None before any epoch."""
        history = self.history()
        index = best_epoch_index(history)
        return None if index is None else history[index]

    def load_state(self) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            return None
        return torch.load(self.state_path, map_location="cpu", weights_only=True)

    # -- exporting ----------------------------------------------------------------------------

    def model_card(self) -> ModelCard:
        saved, config = self.saved, self.config
        now = datetime.now(UTC)
        return ModelCard(
            name=self.path.resolve().name,
            version=now.strftime("%Y%m%d.%H%M%S"),
            labels=self.labels,
            num_frames=config.frames,
            image_size=config.image_size,
            model={**saved["model"], "backbone": "mobilenet_v2", "backbone_weights": self.backbone_id},
            dataset=saved.get("dataset"),
            validation=self.best_epoch(),
            clip_duration_s=saved.get("clip_duration_s"),
            versions={"actionrec": __version__, "torch": torch.__version__, "python": platform.python_version()},
            exported_at=now.isoformat(timespec="seconds"),
        )

    def export(self, out: str | os.PathLike | None = None, **options: Any) -> Path:
        """Write the run's model as ONNX (default RUN_DIR/model.onnx), checked against PyTorch; refused
        for a run trained on another version of the frame sampling (see `check_sampling`)."""
        self.saved  # noqa: B018 - a folder that holds no run says so first
        self.check_sampling("export")
        return export_model(self.load_model(), self.model_card(), Path(out) if out else self.model_path, **options)

    def measure_unknown(self, model_path: Path, *, limit: int | None = 500,
                        progress: Callable[[int, int], None] | None = None) -> UnknownRule:
        """Measure the exported model's "none of these" rule on the run's own clips (class means from
        its training clips, the threshold from up to `limit` validation clips) and write it into the
        file's card."""
        from actionrec.evaluation.model_files import measure_unknown_rule
        from actionrec.runtime.recognizer import Recognizer

        config = self.config
        rule = measure_unknown_rule(Recognizer(model_path), config.data_dir, dataset=config.dataset,
                                    split=config.split, val_fraction=config.val_fraction, seed=config.seed,
                                    limit=limit, cached_features=self._cached_features(), progress=progress)
        update_card(model_path, unknown=rule.to_dict())
        return rule

    def _cached_features(self) -> Callable[[Path], Any] | None:
        """A training clip's cached frozen features at segment centres (its view 0), where the
        run's cache still has them; None end to end, where the cache holds frames."""
        from actionrec.training.features import cache_for

        config = self.config
        if config.end_to_end:
            return None
        cache = cache_for(config, resolved(config.train_views, "train_views"), self.backbone_id)

        def features(video: Path) -> Any:
            try:
                return np.asarray(cache.get(video)[0], np.float32)
            except Exception:  # missing, truncated (EOFError) or damaged: the clip is decoded instead
                return None

        return features

    def export_int8(self, model_path: Path, *, calibration_clips: int = 64, compare_clips: int | None = 500,
                    progress: Callable[[int, int], None] | None = None) -> tuple[Path | None, dict[str, Any]]:
        """Write an int8 copy of the exported `model_path` beside it (`model.int8.onnx`), calibrated
        on (`calibration_clips` of) the run's training clips, and compare the two on (up to
        `compare_clips` of) its validation clips: each one's accuracy and how often they agree.
        The copy is kept, with these in its card, only
        where it gets wrong so few clips that the float model gets right that their share is at
        most `MAX_LOSS` with `CONFIDENCE`, and its top-1 at most `MAX_DROP` below (`keeps_copy`); else
        it is removed and None is returned.
        The comparison is also written to the run."""
        from actionrec.evaluation.model_files import evaluate_files, rule_on_clips, validation_clips
        from actionrec.modelfile.card import read_card
        from actionrec.runtime.precision import KEEP_RULE, keeps_copy, loss_bound
        from actionrec.runtime.recognizer import Recognizer
        from actionrec.training.quantize import quantize_model

        config = self.config
        fp32 = Recognizer(model_path)
        read = partial(validation_clips, config.data_dir, fp32, dataset=config.dataset, split=config.split,
                       val_fraction=config.val_fraction, seed=config.seed)
        # Calibrated on training clips, so that the clips it is judged on are ones it has not seen.
        calibration = read(limit=calibration_clips, training=True, progress=progress)
        out = model_path.with_name(model_path.stem + ".int8.onnx")
        quantize_model(model_path, calibration.frames, out,
                       calibrated_on=f"{len(calibration.frames)} training clips of {config.data_dir}")
        del calibration
        clips = read(limit=compare_clips, progress=progress)
        fp32_rule = fp32.card.unknown_rule
        if fp32_rule is not None and fp32_rule.means is not None:  # its own threshold, on the same clips
            rule = rule_on_clips(Recognizer(out), fp32_rule.means, clips, f"validation clips of {config.data_dir}")
            update_card(out, unknown=rule.to_dict())
        comparison = evaluate_files([fp32, Recognizer(out)], clips)
        agreement, compared = comparison["models"][1].get("agreement_with_first"), comparison["num_clips"]
        lost = comparison["models"][1].get("lost_vs_first")
        comparison["keep_rule"] = KEEP_RULE
        comparison["loss_bound"] = None if lost is None or not compared else round(loss_bound(lost, compared), 4)
        comparison["kept"] = lost is not None and keeps_copy(lost, compared, comparison["models"][1]["gained_vs_first"])
        write_json(self.path / "int8_comparison.json", comparison)
        if not comparison["kept"]:
            out.unlink(missing_ok=True)
            return None, comparison
        quantization = read_card(out).quantization or {}
        update_card(out, quantization=quantization | {
            "agreement_with_fp32": round(agreement, 4), "compared_on_clips": compared, "clips_lost": lost,
            "clips_gained": comparison["models"][1]["gained_vs_first"], "loss_bound": comparison["loss_bound"],
            "keep_rule": KEEP_RULE, "top1_fp32": comparison["models"][0]["top1"],
            "top1_int8": comparison["models"][1]["top1"]})
        return out, comparison
