"""UCF101: read the official splits of an unpacked release, and check the release.

Layout under a root folder, as the official files unpack::

    root/UCF101.rar                                    the archive (6,932,971,618 bytes)
    root/UCF101TrainTestSplits-RecognitionTask.zip     the recognition-task splits
    root/UCF-101/<Class>/v_<Class>_g<NN>_c<MM>.avi     13,320 clips of 101 classes
    root/ucfTrainTestlist/classInd.txt                 "1 ApplyEyeMakeup" ... (1-based)
    root/ucfTrainTestlist/trainlist0{1,2,3}.txt        "Class/clip.avi <class number>"
    root/ucfTrainTestlist/testlist0{1,2,3}.txt         "Class/clip.avi"

Each class's clips come in 25 groups (NN), the clips of a group cut from one source video.
Official split k tests on groups 1-7, 8-14 or 15-21 and trains on the rest.

Quirks of the release that this module absorbs: the folder ``HandstandPushups`` holds files named
``v_HandStandPushups_*`` and lists may spell either (paths match case-insensitively); the list
files have Windows line endings; test lists have no label column.

Downloading and unpacking the official files is `actionrec.datasets.ucf101_archive`; its
functions and names are importable from here too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from actionrec.datasets.base import DatasetSplit, Sample, leaking_groups, read_list_file
from actionrec.datasets.ucf101_archive import (
    ARCHIVE_NAME,
    ARCHIVE_URL,
    KNOWN_FILES,
    LISTS_DIR,
    RAR_INSTALL_COMMAND,
    SPLITS_NAME,
    SPLITS_URL,
    VIDEOS_DIR,
    KnownFile,
    download,
    extract,
    extract_splits,
    extract_videos,
    find_rar_tool,
)
from actionrec.errors import DatasetError

__all__ = [
    "ARCHIVE_NAME", "ARCHIVE_URL", "KNOWN_FILES", "LISTS_DIR", "OFFICIAL_CLASSES", "OFFICIAL_VIDEOS",
    "RAR_INSTALL_COMMAND", "SPLITS", "SPLITS_NAME", "SPLITS_URL", "TEST_GROUPS", "VIDEOS_DIR", "KnownFile",
    "ValidationReport", "download", "extract", "extract_splits", "extract_videos", "find_rar_tool", "load_split",
    "read_class_index", "validate",
]

SPLITS = (1, 2, 3)
TEST_GROUPS = {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}
OFFICIAL_CLASSES = 101
OFFICIAL_VIDEOS = 13320


# --------------------------------------------------------------------------- split files


@dataclass(frozen=True)
class _Layout:
    root: Path
    videos: Path
    lists: Path


def _layout(root: str | os.PathLike) -> _Layout:
    root = Path(root).absolute()  # sample paths stay valid whatever the working directory
    layout = _Layout(root, root / VIDEOS_DIR, root / LISTS_DIR)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder. Pass the folder that holds {VIDEOS_DIR}/ and {LISTS_DIR}/.")
    for folder, source in ((layout.videos, ARCHIVE_NAME), (layout.lists, SPLITS_NAME)):
        if not folder.is_dir():
            hint = ""
            if root.name in (VIDEOS_DIR, LISTS_DIR):
                hint = f" It looks like you passed {root.name}/ itself: pass its parent folder."
            raise DatasetError(f"{folder}: missing. Unpack {source} into {root} (actionrec.ucf101.extract "
                               f"does this).{hint}")
    return layout


def read_class_index(path: Path) -> list[str]:
    """Class names in classInd.txt order (its 1-based number minus one is the label)."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing. Unpack {SPLITS_NAME} again.")
    numbered = {}
    for line_number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{path}, line {line_number}: expected '<number> <class name>', got {line.strip()!r}.")
        numbered[int(parts[0])] = parts[1]
    if sorted(numbered) != list(range(1, len(numbered) + 1)):
        raise DatasetError(f"{path}: class numbers must run 1..N without gaps or repeats.")
    if not numbered:
        raise DatasetError(f"{path}: lists no classes. Unpack {SPLITS_NAME} again.")
    return [numbered[number] for number in sorted(numbered)]


