"""A small folder shaped like the unpacked UCF101 release, made of generated clips, for tests.

Same layout, file names, list formats and quirks as the official release (see
`actionrec.datasets.ucf101`), so everything that reads UCF101 can be tested without it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from actionrec.datasets.ucf101 import LISTS_DIR, SPLITS, TEST_GROUPS, VIDEOS_DIR
from actionrec.video.encode import write_video


def _file_class_name(class_name: str) -> str:
    """The class as spelled in its clips' file names: the release's one inconsistency."""
    return "HandStandPushups" if class_name == "HandstandPushups" else class_name


def make_fake_ucf101(
    root: str | os.PathLike,
    classes: Sequence[str],
    groups: int = 25,
    clips_per_group: int = 2,
    write_clip: Callable[[Path, str], None] | None = None,
) -> Path:
    """Build a small folder shaped like the unpacked official release and return `root`.

    ``UCF-101/<Class>/v_<Class>_g<NN>_c<MM>.avi`` for every group and clip, ``classInd.txt`` in the
    order of `classes`, and the three official splits (test groups 1-7, 8-14, 15-21), written with
    Windows line endings like the originals. A class named ``HandstandPushups`` gets the release's
    ``v_HandStandPushups_*`` file names. `write_clip(path, class_name)` writes each clip; by default
    a tiny real video of one solid colour per class (MPEG-4 in AVI, as in the release).
    """
    if not classes:
        raise ValueError("classes is empty: name at least one class")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes has duplicates: {list(classes)}")
    bad = [name for name in classes if not re.fullmatch(r"[A-Za-z0-9]+", name)]
    if bad:
        raise ValueError(f"UCF101 class names are letters and digits only, got {bad}")
    if not 1 <= groups <= 99 or not 1 <= clips_per_group <= 99:
        raise ValueError(f"groups and clips_per_group must be 1..99, got {groups} and {clips_per_group}")
    write_clip = write_clip or write_solid_clip

    root = Path(root)
    videos_dir, lists_dir = root / VIDEOS_DIR, root / LISTS_DIR
    lists_dir.mkdir(parents=True, exist_ok=True)
    clips_by_group: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for label, name in enumerate(classes):
        (videos_dir / name).mkdir(parents=True, exist_ok=True)
        for group in range(1, groups + 1):
            for clip in range(1, clips_per_group + 1):
                file_name = f"v_{_file_class_name(name)}_g{group:02d}_c{clip:02d}.avi"
                write_clip(videos_dir / name / file_name, name)
                clips_by_group[group].append((label, f"{name}/{file_name}"))

    def write_lines(name: str, lines: list[str]) -> None:
        (lists_dir / name).write_bytes("".join(f"{line}\r\n" for line in lines).encode())

    write_lines("classInd.txt", [f"{label + 1} {name}" for label, name in enumerate(classes)])
    ordered = sorted((label, relative, group) for group, clips in clips_by_group.items() for label, relative in clips)
    for split in SPLITS:
        write_lines(f"trainlist{split:02d}.txt", [f"{relative} {label + 1}" for label, relative, group in ordered
                                                  if group not in TEST_GROUPS[split]])
        write_lines(f"testlist{split:02d}.txt", [relative for label, relative, group in ordered
                                                 if group in TEST_GROUPS[split]])
    return root


def write_solid_clip(path: Path, class_name: str) -> None:
    """Eight 64x48 frames of a colour that depends only on the class, encoded like the release."""
    colour = np.frombuffer(hashlib.sha1(class_name.encode()).digest()[:3], dtype=np.uint8)
    frames = np.broadcast_to(colour, (8, 48, 64, 3)).copy()
    write_video(frames, path, fps=25, codec=release_codec())


_codec_choice: str | None = None


def release_codec() -> str:
    global _codec_choice
    if _codec_choice is None:
        try:
            av.codec.Codec("mpeg4", "w")
            _codec_choice = "mpeg4"
        except (av.error.FFmpegError, ValueError):
            _codec_choice = "h264"
    return _codec_choice
