"""The command line itself: the conventions it keeps (--version, choices, completion, flags that take
no value), and what a base install without the optional extras does and says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actionrec.testing.extras import BLOCKED_LINE, BLOCKER
from actionrec.testing.processes import run_cli

pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
LABELS = ["grow", "shrink", "brighten", "darken"]


@pytest.fixture(scope="module")
def model_path(untrained_model: Path) -> Path:
    return untrained_model


def test_version_choices_and_completion():
    from actionrec import __version__

    assert run_cli("--version").stdout.strip() == f"actionrec {__version__}"
    wrong = run_cli("train", "data", "--out", "run", "--dataset", "ucf", "--temporal", "lstm")
    assert wrong.returncode == 2 and "ucf101" in wrong.stderr
    help_text = run_cli("train", "--help").stdout
    assert "folder|ucf101" in help_text.replace(" ", "") and "lstm|mean" in help_text.replace(" ", "")
    assert "--install-completion" in run_cli("--help").stdout
    predict_help = run_cli("predict", "--help", env=os.environ | {"COLUMNS": "160"}).stdout
    assert "--json" in predict_help and "<bool>" not in predict_help  # flags take no value
    assert "<int" in predict_help  # options that take one say so


def _registered(app, prefix: str = "") -> dict[str, str]:
    """Each command the Typer app answers to (subcommands as "GROUP NAME"), with its module's file."""
    commands = {prefix + (info.name or info.callback.__name__.replace("_", "-")):
                info.callback.__module__.rsplit(".", 1)[-1] + ".py" for info in app.registered_commands}
    for group in app.registered_groups:
        commands |= _registered(group.typer_instance, f"{prefix}{group.name} ")
    return commands


def test_the_command_table_names_every_command_and_its_module():
    import actionrec.cli

    table = {}
    for line in actionrec.cli.__doc__.splitlines():
        module, _, names = line.strip().partition(" ")
        if module.endswith(".py"):
            table |= {name.strip(): module for name in names.split(",")}
    assert table == _registered(actionrec.cli.app)

# --------------------------------------------------------------------------- without the extras


@pytest.mark.server
def test_the_base_install_predicts_and_says_which_extra_serving_needs(model_path: Path, videos: Path,
                                                                      tmp_path: Path):
    """Without the serve and train extras: predict works, serve names the extra to install."""
    script = tmp_path / "without_extras.py"
    script.write_text(BLOCKER)
    clip = next((videos / "clips" / "brighten").glob("*.mp4"))
    predicted = subprocess.run([sys.executable, str(script), "predict", str(model_path), str(clip), "--json"],
                               capture_output=True, text=True, timeout=120)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["action"] in LABELS
    served = subprocess.run([sys.executable, str(script), "serve", str(model_path)], capture_output=True, text=True,
                            timeout=60)
    assert served.returncode == 1 and "pip install 'actionrec[serve]'" in " ".join(served.stderr.split())
    trained = subprocess.run([sys.executable, str(script), "train", "data", "--out", "run"], capture_output=True,
                             text=True, timeout=60)
    assert trained.returncode == 1 and "actionrec[train]" in " ".join(trained.stderr.split())


def test_ray_without_what_ray_data_needs_names_the_extra(model_path: Path, videos: Path, tmp_path: Path):
    """`pip install ray` alone lacks pandas: --ray says which extra to install, not a traceback."""
    script = tmp_path / "without_pandas.py"
    script.write_text(BLOCKER.replace(BLOCKED_LINE, 'BLOCKED = {"pandas"}'))
    clip = next((videos / "clips" / "brighten").glob("*.mp4"))
    result = subprocess.run([sys.executable, str(script), "predict", str(model_path), str(clip), "--ray"],
                            capture_output=True, text=True, timeout=120)
    said = " ".join(result.stderr.split())
    assert result.returncode == 3 and "Traceback" not in said, result.stderr
    assert "pandas is missing" in said and "pip install 'actionrec[ray]'" in said
