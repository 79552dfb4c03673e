"""The model: MobileNetV2 reads each frame, a temporal head reads the sequence of frame features.

Input is what `actionrec.video` produces: uint8 RGB frames shaped (batch, frames, height, width, 3).
Normalisation happens inside the model, so the exported graph takes decoded frames as they are.

    frames --forward_features--> (batch, frames, num_features) --forward_head--> (batch, classes) logits

`num_features` is read from the built backbone: 1280 for MobileNetV2 up to width 1.0, wider above.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from actionrec.errors import BackboneWeightsError
from actionrec.files import sha256_of
from actionrec.modelfile.card import IMAGENET_MEAN, IMAGENET_STD, TRAINABLE_HEADS


@dataclass
class ModelConfig:
    num_classes: int
    temporal: str = "motion"  # a name in TRAINABLE_HEADS
    hidden_size: int = 512
    dropout: float = 0.5
    width_mult: float = 1.0

    def __post_init__(self) -> None:
        if self.temporal not in TRAINABLE_HEADS:
            raise ValueError(f"temporal head must be one of {', '.join(TRAINABLE_HEADS)}, not {self.temporal!r}")
        if self.num_classes < 1 or self.hidden_size < 1 or self.width_mult <= 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"invalid model settings: {self}")

    def to_dict(self) -> dict:
        return asdict(self)


class FramePreprocess(nn.Module):
    """uint8 (B, T, H, W, 3) RGB -> float (B*T, 3, H, W), scaled to [0, 1] and ImageNet-normalised."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, h, w, c = frames.shape
        x = frames.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std


