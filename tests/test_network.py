"""The model file in two halves (actionrec.network): each its own session, together the whole graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from actionrec.card import FEATURES_INPUT, INPUT_NAME, OUTPUT_NAME
from actionrec.errors import ModelFileError
from actionrec.network import load_network, read_card


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("network") / "model.onnx", num_frames=4, image_size=96)


def test_the_halves_are_separate_sessions_that_answer_as_the_whole_graph(model_file: Path):
    network = load_network(model_file)
    assert network.encoder.gives_features and network.head.reads_features
    assert [i.name for i in network.encoder.session.get_inputs()] == [INPUT_NAME]
    assert [i.name for i in network.head.session.get_inputs()] == [FEATURES_INPUT]  # no frames fed beside it
    whole = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    clips = np.random.default_rng(0).integers(0, 256, (3, 4, 96, 96, 3), dtype=np.uint8)
    expected = whole.run([OUTPUT_NAME], {INPUT_NAME: clips})[0]
    features = np.stack([network.encoder(clip) for clip in clips])
    assert features.shape == (3, 4, network.card.num_features)
    np.testing.assert_allclose(network.head(features), expected, atol=1e-5)
    np.testing.assert_allclose(network.classify(clips), expected, atol=1e-5)
    network.release_memory()  # and still answers after
    np.testing.assert_allclose(network.head(features), expected, atol=1e-5)


def test_the_card_comes_with_the_halves(model_file: Path):
    assert load_network(model_file).card == read_card(model_file)


def test_a_file_that_is_not_a_model_says_so(tmp_path: Path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="broken.onnx"):
        load_network(broken)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_network(tmp_path / "missing.onnx")


def test_loading_needs_no_onnx_package(model_file: Path):
    """The onnx package costs a process about 0.9 s to import: the halves are cut without it."""
    import subprocess
    import sys

    code = (f"import sys; from actionrec.network import load_network; load_network({str(model_file)!r}); "
            "assert 'onnx' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_truncated_model_file_says_what_to_do(model_file: Path, tmp_path: Path):
    cut_short = tmp_path / "cut.onnx"
    cut_short.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="cut.onnx.*actionrec export"):
        load_network(cut_short)
