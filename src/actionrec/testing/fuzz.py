"""A seeded mutation fuzzer for the video reader: damaged files must give a typed error or an answer.

Each input is read (`read_clip`, the entry every upload goes through) in a guarded child process,
so a crash inside FFmpeg is counted against the input instead of ending the run; a child that
hangs is killed after `timeout_s`. Outcomes are counted by kind:

    ok                 the file was read
    video_error:REASON a VideoError with its reason code (what users get: a clear message)
    unexpected:TYPE    any other exception: a bug, which users would see as a traceback
    crash:CODE         the child died (a signal or an exit code): FFmpeg crashed on the file
    timeout            the child took longer than timeout_s

    python -m actionrec.testing.fuzz --count 10000 --seed 0      (or: make fuzz N=10000)

Inputs that were unexpected, crashed or timed out are written to `--findings` to reproduce them.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

FAILURES = ("unexpected", "crash", "timeout")


# --------------------------------------------------------------------------- inputs


def seed_files() -> dict[str, bytes]:
    """Small valid videos in every container the reader meets, plus the real sample clips when
    $ACTIONREC_SAMPLE_VIDEOS names them."""
    from actionrec.datasets.synth import render_clip
    from actionrec.video.encode import write_video

    frames = render_clip("grow", np.random.default_rng(0), width=64, height=48, num_frames=30)
    seeds = {}
    for name, container, options in (("mp4", "mp4", {"gop": 10, "bframes": True}), ("mov", "mov", {"gop": 10}),
                                      ("mkv", "matroska", {"gop": 10, "audio": True}),
                                      ("webm", "webm", {"codec": "libvpx"}),
                                      ("avi", "avi", {"codec": "mpeg4"}), ("ts", "mpegts", {"gop": 10})):
        buffer = io.BytesIO()
        try:
            write_video(frames, buffer, 25, container_format=container, **options)
        except Exception:  # an encoder this FFmpeg build lacks: fuzz the others
            continue
        seeds[name] = buffer.getvalue()
    from actionrec.video.probe import is_video_name

    folder = os.environ.get("ACTIONREC_SAMPLE_VIDEOS")
    if folder and Path(folder).is_dir():
        for path in sorted(Path(folder).iterdir()):
            if is_video_name(path.name):
                seeds[path.name] = path.read_bytes()
    return seeds


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One damaged variant of `data`: flipped bits, overwritten or repeated runs, cuts, splices."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(7)
        if not out:
            out = bytearray(rng.randbytes(16))
        at = rng.randrange(len(out))
        if kind == 0:  # flip bits
            for _ in range(rng.randint(1, 32)):
                position = rng.randrange(len(out))
                out[position] ^= 1 << rng.randrange(8)
        elif kind == 1:  # overwrite a run with random bytes, zeros or 0xff
            length = rng.randint(1, 256)
            filler = rng.choice([rng.randbytes(length), bytes(length), b"\xff" * length])
            out[at : at + length] = filler
        elif kind == 2:  # truncate
            del out[rng.randrange(1, len(out) + 1):]
        elif kind == 3:  # cut out a run
            del out[at : at + rng.randint(1, 4096)]
        elif kind == 4:  # repeat a run
            run = out[at : at + rng.randint(1, 4096)]
            out[at:at] = run
        elif kind == 5:  # insert random bytes
            out[at:at] = rng.randbytes(rng.randint(1, 512))
        else:  # splice the head of this file onto the tail of another
            other = rng.choice(others)
            out = out[:at] + other[rng.randrange(len(other)) :]
        if rng.random() < 0.05:  # interesting integers where a length or a size might be
            position = rng.randrange(len(out)) if out else 0
            out[position : position + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00",
                                                       b"\x80\x00\x00\x00"])
    return bytes(out)


def inputs(count: int, seed: int) -> Iterator[tuple[int, str, bytes]]:
    seeds = seed_files()
    names = sorted(seeds)
    rng = random.Random(seed)
    for number in range(count):
        name = names[number % len(names)]
        yield number, name, mutate(seeds[name], rng, [seeds[other] for other in names])


# --------------------------------------------------------------------------- guarded children


def _child(conn: Connection) -> None:
    from actionrec.errors import VideoError
    from actionrec.video import ClipSpec, DecodeLimits, read_clip

    spec, limits = ClipSpec(4, 32), DecodeLimits(max_duration_s=60)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        try:
            read_clip(data, spec, limits=limits)
            outcome = "ok"
        except VideoError as exc:
            outcome = f"video_error:{exc.reason}"
        except Exception as exc:  # what the fuzzer is looking for
            outcome = f"unexpected:{type(exc).__name__}: {exc}"[:300]
        conn.send(outcome)


class GuardedReader:
    """A child process that reads videos; a crash or a hang costs the child, never the caller."""

    def __init__(self, context: multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext,
                 timeout_s: float) -> None:
        self.context, self.timeout_s = context, timeout_s
        self._start()

    def _start(self) -> None:
        self.conn, child_end = self.context.Pipe()
        self.process = self.context.Process(target=_child, args=(child_end,), daemon=True)
        self.process.start()
        child_end.close()

    def read(self, data: bytes) -> str:
        try:
            self.conn.send_bytes(data)
            if self.conn.poll(self.timeout_s):
                return self.conn.recv()
            self.process.kill()
            self.process.join()
            outcome = "timeout"
        except (EOFError, OSError):
            self.process.join(5)
            outcome = f"crash:{self.process.exitcode}"
        self.conn.close()
        self._start()
        return outcome

    def close(self) -> None:
        self.conn.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


def fuzz(count: int, seed: int = 0, timeout_s: float = 10.0, findings: Path | None = None,
         progress: bool = False) -> Counter:
    """Read `count` mutated inputs in a guarded child; returns the outcomes counted by kind."""
    context = multiprocessing.get_context("forkserver") if "forkserver" in multiprocessing.get_all_start_methods() \
        else multiprocessing.get_context("spawn")
    reader = GuardedReader(context, timeout_s)
    counts: Counter = Counter()
    started = time.monotonic()
    try:
        for number, name, data in inputs(count, seed):
            outcome = reader.read(data)
            kind = outcome.split(":")[0]
            counts[outcome if kind in ("ok", "video_error") else kind] += 1
            if kind in FAILURES and findings is not None:
                findings.mkdir(parents=True, exist_ok=True)
                (findings / f"{number:06d}-{kind}-{name}").write_bytes(data)
                (findings / f"{number:06d}-{kind}-{name}.txt").write_text(outcome + "\n")
            if progress and (number + 1) % 500 == 0:
                print(f"{number + 1} inputs, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        reader.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    counts = fuzz(args.count, args.seed, args.timeout_s, args.findings, progress=True)
    print(f"{args.count} inputs (seed {args.seed}) in {time.monotonic() - started:.0f} s:")
    for outcome, number in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {number:6d}  {outcome}")
    failures = sum(counts[kind] for kind in FAILURES)
    print(f"unexpected exceptions: {counts['unexpected']}, crashes (each in a guarded child): {counts['crash']}, "
          f"timeouts: {counts['timeout']}" + (f"; inputs in {args.findings}" if failures else ""))
    return 1 if counts["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
