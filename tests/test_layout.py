"""The shape of the package: layers, no import cycles, serving free of torch and training code, imports
without side effects, and the traps a layout used to hide (feature width, the synthetic dataset's
README, silent fallbacks)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "actionrec"
# The inference layer: a model file and a video in, an answer out.
INFERENCE = ("actionrec.inference", "actionrec.network", "actionrec.prediction", "actionrec.results",
             "actionrec.batch", "actionrec.card", "actionrec.errors", "actionrec.live", "actionrec.video")
SERVING = (*INFERENCE, "actionrec.files", "actionrec.teach", "actionrec.serve")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every actionrec module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {imported for imported in imports_of(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def test_no_import_cycles():
    graph = import_graph()
    # A package's __init__ re-exporting its own modules is not a cycle of the code's layers.
    for name, imported in graph.items():
        graph[name] = {other for other in imported if not name.startswith(other + ".")}
    visiting, done, cycles = set(), set(), []

    def visit(name: str, trail: list[str]) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append(trail[trail.index(name):] + [name])
            return
        visiting.add(name)
        for other in sorted(graph[name]):
            visit(other, trail + [name])
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, cycles


def test_serving_modules_reach_neither_torch_nor_training_code():
    reachable = reachable_from(SERVING)
    assert not [name for name in reachable if name.startswith(("actionrec.training", "actionrec.model",
                                                               "actionrec.export"))]
    for name in reachable:
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        path = path if path.exists() else PACKAGE.parent / name.replace(".", "/") / "__init__.py"
        assert not {imported.split(".")[0] for imported in imports_of(path)} & {"torch", "torchvision"}, name
    code = ("import sys, actionrec, actionrec.serve.app, actionrec.inference, actionrec.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision') "
            "or m.startswith(('actionrec.training.train', 'actionrec.model', 'actionrec.export'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def reachable_from(prefixes: tuple[str, ...]) -> set[str]:
    graph = import_graph()
    reachable, stack = set(), [name for name in graph if name.startswith(prefixes)]
    while stack:
        name = stack.pop()
        if name not in reachable:
            reachable.add(name)
            stack.extend(graph.get(name, ()))
    return reachable


def test_the_inference_layer_reaches_no_training_or_dataset_code():
    assert not {name for name in reachable_from(INFERENCE)
                if name.startswith(("actionrec.training", "actionrec.datasets", "actionrec.model"))}


def test_evaluating_model_files_reaches_no_training_code():
    assert not {name for name in reachable_from(("actionrec.evaluation",))
                if name.startswith(("actionrec.training", "actionrec.model", "actionrec.export"))}


def test_no_function_over_60_lines_no_module_over_400():
    long_functions, large_modules = [], []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        large_modules += [module_name(path)] if len(path.read_text().splitlines()) > 400 else []
        long_functions += [f"{module_name(path)}.{node.name}" for node in ast.walk(tree)
                           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                           and node.end_lineno - node.lineno + 1 > 60]
    assert not long_functions and not large_modules, (long_functions, large_modules)


def test_no_test_module_imports_another():
    tests = Path(__file__).resolve().parent
    local = {path.stem for path in tests.glob("*.py")} | {"tests"}
    offenders = {path.name: sorted(name for name in imports_of(path) if name.split(".")[0] in local)
                 for path in tests.glob("*.py")}
    assert not {name: found for name, found in offenders.items() if found}


def test_importing_the_package_changes_nothing_in_the_process():
    environment = {name: value for name, value in os.environ.items() if name != "OMP_WAIT_POLICY"}
    code = "import os, actionrec, actionrec.inference, actionrec.cli; assert 'OMP_WAIT_POLICY' not in os.environ"
    subprocess.run([sys.executable, "-c", code], check=True, env=environment)


def test_every_module_says_what_it_is_for():
    missing = [module_name(path) for path in PACKAGE.rglob("*.py") if not ast.get_docstring(ast.parse(path.read_text()))]
    assert not missing


def test_synthetic_readme_describes_what_is_drawn(tmp_path: Path):
    from actionrec.datasets import synth

    synth.generate_dataset(tmp_path, clips_per_class=0)
    readme = (tmp_path / "README.txt").read_text()
    for word in (*synth.SHAPES, *synth.BACKGROUNDS, *synth.CLASSES):
        assert word.replace("checker", "checkerboard") in readme, word
    for gone in ("wedge", "pac-man", "left/right", "clock hand"):
        assert gone not in readme


@pytest.mark.slow
def test_wider_backbones_train_and_export(tmp_path: Path):
    """MobileNetV2 widens its last layer above width 1.0: the head must read the built width."""
    from typer.testing import CliRunner

    from actionrec.cli import app
    from actionrec.datasets.synth import generate_dataset
    from actionrec.inference import Recognizer
    from actionrec.model import ActionModel, ModelConfig

    assert ActionModel(ModelConfig(num_classes=2, width_mult=1.4)).num_features == 1792
    generate_dataset(tmp_path / "data", clips_per_class=3, seed=2, width=48, height=32)
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1",
                                 "--frames", "2", "--image-size", "32", "--width-mult", "1.4", "--hidden-size", "8",
                                 "--batch-size", "8", "--backbone-weights", "none",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["export", str(tmp_path / "run")]).exit_code == 0
    recognizer = Recognizer(tmp_path / "run" / "model.onnx")
    assert recognizer.card.model["width_mult"] == 1.4
    frames = np.zeros((1, 2, 32, 32, 3), np.uint8)
    assert recognizer.classify(frames).shape == (1, 8)


def test_a_failing_feature_extractor_says_so_once(tmp_path: Path, monkeypatch):
    pytest.importorskip("torch")
    from rich.console import Console

    from actionrec.model import ActionModel, ModelConfig
    from actionrec.training import features
    from actionrec.training.config import TrainConfig

    def broken_exporter(*args, **kwargs):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(features, "to_onnx", broken_exporter)
    config = TrainConfig(data_dir="unused", out="unused", frames=2, image_size=32, backbone_weights="x.pth",
                         width_mult=0.35, cache_dir=str(tmp_path))
    model = ActionModel(ModelConfig(num_classes=2, width_mult=0.35))
    console = Console(record=True, width=200)
    extractor = features.extractor_for(config, model, "file-test", console)
    for _ in range(3):  # training, validation and evaluation clips all ask for it
        extract = extractor.extract
    frames = np.zeros((1, 2, 32, 32, 3), np.uint8)
    assert extract(frames).shape == (1, 2, model.num_features)  # PyTorch does the work instead
    output = console.export_text()
    assert output.count("ONNX Runtime cannot extract the frame features") == 1
    assert "no exporter here" in output and "slower" in output
