"""Writing files so that nobody ever reads half of one.

Every file a run, a dataset, a download or an export produces goes through `atomic_output`: it is
written beside its target under a temporary name and renamed into place only when complete, so an
interrupted program leaves either the old file or the new one, and no debris.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `target` to write to; it replaces `target` only if the block
    succeeds, so readers never see half a file, and a write that fails leaves no debris (one
    killed with SIGKILL leaves its temporary file, under a name no reader takes)."""
    target = Path(target)
    tmp = target.with_name(f".{target.stem}.tmp{os.getpid()}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
