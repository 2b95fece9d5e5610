"""Files in and out: inputs checked before they are read, outputs never clobbered, half-written nor hijacked.

Every input file moesim reads (scenarios, sweep specs, traces, routing samples, results for reports) is first
checked by :func:`check_input` against a size limit, so an oversized file is refused with the limit named instead
of being parsed. Every output path is checked by :func:`check_target` before the work starts (one rule for all:
not a folder, a link or a device, not an existing file without ``--force``, in a folder that exists and takes a
new file). Every file moesim writes (results, profiles, reports, traces, pictures, routing samples) goes through
:func:`replacing`: the bytes land in a new file with an unpredictable name in the target's folder, created
exclusively and never through a symbolic link (``O_CREAT | O_EXCL | O_NOFOLLOW``), which is then renamed over the
target in one step, so an interrupted write leaves either the old file or the new one, never a torn one, and a
link planted at either name is never followed. Files moesim appends to (a sweep's journal) are opened by
:func:`open_journal`, which refuses a link, a hard-linked or foreign-owned file, or one that lacks the first line
moesim writes when it creates one.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from moesim.workloads.errors import ScenarioError

# Flags of every file moesim creates: a new file only (an existing file or link at the name fails with EEXIST),
# never through a link, not inherited by worker processes.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
    """The path to write, or a one-line ScenarioError naming ``flag`` (the option) and the fix: the path is a
    folder, a symbolic link, a device, pipe or socket (``/dev/full``), an existing file (without ``force``), or
    its folder is missing or takes no new file (read-only, no permission, full).

    Every command calls this before its work starts, so a run never ends on a target it cannot write. A missing
    output folder is refused rather than created: a typo in a path should not quietly grow a directory tree."""
    path = Path(path)
    if path.is_symlink():
        raise ScenarioError(f"{flag} {path}: is a symbolic link; moesim never writes through one; remove the link "
                            "or give another file name")
    if path.is_dir():
        raise ScenarioError(f"{flag} {path}: is a directory; give a file name")
    if path.exists() and not stat.S_ISREG(path.lstat().st_mode):
        raise ScenarioError(f"{flag} {path}: is not a regular file (a device, pipe or socket); give a file name")
    if path.exists() and not force:
        raise ScenarioError(f"{flag} {path}: the file exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise ScenarioError(f"{flag} {path}: directory {str(path.parent)!r} does not exist; create it first")
    check_folder_writable(path, flag)
    return path


def check_folder_writable(path: Path, flag: str) -> None:
    """Refuse, in one line, a target whose folder takes no new file: create and remove an empty one there
    (``os.access`` would say yes to root on a read-only file system)."""
    try:
        fd, probe = _create_beside(path, ".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ScenarioError(f"{flag} {path}: cannot create a file in {str(path.parent)!r}: "
                            f"{err.strerror or err}") from None


def current_umask() -> int:
    """The process's umask (POSIX can only read it by setting it, so set it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _create_beside(path: Path, suffix: str, mode: int = 0o600) -> tuple[int, Path]:
    """A new file in ``path``'s folder named ``.<name>.<16 random hex digits><suffix>``, created exclusively and
    never through a link: its descriptor and path. Nobody can predict the name, so nobody can plant a link there."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(tmp, _CREATE, mode), tmp
        except FileExistsError:  # 1 in 2**64 per try; try another name
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


@contextmanager
def replacing(path: str | Path, flag: str = "--output", clobber: bool = True) -> Iterator[BinaryIO]:
    """A binary file to fill; on leaving the block it is flushed to disk and renamed over ``path`` (a link at
    ``path`` is replaced, never followed). With ``clobber=False`` it is linked to ``path`` instead, which fails
    if anything appeared there since the check (no file is overwritten without ``--force``, even in a race).
    On an error nothing at ``path`` changes and the temporary file is removed; an OSError (a full disk, an I/O
    error) becomes a one-line ScenarioError naming ``flag``.

    It does not check ``path`` (see :func:`check_target`): a sweep rewrites its own results file through it."""
    path = Path(path)
    try:
        fd, tmp = _create_beside(path, ".tmp")
    except OSError as err:
        raise ScenarioError(f"{flag} {path}: cannot create a file in {str(path.parent)!r}: "
                            f"{err.strerror or err}") from None
    try:
        # The new file gets the mode any other tool would give it: the old file's when replacing one, else 0666
        # less the umask (the temporary file is 0600 while it is written).
        old = os.lstat(path) if os.path.lexists(path) else None
        os.fchmod(fd, stat.S_IMODE(old.st_mode) if old and stat.S_ISREG(old.st_mode) else 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as out:
            fd = -1
            yield out
            out.flush()
            os.fsync(out.fileno())
        if clobber or not _link(tmp, path):
            os.replace(tmp, path)
    except FileExistsError:
        raise ScenarioError(f"{flag} {path}: the file exists; pass --force to overwrite it") from None
    except OSError as err:
        raise ScenarioError(f"{flag} {path}: cannot write it: {err.strerror or err}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)


def _link(tmp: Path, path: Path) -> bool:
    """Give ``tmp`` the name ``path`` unless something is there (FileExistsError); False where the file system
    has no hard links (FAT, some network mounts), for the caller to rename instead."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            return False
        raise
    return True


