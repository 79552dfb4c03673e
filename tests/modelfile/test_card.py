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
