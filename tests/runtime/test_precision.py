"""Which copy of a model runs (actionrec.runtime.precision): the int8 copy where the CPU pays for it, and
the commands say which they picked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from actionrec.errors import ModelFileError
from actionrec.runtime.precision import MAX_LOSS, choose_model_file, int8_copy_of, keeps_copy, loss_bound
from actionrec.testing.processes import run_cli


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path / "model.onnx", num_frames=4, image_size=32)


def with_copy(model: Path, agreement: float | None = None, clips: int = 200, lost: int | None = None) -> Path:
    """An int8 "copy" of `model` (the same graph) whose card says how it compared on `clips` clips;
    without `lost`, as export wrote it before it counted lost clips."""
    from actionrec.modelfile.card import update_card

    copy = int8_copy_of(model)
    shutil.copy(model, copy)
    quantization = {"method": "for the test"} | ({} if agreement is None else {"agreement_with_fp32": agreement,
                                                                              "compared_on_clips": clips})
    if lost is not None:
        quantization["clips_lost"] = lost
    update_card(copy, precision="int8", quantization=quantization)
    return copy


def test_without_a_copy_the_model_runs_as_given(model: Path):
    choice = choose_model_file(model, int8_pays=True)
    assert choice.path == model and choice.precision == "fp32" and "no int8 copy" in choice.why
    with pytest.raises(ModelFileError, match="no int8 copy.*--precision fp32"):
        choose_model_file(model, "int8")


def test_the_copy_runs_where_the_cpu_pays_for_it(model: Path):
    copy = with_copy(model, agreement=0.995)
    assert choose_model_file(model, int8_pays=True).path == copy
    slower = choose_model_file(model, int8_pays=False)
    assert slower.path == model and "no VNNI or AMX" in slower.why
    assert choose_model_file(model, "fp32", int8_pays=True).path == model
    assert choose_model_file(model, "int8", int8_pays=False).path == copy
    assert choose_model_file(copy, "fp32").path == copy  # an int8 file given runs as given


def test_a_copy_that_disagrees_is_not_picked(model: Path):
    with_copy(model, agreement=0.9)
    choice = choose_model_file(model, int8_pays=True)
    assert choice.path == model and "wrong 20 of the 200" in choice.why


@pytest.mark.parametrize(("lost", "clips", "bound"), [(0, 48, 0.0468), (1, 48, 0.0786), (0, 72, 0.0315),
                                                      (2, 128, 0.0410), (18, 500, 0.0492), (0, 1, 0.9)])
def test_the_loss_bound_is_clopper_pearsons_one_sided_90_percent_bound(lost: int, clips: int, bound: float):
    assert loss_bound(lost, clips) == pytest.approx(bound, abs=5e-4)
    assert loss_bound(0, 48) == pytest.approx(1 - 0.1 ** (1 / 48))  # none lost: the closed form
    assert loss_bound(clips, clips) == 1.0


def test_the_keep_rule_judges_few_clips_by_what_they_can_show():
    # 48 clips without a loss show it under 5% (with 90% confidence); one of 48 does not, one of 128 does
    assert keeps_copy(0, 48) and not keeps_copy(1, 48) and keeps_copy(1, 128) and keeps_copy(2, 128, gained=1)
    assert not keeps_copy(0, 20)  # too few clips to show anything
    # many clips: the bound lets 18 of 500 pass; the top-1 may drop by 1 point at most
    assert keeps_copy(18, 500, gained=13) and not keeps_copy(18, 500, gained=12) and not keeps_copy(19, 500, 19)
    assert not keeps_copy(2, 128) and keeps_copy(5, 500)
    assert not keeps_copy(0, 0) and MAX_LOSS == 0.05
    with pytest.raises(ValueError):
        loss_bound(3, 2)


def test_auto_applies_the_keep_rule_to_the_copys_card(model: Path):
    with_copy(model, agreement=46 / 48, clips=48, lost=1)  # one clip lost of 48: too few clips to be sure
    assert "wrong 1 of the 48" in choose_model_file(model, int8_pays=True).why
    copy = with_copy(model, agreement=46 / 48, clips=48, lost=0)  # both disagreements on clips fp32 got wrong
    assert choose_model_file(model, int8_pays=True).path == copy
    with_copy(model, agreement=47 / 48, clips=48)  # written before lost clips were counted: the disagreement counts
    assert "wrong 1 of the 48" in choose_model_file(model, int8_pays=True).why
    copy = with_copy(model, agreement=127 / 128, clips=128)
    assert choose_model_file(model, int8_pays=True).path == copy


def test_auto_picks_only_a_measured_copy_of_this_very_export_and_never_on_a_gpu(model: Path):
    from actionrec.modelfile.card import update_card

    copy = with_copy(model)  # no agreement measured (written before export measured it)
    assert "does not say how often" in choose_model_file(model, int8_pays=True).why
    update_card(copy, quantization={"agreement_with_fp32": 1.0})  # on how many clips, not said
    assert "does not say how often" in choose_model_file(model, int8_pays=True).why
    update_card(copy, quantization={"agreement_with_fp32": 1.0, "compared_on_clips": 64})
    assert choose_model_file(model, int8_pays=True).path == copy
    assert "GPU" in choose_model_file(model, int8_pays=True, on_gpu=True).why
    update_card(model, exported_at="2030-01-01T00:00:00")  # the model exported again: the copy is stale
    stale = choose_model_file(model, int8_pays=True)
    assert stale.path == model and "another export" in stale.why


@pytest.mark.parametrize("spoil", ["garbage", "format 1", "sampling"])
def test_auto_runs_the_float_model_where_the_copy_cannot_be_read(model: Path, spoil: str):
    from actionrec.modelfile.card import update_card

    copy = with_copy(model, agreement=1.0)
    if spoil == "garbage":
        copy.write_bytes(b"not a model")
    else:
        update_card(copy, **({"format": 1} if spoil == "format 1" else {"sampling_version": 99}))
    with pytest.raises(ModelFileError) as refused:
        choose_model_file(model, "int8")  # asked for explicitly: the copy's error
    choice = choose_model_file(model, "auto", int8_pays=True)
    assert choice.path == model and choice.precision == "fp32" and choice.card.precision == "fp32"
    assert choice.why == f"its int8 copy cannot be run ({refused.value})"


def test_choosing_reads_cards_without_sessions_and_the_load_opens_one_per_half(model: Path, monkeypatch):
    import onnxruntime as ort

    from actionrec.modelfile.card import ModelCard
    from actionrec.runtime.recognizer import Recognizer

    copy = with_copy(model, agreement=1.0)
    made: list[object] = []
    real = ort.InferenceSession
    cards_read: list[str] = []
    read = ModelCard.from_json.__func__  # type: ignore[attr-defined]

    def counted(*args, **kwargs):
        made.append(args[0])
        return real(*args, **kwargs)

    def counted_read(cls, raw, source):
        cards_read.append(Path(source).name)
        return read(cls, raw, source)

    monkeypatch.setattr(ort, "InferenceSession", counted)
    monkeypatch.setattr(ModelCard, "from_json", classmethod(counted_read))
    choice = choose_model_file(model, "auto", int8_pays=True)
    assert choice.path == copy and made == []  # both cards read from the files' metadata alone
    assert sorted(cards_read) == ["model.int8.onnx", "model.onnx"] and choice.card.precision == "int8"
    recognizer = Recognizer(choice.path, threads=1, card=choice.card)
    assert len(made) == 2 and all(isinstance(graph, bytes) for graph in made)  # the encoder's, the head's
    assert len(cards_read) == 2 and recognizer.card is choice.card  # each file's card read once
    assert Recognizer(model, threads=1).card.precision == "fp32"  # given no card, it reads the file's
    assert cards_read[2:] == ["model.onnx"]


def test_auto_runs_the_float_model_where_the_copy_reads_but_does_not_load(model: Path):
    """A copy whose card reads but whose graph ONNX Runtime refuses: auto loads the float model instead."""
    import onnx

    from actionrec.runtime.precision import load_chosen
    from actionrec.runtime.recognizer import Recognizer

    copy = with_copy(model, agreement=1.0)
    graph = onnx.load(copy)
    graph.graph.node[0].op_type = "NoSuchOperator"
    onnx.save(graph, copy)
    choice = choose_model_file(model, "auto", int8_pays=True)
    assert choice.path == copy  # its card reads, so it is chosen
    recognizer, loaded = load_chosen(choice, lambda chosen: Recognizer(chosen.path, card=chosen.card))
    assert recognizer.model_path == model and loaded.path == model and loaded.precision == "fp32"
    assert loaded.why.startswith("its int8 copy cannot be run (") and "model.int8.onnx" in loaded.why
    with pytest.raises(ModelFileError, match="model.int8.onnx"):  # asked for explicitly: the copy's error
        load_chosen(choose_model_file(model, "int8"), lambda chosen: Recognizer(chosen.path, card=chosen.card))


def test_predict_says_which_copy_it_ran(model: Path, tmp_path: Path):
    from actionrec.testing.media import action_clip

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(action_clip())
    with_copy(model)
    result = run_cli("predict", model, clip, "--precision", "int8")
    assert result.returncode == 0, result.stderr
    assert "running model.int8.onnx (int8): asked for" in " ".join(result.stderr.split())
    quiet = run_cli("predict", model, clip, "--precision", "fp32", "--json")
    assert quiet.returncode == 0 and "running model.onnx (fp32)" in " ".join(quiet.stderr.split())
    int8_copy_of(model).write_bytes(b"damaged")
    fallen_back = run_cli("predict", model, clip, "--json")
    assert fallen_back.returncode == 0, fallen_back.stderr
    assert "running model.onnx (fp32): its int8 copy cannot be run" in " ".join(fallen_back.stderr.split())
    refused = run_cli("predict", model, clip, "--precision", "int8")
    assert refused.returncode == 3 and "not an ONNX model file" in " ".join(refused.stderr.split())


def test_the_server_serves_the_copy_it_picked(model: Path):
    from fastapi.testclient import TestClient

    from actionrec.serve.app import create_app
    from actionrec.serve.settings import ServerSettings

    with_copy(model)
    settings = ServerSettings(model_path=model, workers=1, precision="int8", allowed_hosts=["testserver"],
                              data_dir=model.parent / "data")
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["precision"] == "int8"
    assert app.state.teaching.base_path == model  # taught models start from the float model


def test_the_server_serves_the_float_model_where_the_copy_cannot_be_read(model: Path, caplog):
    from fastapi.testclient import TestClient

    from actionrec.serve.app import create_app
    from actionrec.serve.settings import ServerSettings

    with_copy(model).write_bytes(b"damaged")
    settings = ServerSettings(model_path=model, workers=1, allowed_hosts=["testserver"], data_dir=model.parent / "data")
    with caplog.at_level("INFO", logger="actionrec.server"):
        app = create_app(settings)
    assert "running model.onnx (fp32): its int8 copy cannot be run" in caplog.text
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["precision"] == "fp32"


def test_the_comparison_counts_the_clips_the_copy_loses_and_gains():
    from types import SimpleNamespace

    import numpy as np

    from actionrec.evaluation.model_files import Clips, evaluate_files

    labels = ["a", "b"]
    targets = np.array([0, 0, 1, 1, 0])

    def answering(*answers: int) -> SimpleNamespace:
        probs = np.eye(2, dtype=np.float32)[list(answers)]
        return SimpleNamespace(labels=labels, model_path=Path("m.onnx"), classify=lambda frames: probs[: len(frames)])

    clips = Clips([], [np.zeros((1, 2, 2, 3), np.uint8)] * 5, targets, labels, {})
    fp32, int8 = answering(0, 0, 1, 0, 1), answering(0, 1, 1, 1, 0)  # fp32 right on 0-2; int8 on 0, 2, 3, 4
    compared = evaluate_files([fp32, int8], clips)["models"][1]
    assert compared["agreement_with_first"] == pytest.approx(2 / 5)
    assert compared["lost_vs_first"] == 1 and compared["gained_vs_first"] == 2