def write_atomic(path: str | Path, data: str | bytes, force: bool = False, flag: str = "--output") -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; refuses an existing file unless ``force`` and
    every other target :func:`check_target` refuses."""
    path = check_target(path, force, flag)
    with replacing(path, flag, clobber=force) as out:
        out.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def journal_mark(what: str) -> str:
    """The first line moesim writes in a journal it creates (not JSON, so readers of rows skip it)."""
    return f"# moesim {what} journal\n"


def open_journal(path: Path, what: str, flag: str = "--output") -> TextIO:
    """``path`` opened for appending lines, a file moesim created: a new journal is created exclusively under a
    random name with :func:`journal_mark` as its first line, then linked to ``path`` (which fails if anything,
    a link included, appeared there). An existing one must be a regular file (never followed through a link),
    with one name, owned by this user, starting with the mark; anything else is refused in one line."""
    mark = journal_mark(what).encode()
    if not os.path.lexists(path):
        try:
            fd, tmp = _create_beside(path, ".new", 0o666 & ~current_umask())
        except OSError as err:
            raise ScenarioError(f"{flag}: journal {path}: cannot create it: {err.strerror or err}") from None
        try:
            os.write(fd, mark)
            os.fsync(fd)
            if not _link(tmp, path):
                os.replace(tmp, path)
        except FileExistsError:
            pass  # something appeared at path meanwhile: checked below like any existing file
        except OSError as err:
            raise ScenarioError(f"{flag}: journal {path}: cannot write it: {err.strerror or err}") from None
        finally:
            os.close(fd)
            tmp.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        why = "is a symbolic link; moesim never writes through one" if err.errno == errno.ELOOP else \
            err.strerror or str(err)
        raise ScenarioError(f"{flag}: journal {path}: {why}; remove it or choose another {flag}") from None
    info = os.fstat(fd)
    problem = ("is not a regular file" if not stat.S_ISREG(info.st_mode) else
               "has other names (hard links)" if info.st_nlink != 1 else
               "belongs to another user" if info.st_uid != os.geteuid() else
               "was not created by moesim (no journal header)" if os.pread(fd, len(mark), 0) != mark else None)
    if problem:
        os.close(fd)
        raise ScenarioError(f"{flag}: journal {path} {problem}; remove it or choose another {flag}")
    return io.open(fd, "a", encoding="utf-8", closefd=True)


def read_own_text(path: Path, flag: str = "--output", fix: str = "") -> str:
    """The text of a file moesim wrote (a journal, results to resume), never read through a link; one-line errors
    for a link or bytes that are not UTF-8 (naming the byte offset), ending in ``fix`` (default: remove it or
    choose another ``flag``)."""
    fix = fix or f"remove it or choose another {flag}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        why = "is a symbolic link; moesim never reads its own files through one" if err.errno == errno.ELOOP else \
            err.strerror or str(err)
        raise ScenarioError(f"{flag}: {path} {why}; {fix}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    from moesim.workloads.documents import decode  # documents imports this module: the one decoder, at call time

    return decode(data, f"{flag} {path}", fix=fix)
