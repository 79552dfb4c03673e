"""The model card (actionrec.modelfile.card): read from a file's metadata alone, and checked at load."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from actionrec.errors import ModelFileError
from actionrec.modelfile.card import read_card


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("card") / "model.onnx")


def test_the_card_is_read_from_the_metadata_without_onnx_runtime(model_file: Path):
    import subprocess

    code = (f"import sys; from actionrec.modelfile.card import read_card; card = read_card({str(model_file)!r}); "
            "assert card.labels == ['grow', 'shrink', 'brighten', 'darken'], card.labels; "
            "assert not {'onnx', 'onnxruntime'} & set(sys.modules), 'onnx or onnxruntime imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_damaged_or_missing_file_says_which_and_what_to_do(model_file: Path, tmp_path: Path):
    whole = model_file.read_bytes()
    for name, data in (("garbage", b"not a model at all"), ("truncated", whole[: len(whole) // 2])):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(data)
        with pytest.raises(ModelFileError, match=rf"{name}.onnx: this is not an ONNX model file .*actionrec export"):
            read_card(path)
    with pytest.raises(ModelFileError, match="missing.onnx: no such model file"):
        read_card(tmp_path / "missing.onnx")


def card_data(**changes: object) -> dict:
    data = {"format": 2, "name": "m", "version": "1", "labels": ["a", "b"], "num_frames": 4, "image_size": 32,
            "sampling_version": 1, "num_features": 8}
    return {key: value for key, value in (data | changes).items() if value is not None}


def test_the_card_records_the_sampling_version_and_a_file_without_one_reads_as_version_1():
    from actionrec.modelfile.card import ModelCard
    from actionrec.video.spec import SAMPLING_VERSION

    assert SAMPLING_VERSION == 1
    card = ModelCard.from_dict(card_data(), "model.onnx")
    assert card.sampling_version == 1 and card.to_dict()["sampling_version"] == 1
    assert ModelCard.from_json(card.to_json(), "model.onnx") == card
    assert ModelCard.from_dict(card_data(sampling_version=None), "old.onnx").sampling_version == 1


def test_a_file_sampled_by_another_rule_is_refused_saying_what_to_do():
    from actionrec.modelfile.card import ModelCard

    newer = r"new.onnx: .*sampling rule version 2.*implements version 1.*upgrade actionrec"
    with pytest.raises(ModelFileError, match=newer):
        ModelCard.from_dict(card_data(sampling_version=2), "new.onnx")
    with pytest.raises(ModelFileError, match=r"old.onnx: .*version 0.*train it again and re-export"):
        ModelCard.from_dict(card_data(sampling_version=0), "old.onnx")
    with pytest.raises(ModelFileError, match=r"'sampling_version' must be a whole number"):
        ModelCard.from_dict(card_data(sampling_version="1"), "odd.onnx")


def test_a_file_from_before_the_two_halves_is_refused_saying_what_to_do():
    from actionrec.modelfile.card import ModelCard

    for data in (card_data(format=1), card_data(format=None)):  # format 1, or written before the format was
        with pytest.raises(ModelFileError, match=r"old.onnx was exported by an older actionrec .*"
                                                 r"`actionrec export RUN_DIR` or re-teach it"):
            ModelCard.from_dict(data, "old.onnx")


def test_a_file_from_a_newer_actionrec_is_refused_saying_to_upgrade():
    from actionrec.modelfile.card import CARD_FORMAT, ModelCard

    with pytest.raises(ModelFileError, match=rf"new.onnx was written by a newer actionrec \(card format "
                                             rf"{CARD_FORMAT + 1}.*upgrade actionrec"):
        ModelCard.from_dict(card_data(format=CARD_FORMAT + 1), "new.onnx")


@pytest.mark.parametrize("normalization", [{"mean": 5}, {"std": ["a", "b", "c"]}, {"mean": [1, 2]},
                                           {"scale": None}, {"in_graph": "yes"}])
def test_a_damaged_normalization_is_named_not_a_traceback(normalization: dict):
    from actionrec.modelfile.card import ModelCard

    with pytest.raises(ModelFileError, match=r"odd.onnx: .*'normalization' must give three means"):
        ModelCard.from_dict(card_data(normalization=normalization), "odd.onnx")


def test_a_card_without_its_features_count_is_damaged():
    from actionrec.modelfile.card import ModelCard

    assert ModelCard.from_dict(card_data(), "model.onnx").num_features == 8
    for features in (None, 0, -3, 2.5, True, "8"):
        with pytest.raises(ModelFileError, match=r"odd.onnx: the 'actionrec' metadata is damaged \('num_features'.*"
                                                 "positive whole number") as refused:
            ModelCard.from_dict(card_data(num_features=features), "odd.onnx")
        assert "actionrec export RUN_DIR" in str(refused.value)


def test_damaged_protobuf_is_refused_at_once_whatever_its_size(tmp_path: Path):
    """A run of continuation bytes is not a number: refused after ten bytes, not read quadratically."""
    for name, data, why in (("endless", b"\xff" * 2_000_000, "a varint longer than 10 bytes"),
                            ("empty", b"", "no graph")):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(data)
        with pytest.raises(ModelFileError, match=rf"{name}.onnx: this is not an ONNX model file \({why}\)"):
            read_card(path)


def test_a_card_no_reader_would_take_is_never_written(model_file: Path):
    from dataclasses import replace

    import onnx

    from actionrec.modelfile.card import card_of_proto, write_card

    model = onnx.load(str(model_file))
    card = card_of_proto(model, str(model_file))
    for too_much in (replace(card, labels=[f"action {i} " + "x" * 100 for i in range(1000)]),  # 100 KB shown
                     replace(card, num_frames=200)):
        with pytest.raises(ModelFileError, match="past what actionrec reads .*so it is not written"):
            write_card(model, too_much)
        assert card_of_proto(model, "kept") == card  # the model keeps the card it had
    write_card(model, replace(card, name="renamed"))
    assert card_of_proto(model, "written").name == "renamed"
