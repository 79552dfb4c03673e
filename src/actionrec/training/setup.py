"""What every run sets up before its first step, shared by `train` and `benchmark-train`: seeds and
threads, the dataset's split, the model with its backbone weights, and the feature extractor."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.console import Console

from actionrec.datasets import DatasetSplit, load_dataset
from actionrec.errors import TrainingError
from actionrec.training import devices
from actionrec.training.config import TrainConfig
from actionrec.training.devices import Runtime
from actionrec.training.features import FeatureSource, extractor_for
from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights


@dataclass
class Setup:
    dataset: DatasetSplit
    model: ActionModel
    backbone_id: str  # which weights the backbone started from (names the feature cache)
    extractor: FeatureSource | None  # what extracts frozen features into the cache; None end to end


def setup(config: TrainConfig, console: Console, runtime: Runtime) -> Setup:
    torch.manual_seed(config.seed)
    if not runtime.cuda:
        torch.set_num_threads(devices.cores_per_process())
    dataset = load_split(config, console)
    model, backbone_id = build_model(config, len(dataset.classes), console)
    return Setup(dataset, model, backbone_id, extractor_for(config, model, backbone_id, console, runtime))


def load_split(config: TrainConfig, console: Console) -> DatasetSplit:
    dataset = load_dataset(config.data_dir, kind=config.dataset, split=config.split,
                           val_fraction=config.val_fraction, seed=config.seed)
    for warning in dataset.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not dataset.train or not dataset.val:
        raise TrainingError(f"{config.data_dir}: need clips for both training and validation ({dataset.description}).")
    console.print(f"{dataset.description}: {len(dataset.classes)} classes, {len(dataset.train)} training and "
                  f"{len(dataset.val)} validation clips")
    return dataset


def build_model(config: TrainConfig, num_classes: int, console: Console) -> tuple[ActionModel, str]:
    model = ActionModel(ModelConfig(num_classes=num_classes, temporal=config.temporal, hidden_size=config.hidden_size,
                                    dropout=config.dropout, width_mult=config.width_mult))
    backbone_id = load_backbone_weights(model, config.backbone_weights)
    if config.backbone_weights == "none":
        zero_init_residuals(model)
    if config.backbone_weights == "none" and not config.finetune:
        console.print("Backbone weights 'none': random features are useless frozen, so the backbone is trained too.")
    if not config.end_to_end:
        model.backbone.requires_grad_(False)
    return model, backbone_id


def zero_init_residuals(model: ActionModel) -> None:
    """Start each residual block of a randomly initialised backbone as the identity (its last
    batch-norm scale at zero, as Goyal et al. 2017 do for ResNets): trained from scratch on a
    small dataset, the network then starts learning in its first epochs instead of its third."""
    from torchvision.models.mobilenetv2 import InvertedResidual

    for block in model.backbone.modules():
        if isinstance(block, InvertedResidual) and block.use_res_connect:
            torch.nn.init.zeros_(block.conv[-1].weight)
