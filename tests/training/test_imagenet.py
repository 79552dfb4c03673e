"""The ImageNet path, with torchvision's real checkpoint: its hash check, and frames read and
normalised exactly as the weights expect (which synthetic data cannot show).

Needs the checkpoint where torch.hub looks for it (`make test` copies ../shared/weights' there) and,
for the preprocessing check, real clips (ACTIONREC_REAL_CLIPS); skipped, saying why, without them.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from actionrec.errors import BackboneWeightsError  # noqa: E402
from actionrec.modelfile.card import ModelCard  # noqa: E402
from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights  # noqa: E402
from actionrec.video import ClipSpec, read_clip  # noqa: E402

pytestmark = pytest.mark.slow


def test_imagenet_weights_load_offline_from_the_cache(imagenet_checkpoint: Path):
    model = ActionModel(ModelConfig(num_classes=3))
    assert load_backbone_weights(model, "imagenet") == "imagenet1k_v1"
    reference = torch.load(imagenet_checkpoint, map_location="cpu", weights_only=True)
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, reference[f"features.{name}"]), name


def test_a_damaged_cached_checkpoint_is_refused_with_what_to_do(tmp_path: Path, monkeypatch, imagenet_checkpoint):
    cached = tmp_path / "hub" / "checkpoints" / imagenet_checkpoint.name
    cached.parent.mkdir(parents=True)
    data = bytearray(imagenet_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: torch.load might still read it
    cached.write_bytes(bytes(data))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BackboneWeightsError, match="damaged") as error:
        load_backbone_weights(ActionModel(ModelConfig(num_classes=3)), "imagenet")
    assert str(cached) in str(error.value) and "Delete it" in str(error.value)


def _full_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    wanted, frames = set(indices), {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= max(indices):
                break
    return [frames[i] for i in indices]


def test_served_frames_match_torchvision_preprocessing_on_real_clips(imagenet_checkpoint, real_clips, tmp_path):
    """The exported encoder, fed frames as a prediction reads them (decode, shorter side to the
    size, centre crop, RGB, normalisation inside the graph), must classify ImageNet classes as
    torchvision's own pipeline does on the same full-size frames (`weights.transforms()`, at our
    crop size). Controls: the same frames in BGR order, or squashed instead of cropped, fail it."""
    from PIL import Image
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    from actionrec.runtime.recognizer import Recognizer
    from actionrec.training.export import export_model

    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    model = ActionModel(ModelConfig(num_classes=2, hidden_size=8))
    load_backbone_weights(model, "imagenet")
    card = ModelCard(name="imagenet-encoder", version="0", labels=["a", "b"], num_frames=4, image_size=224)
    recognizer = Recognizer(export_model(model.eval(), card, tmp_path / "encoder.onnx"))
    classifier = torch.load(imagenet_checkpoint, map_location="cpu", weights_only=True)
    weight, bias = classifier["classifier.1.weight"].numpy(), classifier["classifier.1.bias"].numpy()

    clips = [path for folder in sorted(real_clips.iterdir()) for path in sorted(folder.glob("*.avi"))[:2]]
    ours, squashed, full = [], [], []
    for path in clips:
        clip = read_clip(path, ClipSpec(4, 224))
        ours.append(clip.frames)
        frames = _full_frames(path, clip.frame_indices)
        full += frames
        squashed += [np.asarray(Image.fromarray(f).resize((224, 224), Image.BILINEAR)) for f in frames]
    ours_frames = np.concatenate(ours)

    reference_net = mobilenet_v2(weights=weights).eval()
    transform = weights.transforms(resize_size=224)
    with torch.inference_mode():
        expected = torch.softmax(reference_net(torch.stack([transform(Image.fromarray(f)) for f in full])), 1).numpy()

    def agreement(frames: np.ndarray) -> tuple[float, float]:
        logits = recognizer.encode(np.ascontiguousarray(frames)) @ weight.T + bias
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        same_top = float((probs.argmax(1) == expected.argmax(1)).mean())
        cosine = float(np.mean(np.sum(probs * expected, 1) / np.linalg.norm(probs, axis=1)
                               / np.linalg.norm(expected, axis=1)))
        return same_top, cosine

    top, cosine = agreement(ours_frames)
    assert top >= 0.75 and cosine >= 0.93, (top, cosine)  # measured: 0.85 and 0.974 on these 48 frames
    bgr_top, bgr_cosine = agreement(ours_frames[..., ::-1])
    assert top - bgr_top >= 0.2 and bgr_cosine <= cosine - 0.1, (bgr_top, bgr_cosine)  # measured: 0.52, 0.76
    squashed_top, squashed_cosine = agreement(np.stack(squashed))
    assert top - squashed_top >= 0.2 and squashed_cosine <= cosine - 0.08, (squashed_top, squashed_cosine)  # 0.56, 0.80