class LSTMHead(nn.Module):
    """Reads frame features in order; classifies from the last hidden state."""

    def __init__(self, num_features: int, num_classes: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.input_dropout = nn.Dropout(dropout / 2)
        self.lstm = nn.LSTM(num_features, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(self.input_dropout(features))
        return self.classifier(self.dropout(hidden[-1]))


class MeanHead(nn.Module):
    """Order-blind baseline: the mean of the frame features, then an MLP of the same width."""

    def __init__(self, num_features: int, num_classes: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Dropout(dropout / 2),
            nn.Linear(num_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features.mean(dim=1))


def motion_statistics(features: torch.Tensor) -> torch.Tensor:
    """(B, T, F) -> (B, 3F): the mean of the frame features over time, their spread over time (standard
    deviation) and the mean size of their change from one frame to the next. In a fixed scene the mean
    barely differs between actions; how much, and how fast, the features move does."""
    mean = features.mean(dim=1)
    spread = (features - mean.unsqueeze(1)).square().mean(dim=1).clamp_min(1e-12).sqrt()
    change = (features[:, 1:] - features[:, :-1]).abs().mean(dim=1) if features.shape[1] > 1 else torch.zeros_like(mean)
    return torch.cat([mean, spread, change], dim=1)


class MotionHead(nn.Module):
    """The frame features' mean, spread over time and frame-to-frame change, each normalised, then an MLP."""

    def __init__(self, num_features: int, num_classes: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(num_features) for _ in range(3))
        self.mlp = nn.Sequential(
            nn.Dropout(dropout / 2),
            nn.Linear(3 * num_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        parts = motion_statistics(features).chunk(3, dim=1)
        return self.mlp(torch.cat([norm(part) for norm, part in zip(self.norms, parts)], dim=1))


# One module for each of the card's TRAINABLE_HEADS (tests/training/test_model.py checks).
HEADS: dict[str, type[nn.Module]] = {"lstm": LSTMHead, "mean": MeanHead, "motion": MotionHead}


class ActionModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.preprocess = FramePreprocess()
        network = mobilenet_v2(weights=None, width_mult=config.width_mult)
        self.backbone = network.features
        self.num_features: int = network.last_channel
        head = HEADS[config.temporal]
        self.head = head(self.num_features, config.num_classes, config.hidden_size, config.dropout)

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B, T, num_features) globally pooled frame features."""
        b, t = frames.shape[:2]
        x = self.backbone(self.preprocess(frames))
        return F.adaptive_avg_pool2d(x, 1).flatten(1).reshape(b, t, -1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(frames))


class FrameFeatures(nn.Module):
    """The frozen half on its own, for exporting to ONNX Runtime to extract features fast."""

    def __init__(self, model: ActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(frames)


class ExportGraph(nn.Module):
    """What gets exported: the whole network from frames, and the head alone from features.

    frames (B, T, S, S, 3) -> probabilities (B, classes) and frame_features (B, T, F);
    features (W, T, F) -> window_probabilities (W, classes). One graph, one set of weights: a
    server encodes each frame once and classifies many overlapping windows from the features.
    """

    def __init__(self, model: ActionModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frame_features = self.model.forward_features(frames)
        probabilities = torch.softmax(self.model.forward_head(frame_features), dim=-1)
        window_probabilities = torch.softmax(self.model.forward_head(features), dim=-1)
        return probabilities, frame_features, window_probabilities


def load_backbone_weights(model: ActionModel, weights: str) -> str:
    """Put `weights` into the backbone: 'imagenet', 'none' or a path. Returns an id for caching.

    A path may hold torchvision's MobileNetV2 file (mobilenet_v2-b0353104.pth, keys 'features.*')
    or a state dict of `features` alone; it is loaded with weights_only=True.
    """
    if weights == "none":
        return "none"
    if weights == "imagenet":
        if model.config.width_mult != 1.0:
            raise BackboneWeightsError("ImageNet weights exist only for width_mult 1.0.")
        state = imagenet_state_dict()
        weights_id = "imagenet1k_v1"
    else:
        path = Path(weights)
        if not path.is_file():
            raise BackboneWeightsError(
                f"{path}: no such weights file. Use 'imagenet', 'none', or the path of a "
                "MobileNetV2 state dict (.pth or .safetensors)."
            )
        state = _read_state_dict(path)
        weights_id = "file-" + sha256_of(path)[:16]
    features = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
    try:
        model.backbone.load_state_dict(features)
    except RuntimeError as exc:
        raise BackboneWeightsError(
            f"{weights}: does not fit MobileNetV2 (width_mult {model.config.width_mult}): {exc}"
        ) from None
    return weights_id


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's ImageNet MobileNetV2 checkpoint, from its cache (`$TORCH_HOME/hub/checkpoints/`)
    or downloaded there, its SHA-256 checked against the prefix in its name either way (torchvision
    checks a download only, so a damaged copy in the cache would otherwise load as it is)."""
    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if cached.is_file():
        check_checkpoint_hash(cached)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, timeouts, SSL errors, a download that fails its hash check
        raise BackboneWeightsError(
            f"Could not fetch the ImageNet weights for MobileNetV2 from {weights.url} ({exc}). "
            f"Either download that file elsewhere and put it in {cached.parent} (or pass its path: "
            "--backbone-weights /path/to/mobilenet_v2-b0353104.pth), or train without "
            "pretrained weights (--backbone-weights none, which trains the backbone too)."
        ) from None


def check_checkpoint_hash(path: Path) -> None:
    """Raise BackboneWeightsError unless the file's SHA-256 starts with the hash in its name
    (`mobilenet_v2-b0353104.pth`), as torch.hub names and checks its downloads."""
    match = torch.hub.HASH_REGEX.search(path.name)
    if not match:
        return
    digest = sha256_of(path)
    if not digest.startswith(match.group(1)):
        raise BackboneWeightsError(
            f"{path}: damaged or not the file its name says (SHA-256 {digest[:8]}..., expected "
            f"{match.group(1)}...). Delete it; the next run downloads it again (or copy a good one there)."
        )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BackboneWeightsError(f"{path}: cannot read weights from this file ({exc}).") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: holds no state dict.")
    return state


