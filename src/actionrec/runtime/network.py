"""The exported network in its two halves, each its own ONNX Runtime session. Never imports torch.

An exported model is one standard ONNX file: frames in, class probabilities out, as any ONNX tool
runs it. It also names the tensor between its halves, and `load_network` splits it there once, at
load (`actionrec.modelfile.graph_split`, without the onnx package): the `Encoder` turns frames into
per-frame features, the `Head` reads windows of features and gives each window's probabilities.
A prediction, a timeline, live recognition, Ray actors, evaluation and teaching all use the halves;
nothing runs the whole graph to get one of them. Files exported before the split (card format 1,
before actionrec 0.2) are refused when their card is read (`actionrec.modelfile.card`): they are to
be exported again. Files exported since actionrec 0.4 also name each frame's feature map before
pooling (`frame_maps`): a third cut, `MapEncoder`, which explanations read (`actionrec.runtime.explain`);
older files load as they did, without it.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from actionrec.errors import ModelFileError
from actionrec.modelfile import graph_split
from actionrec.modelfile.card import (
    FEATURES_INPUT,
    FEATURES_OUTPUT,
    INPUT_NAME,
    MAPS_OUTPUT,
    WINDOW_OUTPUT,
    ModelCard,
    card_of_file,
)
from actionrec.modelfile.hub import resolve_model
from actionrec.runtime.cores import encoder_threads_alongside_decoder, usable_physical_cores

DEVICES = ("auto", "cpu", "cuda")


def choose_providers(device: str) -> list[str]:
    """ONNX Runtime's execution providers for `device`: "cuda" needs the CUDA provider (the
    `onnxruntime-gpu` package, see the `gpu` extra); "auto" takes it when present."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise ModelFileError("--device cuda: this ONNX Runtime has no CUDA provider (it has "
                             f"{', '.join(available)}). Install onnxruntime-gpu in place of onnxruntime "
                             "(see README, Serving on a GPU), or use --device cpu.")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the features input's default value draws a warning that means nothing here
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Threads that spin while waiting for work steal the cores that decoding needs: measured
    # here, a timeline of a 10-minute video took 22 s with spinning and 17.6 s without, while a
    # clip on an idle machine took 85 ms with and 89 ms without.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(model: Path | bytes, source: Path, options: ort.SessionOptions | None = None,
                 providers: list[str] | None = None) -> ort.InferenceSession:
    """A session of `model` (a file, or a graph's bytes); `source` names the file in errors."""
    if isinstance(model, Path) and not model.is_file():
        raise ModelFileError(f"{model}: no such model file. Export one with `actionrec export RUN_DIR`.")
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options or session_options(),
                                    providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelFileError(f"{source}: ONNX Runtime cannot load this file ({exc}).") from None


def _release(session: ort.InferenceSession, output: str, feed: dict[str, np.ndarray]) -> None:
    """One small run that shrinks the session's memory arena back (the next run takes it again)."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    session.run([output], feed, options)


class Encoder:
    """Frames -> the features the head reads: `encoder(frames)` with (n, S, S, 3) uint8 frames gives
    (n, F) float32.

    On a CPU, with `make_narrow`, a run that shares the cores (`alongside_decoding`: the decoder is
    the slower stage; or started while another run is under way, which keeps its session) goes to
    a second session on half the cores, made at first need, so that the stages running together do
    not fight over every core (see `actionrec.runtime.cores`); a run alone takes them all."""

    def __init__(self, session: ort.InferenceSession, image_size: int = 224,
                 make_narrow: Callable[[], ort.InferenceSession] | None = None) -> None:
        self.session = session
        self._make_narrow = make_narrow
        self._narrow: ort.InferenceSession | None = None
        self._lock = threading.Lock()  # guards the count of runs under way
        self._making = threading.Lock()  # one thread makes the narrow session
        self._running = 0
        self.output = session.get_outputs()[0].name
        frames = next(i for i in session.get_inputs() if i.name == INPUT_NAME)
        # Files exported with free height and width release memory on a 32-pixel frame.
        self._smallest = image_size if isinstance(frames.shape[2], int) else min(32, image_size)

    @classmethod
    def from_file(cls, path: Path, options: ort.SessionOptions | None = None,
                  providers: list[str] | None = None) -> Encoder:
        """An encoder-only graph (frames -> features), as training's feature extraction exports;
        `options`: ONNX Runtime's (default: `session_options()`)."""
        return cls(open_session(path, path, options, providers))

    def __call__(self, frames: np.ndarray, *, alongside_decoding: bool = False) -> np.ndarray:
        return self._run(np.ascontiguousarray(frames[None]), alongside_decoding)[0]

    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        """(N, T, S, S, 3) clips -> (N, T, F) in one run."""
        return self._run(np.ascontiguousarray(clips), False)

    def _run(self, frames: np.ndarray, alongside_decoding: bool) -> np.ndarray:
        with self._lock:
            self._running += 1
            shared = alongside_decoding or self._running > 1
        try:
            session = self._narrow_session() if shared else self.session
            return session.run([self.output], {INPUT_NAME: frames})[0]
        finally:
            with self._lock:
                self._running -= 1

    def _narrow_session(self) -> ort.InferenceSession:
        """The session on half the cores, made at first need (outside the lock every run takes, so
        runs go on meanwhile); the full session where there is none, or making it failed."""
        if self._narrow is None and self._make_narrow is not None:
            with self._making:
                if self._narrow is None and self._make_narrow is not None:
                    try:
                        self._narrow = self._make_narrow()
                    except Exception:  # memory, most likely: the full session still answers
                        self._make_narrow = None
        return self._narrow if self._narrow is not None else self.session

    def release_memory(self) -> None:
        feed = {INPUT_NAME: np.zeros((1, 1, self._smallest, self._smallest, 3), np.uint8)}
        for session in (self.session, self._narrow):
            if session is not None:
                _release(session, self.output, feed)


