"""Model files are input from a stranger (from the Hub, switched on a running server, a teaching
base): what the third attack found. A card that disagrees with its graph, a card that is deep, huge
or holds NaN, external data anywhere in the graph, and a bad teaching base are each refused with a
ModelFileError (a JSON answer on the server), never a traceback or a 500. Each test failed before
its fix."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actionrec.errors import ModelFileError
from actionrec.modelfile.graph_split import _encode_varint
from actionrec.runtime.network import load_network

onnx = pytest.importorskip("onnx")
pytest.importorskip("torch", reason="making test models needs the train extra (torch)")
from fastapi.testclient import TestClient  # noqa: E402

from actionrec.serve.app import create_app  # noqa: E402
from actionrec.serve.schemas import for_clients  # noqa: E402
from actionrec.serve.settings import ServerSettings  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from actionrec.testing import make_untrained_model

    return make_untrained_model(tmp_path_factory.mktemp("hostile") / "model.onnx")  # 4 labels, 4 frames, 32 px


def hostile(model_file: Path, out: Path, *, card: dict[str, Any] | None = None, raw_card: str | None = None,
            edit: Callable[[Any], None] | None = None) -> Path:
    """`model_file` with its card changed (`card`: fields to change, None removes one; `raw_card`: the
    metadata as given) and its graph changed by `edit` (an onnx ModelProto, in place)."""
    model = onnx.load(str(model_file))
    entry = next(p for p in model.metadata_props if p.key == "actionrec")
    if card is not None:
        data = json.loads(entry.value) | card
        entry.value = json.dumps({key: value for key, value in data.items() if value is not None})
    if raw_card is not None:
        entry.value = raw_card
    if edit is not None:
        edit(model)
    onnx.save(model, str(out))
    return out


def card_data(**changes: object) -> dict:
    return {"format": 2, "name": "m", "version": "1", "labels": ["a", "b"], "num_frames": 4, "image_size": 32,
            "sampling_version": 1, "num_features": 8} | changes


# -- finding 5: the card is checked against the graph ------------------------------------------


@pytest.mark.parametrize("labels", [["a", "b", "c"], ["a", "b", "c", "d", "e"]])
def test_labels_unlike_the_graphs_outputs_are_refused(model_file: Path, tmp_path: Path, labels: list[str]):
    path = hostile(model_file, tmp_path / "labels.onnx", card={"labels": labels, "unknown": None})
    with pytest.raises(ModelFileError, match=rf"labels.onnx: .*{len(labels)} labels.* 4 classes"):
        load_network(path)


def test_num_frames_unlike_the_graph_is_refused(model_file: Path, tmp_path: Path):
    path = hostile(model_file, tmp_path / "frames.onnx", card={"num_frames": 8})
    with pytest.raises(ModelFileError, match=r"frames.onnx: .*8 frames.*4"):
        load_network(path)


def test_features_unlike_the_graph_are_refused(model_file: Path, tmp_path: Path):
    path = hostile(model_file, tmp_path / "features.onnx", card={"num_features": 7, "unknown": None})
    with pytest.raises(ModelFileError, match=r"features.onnx: .*7 features"):
        load_network(path)


# -- finding 7: no model file may read files ---------------------------------------------------


def _external(tensor: Any) -> None:
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "secret.bin"


def _constant_node(model: Any) -> None:
    tensor = onnx.helper.make_tensor("leak", onnx.TensorProto.FLOAT, [4], [0.0] * 4)
    _external(tensor)
    model.graph.node.append(onnx.helper.make_node("Constant", [], ["leaked"], value=tensor))


def _sparse_initializer(model: Any) -> None:
    values = onnx.helper.make_tensor("sparse_values", onnx.TensorProto.FLOAT, [1], [1.0])
    _external(values)
    indices = onnx.helper.make_tensor("sparse_indices", onnx.TensorProto.INT64, [1], [0])
    model.graph.sparse_initializer.append(onnx.helper.make_sparse_tensor(values, indices, [4]))


def _subgraph(model: Any) -> None:
    tensor = onnx.helper.make_tensor("inner", onnx.TensorProto.FLOAT, [1], [0.0])
    _external(tensor)
    branch = onnx.helper.make_graph([onnx.helper.make_node("Constant", [], ["y"], value=tensor)], "branch", [],
                                    [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model.graph.node.append(onnx.helper.make_node("If", ["condition"], ["chosen"], then_branch=branch,
                                                  else_branch=branch))


def _initializer(model: Any) -> None:
    _external(next(t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT))


@pytest.mark.parametrize("edit", [_constant_node, _sparse_initializer, _subgraph, _initializer])
def test_a_model_file_that_would_read_another_file_is_refused(model_file: Path, tmp_path: Path, edit, monkeypatch):
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 64)
    monkeypatch.chdir(tmp_path)  # where ONNX Runtime would look for it
    path = hostile(model_file, tmp_path / "reads.onnx", edit=edit)
    with pytest.raises(ModelFileError, match=r"reads.onnx: .*reads another file \(external data\)"):
        load_network(path)


# -- finding 4: graphs that do not load are ModelFileErrors -------------------------------------


def _no_frames_input(model: Any) -> None:
    frames = next(i for i in model.graph.input if i.name == "frames")
    frames.name = "pixels"
    for node in model.graph.node:
        node.input[:] = ["pixels" if name == "frames" else name for name in node.input]


@pytest.mark.parametrize("edit", [_no_frames_input])
def test_a_graph_that_does_not_fit_is_a_model_file_error(model_file: Path, tmp_path: Path, edit):
    with pytest.raises(ModelFileError, match=r"odd.onnx: "):
        load_network(hostile(model_file, tmp_path / "odd.onnx", edit=edit))


def test_a_name_that_is_not_utf8_is_a_model_file_error(model_file: Path, tmp_path: Path):
    model = onnx.load(str(model_file))
    tensor = model.graph.node[0].output[0]
    for node in model.graph.node:
        node.name = "NODENAME"
        node.output[:] = ["TENSORNAME" if name == tensor else name for name in node.output]
        node.input[:] = ["TENSORNAME" if name == tensor else name for name in node.input]
    data = model.SerializeToString().replace(b"NAME", b"N\xff\xfeE")
    (tmp_path / "odd.onnx").write_bytes(data)
    with pytest.raises(ModelFileError, match=r"odd.onnx: "):
        load_network(tmp_path / "odd.onnx")


def test_a_bad_teaching_base_stops_the_server_from_starting(model_file: Path, tmp_path: Path):
    whole = model_file.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(whole[: len(whole) // 2])
    deep = hostile(model_file, tmp_path / "deep.onnx", raw_card="[" * 200_000 + "]" * 200_000)
    for base in (tmp_path / "missing.onnx", tmp_path / "truncated.onnx", deep):
        settings = ServerSettings(model_path=model_file, workers=1, data_dir=tmp_path / "data", teach_base=base)
        with pytest.raises(ModelFileError, match=rf"--teach-base \(ACTIONREC_TEACH_BASE\): {base}"):
            create_app(settings)
    create_app(ServerSettings(model_path=model_file, workers=1, teach_base=tmp_path / "truncated.onnx"))  # no data
    # dir: teaching is off, the base is not read, and predictions are served
    result = subprocess.run([sys.executable, "-m", "actionrec.cli", "serve", str(model_file), "--teach-base",
                             str(tmp_path / "truncated.onnx"), "--data-dir", str(tmp_path / "data"), "--port", "1"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--teach-base" in result.stderr and "truncated.onnx" in result.stderr


def test_a_malformed_teaching_base_of_600_kb_is_refused_quickly(model_file: Path, tmp_path: Path):
    """The card reads well; the graph is 600 KB of nested graphs, or of continuation bytes."""
    model = onnx.load(str(model_file))
    card = next(p.value for p in model.metadata_props if p.key == "actionrec")
    entry = onnx.StringStringEntryProto(key="actionrec", value=card).SerializeToString()
    # Graphs within graphs (node, attribute, subgraph, node, ...), 600 KB of them; and a run of
    # continuation bytes where a length should be.
    headers, inner = [], 0
    while inner < 600_000:
        for key in (0x32, 0x2A, 0x0A):  # AttributeProto.g, NodeProto.attribute, GraphProto.node
            headers.append(bytes([key]) + _encode_varint(inner))
            inner += len(headers[-1])
    graphs = {"nested": b"".join(reversed(headers)), "endless": b"\x0a\x80" + b"\xff" * 600_000}
    for name, graph in graphs.items():
        data = b"\x3a" + _encode_varint(len(graph)) + graph + b"\x72" + _encode_varint(len(entry)) + entry
        (tmp_path / f"{name}.onnx").write_bytes(data)
        started = time.perf_counter()
        with pytest.raises(ModelFileError, match=rf"{name}.onnx"):
            create_app(ServerSettings(model_path=model_file, workers=1, data_dir=tmp_path / "data",
                                      teach_base=tmp_path / f"{name}.onnx"))
        assert time.perf_counter() - started < 1.0



def test_a_teaching_base_damaged_after_start_is_answered_in_json(model_file: Path, tmp_path: Path):
    base = tmp_path / "base.onnx"
    base.write_bytes(model_file.read_bytes())
    settings = ServerSettings(model_path=model_file, workers=1, allowed_hosts=["testserver"],
                              data_dir=tmp_path / "data", teach_base=base)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for raw_card in ("[" * 200_000 + "]" * 200_000, None):
            hostile(model_file, base, raw_card=raw_card, edit=_no_frames_input)
            answer = client.post("/v1/models/teach-base/serve")
            assert answer.status_code == 422 and answer.json()["reason"] == "model_unusable", answer.text
            assert answer.json()["detail"].startswith("base.onnx: "), answer.text  # never the server's folders
            assert str(tmp_path) not in answer.text
        base.write_bytes(model_file.read_bytes()[:5000])
        about = client.get("/v1/teach")
        assert about.status_code == 200 and about.json()["enabled"] is False, about.text
        assert about.json()["error"].startswith("base.onnx: ") and str(tmp_path) not in about.text, about.text
        listed = client.get("/v1/teach/examples")
        assert listed.status_code == 200 and listed.json()["teaching"]["enabled"] is False, listed.text


def test_messages_for_api_clients_name_files_not_the_servers_folders(tmp_path: Path):
    spaced = tmp_path / "my models" / "base.onnx"
    assert for_clients(f"{spaced}: damaged.", (spaced, "base.onnx")) == "base.onnx: damaged."
    assert for_clients("/srv/actionrec/models/x.onnx: its card (v2) does not match") == "x.onnx: its card (v2) " \
                                                                                         "does not match"
    kept = "hf://owner/name@main: see https://huggingface.co/owner/name, a/b testing, models/x.onnx, 16/9"
    assert for_clients(kept) == kept


def test_a_job_on_a_teaching_base_damaged_after_start_is_refused_before_anything_is_kept(model_file: Path,
                                                                                       tmp_path: Path):
    base = tmp_path / "base.onnx"
    base.write_bytes(model_file.read_bytes())
    settings = ServerSettings(model_path=model_file, workers=1, allowed_hosts=["testserver"],
                              data_dir=tmp_path / "data", teach_base=base)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        base.write_bytes(model_file.read_bytes()[:5000])
        answer = client.post("/v1/teach/jobs", json={"name": "mine"})
        assert answer.status_code == 409 and answer.json()["reason"] == "teach_base_unusable", answer.text
        assert not list((tmp_path / "data").rglob("jobs/*"))
