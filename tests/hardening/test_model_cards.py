"""Model cards from a stranger, third attack: a card nested deep, a card of megabytes, a NaN in its
unknown rule, a clip of a billion frames. Each is refused as damaged (a ModelFileError naming the
file), never a traceback, a huge allocation or a rule that flags nothing. Each test failed before
its fix."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from actionrec.errors import ModelFileError
from actionrec.modelfile.card import ModelCard, read_card

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch", reason="making test models needs the train extra (torch)")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("cards") / "model.onnx")


def hostile(model_file: Path, out: Path, *, card: dict[str, Any] | None = None, raw_card: str | None = None) -> Path:
    """`model_file` with fields of its card changed (`card`) or its metadata replaced (`raw_card`)."""
    model = onnx.load(str(model_file))
    entry = next(p for p in model.metadata_props if p.key == "actionrec")
    entry.value = raw_card if raw_card is not None else json.dumps(json.loads(entry.value) | (card or {}))
    onnx.save(model, str(out))
    return out


def card_data(**changes: object) -> dict:
    return {"format": 2, "name": "m", "version": "1", "labels": ["a", "b"], "num_frames": 4, "image_size": 32,
            "sampling_version": 1, "num_features": 8} | changes


@pytest.mark.parametrize("changes", [{"num_frames": 100_000}, {"num_frames": 10**9}, {"image_size": 10**6},
                                     {"num_frames": 128, "image_size": 1024}, {"num_frames": 16, "image_size": 1024}])
def test_clips_past_sane_bounds_are_refused_by_the_card_check(changes: dict):
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"big.onnx: the 'actionrec' metadata is damaged .*(at most|between)"):
        ModelCard.from_dict(card_data(**changes), "big.onnx")
    assert time.perf_counter() - started < 0.1


def test_a_deeply_nested_card_is_damage_not_a_recursion_error(model_file: Path, tmp_path: Path):
    nested = '{"a": ' * 200_000 + "1" + "}" * 200_000
    with pytest.raises(ModelFileError, match=r"odd.onnx: the 'actionrec' metadata is damaged \(nested too deep"):
        ModelCard.from_json(nested, "odd.onnx")
    path = hostile(model_file, tmp_path / "deep.onnx", raw_card="[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelFileError, match="deep.onnx"):
        read_card(path)
    (tmp_path / "clip.mp4").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "predict", str(path), str(tmp_path / "clip.mp4")],
                            capture_output=True, text=True)
    assert result.returncode == 3 and "Traceback" not in result.stderr and "deep.onnx" in result.stderr


def test_a_card_json_can_read_but_too_deep_to_copy_or_show_is_damage():
    """700 levels: json.loads reads it, copying it (dataclasses.asdict for GET /v1/model) would not."""
    data = card_data(model=json.loads('{"a": ' * 700 + "1" + "}" * 700))
    with pytest.raises(ModelFileError, match=r"odd.onnx: the 'actionrec' metadata is damaged \(nested more than 32"):
        ModelCard.from_json(json.dumps(data), "odd.onnx")
    assert ModelCard.from_json(json.dumps(card_data(model={"a": {"b": {"c": 1}}})), "fine.onnx").model


def test_a_card_past_its_size_limit_is_refused(model_file: Path, tmp_path: Path):
    from actionrec.modelfile.card import MAX_CARD_BYTES

    padding = {"notes": "x" * MAX_CARD_BYTES}
    with pytest.raises(ModelFileError, match=r"huge.onnx: .*metadata is damaged \(.*MB.*at most"):
        read_card(hostile(model_file, tmp_path / "huge.onnx", card=padding))


def test_what_a_model_says_of_itself_stays_small(model_file: Path, tmp_path: Path):
    """Everything but the class means is shown by a keyless GET /v1/model: 300 KB of it is refused."""
    from actionrec.modelfile.card import MAX_SHOWN_CARD_BYTES

    big = {"model": {"notes": "x" * 300_000}}
    with pytest.raises(ModelFileError, match=rf"wordy.onnx: .*{MAX_SHOWN_CARD_BYTES // 1024} KB"):
        read_card(hostile(model_file, tmp_path / "wordy.onnx", card=big))
    shown_rule = {"unknown": {"score": "max_probability", "threshold": 0.5, "calibrated_on": "x" * 300_000}}
    with pytest.raises(ModelFileError, match=rf"chatty.onnx: .*{MAX_SHOWN_CARD_BYTES // 1024} KB"):
        read_card(hostile(model_file, tmp_path / "chatty.onnx", card=shown_rule))


def test_a_real_sized_card_with_class_means_is_read():
    """A 101-class card with 1280-feature class means, as a UCF101 export writes, fits the limit."""
    import numpy as np

    from actionrec.modelfile.card import MAX_CARD_BYTES
    from actionrec.modelfile.unknown import calibrate
    means = np.random.default_rng(0).standard_normal((101, 1280)).astype(np.float32)
    rule = calibrate(means, [(np.ones(101) / 101, means[:4])], "validation clips").to_dict()
    data = card_data(labels=[f"Action{i:03d}" for i in range(101)], num_features=1280, unknown=rule)
    raw = json.dumps(data)
    assert len(raw) < MAX_CARD_BYTES // 2
    assert ModelCard.from_json(raw, "ucf.onnx").unknown_rule is not None


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), float("-inf")])
def test_an_unknown_rule_with_a_number_that_is_not_finite_is_refused(threshold: float):
    raw = json.dumps(card_data(unknown={"score": "max_probability", "threshold": threshold}))
    with pytest.raises(ModelFileError, match=r"odd.onnx: .*'unknown': .*finite"):
        ModelCard.from_json(raw, "odd.onnx")


