"""Files in a server's data folder (`--data-dir`), written so that a server killed at any moment
leaves each one as it was or as it was written, never half: under a temporary name, flushed to
disk, then renamed into place.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def durable_write(path: Path, fill: Callable[[Path], object]) -> None:
    """Write `path` through `fill(temporary path)`, flushed to disk and renamed into place, so that a
    crash leaves the old file or the new one, never half (a unique temporary name: threads write too)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fill(tmp)
        with open(tmp, "rb+") as out:
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON in `path`, written durably."""
    text = json.dumps(data, indent=1) + "\n"
    durable_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`; None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
