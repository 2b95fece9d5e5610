"""The README as a contract: every ``$ moesim ...`` line of README.md, run as printed, and its printed output
compared with what the command prints now (tests/test_readme_commands.py; all of them with
``python -m tests.readme_commands``).

Commands run in README order in one scratch folder (not the repository: they must work from any folder) that holds
only links to the inputs the README names (``examples/``, and ``../shared`` beside it), through a ``moesim`` on
PATH, with bash (quotes, ``>`` and comments as a shell reads them), at the README's width, stdout and stderr
together. Files a command writes are there for the commands after it, as for a reader who follows the README.

The output a README block shows is an excerpt: every line it shows must be found in the fresh output, in order
(``...`` or ``…`` stands for lines left out, and a line that starts with it — ``#   … 66 more lines …`` —
says what was left out); text after a ``←`` is the README's annotation of a line (``9.114 s  ← 8.687 s
without``), not output; a line compares equal when its words and numbers are the same, except
wall-clock figures (``simulated in 0.28 s``, ``10.7 s wall``, a progress line's seconds): those are not pinned
(this machine and its load are not the README's; on a shared 2-core box a 0.3 s simulation takes 5 s), and a
figure off by more than a factor of :data:`WALL_CLOCK_FACTOR` is listed as a timing to refresh, without failing.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
WIDTH = 104  # the README's output blocks are printed at this terminal width (as tests/readme_golden.py) ...
WALL_CLOCK_FACTOR = 3.0  # a wall-clock figure further off than this is listed as stale (never a failure)
# Commands too slow for the default test run (10 s or more on a loaded 2-core box; they run in the benchmark run):
# a prefix of the command, or the whole command where it ends in "$" (`moesim validate` is also pinned by
# tests/test_readme_golden.py).
SLOW = ("moesim plan ", "moesim calibrate run ", "moesim sweep examples/sweeps/v3-layouts.yaml", "moesim validate$",
        "moesim simulate --set run.network=flow", "moesim sweep examples/sweeps/network-whatifs.yaml")
# Commands whose numbers are measurements of this machine's kernels (wall clock, like a timing): their words are
# compared, not their numbers.
MEASURED = ("moesim calibrate run ",)
# DeepSeek's profiler trace and the reference data sit beside the checkout (../shared), not in it; a command that
# names it, or reads it when it is there (these prefixes), cannot print what the README shows without it.
SHARED = REPO.parent / "shared"
SHARED_READERS = ("moesim calibrate deepep", "moesim calibrate validate")
# A server runs until stopped: its first lines are compared, then it gets Ctrl+C.
SERVERS = ("moesim dashboard",)
# Wall-clock figures: the number in group 1 of each pattern.
WALL_CLOCK = (re.compile(r"simulated in\s+(\d+(?:\.\d+)?) s"), re.compile(r"(\d+(?:\.\d+)?) s wall"),
              re.compile(r"\((\d+(?:\.\d+)?) s\)$"), re.compile(r"(\d+(?:\.\d+)?) CPU s"),
              re.compile(r"\bin\s+(\d+(?:\.\d+)?) s\b"), re.compile(r"\b(\d+:\d\d:\d\d)\b"))  # a bar's elapsed
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
FENCE = re.compile(r"^( *)```(text|bash|console)?\n(.*?)^\1```$", re.M | re.S)


@dataclass
class Command:
    line: int  # README line number of the "$ moesim" line
    text: str  # the command as printed after "$ " (comment included)
    shown: list[str]  # the output lines the README shows after it
    shown_at: list[int] = field(default_factory=list)  # their README line numbers

    @property
    def command(self) -> str:
        """The command without its trailing comment."""
        return re.sub(r"\s+#\s.*$", "", self.text)

    @property
    def width(self) -> int:
        """The terminal width the README printed this output at: WIDTH, or its longest line where wider (a few
        blocks show tables that need more)."""
        return max([WIDTH, *(len(line) for line in self.shown)])

    @property
    def needs_shared(self) -> bool:
        """Whether the command reads ../shared (DeepSeek's trace): it names it, or is one that reads it if there."""
        return "../shared/" in self.command or self.command.startswith(SHARED_READERS)

    @property
    def slow(self) -> bool:
        return any(self.command == s[:-1] if s.endswith("$") else self.command.startswith(s) for s in SLOW)


@dataclass
class Outcome:
    command: Command
    output: str = ""
    rc: int | None = None
    seconds: float = 0.0
    drift: list[str] = field(default_factory=list)  # what differs, one line each; empty: equal
    timings: list[str] = field(default_factory=list)  # wall-clock figures off by more than WALL_CLOCK_FACTOR

    @property
    def equal(self) -> bool:
        return not self.drift


def readme_commands(text: str | None = None) -> list[Command]:
    """Every ``$ moesim`` line of the README's fenced blocks, with the output lines shown after it."""
    text = README.read_text() if text is None else text
    found = []
    for block in FENCE.finditer(text):
        indent, body = len(block.group(1)), block.group(3)
        first = text.count("\n", 0, block.start(3)) + 1
        current = None
        for i, raw in enumerate(body.splitlines()):
            line = raw[indent:] if raw[:indent].strip() == "" else raw
            if line.startswith("$ "):
                current = Command(first + i, line[2:], []) if line.startswith("$ moesim") else None
                if current is not None:
                    found.append(current)
            elif current is not None:
                current.shown.append(line.rstrip())
                current.shown_at.append(first + i)
    return found


def _words(line: str) -> tuple[str, list[str]]:
    """A line as (its text with numbers masked, whitespace collapsed; its numbers)."""
    line = line.strip().strip("│┃").strip()
    return " ".join(NUMBER.sub("#", line).split()), NUMBER.findall(line)


def _wall_clock(line: str) -> list[tuple[int, int, float]]:
    spans = []
    for pattern in WALL_CLOCK:
        for m in pattern.finditer(line):
            if not any(s <= m.start(1) < e for s, e, _ in spans):
                value = m.group(1).split(":")
                seconds = sum(float(v) * 60 ** i for i, v in enumerate(reversed(value)))
                spans.append((m.start(1), m.end(1), seconds))
    return spans


BORDER = set("┏┓┗┛┡┩┢┪┣┫┳┻╇╈╋━─│┃┌┐└┘├┤┬┴┼╭╮╯╰ ")


def _is_elision(line: str) -> bool:
    """``...``/``…`` (lines left out; also a table row of them, or a comment line saying what was left out) or a
    table border (it carries no number)."""
    text = line.strip()
    return ((set(text) <= set(".…│┃ ") and ("..." in text or "…" in text))
            or text.lstrip("# ").startswith(("…", "... ")) or set(line) <= BORDER)


def _shown_output(line: str) -> str:
    """A README line without its annotation (``← ...``, the README's words beside the output)."""
    return line.split("←", 1)[0].rstrip()


def compare_line(shown: str, fresh: str, numbers: bool = True) -> str | None:
    """None if ``fresh`` prints what ``shown`` shows (wall-clock figures masked; with ``numbers`` false, every
    number), else "differs"."""
    if not numbers:  # a measured table: a cell may hold a number or, where a fit found none, "–"
        shown, fresh = (NUMBER.sub("#", line).replace("–", "#") for line in (shown, fresh))
    shown_clock, fresh_clock = _wall_clock(shown), _wall_clock(fresh)
    if len(shown_clock) == len(fresh_clock):
        shown, fresh = _mask(shown, shown_clock), _mask(fresh, fresh_clock)
    shown, fresh = " ".join(shown.split()), " ".join(fresh.split())
    if shown.endswith(", ...") and fresh.startswith(shown[:-3]):  # a long list cut short in the README
        return None
    return None if shown == fresh else "differs"


def stale_timings(shown: str, fresh: str) -> list[str]:
    """The wall-clock figures of two matching lines that differ by more than WALL_CLOCK_FACTOR."""
    return [f"{a:g} s → {b:g} s" for (_, _, a), (_, _, b) in zip(_wall_clock(shown), _wall_clock(fresh))
            if a > 0 and b > 0 and not 1 / WALL_CLOCK_FACTOR <= b / a <= WALL_CLOCK_FACTOR]


def _mask(line: str, spans) -> str:
    for start, end, _ in sorted(spans, reverse=True):
        line = line[:start] + "<t>" + line[end:]
    return line


def compare(shown: list[str], output: str, timings: list[str] | None = None,
            fixes: dict[int, str] | None = None, numbers: bool = True) -> list[str]:
    """The shown lines not found in order in ``output`` (each with the nearest fresh line), [] if all are;
    ``timings`` collects the stale wall-clock figures of lines that match, ``fixes`` the fresh line (by index in
    ``shown``) of a line whose words match but numbers do not."""
    fresh = [line.rstrip() for line in output.splitlines()]
    drift, at = [], 0
    for index, line in enumerate(shown):
        output = _shown_output(line)
        line, note = output, line[len(output):]
        if not line.strip() or _is_elision(line):
            continue
        words, _ = _words(line)
        hit = next((j for j in range(at, len(fresh)) if compare_line(line, fresh[j], numbers) is None), None)
        if hit is not None:
            if timings is not None:
                timings += [f"{line.strip()[:60]}…: {t}" for t in stale_timings(line, fresh[hit])]
            at = hit + 1
            continue
        # Not found: name the nearest fresh line with the same words (numbers differ), or say it is gone.
        near = next((j for j in range(at, len(fresh)) if _words(fresh[j])[0] == words), None)
        if near is None:
            near = next((j for j in range(len(fresh)) if _words(fresh[j])[0] == words), None)
        if near is not None:
            if fixes is not None:
                fixes[index] = fresh[near] + note
            drift.append(f"README: {line.strip()}\n      now:    {fresh[near].strip()}")
        else:
            drift.append(f"README: {line.strip()}\n      now:    (no such line)")
    return drift


class Workspace:
    """A scratch folder laid out as the README assumes: the inputs it names linked in, moesim on PATH."""

    def __init__(self, root: Path):
        self.root = root
        self.cwd = root / "work"
        self.cwd.mkdir()
        (self.cwd / "examples").symlink_to(REPO / "examples")
        if SHARED.exists():
            (root / "shared").symlink_to(SHARED)
        bin_dir = root / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "moesim"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m moesim.simulator.cli "$@"\n')
        wrapper.chmod(0o755)
        self.env = dict(os.environ, COLUMNS=str(WIDTH), TERM="dumb", PYTHONPATH=str(REPO),
                        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        for name in ("FORCE_COLOR", "MOESIM_TRACEBACK"):
            self.env.pop(name, None)

    def run(self, command: Command, timeout_s: float = 600) -> Outcome:
        start = time.perf_counter()
        self.env["COLUMNS"] = str(command.width)
        if command.command.startswith(SERVERS):
            output, rc = self._serve(command, timeout_s=60)
        elif "kill -TERM" in command.text:
            output, rc = self._terminate(command)
        else:
            done = subprocess.run(["bash", "-c", command.command], cwd=self.cwd, env=self.env, timeout=timeout_s,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            output, rc = done.stdout, done.returncode
        outcome = Outcome(command, output, rc, time.perf_counter() - start)
        outcome.drift = compare(command.shown, output, outcome.timings,
                                numbers=not command.command.startswith(MEASURED))
        return outcome

    def _serve(self, command: Command, timeout_s: float) -> tuple[str, int]:
        """Start a server, read until it has printed as many lines as the README shows, then Ctrl+C it."""
        proc = subprocess.Popen(["bash", "-c", f"exec {command.command}"], cwd=self.cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        want = len([line for line in command.shown if line.strip()])
        lines, deadline = [], time.monotonic() + timeout_s
        try:
            while len(lines) < want and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return "".join(lines), proc.returncode

    def _terminate(self, command: Command) -> tuple[str, int]:
        """A sweep stopped with SIGTERM once its first point is journalled (the README's `kill -TERM <pid>`)."""
        output = shlex.split(command.command)[shlex.split(command.command).index("-o") + 1]
        journal = self.cwd / f"{output}.partial.jsonl"
        proc = subprocess.Popen(["bash", "-c", f"exec {command.command}"], cwd=self.cwd, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not journal.exists():
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        return out, proc.returncode


def runnable(command: Command, include_slow: bool) -> bool:
    """Whether :func:`run_all` runs ``command``: not a slow one unless ``include_slow``, not one that reads
    ../shared when it is not beside the checkout."""
    return (include_slow or not command.slow) and (SHARED.is_dir() or not command.needs_shared)


def run_all(commands: list[Command], include_slow: bool, progress=None) -> list[Outcome]:
    """Run the :func:`runnable` ``commands`` in order in a fresh workspace."""
    with tempfile.TemporaryDirectory(prefix="moesim-readme-") as tmp:
        space = Workspace(Path(tmp))
        outcomes = []
        for command in commands:
            if not runnable(command, include_slow):
                continue
            outcome = space.run(command)
            outcomes.append(outcome)
            if progress:
                progress(outcome)
        return outcomes


def report(outcomes: list[Outcome], slow: int = 0, no_shared: int = 0) -> str:
    """The count (ran / equal; ``slow`` and ``no_shared`` commands not run) and, for each command that drifted,
    where and how."""
    equal = sum(o.equal for o in outcomes)
    lines = [f"README commands: {len(outcomes)} ran, {equal} equal, {len(outcomes) - equal} drifted"
             + (f", {slow} slow ones not run (python -m tests.readme_commands runs them)" if slow else "")
             + (f", {no_shared} not run: they read {SHARED}, which is not there" if no_shared else "")]
    for o in outcomes:
        if not o.equal:
            lines.append(f"README.md:{o.command.line} `{o.command.text}` (exit {o.rc}, {o.seconds:.1f} s):")
            lines += [f"    {d}" for d in o.drift]
    stale = [(o, t) for o in outcomes for t in o.timings]
    if stale:
        lines.append(f"wall-clock figures off by more than ×{WALL_CLOCK_FACTOR:g} (not a failure; refresh them on "
                     "a quiet machine):")
        lines += [f"    README.md:{o.command.line}: {t}" for o, t in stale]
    return "\n".join(lines)


def update_readme(outcomes: list[Outcome]) -> int:
    """Paste the fresh line over each README line whose words match but numbers drifted; the number pasted."""
    lines = README.read_text().split("\n")
    pasted = 0
    for o in outcomes:
        fixes: dict[int, str] = {}
        compare(o.command.shown, o.output, None, fixes)
        for index, fresh in fixes.items():
            lines[o.command.shown_at[index] - 1] = fresh
            pasted += 1
    README.write_text("\n".join(lines))
    return pasted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="Leave out the slow commands (as the test run does).")
    parser.add_argument("--update", action="store_true", help="Paste fresh lines over README lines whose numbers "
                        "drifted (words unchanged); review the diff.")
    parser.add_argument("--show", type=int, metavar="LINE", help="Print the fresh output of the command on this "
                        "README line (and of those before it, which make its inputs), to paste.")
    args = parser.parse_args()
    commands = readme_commands()
    if args.show:
        upto = [c for c in commands if c.line <= args.show]
        outcomes = run_all(upto, include_slow=True)
        print(f"$ {outcomes[-1].command.text}\n{outcomes[-1].output.rstrip()}")
        return 0

    def progress(o: Outcome) -> None:
        print(f"{'ok   ' if o.equal else 'DRIFT'} {o.seconds:6.1f} s  README.md:{o.command.line}  {o.command.text}",
              file=sys.stderr, flush=True)

    outcomes = run_all(commands, include_slow=not args.fast, progress=progress)
    print(report(outcomes, no_shared=sum(not runnable(c, True) for c in commands)))
    if args.update:
        print(f"pasted {update_readme(outcomes)} fresh lines into README.md")
    return 0 if all(o.equal for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