class Head:
    """Windows of encoded frames -> each window's class probabilities: (W, T, F) -> (W, classes)."""

    def __init__(self, session: ort.InferenceSession, window_shape: tuple[int, int]) -> None:
        self.session = session
        self.input, self.output = FEATURES_INPUT, WINDOW_OUTPUT
        self.window_shape = window_shape  # one window: (T, F)

    def __call__(self, units: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: np.ascontiguousarray(units, dtype=np.float32)})[0]

    def release_memory(self) -> None:
        _release(self.session, self.output, {self.input: np.zeros((1, *self.window_shape), np.float32)})


class MapEncoder:
    """Frames -> each frame's last feature map before pooling: `maps(frames)` with (n, S, S, 3) uint8
    frames gives (n, rows, cols, F) float32, whose mean over the rows and columns is what `Encoder`
    gives. Its session is made at first use (only explanations use it), from the graph cut at load."""

    def __init__(self, graph: bytes, source: Path, threads: int | None, providers: list[str]) -> None:
        self._graph, self._source, self._threads, self._providers = graph, source, threads, providers
        self._session: ort.InferenceSession | None = None
        self._making = threading.Lock()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.session.run([MAPS_OUTPUT], {INPUT_NAME: np.ascontiguousarray(frames[None])})[0][0]

    @property
    def session(self) -> ort.InferenceSession:
        with self._making:
            if self._session is None:
                self._session = open_session(self._graph, self._source, session_options(self._threads),
                                             self._providers)
            return self._session


