"""A model file's graph cut between two named tensors, read and written as protobuf directly.

`actionrec.runtime.network` loads a model in two halves; the `onnx` package could cut the graph, but
importing it costs a serving process about 0.9 s (most of it `ml_dtypes`) on every start. An ONNX
file is a protobuf message whose few fields that matter here are stable since ONNX's first
release, so this module walks the wire format itself: the nodes that an output needs, back to an
input, with the initializers they read, copied byte for byte into a model of their own with the
file's other fields (opsets, metadata, ...).

Field numbers are those of onnx/onnx.proto: ModelProto.graph = 7; GraphProto node = 1,
initializer = 5, input = 11, output = 12, value_info = 13; NodeProto input = 1, output = 2,
op_type = 4; TensorProto dims = 1, data_type = 2, name = 8, data_location = 14; ValueInfoProto
name = 1; ModelProto.metadata_props = 14, StringStringEntryProto key = 1, value = 2.

`refuse_external_data` walks the whole model (every graph, subgraph and function) for a tensor whose
bytes are in another file: ONNX Runtime would read that file, relative to the working directory
when a graph is loaded from bytes, and no model file may read files.

`metadata` reads the file's metadata alone (a model's card) without reading its graph, and
without ONNX Runtime: it skips over every other field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

CONTROL_FLOW = {"If", "Loop", "Scan"}  # their subgraphs read outer names this walk does not follow


class CannotSplit(ValueError):
    """The file is not a protobuf this module can cut (damaged, or a form it does not handle)."""


MAX_VARINT_BYTES = 10  # a 64-bit value; a longer run of continuation bytes is damage, not a number


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(MAX_VARINT_BYTES):
        if at >= len(data):
            raise CannotSplit("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
    raise CannotSplit(f"a varint longer than {MAX_VARINT_BYTES} bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes, bytes]]:
    """(field number, value: an int or the bytes of a length-delimited field, the field's raw bytes)."""
    at = 0
    while at < len(data):
        start = at
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 1:
            value, at = int.from_bytes(data[at:at + 8], "little"), at + 8
        elif wire == 2:
            size, at = _varint(data, at)
            value, at = data[at:at + size], at + size
        elif wire == 5:
            value, at = int.from_bytes(data[at:at + 4], "little"), at + 4
        else:
            raise CannotSplit(f"wire type {wire}")
        if at > len(data):
            raise CannotSplit("truncated field")
        yield number, value, data[start:at]


def metadata(file: BinaryIO) -> dict[str, str]:
    """A model's metadata_props by key, from a binary file (or io.BytesIO) at its start: every other
    field, the graph above all, is skipped unread."""
    start = file.tell()
    size = file.seek(0, os.SEEK_END)
    file.seek(start)
    found: dict[str, str] = {}
    has_graph = False
    while (key := _read_key(file)) is not None:
        number, wire = key >> 3, key & 7
        if wire == 0:
            _read_varint(file)
        elif wire in (1, 5):
            file.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        elif wire == 2:
            length = _read_varint(file)
            has_graph |= number == 7
            if number != 14:
                file.seek(length, os.SEEK_CUR)
            else:
                entry = {n: _text(v) for n, v, _ in _fields(file.read(length)) if n in (1, 2)}
                found[entry.get(1, "")] = entry.get(2, "")
        else:
            raise CannotSplit(f"wire type {wire}")
        if file.tell() > size:
            raise CannotSplit("truncated field")
    if not has_graph:
        raise CannotSplit("no graph")
    return found


def _read_key(file: BinaryIO) -> int | None:
    """A field's key, or None at the end of the file."""
    first = file.read(1)
    if not first:
        return None
    file.seek(-1, os.SEEK_CUR)
    return _read_varint(file)


def _read_varint(file: BinaryIO) -> int:
    value = shift = 0
    for _ in range(MAX_VARINT_BYTES):
        byte = file.read(1)
        if not byte:
            raise CannotSplit("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    raise CannotSplit(f"a varint longer than {MAX_VARINT_BYTES} bytes")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _message_bytes(value: int | bytes, what: str) -> bytes:
    """The bytes of a field that must hold a message; CannotSplit where it holds a number."""
    if not isinstance(value, bytes):
        raise CannotSplit(f"its {what} is not a message")
    return value


def _text(value: int | bytes) -> str:
    try:
        return value.decode() if isinstance(value, bytes) else ""
    except UnicodeDecodeError:
        raise CannotSplit("a name that is not UTF-8") from None


MAX_GRAPH_DEPTH = 32  # subgraphs within subgraphs: exported and taught models have none

# Where a message holds tensors, sparse tensors and graphs, by field number (onnx/onnx.proto).
_TENSORS = {"model": (), "training": (), "function": (), "graph": (5,), "node": (), "attribute": (5, 10),
            "sparse": (1, 2)}
_SPARSE = {"graph": (15,), "attribute": (22, 23)}
_GRAPHS = {"model": (7,), "training": (1, 2), "attribute": (6, 11)}
_INNER = {"model": {25: "function", 20: "training"}, "graph": {1: "node"}, "function": {7: "node", 11: "attribute"},
          "node": {5: "attribute"}}


def refuse_external_data(model: bytes) -> None:
    """CannotSplit where any tensor in `model` (initializers, sparse initializers, Constant nodes'
    and other attributes, in the graph, its subgraphs and functions) keeps its bytes in another file."""
    _walk(model, "model", 0)


def _walk(message: bytes, kind: str, depth: int) -> None:
    if depth > MAX_GRAPH_DEPTH:
        raise CannotSplit(f"graphs nested over {MAX_GRAPH_DEPTH} deep")
    for number, value, _ in _fields(message):
        if not isinstance(value, bytes):
            continue
        if number in _TENSORS.get(kind, ()):
            _check_tensor(value)
        elif number in _SPARSE.get(kind, ()):
            _walk(value, "sparse", depth)
        elif number in _GRAPHS.get(kind, ()):
            _walk(value, "graph", depth + 1)
        elif number in _INNER.get(kind, {}):
            _walk(value, _INNER[kind][number], depth + 1 if kind == "model" else depth)


def _check_tensor(tensor: bytes) -> None:
    for number, value, _ in _fields(tensor):
        if number == 13 or (number == 14 and value == 1):  # external_data, or data_location EXTERNAL
            raise CannotSplit("it reads another file (external data): a model file must hold all its weights itself")


@dataclass
class _Graph:
    other: list[bytes] = field(default_factory=list)  # its name, doc string, metadata: kept as they are
    nodes: list[tuple[bytes, list[str], list[str], str]] = field(default_factory=list)  # raw, inputs, outputs, op
    initializers: dict[str, tuple[bytes, list[int], int]] = field(default_factory=dict)  # name: raw, dims, type
    values: dict[str, bytes] = field(default_factory=dict)  # graph inputs and outputs by name
    inputs: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)


def _read_graph(payload: bytes) -> _Graph:
    graph = _Graph()
    for number, value, raw in _fields(payload):
        if number == 1:
            node = list(_fields(_message_bytes(value, "node")))
            graph.nodes.append((raw, [_text(v) for n, v, _ in node if n == 1], [_text(v) for n, v, _ in node if n == 2],
                                next((_text(v) for n, v, _ in node if n == 4), "")))
        elif number == 5:
            tensor = list(_fields(_message_bytes(value, "initializer")))
            if any(n == 13 or (n == 14 and v == 1) for n, v, _ in tensor):
                raise CannotSplit("it reads another file (external data): a model file must hold all its weights "
                                  "itself")
            name = next((_text(v) for n, v, _ in tensor if n == 8), "")
            dims = [v for n, v, _ in tensor if n == 1 and isinstance(v, int)]
            for n, v, _ in tensor:  # packed dims
                if n == 1 and isinstance(v, bytes):
                    at = 0
                    while at < len(v):
                        dim, at = _varint(v, at)
                        dims.append(dim)
            data_type = next((v for n, v, _ in tensor if n == 2 and isinstance(v, int)), 1)
            graph.initializers[name] = (raw, dims, data_type)
        elif number in (11, 12):
            name = next((_text(v) for n, v, _ in _fields(_message_bytes(value, "input or output")) if n == 1), "")
            graph.values[name] = raw
            (graph.inputs if number == 11 else graph.outputs).add(name)
        elif number in (2, 10, 16):  # its name, doc string, metadata; value_info is inferred again
            graph.other.append(raw)
    return graph


def names(model: bytes) -> tuple[set[str], set[str]]:
    """(the graph's inputs and initializers, its outputs) by name."""
    graph = _read_graph(_graph_payload(model)[0])
    return graph.inputs | set(graph.initializers), graph.outputs


def _graph_payload(model: bytes) -> tuple[bytes, list[bytes]]:
    """(the GraphProto's bytes, the ModelProto's other fields as they are)."""
    payload, other = None, []
    for number, value, raw in _fields(model):
        if number == 7 and isinstance(value, bytes):
            payload = value
        else:
            other.append(raw)
    if payload is None:
        raise CannotSplit("no graph in it")
    return payload, other


def cut(model: bytes, input_name: str, output_name: str) -> bytes:
    """The model made of the nodes that compute `output_name` from `input_name` (and initializers).
    An input given only a default value (an initializer with a leading dimension of 1) becomes an
    input with a free leading dimension."""
    payload, other = _graph_payload(model)
    graph = _read_graph(payload)
    producer = {output: index for index, (_, _, outputs, _) in enumerate(graph.nodes) for output in outputs}
    kept: set[int] = set()
    pending = [output_name]
    while pending:
        name = pending.pop()
        index = producer.get(name)
        if name == input_name or index is None or index in kept:
            continue
        kept.add(index)
        pending.extend(graph.nodes[index][1])
    nodes = [graph.nodes[index] for index in sorted(kept)]  # a file's node order is a topological one
    if any(op in CONTROL_FLOW for _, _, _, op in nodes):
        raise CannotSplit("it has control flow (If, Loop, Scan)")
    if output_name not in graph.values:
        raise CannotSplit(f"no output {output_name!r}")
    used = {name for _, inputs, _, _ in nodes for name in inputs}
    parts = [raw for raw, _, _, _ in nodes] + graph.other
    parts += [raw for name, (raw, _, _) in graph.initializers.items() if name in used and name != input_name]
    parts.append(graph.values.get(input_name) or _input_like_default(input_name, *graph.initializers[input_name][1:]))
    parts.append(graph.values[output_name])
    return b"".join(other) + _message(7, b"".join(parts))


def _input_like_default(name: str, dims: list[int], data_type: int) -> bytes:
    """GraphProto.input for `name`: a tensor of `data_type` shaped like its default, the first axis free."""
    def dimension(size: int | None) -> bytes:
        return _message(1, _message(2, b"windows") if size is None else _encode_varint(1 << 3) + _encode_varint(size))

    shape = b"".join(dimension(size) for size in [None, *dims[1:]])
    tensor_type = _encode_varint(1 << 3) + _encode_varint(data_type) + _message(2, shape)
    value_info = _message(1, name.encode()) + _message(2, _message(1, tensor_type))
    return _message(11, value_info)
