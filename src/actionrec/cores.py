"""How the CPU's cores are shared when a video is decoded while its frames are encoded.

Alone, FFmpeg's decoder and ONNX Runtime each take every core. Run at once (a timeline, whose
decoder reads chunk N+1 while the encoder works on chunk N, or several requests at once), two
stages that each take every core fight over them: measured here (2 cores, a 10-minute 720p
video's timeline, `benchmark`), 15.2 s with both on all cores against 12.8 s with one core each.
So stages that run together split the cores, and each stays on its half.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as containers and `taskset` set it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def decoder_threads_alongside_encoder(cores: int | None = None) -> int:
    """Threads for a decoder that runs while the encoder works: half the cores, at least one."""
    return max(1, (cores or usable_cores()) // 2)


def encoder_threads_alongside_decoder(cores: int | None = None) -> int:
    """Threads for an encoder that runs while a decoder (or another encode) works: the other half."""
    cores = cores or usable_cores()
    return max(1, cores - decoder_threads_alongside_encoder(cores))
