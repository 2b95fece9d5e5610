"""Where sweep rows live: a results file (.parquet or .csv) written atomically, and a journal beside it.

Every finished point is appended to the journal (``<output>.partial.jsonl``, one JSON row a line, flushed and
fsynced) the moment it arrives, so a sweep that is killed loses no finished point; the results file is
rewritten atomically (temporary file, then rename) every few seconds and at the end, after which the journal
is removed. Resuming reads both: rows of the results file, then rows of the journal (a torn last line from a
kill is skipped). Journal, lock and temporary files are made by moesim.workloads.files: created exclusively, never
through a symbolic link, and a journal moesim did not create is refused.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from moesim.workloads.documents import decode, parse_document
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_folder_writable, journal_mark, open_journal, read_own_text, replacing

FORMATS = (".parquet", ".csv")
KEY_COLUMN = "key"


def check_output(path: Path) -> None:
    """Refuse, before any point runs, a results path moesim cannot write: a wrong suffix, a link or folder or
    device at it or at its journal, a missing or unwritable folder. (An existing results file is resumed.)"""
    if path.suffix not in FORMATS:
        raise ScenarioError(f"-o {path}: the results file must end in {' or '.join(FORMATS)}")
    if path.suffix == ".parquet":
        _pyarrow()
    for target in (path, journal_path(path)):
        if target.is_symlink():
            raise ScenarioError(f"-o {path}: {target} is a symbolic link; moesim never writes through one; "
                                "remove the link or choose another -o")
        if target.exists() and not stat.S_ISREG(target.lstat().st_mode):
            kind = "a directory" if target.is_dir() else "not a regular file"
            raise ScenarioError(f"-o {path}: {target} is {kind}; choose another -o")
    if not path.parent.is_dir():
        raise ScenarioError(f"-o {path}: folder {str(path.parent)!r} does not exist; create it first")
    check_folder_writable(path, "-o")


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
        self.lock_path = lock_path = self.path.with_name(f".{self.path.name}.lock")
        try:  # never through a link: O_NOFOLLOW refuses one at the lock's name, dangling or not
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as err:
            why = "is a symbolic link" if err.errno == errno.ELOOP else err.strerror
            raise ScenarioError(f"-o {self.path}: lock file {lock_path} {why}; remove it or choose another -o") \
                from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ScenarioError(f"-o {self.path}: lock file {lock_path} is not a regular file; remove it")
        self._lock_file = os.fdopen(fd, "r+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            self._lock_file = None
            raise ScenarioError(f"-o {self.path}: another moesim sweep is writing it; wait for it or choose "
                                "another -o") from None

    def unlock(self) -> None:
        if self._lock_file is not None:
            self.lock_path.unlink(missing_ok=True)
            self._lock_file.close()
            self._lock_file = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Read rows left by an earlier run of this output (results file, then journal); return them by key."""
        rows = read_rows(self.path, own=True) if self.path.exists() else []
        if os.path.lexists(self.journal):
            rows += read_journal(self.journal)
        for row in rows:
            if KEY_COLUMN not in row:
                raise ScenarioError(f"{self.path} is not a moesim sweep results file (no {KEY_COLUMN!r} column); "
                                    "choose another -o or pass --force")
            self.rows[row[KEY_COLUMN]] = row
        return self.rows

    def add(self, row: dict[str, Any]) -> None:
        if self._journal_file is None:
            self._journal_file = open_journal(self.journal, "sweep", "-o")
        try:
            self._journal_file.write(json.dumps(row, default=str) + "\n")
            self._journal_file.flush()
            os.fsync(self._journal_file.fileno())
        except OSError as err:  # a full disk: the rows so far are in the journal; say so in one line
            raise ScenarioError(f"-o {self.path}: cannot write the journal {self.journal.name}: "
                                f"{err.strerror or err}; free space and rerun to resume") from None
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
    with replacing(path, "-o") as out:
        if path.suffix == ".parquet":
            _write_parquet(out, rows, columns, types or {})
        else:
            _write_csv(out, rows, columns)


