"""The offline demo: synthetic dataset -> trained model -> ONNX -> the web page and API.

Everything lands in one folder (default ./demo); a second run finds the model there and starts
serving in seconds. Nothing is downloaded for the model it serves: the backbone starts from random
weights and is trained end to end on the synthetic clips, at a size two CPU cores get through in
minutes. The page's Teach mode builds on torchvision's ImageNet MobileNetV2 where its weights are
at hand (`build_imagenet_base`), so a visitor can teach it real actions from the camera.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from actionrec.errors import ActionrecError
from actionrec.training.config import TrainConfig, read_settings

# Sized to train in about three minutes on two cores; README gives its measured accuracy for
# several seeds. Small frames suit the synthetic clips (size, brightness, colour and proportions
# show at 32 px), and the full-width network learns them several times faster from scratch than
# width 0.5 does. Four frames a clip, not eight: each order pair is told apart by where the
# change goes, which four frames show, and an epoch costs less. Random shifts of each clip keep
# the network from memorising where things are in its 512 training clips (seed 0, best epoch:
# 8 frames x 10 epochs 49%, 4 x 20 85%, 4 x 20 with shifts 94-95%).
DEMO_CLIPS_PER_CLASS = 80
EXAMPLES_PER_CLASS = 2
DEMO_TRAINING: dict[str, Any] = dict(
    frames=4,
    image_size=32,
    width_mult=1.0,
    hidden_size=128,
    dropout=0.2,
    epochs=20,
    batch_size=16,
    lr=1e-3,
    train_views=2,
    shift=0.125,
    backbone_weights="none",
    val_fraction=0.2,
    seed=0,
)


@dataclass
class DemoPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "synthetic-actions"

    @property
    def run(self) -> Path:
        return self.root / "synthetic-demo"

    @property
    def model(self) -> Path:
        return self.run / "model.onnx"

    @property
    def imagenet_base(self) -> Path:
        """The base the page's Teach mode builds on: ImageNet MobileNetV2, frozen, no actions of its own."""
        return self.root / "imagenet-base.onnx"

    @property
    def teach(self) -> Path:
        return self.root / "teach"

    @property
    def examples(self) -> Path:
        """Held-out clips (the model never trained on them) that the page offers to try."""
        return self.root / "examples"


def build_demo_model(root: Path, console: Console, rebuild: bool = False, seed: int = 0) -> Path:
    """Make (or reuse) the demo's model.onnx and return its path. `seed` draws the clips and
    everything random in training."""
    paths = DemoPaths(Path(root))
    if paths.model.exists() and not rebuild:
        console.print(f"Reusing {paths.model} (delete the folder or pass --rebuild to train again).")
        if not paths.examples.is_dir():  # a demo folder from before the examples
            keep_examples(TrainConfig(**read_settings(paths.run / "config.json")), paths.examples)
        return paths.model

    from actionrec.datasets import synth
    from actionrec.training.runs import RunDir
    from actionrec.training.train import train

    started = time.perf_counter()
    console.print(f"Building the demo's model in {paths.root}: about two minutes on two idle CPU cores (three where "
                  "they are busy), once: the next run serves it in seconds. Each epoch's line says how long is left.")
    console.rule("1/3  Generating the synthetic dataset")
    if rebuild and paths.data.exists():
        shutil.rmtree(paths.data)  # its clips may come from another seed
    synth.generate_dataset(paths.data, clips_per_class=DEMO_CLIPS_PER_CLASS, seed=seed)
    console.print(f"{DEMO_CLIPS_PER_CLASS} clips for each of {len(synth.CLASSES)} actions in {paths.data}")

    console.rule("2/3  Training MobileNetV2 + LSTM (end to end, random start)")
    config = TrainConfig(data_dir=str(paths.data), out=str(paths.run), cache_dir=str(paths.root / "cache"),
                         **DEMO_TRAINING | {"seed": seed})
    if rebuild and paths.run.exists():
        shutil.rmtree(paths.run)
    result = train(config, resume=True, console=console)  # continues an interrupted demo build

    console.rule("3/3  Exporting to ONNX")
    run = RunDir(paths.run)
    model = run.export()
    try:
        run.measure_unknown(model)  # so that footage of none of its actions is answered "not sure"
    except (ActionrecError, ValueError, OSError) as exc:
        console.print(f"[yellow]warning:[/yellow] the unknown threshold was not measured ({exc}).")
    keep_examples(config, paths.examples)
    console.print(
        f"Model ready in {time.perf_counter() - started:.0f} s: {paths.model} "
        f"(validation accuracy {result.best_val_acc:.1%} at epoch {result.best_epoch}, on "
        f"{len(result.labels)} classes)"
    )
    return paths.model


