"""The sweep spec: a base scenario plus axes over scenario fields, expanded into points keyed by a stable hash.

A spec is YAML (or JSON)::

    name: pp-vs-schedule            # optional, shown in the progress bar
    base: {preset: deepseek-v2-lite-h800}   # or {scenario: path/to/scenario.yaml}, relative to the spec
    set: {training.tokens: 1e12}    # optional overrides applied to every point
    grid:                           # the cartesian product of these axes ...
      parallelism.pp: [1, 2]
      schedule: [gpipe, 1f1b]
    points:                         # ... crossed with each of these explicit points (either may be absent)
      - {parallelism.dp: 8, parallelism.ep: 8}
      - {parallelism.dp: 16, parallelism.ep: 16, cluster.gpus: 32}
    profile: h800                   # optional calibration profile (built-in name or JSON path)

Keys are dotted scenario fields, exactly as ``moesim simulate --set`` takes them; string values are parsed the
same way (``1e12`` is a number), other YAML values are used as they are.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moesim.workloads.documents import read_document
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import apply_override, format_validation_error, read_scenario_file
from moesim.workloads.presets import preset_data
from moesim.workloads.scenario import Scenario

MAX_POINTS = 1_000_000  # a bigger sweep is almost certainly a typo in an axis
MAX_SPEC_BYTES = 1_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseScenario(_Strict):
    """Where every point starts: a preset or a scenario file (exactly one)."""

    preset: str | None = None
    scenario: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.preset is None) == (self.scenario is None):
            raise ValueError("give exactly one of base.preset or base.scenario")
        return self


class SweepSpec(_Strict):
    name: str = "sweep"
    base: BaseScenario
    set: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(default_factory=list)
    profile: str | None = None

    @field_validator("set", "grid")
    @classmethod
    def _known_keys(cls, value: dict, info):
        for key in value:
            check_field_path(key, where=f"{info.field_name}.{key}")
        return value

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, value: dict):
        for key, values in value.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values; give at least one")
        return value

    @field_validator("points")
    @classmethod
    def _known_point_keys(cls, value: list):
        for i, point in enumerate(value):
            for key in point:
                check_field_path(key, where=f"points[{i}].{key}")
        return value

    @model_validator(mode="after")
    def _size(self):
        size = self.size
        if size > MAX_POINTS:
            raise ValueError(f"the sweep has {size:,} points; the limit is {MAX_POINTS:,}: shrink an axis")
        return self

    @property
    def size(self) -> int:
        grid = 1
        for values in self.grid.values():
            grid *= len(values)
        return grid * max(1, len(self.points))


@dataclass(frozen=True)
class Point:
    """One scenario of the sweep: its overrides (axis values, in spec order) and a stable key; ``also`` names the
    sweep's other axes, which this point leaves at the base scenario's value (its row shows that value too)."""

    key: str
    overrides: dict[str, Any]
    also: tuple[str, ...] = ()


def check_field_path(key: str, where: str) -> None:
    """Refuse a dotted key that is not a Scenario field (``parallelism.pp`` yes, ``parallelism.ppp`` no)."""
    model: type[BaseModel] | None = Scenario
    for depth, part in enumerate(key.split(".")):
        if model is None:
            raise ValueError(f"{where}: {'.'.join(key.split('.')[:depth])} is not a section")
        if part not in model.model_fields:
            raise ValueError(f"{where}: unknown scenario field {part!r}; known here: {', '.join(model.model_fields)}")
        model = _submodel(model.model_fields[part].annotation)


def _submodel(annotation) -> type[BaseModel] | None:
    for candidate in getattr(annotation, "__args__", None) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def load_spec(path: str | Path) -> tuple[SweepSpec, dict]:
    """Read and validate a spec file; return it with its base scenario as a dict. Errors are one line."""
    data = read_document(path, "sweep spec", MAX_SPEC_BYTES, "yaml")
    path = Path(path)
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a sweep spec is a mapping with base, grid and/or points")
    return prepared(parse_spec(data, source=str(path)), path.parent)


def prepared(spec: SweepSpec, relative_to: Path = Path(".")) -> tuple[SweepSpec, dict]:
    """``spec`` with a relative profile file read from ``relative_to`` (the spec's folder) and its profile loaded
    once, and its base scenario as a dict (:func:`base_data`)."""
    if spec.profile is not None and spec.profile.endswith(".json") and not Path(spec.profile).is_absolute():
        spec = spec.model_copy(update={"profile": str(relative_to / spec.profile)})
    check_profile(spec.profile)
    return spec, base_data(spec, relative_to)


def check_profile(profile: str | None) -> None:
    """Load the calibration profile once here, so a bad one is one error and not one per point."""
    from moesim.simulator.profile_input import user_profile
    user_profile(profile, "profile")


def parse_spec(data: dict, source: str = "spec") -> SweepSpec:
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(f"{source}: {format_validation_error(err)}") from None


def base_data(spec: SweepSpec, relative_to: Path = Path(".")) -> dict:
    """The base scenario as a dict with the spec's ``set`` applied (not yet validated: points may fix it)."""
    if spec.base.preset is not None:
        data = preset_data(spec.base.preset)
    else:
        file = Path(spec.base.scenario)
        data = read_scenario_file(file if file.is_absolute() else relative_to / file)
    for key, value in spec.set.items():
        apply_value(data, key, value)
    return data


def apply_value(data: dict, key: str, value: Any) -> None:
    """Set dotted ``key`` in the scenario dict: strings parse as ``--set`` does, other values are kept as given."""
    raw = value if isinstance(value, str) else json.dumps(value)
    apply_override(data, f"{key}={raw}")


def expand(spec: SweepSpec, base: dict) -> list[Point]:
    """Every point of the sweep, in a stable order: explicit points outer, grid axes inner (last fastest)."""
    fingerprint = canonical({"base": base, "profile": spec.profile})
    axes = list(spec.grid)
    every_axis = list(dict.fromkeys([*(k for p in spec.points for k in p), *axes]))
    points = []
    for explicit in spec.points or [{}]:
        for combo in itertools.product(*(spec.grid[a] for a in axes)):
            overrides = {**explicit, **dict(zip(axes, combo))}
            also = tuple(a for a in every_axis if a not in overrides)
            points.append(Point(point_key(fingerprint, overrides), overrides, also))
    return points


def point_key(fingerprint: str, overrides: dict[str, Any]) -> str:
    """16 hex digits of SHA-256 over the base scenario, the profile and the point's overrides (key order free)."""
    return hashlib.sha256((fingerprint + canonical(overrides)).encode()).hexdigest()[:16]


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
