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
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled like Ctrl-C (exit status 128 + 15)."""

    exit_code = 143


def interrupt_exit_code(err: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return getattr(err, "exit_code", 130)


def die_with_parent(parent_pid: int, pids=None) -> None:
    """Worker initialiser: SIGKILL this process when its parent exits; ignore SIGINT (the parent handles it).
    ``pids``: a queue this worker puts its process id on (:func:`worker_pool`)."""
    if pids is not None:
        pids.put(os.getpid())
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


class WorkerPool(ProcessPoolExecutor):
    """A process pool whose workers die with their parent (:func:`die_with_parent`) and report their process
    ids, so that :func:`stop_workers` can end them without reaching into the executor's internals."""

    def __init__(self, workers: int):
        self.pids = multiprocessing.get_context().SimpleQueue()
        self.worker_pids: set[int] = set()
        super().__init__(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(), self.pids))

    def worker_processes(self) -> list:
        """The worker processes started so far (as :func:`multiprocessing.active_children` lists them)."""
        while not self.pids.empty():
            self.worker_pids.add(self.pids.get())
        return [p for p in multiprocessing.active_children() if p.pid in self.worker_pids]


def stop_workers(pool: WorkerPool) -> None:
    """Stop a :class:`WorkerPool` now: end running workers instead of waiting for them (after an interrupt, their
    half-done points would be thrown away anyway), drop queued work, and return once the pool's own threads
    have ended."""
    processes = pool.worker_processes()
    for process in processes:
        with contextlib.suppress(OSError, AttributeError):
            process.terminate()
    # Wait on each worker's sentinel, not join(): the executor's own thread may reap a worker first, and then
    # join()/is_alive() in this thread never see it end (waitpid fails with ECHILD and reads as "running").
    pending = [process.sentinel for process in processes]
    if pending:
        with contextlib.suppress(OSError, ValueError):
            ready = multiprocessing.connection.wait(pending, timeout=5)
            for process in processes:
                if process.sentinel not in ready:
                    process.kill()
    # With its workers gone the executor's thread fails what was running, closes its pipes and ends; wait for
    # that here. Left to the interpreter's exit, CPython 3.11 wakes that thread through a pipe it may be
    # closing at that moment, and prints "OSError: [Errno 9] Bad file descriptor" after a sweep ended by
    # SIGTERM (about 1 run in 15 on a loaded 2-core machine; the race is cpython gh-125451, fixed in 3.12.8 and
    # 3.13.1 only).
    pool.shutdown(wait=True, cancel_futures=True)