@dataclass
class Network:
    """A model file loaded in its two halves, with the card it carries."""

    encoder: Encoder
    head: Head
    card: ModelCard
    path: Path
    device: str  # "cuda" when the sessions run on the CUDA provider, else "cpu"
    maps: MapEncoder | None = None  # None for files exported before frame maps (or taught on one)

    def classify(self, clips: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(N, T, S, S, 3) uint8 clips -> (N, classes) probabilities: both halves."""
        return np.concatenate([self.head(self.encoder.encode_clips(clips[i:i + batch_size]))
                               for i in range(0, len(clips), batch_size)])

    def release_memory(self) -> None:
        """Give back the memory ONNX Runtime keeps between runs (about 180 MB after a 16 x 224 clip)."""
        self.encoder.release_memory()
        self.head.release_memory()


def load_network(path: str | os.PathLike, *, threads: int | None = None, device: str = "cpu",
                 card: ModelCard | None = None) -> Network:
    """Load a model file (or a Hub name, hf://OWNER/NAME, which it downloads) in its two halves;
    `card`: the file's card where the caller has read it already (`choose_model_file` has), else it
    is read here. Any failure to load the file is a ModelFileError that names it."""
    path = resolve_model(path)
    providers = choose_providers(device)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file. Export one with `actionrec export RUN_DIR`.")
    try:
        return _load(path, threads, providers, card)
    except (ModelFileError, MemoryError, OSError):  # the file's own fault, said already; or the machine's
        raise
    except Exception as exc:  # a file from a stranger: whatever else it does to a loader is its fault
        raise ModelFileError(f"{path}: this model file cannot be loaded ({type(exc).__name__}: {exc}). "
                             "Export it again with `actionrec export RUN_DIR`, or ask whoever made it "
                             "for one this actionrec reads.") from None


def _load(path: Path, threads: int | None, providers: list[str], card: ModelCard | None) -> Network:
    model_bytes = path.read_bytes()
    if card is None:
        card = card_of_file(io.BytesIO(model_bytes), path)  # read once, before any session
    encoder_graph, head_graph = split_graph(model_bytes, path)
    encoder_session = open_session(encoder_graph, path, session_options(threads), providers)
    head_session = open_session(head_graph, path, session_options(threads), providers)
    check_halves(encoder_session, head_session, card, path)
    encoder = Encoder(encoder_session, card.image_size, _narrow_encoder(encoder_graph, path, threads, providers))
    head = Head(head_session, (card.num_frames, card.num_features))
    on_gpu = "CUDAExecutionProvider" in (encoder.session.get_providers()[0], head.session.get_providers()[0])
    maps_graph = map_graph(model_bytes)
    maps = None if maps_graph is None else MapEncoder(maps_graph, path, threads, providers)
    return Network(encoder, head, card, path, "cuda" if on_gpu else "cpu", maps)


def check_halves(encoder: ort.InferenceSession, head: ort.InferenceSession, card: ModelCard, path: Path) -> None:
    """ModelFileError where the card disagrees with the graph: the frames the encoder takes, the
    features between the halves, the classes the head gives (a free dimension agrees with any)."""
    frames = next((i for i in encoder.get_inputs() if i.name == INPUT_NAME), None)
    features_in = next((i for i in head.get_inputs() if i.name == FEATURES_INPUT), None)
    if frames is None or features_in is None or len(frames.shape) != 5 or len(features_in.shape) != 3 \
            or frames.type != "tensor(uint8)" or len(encoder.get_outputs()[0].shape) != 3:
        raise ModelFileError(f"{path}: its graph does not take {INPUT_NAME!r} (batch, time, height, width, 3) uint8 "
                             f"frames and {FEATURES_INPUT!r} (windows, time, features), as an exported model does. "
                             "Export it again with `actionrec export RUN_DIR`.")
    said = {"frames a clip": (card.num_frames, features_in.shape[1]),
            "features a frame": (card.num_features, features_in.shape[2]),
            "features a frame out of the encoder": (card.num_features, encoder.get_outputs()[0].shape[2]),
            "pixels high": (card.image_size, frames.shape[2]), "pixels wide": (card.image_size, frames.shape[3]),
            "colour channels": (3, frames.shape[4])}
    _refuse_unlike(said, path)
    # The classes: one window of zeros through the head (its output's width may be a free dimension).
    feed = {FEATURES_INPUT: np.zeros((1, card.num_frames, card.num_features), np.float32)}
    probabilities = head.run([WINDOW_OUTPUT], feed)[0]
    if probabilities.ndim != 2:
        raise ModelFileError(f"{path}: its head gives {WINDOW_OUTPUT!r} shaped {probabilities.shape}, not (windows, "
                             "classes). Export it again with `actionrec export RUN_DIR`.")
    _refuse_unlike({"labels": (len(card.labels), probabilities.shape[1])}, path)


def _refuse_unlike(said: dict[str, tuple[int, object]], path: Path) -> None:
    """ModelFileError naming each count the card (first) and the graph (second, a name or None where
    the dimension is free) give unlike."""
    wrong = [f"its card says {card_says} {what}, its graph {graph_has}" + (" classes" if what == "labels" else "")
             for what, (card_says, graph_has) in said.items() if isinstance(graph_has, int) and graph_has != card_says]
    if wrong:
        raise ModelFileError(f"{path}: its card does not match its graph ({'; '.join(wrong)}), so it cannot "
                             "answer. Export it again with `actionrec export RUN_DIR`.")


def _narrow_encoder(graph: bytes, path: Path, threads: int | None,
                    providers: list[str]) -> Callable[[], ort.InferenceSession] | None:
    """How to make the encoder's session on half the cores, where it would have fewer threads than
    ONNX Runtime's default (one per physical core): on a CPU, with no thread count given."""
    narrow = encoder_threads_alongside_decoder()
    if threads is not None or providers != ["CPUExecutionProvider"] or narrow >= usable_physical_cores():
        return None
    return lambda: open_session(graph, path, session_options(narrow), providers)


def split_graph(model_bytes: bytes, source: Path) -> tuple[bytes, bytes]:
    """(encoder graph, head graph) of an exported model's bytes, each a standalone ONNX model with the
    file's metadata."""
    try:
        graph_split.refuse_external_data(model_bytes)
        inputs, outputs = graph_split.names(model_bytes)
        if FEATURES_INPUT not in inputs or not {FEATURES_OUTPUT, WINDOW_OUTPUT} <= outputs:
            raise graph_split.CannotSplit(f"no {FEATURES_INPUT!r} input, or no {FEATURES_OUTPUT!r} and "
                                          f"{WINDOW_OUTPUT!r} outputs")
        return (graph_split.cut(model_bytes, INPUT_NAME, FEATURES_OUTPUT),
                graph_split.cut(model_bytes, FEATURES_INPUT, WINDOW_OUTPUT))
    except graph_split.CannotSplit as exc:
        raise ModelFileError(f"{source}: cannot read this file as a model in two halves ({exc}). "
                             "Export it again with `actionrec export RUN_DIR`.") from None


def map_graph(model_bytes: bytes) -> bytes | None:
    """The graph from frames to each frame's feature map, where the file names one (`frame_maps`,
    exported since actionrec 0.4) and it can be cut there; else None (the file still answers)."""
    try:
        if MAPS_OUTPUT not in graph_split.names(model_bytes)[1]:
            return None
        return graph_split.cut(model_bytes, INPUT_NAME, MAPS_OUTPUT)
    except graph_split.CannotSplit:
        return None
