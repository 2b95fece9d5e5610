"""Files in and out: inputs checked before they are read, outputs never clobbered nor half-written.

Every input file moesim reads (scenarios, sweep specs, traces, routing samples, results for reports) is first
checked by :func:`check_input` against a size limit, so an oversized file is refused with the limit named instead
of being parsed. Every file moesim writes (results, profiles, reports, traces, pictures, routing samples) goes through
:func:`write_atomic`: the bytes land in a temporary file in the target's folder, which is then renamed over the
target in one step, so an interrupted write leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from workloads.errors import ScenarioError


def check_input(path: str | Path, max_bytes: int, what: str, hint: str = "",
                error: type[ScenarioError] = ScenarioError) -> Path:
    """The path of an existing file of at most ``max_bytes``, or a one-line ``error`` naming ``what`` (e.g.
    ``scenario file``), the file and the limit (with ``hint``, how to get under it)."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {str(path)!r} is a directory; give a file")
    if not path.exists():
        raise error(f"{what} {str(path)!r} not found")
    if not path.is_file():
        raise error(f"{what} {str(path)!r} is not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        more = f"; {hint}" if hint else ""
        raise error(f"{what} {str(path)!r} is {size:,} bytes; the limit is {max_bytes:,}{more}")
    return path


def check_target(path: str | Path, force: bool, flag: str = "--output") -> Path:
    """The path to write, or a one-line ScenarioError: it exists (without ``force``), is a folder, or its
    folder is missing. ``flag`` names the option in the message.

    Every command refuses a missing output folder rather than creating it: a typo in a path should not
    quietly grow a directory tree (the message names the folder, so ``mkdir -p`` is one step away)."""
    path = Path(path)
    if path.is_dir():
        raise ScenarioError(f"{flag} {path}: is a directory; give a file name")
    if path.exists() and not force:
        raise ScenarioError(f"{flag} {path}: the file exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise ScenarioError(f"{flag} {path}: directory {str(path.parent)!r} does not exist; create it first")
    return path


def current_umask() -> int:
    """The process's umask (POSIX can only read it by setting it, so set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes, force: bool = False, flag: str = "--output") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; refuses an existing file unless ``force``."""
    path = check_target(path, force, flag)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the mode any other tool would: the old file's when replacing
        # one, else 0666 less the umask.
        os.fchmod(fd, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