def _write_csv(out, rows: list[dict[str, Any]], columns: list[str]) -> None:
    f = io.TextIOWrapper(out, encoding="utf-8", newline="")
    writer = csv.DictWriter(f, fieldnames=columns, restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    f.flush()
    f.detach()  # the caller's file stays open for its fsync and rename


def _write_parquet(out, rows: list[dict[str, Any]], columns: list[str], types: dict[str, str]) -> None:
    pa = _pyarrow()
    arrow = {"text": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    arrays = {}
    for column in columns:
        values = _uniform([row.get(column) for row in rows])
        kind = types.get(column)
        if kind == "float":
            values = [None if v is None else float(v) for v in values]
        arrays[column] = pa.array(values, type=arrow.get(kind))
    pa.parquet.write_table(pa.table(arrays), out)


def _uniform(values: list) -> list:
    """One type per column for Arrow: ints and floats mix as floats; any other mix becomes text."""
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {bool} or kinds <= {int} or kinds <= {str} or kinds <= {float}:
        return values
    if kinds <= {int, float}:
        return [None if v is None else float(v) for v in values]
    return [None if v is None else str(v) for v in values]


def read_rows(path: Path, own: bool = False) -> list[dict[str, Any]]:
    """The rows of a results file an earlier run left. A file without a ``key`` column (a header-only CSV too)
    is not one of moesim's and is refused rather than overwritten; with ``own`` (resuming into it) it must also
    be UTF-8 and not a link, and an empty file is refused too (``--force`` replaces it)."""
    if own and path.is_symlink():
        raise ScenarioError(f"-o {path} is a symbolic link; moesim never writes through one; remove the link or "
                            "choose another -o")
    if path.suffix == ".parquet":
        pa = _pyarrow()
        try:
            table = pa.parquet.read_table(path)
        except pa.ArrowException as err:
            raise ScenarioError(f"{path}: not a readable parquet file ({err}); choose another -o or pass --force") \
                from None
        _check_header(path, table.column_names)
        return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]
    text = decode(path.read_bytes(), f"-o {path}", fix="choose another -o or pass --force")
    if not text.strip() and not own:
        return []  # an empty file holds nothing to keep
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_header(path, reader.fieldnames or [])
    # A row shorter than the header has None cells, a longer one a None column: both are cells not written.
    return [{k: v if k == KEY_COLUMN else parse_cell(v) for k, v in row.items()
             if v not in ("", None) and k is not None} for row in reader]


def _check_header(path: Path, columns: list[str]) -> None:
    if KEY_COLUMN not in columns:
        raise ScenarioError(f"-o {path} is not a moesim sweep results file (no {KEY_COLUMN!r} column); choose "
                            "another -o or pass --force")


FIX_JOURNAL = "delete the journal (its points are run again) or pass --force"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The rows of a journal moesim created (its mark line first, then one JSON object a line); a line a kill cut
    short is skipped (its point is run again), a line that is JSON but not a row is refused with its number."""
    text = read_own_text(path, "-o", FIX_JOURNAL)
    if not text.startswith(journal_mark("sweep")):
        raise ScenarioError(f"-o: journal {path} was not created by moesim (no journal header); remove it or "
                            "choose another -o")
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if number == 1 or not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError:  # cut short by a kill (or run together with the next row): run it again
            continue
        except (RecursionError, ValueError):
            pass  # refused just below, by the one reader, with its reason
        try:
            row = parse_document(line, f"{path} line {number}", "json")
        except ScenarioError as err:
            raise ScenarioError(f"{str(err).rsplit('; ', 1)[0]}; {FIX_JOURNAL}") from None
        if not isinstance(row, dict) or not isinstance(row.get(KEY_COLUMN), str):
            raise ScenarioError(f"{path} line {number}: not a sweep row (a JSON object with a text "
                                f"{KEY_COLUMN!r}); {FIX_JOURNAL}")
        rows.append(row)
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
