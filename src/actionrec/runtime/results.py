"""A prediction of many videos: one `BatchResult` per video, its row, and the results files a rerun
resumes. One schema (`COLUMNS`), one writer per format: JSON lines, CSV and Parquet."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actionrec.errors import ActionrecError
from actionrec.files import atomic_output
from actionrec.runtime.answer import Prediction

# A results row: each column and its type in a Parquet file (`top_k` is JSON text outside JSON lines).
# With regions, a video has a row of its own (`region` empty) and one per region (`region` its id, `box`
# its [x, y, w, h] as JSON text outside JSON lines).
COLUMNS = {"path": "string", "region": "string", "box": "string", "action": "string", "confidence": "float64",
           "top_k": "string", "uncertain": "bool_", "error": "string", "reason": "string"}
RESULT_COLUMNS = tuple(COLUMNS)
# Failures that may pass when tried again (the machine was busy, a worker was lost); a rerun with the
# same results file tries these again and keeps every other row.
RETRIED_REASONS = frozenset({"decode_timeout", "worker_lost", "internal_error"})


@dataclass
class BatchResult:
    """One video of a batch: its prediction, or why there is none (`reason`: a stable code). `path`
    is a str for a video in an object store (`s3://...`), which a Path would mangle."""

    path: Path | str
    prediction: Prediction | None = None
    error: str | None = None
    reason: str | None = None

    def row(self) -> dict:
        """What a results file keeps of the video's answer: the COLUMNS."""
        answer = self.prediction.to_dict() if self.prediction else {}
        kept = {name: answer.get(name) for name in ("action", "confidence", "top_k", "uncertain")}
        return {"path": str(self.path), "region": None, "box": None, **kept, "error": self.error,
                "reason": self.reason}

    def region_rows(self) -> list[dict]:
        """A row for each region of the answer (none without regions), with all of the region's fields."""
        regions = self.prediction.to_dict().get("regions") if self.prediction else None
        return [{"path": str(self.path), "region": region["id"], **{k: v for k, v in region.items() if k != "id"},
                 "error": None, "reason": None} for region in regions or []]


def result_key(path: Path | str) -> str:
    """How a results file names a video: a local file by its absolute path, a URI as it is."""
    return str(path) if "://" in str(path) else str(Path(path).resolve())


def _row_key(row: dict) -> str:
    path = row.get("path") or row.get("file")
    return result_key(str(path)) if path else ""  # a row that names no video matches none


def read_rows(path: Path) -> list[dict]:
    """The rows an earlier run wrote to `path` (JSON lines, CSV or Parquet); none if there is no file."""
    if not path.is_file():
        return []
    if path.suffix.lower() == ".parquet":
        return _parquet().parquet.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    return [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]


def still_to_do(path: Path, videos: list[Path | str]) -> tuple[list[Path | str], list[dict]]:
    """(the videos an earlier run's results file has no final answer for, the rows of it to keep): a
    video answered, or failed for a reason a retry would not change, is not tried again."""
    earlier = read_rows(path)
    settled = {_row_key(row) for row in earlier if row.get("action") or row.get("reason") not in RETRIED_REASONS}
    todo = [video for video in videos if result_key(video) not in settled]
    redone = {result_key(video) for video in todo}
    return todo, [row for row in earlier if _row_key(row) not in redone]


def _flat(row: dict) -> dict:
    """Lists as JSON text, for a column (CSV, Parquet)."""
    return row | {name: json.dumps(row[name]) if row.get(name) else None for name in ("top_k", "box")}


class ResultsFile:
    """Rows written to `path` as results come, after `kept_rows` of an earlier run (the rows of videos
    tried again are left out, so the file holds one row per video). JSON lines (a row with the whole
    prediction) and CSV are flushed row by row, so a killed run keeps every answer so far; Parquet,
    a columnar file, is written at `close`."""

    def __init__(self, path: Path, kept_rows: list[dict] | None = None) -> None:
        self.path = path
        self.format = {".csv": "csv", ".parquet": "parquet"}.get(path.suffix.lower(), "jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = list(kept_rows or [])  # Parquet's, until close
        self.file: Any = None
        if self.format == "parquet":
            _parquet()
            return
        earlier = read_rows(path)
        if (kept_rows is not None and len(kept_rows) < len(earlier)) or (
                self.format == "csv" and earlier and list(earlier[0]) != list(RESULT_COLUMNS)):
            self._rewrite(earlier if kept_rows is None else kept_rows)  # an older file's columns too
        fresh = not path.exists() or path.stat().st_size == 0
        self.file = open(path, "a", encoding="utf-8", newline="")
        self.csv = csv.DictWriter(self.file, RESULT_COLUMNS) if self.format == "csv" else None
        if self.csv is not None and fresh:
            self.csv.writeheader()

    def _rewrite(self, rows: list[dict]) -> None:
        with atomic_output(self.path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
            if self.format == "csv":
                writer = csv.DictWriter(out, RESULT_COLUMNS)
                writer.writeheader()
                writer.writerows({name: row.get(name) for name in RESULT_COLUMNS} for row in rows)
            else:
                out.writelines(json.dumps(row) + "\n" for row in rows)

    def write(self, result: BatchResult) -> None:
        row = result.row()
        regions = result.region_rows()
        if self.format == "parquet":
            self.rows += [_flat(each) for each in [row, *regions]]
        elif self.csv is not None:
            self.csv.writerows(_flat({name: each.get(name) for name in RESULT_COLUMNS}) for each in [row, *regions])
        else:
            answer = result.prediction.to_dict() if result.prediction else {}
            self.file.writelines(json.dumps(each) + "\n" for each in [row | answer, *regions])
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.format == "parquet":
            arrow = _parquet()
            schema = arrow.schema([(name, getattr(arrow, kind)()) for name, kind in COLUMNS.items()])
            columns = {name: [row.get(name) for row in self.rows] for name in RESULT_COLUMNS}
            with atomic_output(self.path) as tmp:
                arrow.parquet.write_table(arrow.table(columns, schema=schema), tmp)


def _parquet() -> Any:
    """pyarrow, with its parquet module loaded; an error that says how to get it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ActionrecError("Parquet output needs pyarrow (`pip install 'actionrec[ray]'` brings it); "
                             "or write .jsonl.") from None
    return pyarrow
