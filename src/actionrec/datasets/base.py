"""What every dataset is made of: samples, splits, and the clip-group rule that keeps splits honest.

Why groups: UCF101 cuts each source video into several clips (``v_<Class>_g<NN>_c<MM>``: group
NN, clip MM) that look nearly identical. A clip in training whose sibling is in validation
inflates validation accuracy, so a group always lands on one side as a whole, in folder datasets
and in UCF101's official splits alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from actionrec.video.probe import is_video_name
from actionrec.video.spec import DecodeLimits

# Dataset files are trusted more than uploads: long videos are allowed (training and evaluation read
# them with these limits).
DATASET_LIMITS = DecodeLimits(max_duration_s=3 * 3600.0)

# UCF101 clip names: v_<Class>_g<group>_c<clip>.<ext>
UCF_CLIP_NAME = re.compile(r"^v_(?P<name>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class DatasetSplit:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    description: str
    warnings: list[str] = field(default_factory=list)


Item = TypeVar("Item")


def evenly(items: Sequence[Item], count: int | None) -> Sequence[Item]:
    """Up to `count` of `items`, evenly spread over them (all of them for None or 0)."""
    if not count or count >= len(items):
        return items
    return items[:: len(items) // count][:count]


def is_video_file(path: Path) -> bool:
    return is_video_name(path.name) and path.is_file()


def clip_group(path: Path) -> str:
    """The group a clip belongs to: ``<name>_g<NN>`` for UCF101-style names, else the file itself.

    Case is ignored, since UCF101 spells one class two ways (HandstandPushups/HandStandPushups).
    """
    match = UCF_CLIP_NAME.match(path.stem)
    if match:
        return f"{match['name'].lower()}_g{int(match['group']):02d}"
    return path.name.lower()


def read_list_file(path: Path) -> list[tuple[int, str, int | None]]:
    """(line number, relative path, label number or None) of each entry: ``Class/file.avi`` with an
    optional trailing label number. Windows line endings, backslashes and blank lines are tolerated."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label = None
        parts = line.rsplit(maxsplit=1)
        if len(parts) == 2 and parts[1].isdigit():
            line, label = parts[0], int(parts[1])
        entries.append((number, line.replace("\\", "/").strip("/"), label))
    return entries


def leaking_groups(train: Iterable[Sample], val: Iterable[Sample]) -> list[str]:
    """Names of the clip groups of a class that have clips on both sides."""
    train_groups = {(s.label, clip_group(s.path)) for s in train}
    val_groups = {(s.label, clip_group(s.path)) for s in val}
    return sorted(group for _, group in train_groups & val_groups)