def build_imagenet_base(root: Path, console: Console) -> tuple[Path | None, str | None]:
    """The Teach mode's base: torchvision's ImageNet MobileNetV2 (from its cache, or downloaded
    there on first use as torchvision does), exported at the UCF101 recipe's 16 x 224 with a head
    that knows no action yet. (path, None), or (None, why not and what to do)."""
    paths = DemoPaths(root)
    if paths.imagenet_base.is_file():
        return paths.imagenet_base, None
    from actionrec.errors import BackboneWeightsError
    from actionrec.modelfile.card import ModelCard
    from actionrec.training.export import export_model
    from actionrec.training.model import ActionModel, ModelConfig, load_backbone_weights

    config = ModelConfig(num_classes=1, temporal="mean", hidden_size=32)
    model = ActionModel(config)
    try:
        weights = load_backbone_weights(model, "imagenet")
    except BackboneWeightsError:
        import torch
        from torchvision.models import MobileNet_V2_Weights

        url = MobileNet_V2_Weights.IMAGENET1K_V1.url
        return None, (f"Teaching real actions needs torchvision's ImageNet MobileNetV2 weights, which could not be "
                      f"fetched from {url} (no internet?). Download that file on any machine, put it in "
                      f"{Path(torch.hub.get_dir()) / 'checkpoints'}, and restart the demo. Until then, Teach "
                      "builds on the synthetic model's encoder, which knows only coloured shapes.")
    card = ModelCard(name="imagenet-base", version="1", labels=["(none yet)"], num_frames=16, image_size=224,
                     model=config.to_dict() | {"backbone": "mobilenet_v2", "backbone_weights": weights,
                                               "freeze_backbone": True},
                     dataset="none: ImageNet features only, for teaching", clip_duration_s=3.0)
    console.print(f"Exporting the ImageNet base for the page's Teach mode to {paths.imagenet_base}")
    export_model(model.eval(), card, paths.imagenet_base)
    return paths.imagenet_base, None


def keep_examples(config: TrainConfig, folder: Path, per_class: int = EXAMPLES_PER_CLASS) -> list[Path]:
    """Copy `per_class` held-out clips of each class (validation clips: never trained on) to `folder`."""
    from actionrec.datasets import load_dataset

    dataset = load_dataset(config.data_dir, kind=config.dataset, split=config.split,
                           val_fraction=config.val_fraction, seed=config.seed)
    folder.mkdir(parents=True, exist_ok=True)
    kept = []
    for label in range(len(dataset.classes)):
        for sample in [s for s in dataset.val if s.label == label][:per_class]:
            kept.append(folder / sample.path.name)
            shutil.copyfile(sample.path, kept[-1])
    return kept


def try_line(model: Path, examples: Path, url: str) -> str:
    """A curl command on a held-out clip, with the answer the model really gives it: the first clip
    (in name order) that it answers right, as a demo page shows an example that works; else the first."""
    from actionrec.runtime.recognizer import Recognizer

    clips = sorted(examples.glob("*.mp4"))
    if not clips:
        return ""
    recognizer = Recognizer(model)
    answers = ((clip, recognizer.predict(clip, top_k=1)) for clip in clips)
    first = next(answers)
    clip, answer = next((pair for pair in itertools.chain([first], answers) if pair[1].action == _label(pair[0])),
                        first)
    shown = json.dumps({"action": answer.action, "confidence": answer.confidence, "message": "Success"})
    return (f"Try it on a clip it never trained on ({_label(clip)}):\n"
            f"  curl --data-binary @{clip} -H 'Content-Type: video/mp4' {url}/\n  # {shown}")


def _label(clip: Path) -> str:
    """The action of a synthetic clip, from its name (`<action>_<number>.mp4`)."""
    return clip.stem.rsplit("_", 1)[0]
