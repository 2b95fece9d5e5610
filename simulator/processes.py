"""Process hygiene for commands that fan out to worker processes (``moesim sweep``, ``moesim plan``).

- Workers die with their parent: each worker asks Linux for SIGKILL when its parent exits
  (``prctl(PR_SET_PDEATHSIG)``), so a parent killed with SIGKILL (no chance to clean up) leaves no worker
  computing on, re-parented to PID 1. Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the
  parent alone decides what to keep; a worker must not print its own KeyboardInterrupt traceback.
- SIGTERM ends a run as Ctrl-C does: :func:`sigterm_as_interrupt` turns it into :class:`Terminated`, a
  KeyboardInterrupt, so the same code saves finished rows and prints one line; the exit status is 143.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled like Ctrl-C (exit status 128 + 15)."""

    exit_code = 143


def interrupt_exit_code(err: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return getattr(err, "exit_code", 130)


def die_with_parent(parent_pid: int) -> None:
    """Worker initialiser: SIGKILL this process when its parent exits; ignore SIGINT (the parent handles it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a fork inherits the parent's handler; a worker just ends
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block (main thread only), SIGTERM raises :class:`Terminated`; the old handler comes back."""
    def handler(signum, frame):
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def stop_workers(pool) -> None:
    """Stop a ProcessPoolExecutor now: drop queued work and end running workers instead of waiting for them
    (after an interrupt, their half-done points would be thrown away anyway)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # CPython keeps its workers here
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, AttributeError):
            process.terminate()
    for process in processes:
        with contextlib.suppress(OSError, AttributeError, ValueError, AssertionError):
            process.join(5)
