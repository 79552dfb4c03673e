"""The official UCF101 files: where to get them, their sizes and checksums, downloading them and
unpacking them into the layout `actionrec.datasets.ucf101` reads (described there).

UCF101.rar needs an external extractor (unar, or RARLAB's unrar); the splits zip is read with
`zipfile`. Each folder is unpacked into a staging folder and renamed into place once complete.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from actionrec.datasets.download import Progress, fetch
from actionrec.errors import DownloadError, ExtractionError, HostUnreachableError

log = logging.getLogger("actionrec.datasets.ucf101")  # where these messages were always logged

ARCHIVE_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101.rar"
SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"
ARCHIVE_NAME = "UCF101.rar"
SPLITS_NAME = "UCF101TrainTestSplits-RecognitionTask.zip"
VIDEOS_DIR = "UCF-101"
LISTS_DIR = "ucfTrainTestlist"


@dataclass(frozen=True)
class KnownFile:
    size: int
    sha256: str


# Sizes and SHA-256 digests of the official files, as published by the tensorflow/datasets URL
# checksum registry (splits zip) and torchvision's dataset definitions (both files).
KNOWN_FILES = {
    ARCHIVE_URL: KnownFile(6_932_971_618, "ca8dfadb4c891cb11316f94d52b6b0ac2a11994e67a0cae227180cd160bd8e55"),
    SPLITS_URL: KnownFile(113_943, "5c0d1a53b8ed364a2ac830a73f405e51bece7d98ce1254fd19ed4a36b224bd27"),
}

RAR_INSTALL_COMMAND = "sudo apt-get install unar"

# --------------------------------------------------------------------------- download


def download(
    root: str | os.PathLike,
    *,
    archive_url: str = ARCHIVE_URL,
    splits_url: str = SPLITS_URL,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download the splits zip, then the archive, into `root`; returns `root`.

    A file already in `root` with the expected size is kept. Interrupted downloads resume from
    ``<name>.part``. The official files are checked against their published size and SHA-256;
    for other URLs the size the server announces is checked and the SHA-256 of what arrived is
    written to ``<name>.sha256``. `progress(done_bytes, total_bytes)` is called as each file
    arrives (the splits zip first, then the archive; total is None when unknown).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for url, name in ((splits_url, SPLITS_NAME), (archive_url, ARCHIVE_NAME)):
        known = KNOWN_FILES.get(url)
        dest = root / name
        if dest.is_file():
            if known is None or dest.stat().st_size == known.size:
                log.info("%s is already there, not downloading it", dest)
                continue
            raise DownloadError(
                f"{dest} is {dest.stat().st_size:,} bytes but the official {name} is {known.size:,} bytes. "
                f"Delete it (or replace it with the complete file) and run again."
            )
        try:
            fetch(url, dest, size=known.size if known else None, sha256=known.sha256 if known else None,
                  progress=progress, timeout=timeout)
        except HostUnreachableError as exc:
            raise HostUnreachableError(
                f"{exc} Without access to it, download {ARCHIVE_NAME} and {SPLITS_NAME} on another machine "
                f"(from {ARCHIVE_URL} and {SPLITS_URL}) and either put them in {root} or pass them as "
                f"local files (--archive PATH --splits PATH)."
            ) from exc
    return root


# --------------------------------------------------------------------------- extraction

# Debian's 7-Zip is built without the RAR codec and bsdtar cannot read solid RAR archives,
# so only these two read UCF101.rar; unar is free software and packaged by Debian.
_RAR_TOOLS = (
    ("unar", ["-quiet", "-force-overwrite", "-no-directory", "-no-recursion", "-output-directory", "{out}",
              "{archive}"]),
    ("unrar", ["x", "-o+", "-idq", "{archive}", "{out}/"]),
)


def find_rar_tool() -> list[str] | None:
    """The command line (with {archive} and {out} placeholders) of an installed RAR extractor."""
    for program, arguments in _RAR_TOOLS:
        executable = shutil.which(program)
        if executable:
            return [executable, *arguments]
    return None


def extract(
    root: str | os.PathLike,
    *,
    archive: str | os.PathLike | None = None,
    splits: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Unpack the archive into ``root/UCF-101/`` and the splits zip into ``root/ucfTrainTestlist/``.

    archive, splits: the downloaded files; by default ``root/UCF101.rar`` and
        ``root/UCF101TrainTestSplits-RecognitionTask.zip``.
    A folder that is already there is kept unless `force`. Each folder appears only once complete.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    splits_path = Path(splits) if splits is not None else root / SPLITS_NAME
    archive_path = Path(archive) if archive is not None else root / ARCHIVE_NAME
    if force or not (root / LISTS_DIR / "classInd.txt").is_file():
        extract_splits(splits_path, root)
    if force or not (root / VIDEOS_DIR).is_dir():
        extract_videos(archive_path, root)
    return root


def extract_splits(zip_path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """The list files of the splits zip, flattened into ``root/ucfTrainTestlist/``."""
    zip_path, root = Path(zip_path), Path(root)
    if not zip_path.is_file():
        raise ExtractionError(f"{zip_path}: no such file. Download {SPLITS_NAME} from {SPLITS_URL} "
                              "and pass its path, or put it in the dataset folder.")
    target = root / LISTS_DIR
    staging = root / f".{LISTS_DIR}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.infolist():
                name = member.filename.replace("\\", "/").rsplit("/", 1)[-1]
                # Only the flat list files are wanted; taking the base name also keeps every
                # write inside the staging folder whatever the member's path says.
                if member.is_dir() or not name.lower().endswith(".txt") or name.startswith("."):
                    continue
                (staging / name).write_bytes(archive.read(member))
    except (zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExtractionError(f"{zip_path}: cannot unpack it ({exc}). Download {SPLITS_NAME} again.") from None
    if not (staging / "classInd.txt").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ExtractionError(f"{zip_path}: has no classInd.txt, so it is not {SPLITS_NAME}.")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def extract_videos(archive_path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Unpack UCF101.rar with an external tool into ``root/UCF-101/``."""
    archive_path, root = Path(archive_path), Path(root)
    if not archive_path.is_file():
        raise ExtractionError(f"{archive_path}: no such file. Download {ARCHIVE_NAME} from {ARCHIVE_URL} "
                              "and pass its path, or put it in the dataset folder.")
    root.mkdir(parents=True, exist_ok=True)
    command = find_rar_tool()
    if command is None:
        raise ExtractionError(
            f"Unpacking {archive_path.name} needs the 'unar' program (or RARLAB's 'unrar'), and neither is "
            f"installed. Install it with: {RAR_INSTALL_COMMAND}  (macOS: brew install unar). Debian's 7zip "
            "and bsdtar cannot unpack this archive."
        )
    free = shutil.disk_usage(root).free
    needed = archive_path.stat().st_size * 11 // 10  # the videos are already compressed
    if free < needed:
        raise ExtractionError(f"{root}: {free / 1e9:.1f} GB free, unpacking {archive_path.name} needs about "
                              f"{needed / 1e9:.1f} GB. Free some space or pick a dataset folder on another disk.")

    staging = root / f".{VIDEOS_DIR}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    arguments = [command[0]] + [a.format(archive=archive_path.resolve(), out=staging.resolve()) for a in command[1:]]
    result = subprocess.run(arguments, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        details = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ExtractionError(
            f"{archive_path}: {Path(command[0]).name} failed (exit code {result.returncode}): "
            f"{' / '.join(details) or 'no message'}. If the archive is damaged, delete it and download it again."
        )
    unpacked = _unpacked_videos_folder(staging)
    target = root / VIDEOS_DIR
    shutil.rmtree(target, ignore_errors=True)
    unpacked.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _unpacked_videos_folder(staging: Path) -> Path:
    if (staging / VIDEOS_DIR).is_dir():
        return staging / VIDEOS_DIR
    entries = [p for p in staging.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return staging
