"""A pasted launch command, as a shell would split it: launcher options (torchrun), the script, its flags.

Accepts what users paste: backslash continuations, quotes, ``#`` comments, ``KEY=value`` environment prefixes,
``torchrun`` / ``python -m torch.distributed.run`` / ``python -m torch.distributed.launch`` before the script,
or the script's flags alone (an args file). ``${VAR}`` left unexpanded is refused with the flag named.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from moesim.workloads.errors import ScenarioError

LAUNCHERS = ("torchrun", "torch.distributed.run", "torch.distributed.launch")


@dataclass
class Launch:
    """``flags``: (flag, values) in command order; ``launcher``: torchrun's options by their dashed name."""

    flags: list[tuple[str, list[str]]] = field(default_factory=list)
    launcher: dict[str, str] = field(default_factory=dict)
    script: str = ""
    environment: list[str] = field(default_factory=list)  # KEY=value prefixes


def split_words(text: str) -> list[str]:
    """Shell words of ``text``: continuations joined, comments dropped, quotes removed."""
    text = re.sub(r"\\\r?\n", " ", text)
    try:
        return shlex.split(text, comments=True)
    except ValueError as err:  # an unclosed quote
        raise ScenarioError(f"the command does not split into shell words ({err}); close its quotes") from None


def group_flags(words: list[str]) -> list[tuple[str, list[str]]]:
    """``--flag v1 v2 --switch`` → [(--flag, [v1, v2]), (--switch, [])]; ``--flag=v`` splits at the ``=``."""
    flags: list[tuple[str, list[str]]] = []
    for word in words:
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            flags.append((name, [value] if eq else []))
        elif flags:
            flags[-1][1].append(word)
        else:
            raise ScenarioError(f"{word!r} comes before any flag; give the launch command or the script's flags")
    for name, values in flags:
        for value in values:
            if "$" in value:
                raise ScenarioError(f"{name} {value}: an unexpanded shell variable; substitute its value")
    return flags


def parse_launch(text: str) -> Launch:
    """Split a launch command (or bare flags) into launcher options, the script and its flags."""
    words = split_words(text)
    launch = Launch()
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        launch.environment.append(words.pop(0))
    script_at = next((i for i, w in enumerate(words) if w.endswith(".py")), None)
    if script_at is None:
        launch.flags = group_flags(words)
        return launch
    launch.script = words[script_at]
    head = words[:script_at]
    if head and (head[0].endswith(LAUNCHERS[0]) or any(name in head for name in LAUNCHERS[1:])):
        start = 1 if head[0].endswith(LAUNCHERS[0]) else head.index(next(n for n in LAUNCHERS[1:] if n in head)) + 1
        for name, values in group_flags([w for w in head[start:] if w != "-m"]):
            launch.launcher[name.replace("_", "-")] = values[0] if values else ""
    launch.flags = group_flags(words[script_at + 1:])
    return launch


def world_size(launch: Launch) -> tuple[int, int] | None:
    """(nodes, GPUs per node) from torchrun's --nnodes and --nproc-per-node, or None without a launcher."""
    if not launch.launcher:
        return None
    nodes = launch.launcher.get("--nnodes", "1").split(":")[-1]  # elastic MIN:MAX: the maximum
    per_node = launch.launcher.get("--nproc-per-node", "1")
    try:
        return int(nodes), int(per_node)
    except ValueError:
        raise ScenarioError(f"torchrun --nnodes {nodes} --nproc-per-node {per_node}: give whole numbers "
                            "(the world size is their product)") from None
