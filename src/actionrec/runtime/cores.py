"""How the CPU's cores are shared when a video is decoded while its frames are encoded.

Alone, FFmpeg's decoder and ONNX Runtime each take every core. In a timeline the decoder reads
chunk N+1 while the encoder works on chunk N; where the decoder is the slower of the two (large
frames), an encoder on every core only fights it for them, so once a chunk comes late the encoder
runs on half the cores, and it takes them all where the chunks wait on it (see
`PredictionBuilder._waiting_on_decoder`). Measured here (2 cores, H.264 at 25 fps,
`Recognizer.predict(..., segments=True)`, medians of 3 to 21 side by side), against the encoder
always on every core: 10 minutes of 720p 12.1 s against 13.4 s; a minute of 720p 1.32 s against
1.43 s, of 480p 1.10 against 1.14, of 360p 0.93 against 0.99, of 1080p 1.89 against 1.93; a
real 320x240 UCF101 clip 260 ms both ways. Keeping the decoder to the other half as well slowed
all but the 10-minute video (1080p: 2.23 s against 1.93 s), so it keeps FFmpeg's own threads.
A run of the encoder that starts while another is under way (several requests at once) also takes
half the cores. "Cores" are physical ones, as ONNX Runtime counts them for its own default.
"""

from __future__ import annotations

import os
from pathlib import Path


def usable_cores() -> int:
    """The cores this process may run on (its affinity, as containers and `taskset` set it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def usable_physical_cores(topology: Path = Path("/sys/devices/system/cpu")) -> int:
    """The physical cores among those this process may run on: hyper-threads of one core count
    once, as ONNX Runtime counts them for its default number of threads. Where the topology cannot
    be read (not Linux), every usable core counts."""
    if not hasattr(os, "sched_getaffinity"):
        return usable_cores()
    cores = set()
    for cpu in os.sched_getaffinity(0):
        try:
            cores.add((topology / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            return usable_cores()
    return max(1, len(cores))


def encoder_threads_alongside_decoder(cores: int | None = None) -> int:
    """Threads for an encoder that shares the cores with a decoder or another encode: half the
    physical cores, rounded up."""
    cores = cores or usable_physical_cores()
    return max(1, cores - cores // 2)
