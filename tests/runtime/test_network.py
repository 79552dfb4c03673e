"""The model file in two halves (actionrec.runtime.network): each its own session, together the whole graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from actionrec.errors import ModelFileError
from actionrec.modelfile.card import FEATURES_INPUT, INPUT_NAME, OUTPUT_NAME, read_card
from actionrec.runtime.network import load_network


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("network") / "model.onnx", num_frames=4, image_size=96)


def test_the_halves_are_separate_sessions_that_answer_as_the_whole_graph(model_file: Path):
    network = load_network(model_file)
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

    code = (f"import sys; from actionrec.runtime.network import load_network; load_network({str(model_file)!r}); "
            "assert 'onnx' not in sys.modules, 'onnx imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_truncated_model_file_says_what_to_do(model_file: Path, tmp_path: Path):
    cut_short = tmp_path / "cut.onnx"
    cut_short.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="cut.onnx.*actionrec export"):
        load_network(cut_short)


def test_runs_that_share_the_cores_take_the_narrow_session_and_answer_alike(model_file: Path, monkeypatch):
    import actionrec.runtime.network as network_module

    monkeypatch.setattr(network_module, "usable_physical_cores", lambda: 2)
    monkeypatch.setattr(network_module, "encoder_threads_alongside_decoder", lambda: 1)
    encoder = load_network(model_file).encoder
    frames = np.random.default_rng(1).integers(0, 256, (4, 96, 96, 3), dtype=np.uint8)
    alone = encoder(frames)
    assert encoder._narrow is None  # a run alone takes every core, and makes no second session
    shared = encoder(frames, alongside_decoding=True)
    assert encoder._narrow is not None and encoder._narrow is not encoder.session
    np.testing.assert_allclose(shared, alone, atol=1e-5)
    encoder.release_memory()
    np.testing.assert_allclose(encoder(frames, alongside_decoding=True), alone, atol=1e-5)


def test_concurrent_runs_go_to_the_narrow_session(model_file: Path, monkeypatch):
    import threading
    import time

    import actionrec.runtime.network as network_module

    monkeypatch.setattr(network_module, "usable_physical_cores", lambda: 2)
    monkeypatch.setattr(network_module, "encoder_threads_alongside_decoder", lambda: 1)
    encoder = load_network(model_file).encoder
    used = []
    inside = threading.Barrier(2)

    class Recording:
        def __init__(self, session, name):
            self.session, self.name = session, name

        def run(self, *args):
            used.append(self.name)
            if self.name == "wide":
                inside.wait(timeout=10)  # the second run starts while this one is under way
            return self.session.run(*args)

    encoder.session = Recording(encoder.session, "wide")
    make = encoder._make_narrow
    encoder._make_narrow = lambda: Recording(make(), "narrow")
    frames = np.zeros((2, 96, 96, 3), np.uint8)
    first = threading.Thread(target=encoder, args=(frames,))
    first.start()
    deadline = time.monotonic() + 10
    while not used and time.monotonic() < deadline:
        time.sleep(0.001)
    second = threading.Thread(target=lambda: (encoder(frames), inside.wait(timeout=10)))
    second.start()
    first.join(10)
    second.join(10)
    assert used == ["wide", "narrow"]


def test_a_narrow_session_that_cannot_be_made_leaves_the_full_one_answering(model_file: Path, monkeypatch):
    import actionrec.runtime.network as network_module

    monkeypatch.setattr(network_module, "usable_physical_cores", lambda: 2)
    monkeypatch.setattr(network_module, "encoder_threads_alongside_decoder", lambda: 1)
    encoder = load_network(model_file).encoder
    attempts = []

    def failing() -> None:
        attempts.append(1)
        raise MemoryError("no memory for a second session")

    encoder._make_narrow = failing
    frames = np.zeros((2, 96, 96, 3), np.uint8)
    alone = encoder(frames)
    for _ in range(2):
        np.testing.assert_allclose(encoder(frames, alongside_decoding=True), alone, atol=1e-5)
    assert attempts == [1] and encoder._narrow is None  # tried once, then the full session throughout


def test_threads_given_or_one_core_make_no_narrow_session(model_file: Path, monkeypatch):
    import actionrec.runtime.network as network_module

    assert load_network(model_file, threads=2).encoder._make_narrow is None  # the user's count, always
    monkeypatch.setattr(network_module, "usable_physical_cores", lambda: 1)
    monkeypatch.setattr(network_module, "encoder_threads_alongside_decoder", lambda: 1)
    assert load_network(model_file).encoder._make_narrow is None