def _index_videos(videos_dir: Path) -> dict[str, Path]:
    """Every clip under ``UCF-101/<Class>/``, keyed by its lower-cased ``Class/file`` path."""
    index = {}
    for folder in sorted(videos_dir.iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith(".") and path.suffix.lower() == ".avi":
                    index[f"{folder.name}/{path.name}".lower()] = path
    return index


@dataclass(frozen=True)
class _ListedClip:
    list_file: Path
    line: int
    relative: str
    label: int


def _read_split_list(path: Path, label_of: dict[str, int], classes: list[str]) -> list[_ListedClip]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing. Unpack {SPLITS_NAME} again.")
    clips = []
    for line, relative, number in read_list_file(path):
        class_name = relative.split("/")[0].lower()
        if class_name not in label_of:
            raise DatasetError(f"{path}, line {line}: class folder of {relative!r} is not in classInd.txt.")
        label = label_of[class_name]
        if number is not None and number != label + 1:
            raise DatasetError(f"{path}, line {line}: {relative} is labelled {number}, but classInd.txt "
                               f"numbers {classes[label]} {label + 1}.")
        clips.append(_ListedClip(path, line, relative, label))
    return clips


def _as_samples(clips: list[_ListedClip]) -> list[Sample]:
    """Listed clips as samples named by their relative paths (enough to tell their groups)."""
    return [Sample(Path(clip.relative), clip.label) for clip in clips]


def load_split(root: str | os.PathLike, split: int) -> DatasetSplit:
    """Official split `split` (1, 2 or 3): train from trainlist0N.txt, validation from testlist0N.txt.

    Labels follow classInd.txt. Listed clips missing on disk are left out and reported in
    `warnings`. Raises DatasetError if a clip group has clips on both sides.
    """
    if split not in SPLITS:
        raise DatasetError(f"UCF101 has official splits 1, 2 and 3, not {split!r}.")
    layout = _layout(root)
    classes = read_class_index(layout.lists / "classInd.txt")
    label_of = {name.lower(): label for label, name in enumerate(classes)}
    train_list = layout.lists / f"trainlist{split:02d}.txt"
    test_list = layout.lists / f"testlist{split:02d}.txt"
    train = _read_split_list(train_list, label_of, classes)
    test = _read_split_list(test_list, label_of, classes)

    leaks = leaking_groups(_as_samples(train), _as_samples(test))
    if leaks:
        raise DatasetError(
            f"UCF101 split {split}: {len(leaks)} clip group(s) are in both {train_list.name} and {test_list.name} "
            f"(e.g. {leaks[0]}), which would leak near-identical clips into validation. The list files in "
            f"{layout.lists} are not the official ones: unpack {SPLITS_NAME} again."
        )

    on_disk = _index_videos(layout.videos)
    warnings = []
    samples: dict[str, list[Sample]] = {}
    for side, listed, list_file in (("train", train, train_list), ("val", test, test_list)):
        samples[side] = [Sample(on_disk[c.relative.lower()], c.label) for c in listed if c.relative.lower() in on_disk]
        missing = [c.relative for c in listed if c.relative.lower() not in on_disk]
        if missing:
            warnings.append(f"{list_file}: {len(missing)} listed clip(s) are missing under {layout.videos} and "
                            f"were left out (e.g. {', '.join(missing[:3])}). Run validate() for a full report.")
    return DatasetSplit(classes, samples["train"], samples["val"], f"UCF101 official split {split}", warnings)


# --------------------------------------------------------------------------- validation


@dataclass
class ValidationReport:
    root: Path
    classes: list[str] = field(default_factory=list)  # class folders found under UCF-101/
    num_videos: int = 0
    missing: list[str] = field(default_factory=list)  # listed in a split file, not on disk
    unlisted: list[str] = field(default_factory=list)  # on disk, in no split file
    unreadable: list[str] = field(default_factory=list)  # "Class/file.avi (why)": empty or not a video
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        lines = [
            f"UCF101 at {self.root}: {'OK' if self.ok else f'{len(self.problems)} problem(s)'}",
            f"  classes: {len(self.classes)} (the official release has {OFFICIAL_CLASSES})",
            f"  videos: {self.num_videos:,} (the official release has {OFFICIAL_VIDEOS:,})",
            f"  listed in a split file but missing: {len(self.missing)}",
            f"  in no split file: {len(self.unlisted)}",
            f"  empty or unreadable: {len(self.unreadable)}",
        ]
        if self.problems:
            lines.append("Problems:")
            lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def _examples(items: Sequence[str], count: int = 5) -> str:
    shown = ", ".join(items[:count])
    return shown + (f" and {len(items) - count} more" if len(items) > count else "")


def validate(
    root: str | os.PathLike, *, open_videos: bool = True, progress: Callable[[int, int], None] | None = None
) -> ValidationReport:
    """Check an unpacked UCF101 folder: layout, split files, and that every clip is there and opens.

    open_videos: open each clip's container with PyAV (headers only, no decoding); off, only
        empty files are caught. `progress(checked, total)` follows that step.
    """
    root = Path(root)
    report = ValidationReport(root)
    videos_dir, lists_dir = root / VIDEOS_DIR, root / LISTS_DIR
    on_disk: dict[str, Path] = {}
    if videos_dir.is_dir():
        report.classes = sorted(p.name for p in videos_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        on_disk = _index_videos(videos_dir)
        report.num_videos = len(on_disk)
        if not on_disk:
            report.problems.append(f"{videos_dir} holds no .avi clips: unpack {ARCHIVE_NAME} again.")
    else:
        report.problems.append(f"{videos_dir} is missing: unpack {ARCHIVE_NAME} into {root}.")

    listed = _check_split_files(lists_dir, report)
    if listed is not None and on_disk:
        report.missing = sorted(listed[key] for key in listed.keys() - on_disk.keys())
        report.unlisted = sorted(f"{p.parent.name}/{p.name}" for key, p in on_disk.items() if key not in listed)
        if report.missing:
            report.problems.append(f"{len(report.missing)} clip(s) listed in the split files are missing: "
                                   f"{_examples(report.missing)}.")
        if report.unlisted:
            report.problems.append(f"{len(report.unlisted)} clip(s) are in no split file: "
                                   f"{_examples(report.unlisted)}.")

    for checked, path in enumerate(on_disk.values(), start=1):
        why = _unreadable_reason(path, open_videos)
        if why:
            report.unreadable.append(f"{path.parent.name}/{path.name} ({why})")
        if progress is not None:
            progress(checked, len(on_disk))
    if report.unreadable:
        report.problems.append(f"{len(report.unreadable)} clip(s) are empty or unreadable: "
                               f"{_examples(report.unreadable)}. Unpack {ARCHIVE_NAME} again.")
    return report


def _check_split_files(lists_dir: Path, report: ValidationReport) -> dict[str, str] | None:
    """Checks classInd and the six lists; returns every listed clip (lower-cased key -> as listed)."""
    if not lists_dir.is_dir():
        report.problems.append(f"{lists_dir} is missing: unpack {SPLITS_NAME} into {report.root}.")
        return None
    try:
        classes = read_class_index(lists_dir / "classInd.txt")
    except DatasetError as exc:
        report.problems.append(str(exc))
        return None
    folders = {name.lower() for name in report.classes}
    absent = [name for name in classes if name.lower() not in folders]
    if report.classes and absent:
        report.problems.append(f"{len(absent)} class(es) of classInd.txt have no folder: {_examples(absent)}.")
    indexed = {name.lower() for name in classes}
    extra = [name for name in report.classes if name.lower() not in indexed]
    if extra:
        report.problems.append(f"{len(extra)} folder(s) under {VIDEOS_DIR} are not in classInd.txt: "
                               f"{_examples(extra)}.")

    label_of = {name.lower(): label for label, name in enumerate(classes)}
    listed: dict[str, str] = {}
    for split in SPLITS:
        try:
            train = _read_split_list(lists_dir / f"trainlist{split:02d}.txt", label_of, classes)
            test = _read_split_list(lists_dir / f"testlist{split:02d}.txt", label_of, classes)
        except DatasetError as exc:
            report.problems.append(str(exc))
            continue
        leaks = leaking_groups(_as_samples(train), _as_samples(test))
        if leaks:
            report.problems.append(f"split {split}: {len(leaks)} clip group(s) are on both the train and the "
                                   f"test side: {_examples(leaks)}.")
        for clip in train + test:
            listed.setdefault(clip.relative.lower(), clip.relative)
    return listed


def _unreadable_reason(path: Path, open_videos: bool) -> str | None:
    try:
        if path.stat().st_size == 0:
            return "0 bytes"
    except OSError as exc:
        return exc.strerror or str(exc)
    if not open_videos:
        return None
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.video:
                return "no video stream"
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        return f"does not open: {getattr(exc, 'strerror', None) or exc}"
    return None
