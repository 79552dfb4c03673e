"""Folder-per-class datasets: ``root/<class>/<video files>``.

If the root holds list files (``train.txt`` + ``test.txt``, or UCF101-style ``trainlist01.txt`` +
``testlist01.txt``) they decide the split; otherwise a deterministic, group-aware split is made
(see `actionrec.datasets.base` for why groups).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

from actionrec.datasets.base import (
    DatasetSplit,
    Sample,
    clip_group,
    is_video_file,
    leaking_groups,
    read_list_file,
)
from actionrec.errors import DatasetError
from actionrec.video.probe import VIDEO_EXTENSIONS

TINY_CLASS_CLIPS = 5

# Pairs of list files a folder dataset may carry, tried in this order ("{split}" is the split number).
LIST_FILE_PAIRS = (
    ("train.txt", "test.txt"),
    ("train.txt", "val.txt"),
    ("trainlist.txt", "testlist.txt"),
    ("trainlist{split:02d}.txt", "testlist{split:02d}.txt"),
)


def load_folder_dataset(
    root: str | os.PathLike, *, split: int = 1, val_fraction: float = 0.2, seed: int = 0
) -> DatasetSplit:
    root = Path(root).absolute()  # sample paths stay valid whatever the working directory
    classes, videos_by_class, warnings = _scan_class_folders(root)
    lists = _find_list_files(root, split)
    if lists is not None:
        train, val, list_warnings, description = _split_from_lists(root, classes, videos_by_class, *lists)
    else:
        train, val, list_warnings, description = _split_by_group(classes, videos_by_class, val_fraction, seed)
    return DatasetSplit(classes, train, val, description, warnings + list_warnings)


# --------------------------------------------------------------------------- listing


def _scan_class_folders(root: Path) -> tuple[list[str], dict[str, list[Path]], list[str]]:
    if not root.exists():
        raise DatasetError(f"{root}: no such folder. Pass the dataset's root folder, which holds one "
                           "sub-folder of videos per class.")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder. Pass the dataset's root folder, which holds one "
                           "sub-folder of videos per class.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        hint = ""
        if any(is_video_file(p) for p in root.iterdir()):
            hint = " The videos directly in it need to go into one sub-folder per class."
        raise DatasetError(f"{root}: no class folders. Expected {root}/<class name>/<video files> "
                           f"({', '.join(VIDEO_EXTENSIONS)}).{hint}")
    if (root / "UCF-101").is_dir() or (root / "ucfTrainTestlist").is_dir():
        raise DatasetError(f"{root} looks like the UCF101 release (UCF-101/, ucfTrainTestlist/): "
                           "load it as the 'ucf101' dataset kind (--dataset ucf101), not as class folders.")

    videos_by_class: dict[str, list[Path]] = {}
    for folder in folders:
        videos = sorted(p for p in folder.iterdir() if is_video_file(p))
        if not videos:
            nested = any(p.is_dir() for p in folder.iterdir())
            raise DatasetError(
                f"{folder}: class folder '{folder.name}' has no videos ({', '.join(VIDEO_EXTENSIONS)}"
                f"{'; sub-folders are not searched' if nested else ''}). Add its videos or remove the folder."
            )
        videos_by_class[folder.name] = videos

    warnings = []
    stray = [p.name for p in root.iterdir() if is_video_file(p)]
    if stray:
        warnings.append(f"{root}: {len(stray)} videos directly in the root are not in a class folder "
                        f"and were left out (e.g. {stray[0]}).")
    for name, videos in videos_by_class.items():
        if len(videos) < TINY_CLASS_CLIPS:
            warnings.append(f"class '{name}' has only {len(videos)} clip(s) ({root / name}): too few to learn "
                            f"or to measure it; aim for {TINY_CLASS_CLIPS * 4} or more.")
    return list(videos_by_class), videos_by_class, warnings


# --------------------------------------------------------------------------- split from list files


def _find_list_files(root: Path, split: int) -> tuple[Path, Path] | None:
    for train_name, val_name in LIST_FILE_PAIRS:
        train_list = root / train_name.format(split=split)
        val_list = root / val_name.format(split=split)
        if train_list.is_file() and val_list.is_file():
            return train_list, val_list
    return None


def _split_from_lists(
    root: Path, classes: list[str], videos_by_class: dict[str, list[Path]], train_list: Path, val_list: Path
) -> tuple[list[Sample], list[Sample], list[str], str]:
    label_of = {name.lower(): label for label, name in enumerate(classes)}
    on_disk = {f"{p.parent.name}/{p.name}".lower(): p for videos in videos_by_class.values() for p in videos}
    warnings: list[str] = []
    sides: dict[Path, str] = {}
    samples: dict[str, list[Sample]] = {}
    for side, list_file in (("train", train_list), ("val", val_list)):
        samples[side] = []
        missing = []
        for number, relative, _ in read_list_file(list_file):
            path = on_disk.get(relative.lower())
            if path is None:
                missing.append(f"{relative} (line {number})")
                continue
            if path in sides:
                raise DatasetError(
                    f"{list_file}, line {number}: {relative} is already listed in "
                    f"{train_list.name if sides[path] == 'train' else list_file.name}. "
                    "A clip must be either in training or in validation: remove one of the two lines."
                )
            sides[path] = side
            samples[side].append(Sample(path, label_of[path.parent.name.lower()]))
        if missing:
            warnings.append(f"{list_file}: {len(missing)} listed file(s) are missing under {root} and were "
                            f"left out, e.g. {', '.join(missing[:3])}.")
    unlisted = sum(1 for videos in videos_by_class.values() for p in videos if p not in sides)
    if unlisted:
        warnings.append(f"{unlisted} video(s) under {root} are in neither {train_list.name} nor "
                        f"{val_list.name} and were left out.")
    if not samples["train"] and not samples["val"]:
        raise DatasetError(f"{train_list} and {val_list} list no video that exists under {root}. Entries "
                           "are paths relative to the root, like 'ClassName/clip.mp4'.")
    leaks = leaking_groups(samples["train"], samples["val"])
    if leaks:
        warnings.append(f"{len(leaks)} clip group(s) have clips in both {train_list.name} and {val_list.name} "
                        f"(e.g. {leaks[0]}): near-identical clips on both sides inflate validation accuracy.")
    return samples["train"], samples["val"], warnings, f"folder lists {train_list.name} / {val_list.name}"


# --------------------------------------------------------------------------- group-aware hash split


def _group_score(seed: int, class_name: str, group: str) -> int:
    digest = hashlib.sha1(f"{seed}\0{class_name}\0{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def validation_group_count(groups: int, val_fraction: float) -> int:
    """Groups of a class that go to validation: the nearest whole share, but at least one while
    the class has two groups or more, and never all of them."""
    if groups < 2:
        return 0
    return min(groups - 1, max(1, int(val_fraction * groups + 0.5)))


def _split_by_group(
    classes: list[str], videos_by_class: dict[str, list[Path]], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample], list[str], str]:
    """Each class's groups are ranked by a seeded hash of their name and the lowest-ranked go to
    validation. A group's rank does not depend on the other files, so adding a clip to an existing
    group changes nothing and adding a new group moves at most one group of that class across."""
    if not 0 < val_fraction < 1:
        raise DatasetError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}.")
    train: list[Sample] = []
    val: list[Sample] = []
    warnings = []
    for label, name in enumerate(classes):
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in videos_by_class[name]:
            groups[clip_group(path)].append(path)
        ranked = sorted(groups, key=lambda group: (_group_score(seed, name, group), group))
        held_out = set(ranked[: validation_group_count(len(ranked), val_fraction)])
        if not held_out:
            warnings.append(f"class '{name}' has a single clip group, so none of it is held out for validation.")
        for path in videos_by_class[name]:
            (val if clip_group(path) in held_out else train).append(Sample(path, label))
    description = f"folder split by group, {val_fraction:.0%} validation, seed {seed}"
    return train, val, warnings, description
