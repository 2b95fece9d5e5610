"""A scenario being imported from a framework's configuration: each value with the flag it came from.

An importer fills a :class:`Draft` field by field (``parallelism.tp`` ← ``--tensor-model-parallel-size 2``) and
records every flag it could not express (never drops one silently). :meth:`Draft.to_yaml` writes the scenario
YAML with a comment per line naming its origin and one comment line per flag left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


# Section order of a scenario file, as the presets write it.
SECTIONS = ("name", "description", "cluster", "model", "parallelism", "schedule", "training", "routing", "run")


@dataclass
class Draft:
    """Scenario fields by dotted path with their origin, and the flags left out with the reason."""

    source: str  # what was imported, for the header
    values: dict[str, tuple[Any, str]] = field(default_factory=dict)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (flag and value, why it is not expressed)

    def set(self, path: str, value: Any, origin: str) -> None:
        """Set field ``path`` to ``value``; ``origin`` names the flag(s) it came from."""
        self.values[path] = (value, origin)

    def get(self, path: str, default: Any = None) -> Any:
        return self.values[path][0] if path in self.values else default

    def leave_out(self, flag: str, why: str) -> None:
        self.left_out.append((flag, why))

    def data(self) -> dict:
        """The scenario as a nested dict (what the YAML holds)."""
        out: dict = {}
        for path, (value, _) in self.values.items():
            node = out
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return out

    def to_yaml(self, header: list[str]) -> str:
        """The scenario YAML: ``header`` comment lines, one line per field with its origin, then the flags
        left out, one comment line each."""
        lines = [f"# {line}" for line in header]
        data = self.data()
        for key in sorted(data, key=lambda k: SECTIONS.index(k) if k in SECTIONS else len(SECTIONS)):
            self._emit(lines, key, data[key], key, 0)
        if self.left_out:
            lines.append(f"# Not in this scenario ({len(self.left_out)} flags), each with why:")
            lines += [f"#   {flag}: {why}" for flag, why in self.left_out]
        return "\n".join(lines) + "\n"

    def _emit(self, lines: list[str], key: str, value: Any, path: str, depth: int) -> None:
        pad = "  " * depth
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            for child, sub in value.items():
                self._emit(lines, child, sub, f"{path}.{child}", depth + 1)
            return
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        origin = self.values[path][1]
        lines.append(f"{pad}{key}: {text}  # {origin}" if origin else f"{pad}{key}: {text}")
