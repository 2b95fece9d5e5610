"""The README's pinned output blocks: found, re-run and compared (tests/test_readme_golden.py), or regenerated.

A pinned block is a fenced ``text`` block whose first line is ``$ moesim simulate`` or ``$ moesim validate`` with
no arguments: the default preset's headline numbers and the validation against published runs. They are re-run
exactly as printed, through the CLI in a subprocess at the README's width, and compared at the printed precision
(the wall-clock "simulated in" line excepted).

Regenerate them after a change that moves the numbers (``make readme``)::

    PYTHONPATH=. python -m tests.readme_golden --update   # rewrite the pinned blocks of README.md in place
    PYTHONPATH=. python -m tests.readme_golden --print    # or print them, to paste by hand
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
WIDTH = 104  # the README's output blocks are printed at this terminal width
PINNED = ("moesim simulate", "moesim validate")
FENCE = re.compile(r"^```text\n(\$ (moesim [a-z]+)\b[^\n]*)\n(.*?)^```$", re.M | re.S)
# Headline rows of `moesim simulate` whose values are deterministic (the wall-clock "simulated in" is not).
SIMULATE_ROWS = ("step time", "tokens / s", "TFLOPS / GPU (causal | non-causal)",
                 "MFU vs BF16 peak (causal | non-causal)", "GPU-hours per trillion tokens", "days for",
                 "peak memory (max over stages)")
# A run's first line in validate's borderless table: its name at the margin, then published, moesim and error last.
VALIDATE_ROW = re.compile(r"^(\S+)\s.*?\s(\S+)\s+(\S+)\s+([+\-−]?\d[\d.,]*%)\s*$")


@dataclass
class Block:
    command_line: str  # as printed after "$ ", comment included
    command: str  # "moesim simulate"
    body: str
    start: int  # offsets of the whole fenced block in the README
    end: int


def pinned_blocks(text: str) -> list[Block]:
    """The README's pinned blocks: those whose command is one of PINNED with no arguments."""
    blocks = []
    for m in FENCE.finditer(text):
        line, command, body = m.group(1)[2:], m.group(2), m.group(3)
        if command in PINNED and line.split("#")[0].split() == command.split():
            blocks.append(Block(line, command, body, m.start(), m.end()))
    return blocks


def run_command(command_line: str) -> str:
    """The command's real output, run through the CLI as a user would, at the README's width."""
    args = shlex.split(command_line.split("#")[0])[1:]
    env = dict(os.environ, COLUMNS=str(WIDTH), PYTHONPATH=str(REPO), TERM="dumb")
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([sys.executable, "-m", "moesim.simulator.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{command_line}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def headline(command: str, output: str) -> dict[str, str]:
    """The numbers a pinned block shows, as printed: simulate's headline rows; validate's per-run published,
    simulated and error cells and its average/worst line."""
    lines = output.splitlines()
    found: dict[str, str] = {}
    if command == "moesim simulate":
        for row in SIMULATE_ROWS:
            hit = next((line for line in lines if line.startswith(row)), None)
            if hit is not None:
                found[row] = " ".join(hit[len(row):].split())
        return found
    for line in lines:
        key = None
        if line.startswith("│"):  # a boxed table: run | stack | GPUs | metric | published | moesim | error
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            if len(cells) == 7 and cells[4]:  # a run's first line has its published figure
                key, numbers = cells[0], cells[4:]
        elif (m := VALIDATE_ROW.match(line)) and not line.startswith(("run ", "average ")):
            key, numbers = m.group(1), list(m.group(2, 3, 4))  # a borderless table: the same, by position
        if key is not None:  # a long name is cut ("…"), so a repeated one is keyed by its order
            found[key if key not in found else f"{key} #{len(found) + 1}"] = " | ".join(numbers)
        elif line.startswith("average |error|"):
            found["summary"] = line.strip()
    return found


def elide_stages(output: str, keep_head: int = 2, keep_tail: int = 1) -> str:
    """Shorten simulate's per-stage table to its first and last rows with an ellipsis row, as the README shows."""
    lines = output.splitlines()
    try:
        top = next(i for i, line in enumerate(lines) if line.startswith("┡"))
        bottom = next(i for i in range(top, len(lines)) if lines[i].startswith("└"))
    except StopIteration:
        return output
    rows = lines[top + 1:bottom]
    if len(rows) <= keep_head + keep_tail + 1:
        return output
    cells = rows[0].split("│")
    first = cells[1]
    ellipsis = "│".join(["", "...".rjust(len(first) - 1) + " ", *[" " * len(c) for c in cells[2:-1]], ""])
    rows = rows[:keep_head] + [ellipsis] + rows[-keep_tail:]
    return "\n".join(lines[:top + 1] + rows + lines[bottom:]) + "\n"


def render(block: Block) -> str:
    """The block regenerated: its command line, then the command's fresh output (stage table shortened)."""
    output = run_command(block.command_line)
    if block.command == "moesim simulate":
        output = elide_stages(output)
    return f"```text\n$ {block.command_line}\n{output.rstrip()}\n```"


def update(path: Path = README) -> int:
    """Rewrite the pinned blocks of ``path`` in place (atomically); the number of blocks rewritten."""
    from moesim.workloads.files import write_atomic

    text = path.read_text()
    blocks = pinned_blocks(text)
    for block in reversed(blocks):
        text = text[:block.start] + render(block) + text[block.end:]
    write_atomic(path, text, force=True)
    return len(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--update", action="store_true", help="rewrite the pinned blocks of README.md in place")
    group.add_argument("--print", action="store_true", help="print the regenerated blocks")
    args = parser.parse_args()
    if args.update:
        print(f"rewrote {update()} pinned blocks of {README}")
        return
    for block in pinned_blocks(README.read_text()):
        print(render(block), end="\n\n")


if __name__ == "__main__":
    main()
