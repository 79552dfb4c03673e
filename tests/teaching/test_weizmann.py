"""Movement in one scene, on real footage: taught from five actors' clips of ten whole-body actions
(the Weizmann clips: one room, one camera), the taught model names the actions of two actors it
never saw. Only how the body moves tells them apart.

Needs the ImageNet checkpoint (`make test` puts ../shared/weights' copy where torch.hub looks) and
the clips, `<action>/<actor>_<action>.avi` (ACTIONREC_WEIZMANN_CLIPS, `make test`:
../shared/real/weizmann-7); skipped, saying why, without them. Split by actor, never by clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

HELD_OUT = ("eli", "ido")


def imagenet_base(out: Path) -> Path:
    """A model file whose encoder is the frozen ImageNet MobileNetV2 (its head untrained: teaching
    reads the encoder alone), 16 frames of 224 pixels, as `actionrec train` exports one."""
    from actionrec.modelfile.card import ModelCard
    from actionrec.training.export import export_model
    from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights

    model = ActionModel(ModelConfig(num_classes=2))
    load_backbone_weights(model, "imagenet")
    card = ModelCard(name="imagenet-base", version="0", labels=["a", "b"], num_frames=16, image_size=224,
                     model={**model.config.to_dict(), "backbone": "mobilenet_v2", "backbone_weights": "imagenet"})
    return export_model(model.eval(), card, out)


def test_actions_of_unseen_actors_in_one_room_are_told_apart_by_movement(imagenet_checkpoint, weizmann_clips,
                                                                         tmp_path: Path):
    from actionrec.runtime.recognizer import Recognizer
    from actionrec.teaching.flow import teach

    examples: dict[str, list[Path]] = {}
    held_out = []
    for clip in sorted(weizmann_clips.glob("*/*.avi")):
        if clip.stem.split("_")[0] in HELD_OUT:
            held_out.append(clip)
        else:
            examples.setdefault(clip.parent.name, []).append(clip)
    base = imagenet_base(tmp_path / "base.onnx")
    teach(base, examples, tmp_path / "taught.onnx", name="weizmann")
    recognizer = Recognizer(tmp_path / "taught.onnx")
    assert recognizer.card.model["temporal"] == "taught_motion"
    right = [recognizer.predict(clip).action == clip.parent.name for clip in held_out]
    # Measured: 19 of the 20 clips (95%); the 0.3 head on the mean alone also 95% on this fold
    # (docs/teach.md has all four folds). Chance is 10%.
    assert np.mean(right) >= 0.75, f"{sum(right)} of {len(right)} held-out clips named right"
