"""Load scenarios from YAML/JSON files or presets, apply ``--set a.b=value`` overrides, report errors in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from moesim.workloads.documents import read_document
from moesim.workloads.errors import ScenarioError, one_line
from moesim.workloads.presets import preset_data
from moesim.workloads.scenario import RENAMED, Scenario

MAX_SCENARIO_BYTES = 1_000_000  # a scenario is a page of YAML; anything larger is refused, not parsed


def load_scenario(path: str | Path | None = None, preset: str | None = None, overrides: list[str] = ()) -> Scenario:
    """Build a validated Scenario from a file or a preset (default ``deepseek-v3-h800``) plus overrides."""
    if path is not None and preset is not None:
        raise ScenarioError("give a scenario file or --preset, not both")
    data = read_scenario_file(path) if path is not None else preset_data(preset or "deepseek-v3-h800")
    return scenario_from(data, overrides)


def scenario_from(data: dict, overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """A validated Scenario from a dict of its sections with ``overrides`` (``FIELD=VALUE``) applied in place."""
    for item in overrides:
        apply_override(data, item)
    return validate(data)


def read_scenario_file(path: str | Path) -> dict:
    """Parse a YAML or JSON scenario file into a dict, with one-line errors (see :mod:`moesim.workloads.documents`)."""
    data = read_document(path, "scenario file", MAX_SCENARIO_BYTES)
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a mapping of sections (cluster, model, ...), not "
                            f"{kind_of(data)}")
    return data


def kind_of(value: Any) -> str:
    """What a parsed JSON/YAML value is, in words, for a message: ``a number (3)``, ``a list``, ``empty``."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value:g})"
    if isinstance(value, str):
        return f"text ({one_line(value)[:30]!r})"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def parse_value(text: str) -> Any:
    """Parse an override value: int, float (``14.8e12`` too), bool, null, list/dict (YAML), else a string."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, item: str) -> None:
    """Apply ``a.b.c=value`` to the nested dict ``data`` in place; unknown keys are refused."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ScenarioError(f"--set {item!r}: expected KEY=VALUE, e.g. parallelism.pp=8")
    parts = key.strip().split(".")
    model: type[BaseModel] | None = Scenario
    node = data
    for depth, part in enumerate(parts):
        fields = model.model_fields if model is not None else {}
        if model is not None and part not in fields and part in RENAMED:
            raise ScenarioError(f"--set {key}: {part} was {RENAMED[part]}")
        if model is not None and part not in fields:
            raise ScenarioError(
                f"--set {key}: unknown key {part!r}; known at this level: {', '.join(fields)}"
            )
        last = depth == len(parts) - 1
        if last:
            node[part] = parse_value(raw.strip())
            return
        annotation = fields[part].annotation if model is not None else None
        model = _submodel(annotation)
        child = node.get(part)
        if child is None or not isinstance(child, dict):
            if model is None:
                raise ScenarioError(f"--set {key}: {'.'.join(parts[:depth + 1])} is not a section")
            child = {} if not isinstance(child, BaseModel) else child.model_dump()
            node[part] = child
        node = child


def _submodel(annotation) -> type[BaseModel] | None:
    """The pydantic model class inside an annotation such as ``MoE | None``, else None."""
    candidates = getattr(annotation, "__args__", None) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def validate(data: dict) -> Scenario:
    """Validate a scenario dict; the first error becomes a one-line ScenarioError."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(err)) from None


def format_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field; remove it or check its spelling"
    elif first["type"] == "missing":
        msg = "required field is missing"
    extra = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{loc}: {msg}{extra}" if loc else f"{msg}{extra}"
