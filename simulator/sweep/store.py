"""Where sweep rows live: a results file (.parquet or .csv) written atomically, and a journal beside it.

Every finished point is appended to the journal (``<output>.partial.jsonl``, one JSON row a line, flushed and
fsynced) the moment it arrives, so a sweep that is killed loses no finished point; the results file is
rewritten atomically (temporary file, then rename) every few seconds and at the end, after which the journal
is removed. Resuming reads both: rows of the results file, then rows of the journal (a torn last line from a
kill is skipped).
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from workloads.errors import ScenarioError

FORMATS = (".parquet", ".csv")
KEY_COLUMN = "key"


def check_output(path: Path) -> None:
    if path.suffix not in FORMATS:
        raise ScenarioError(f"-o {path}: the results file must end in {' or '.join(FORMATS)}")
    if path.suffix == ".parquet":
        _pyarrow()
    if not path.parent.is_dir():
        raise ScenarioError(f"-o {path}: folder {str(path.parent)!r} does not exist; create it first")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ScenarioError("-o *.parquet needs pyarrow: pip install 'moesim[sweep]', or write -o results.csv") \
            from None
    return pyarrow


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial.jsonl")


class ResultStore:
    """The rows of one sweep, keyed by point key; ``add`` journals a row, ``flush`` rewrites the results file."""

    def __init__(self, path: Path, columns_first: list[str], types: dict[str, str] | None = None,
                 flush_every_s: float = 5.0):
        self.path = path
        self.types = types or {}
        self.journal = journal_path(path)
        self.columns_first = columns_first
        self.flush_every_s = flush_every_s
        self.rows: dict[str, dict[str, Any]] = {}
        self._journal_file = None
        self._lock_file = None
        self._last_flush = time.monotonic()

    def lock(self) -> None:
        """Hold an exclusive lock on this output for the life of the run: two sweeps must not interleave rows."""
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._lock_file = lock_path.open("a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise ScenarioError(f"-o {self.path}: another moesim sweep is writing it; wait for it or choose "
                                "another -o") from None

    def unlock(self) -> None:
        if self._lock_file is not None:
            Path(self._lock_file.name).unlink(missing_ok=True)
            self._lock_file.close()
            self._lock_file = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Read rows left by an earlier run of this output (results file, then journal); return them by key."""
        rows = read_rows(self.path) if self.path.exists() else []
        if self.journal.exists():
            rows += read_journal(self.journal)
        for row in rows:
            if KEY_COLUMN not in row:
                raise ScenarioError(f"{self.path} is not a moesim sweep results file (no {KEY_COLUMN!r} column); "
                                    "choose another -o or pass --force")
            self.rows[row[KEY_COLUMN]] = row
        return self.rows

    def add(self, row: dict[str, Any]) -> None:
        if self._journal_file is None:
            self._journal_file = self.journal.open("a")
        self._journal_file.write(json.dumps(row, default=str) + "\n")
        self._journal_file.flush()
        os.fsync(self._journal_file.fileno())
        self.rows[row[KEY_COLUMN]] = row
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Rewrite the results file atomically with every row so far (rows in the order they were added)."""
        write_rows(self.path, list(self.rows.values()), self.columns_first, self.types)
        self._last_flush = time.monotonic()

    def finish(self) -> None:
        """Final write; the journal is no longer needed once the results file holds every row."""
        self.flush()
        self.close()
        self.journal.unlink(missing_ok=True)

    def close(self) -> None:
        if self._journal_file is not None:
            self._journal_file.close()
            self._journal_file = None


def write_rows(path: Path, rows: list[dict[str, Any]], columns_first: list[str],
               types: dict[str, str] | None = None) -> None:
    """Write ``rows`` (columns_first, then any others in order of appearance); ``types`` gives a column's Parquet
    type ("text", "int", "float", "bool") even where every cell of it is empty."""
    columns = list(dict.fromkeys([*columns_first, *(c for row in rows for c in row)]))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.suffix == ".parquet":
            _write_parquet(tmp, rows, columns, types or {})
        else:
            _write_csv(tmp, rows, columns)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _write_parquet(path: Path, rows: list[dict[str, Any]], columns: list[str], types: dict[str, str]) -> None:
    pa = _pyarrow()
    arrow = {"text": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    arrays = {}
    for column in columns:
        values = _uniform([row.get(column) for row in rows])
        kind = types.get(column)
        if kind == "float":
            values = [None if v is None else float(v) for v in values]
        arrays[column] = pa.array(values, type=arrow.get(kind))
    pa.parquet.write_table(pa.table(arrays), path)


def _uniform(values: list) -> list:
    """One type per column for Arrow: ints and floats mix as floats; any other mix becomes text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool} or kinds <= {int} or kinds <= {str} or kinds <= {float}:
        return values
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in values]
    return [None if v is None else str(v) for v in values]


def read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        pa = _pyarrow()
        try:
            rows = pa.parquet.read_table(path).to_pylist()
        except pa.ArrowException as err:
            raise ScenarioError(f"{path}: not a readable parquet file ({err}); choose another -o or pass --force") \
                from None
        return [{k: v for k, v in row.items() if v is not None} for row in rows]
    with path.open(newline="") as f:
        return [{k: v if k == KEY_COLUMN else parse_cell(v) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]


def read_journal(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the line a kill cut short; its point is simply run again
            continue
    return rows


def parse_cell(text: str) -> Any:
    """A CSV cell back to its value: int, float, bool, else text (floats round-trip exactly via repr)."""
    if text in ("True", "False"):
        return text == "True"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text
