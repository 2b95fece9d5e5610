"""Progress of a long command on stderr, the same for every command: a transient bar on a terminal by default,
nothing with ``-q``, one line per finished item with ``-v`` (readable in logs, CI and pipes)."""

from __future__ import annotations

import sys
import time

import typer

QUIET_OPT = typer.Option(False, "--quiet", "-q", help="No progress bar or progress lines on stderr.")
VERBOSE_OPT = typer.Option(False, "--verbose", "-v", help="A line on stderr per finished item, with the seconds "
                                                          "since the start (instead of a progress bar).")


def check_verbosity(quiet: bool, verbose: bool) -> None:
    """Refuse ``-q`` with ``-v``: one line, exit 2."""
    if quiet and verbose:
        from moesim.simulator.cli import fail
        fail("-q and -v: pass one of them (-q: no progress; -v: a line per finished item)")


class ItemProgress:
    """Counts ``total`` items of ``description``; ``advance(label)`` marks one finished (``label`` names it in
    verbose lines). A context manager: the bar, if any, is removed on exit."""

    def __init__(self, description: str, total: int, quiet: bool = False, verbose: bool = False):
        self.description, self.total, self.verbose = description, total, verbose and not quiet
        self.done = 0
        self.start = time.monotonic()
        self.bar = None
        if not quiet and not verbose:
            from rich.console import Console
            from rich.progress import Progress
            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task(description, total=total)

    def __enter__(self) -> "ItemProgress":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def advance(self, label: str = "") -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        elif self.verbose:
            what = f": {label}" if label else ""
            print(f"{self.description} {self.done}/{self.total}{what} ({time.monotonic() - self.start:.1f} s)",
                  file=sys.stderr, flush=True)
