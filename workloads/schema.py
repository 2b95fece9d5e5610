"""The scenario's JSON Schema (for editors' YAML language server) and its field reference in Markdown, both made
from the pydantic models of :mod:`moesim.workloads.scenario`, so neither can drift from what the loader accepts.

Pydantic's own schema misses what the models accept through a before-validator: numbers with units (a
:class:`moesim.workloads.quantities.Rule` with a unit takes ``400Gb/s`` or ``3.7us``; every Rule has bounds) and a GPU
given by its catalogue name (``gpu: h800``). :func:`scenario_json_schema` adds both.
"""

from __future__ import annotations

import json
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.functional_validators import BeforeValidator

from moesim.topologies.gpus import gpu_catalog
from moesim.workloads.quantities import Rule
from moesim.workloads.scenario import Cluster, Scenario

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
UNIT_EXAMPLES = {"GB/s": "50GB/s or 400Gb/s", "us": "3.7us or 1ms", "s": "500ms or 2h", "B": "256MB or 64MiB"}


def _rule(annotation, metadata=()) -> Rule | None:
    """The quantities Rule behind a field's type (pydantic keeps a top-level one in the field's ``metadata``; one
    inside ``X | None`` stays in the annotation), if any."""
    for meta in (*metadata, *getattr(annotation, "__metadata__", ())):
        if isinstance(meta, BeforeValidator) and isinstance(meta.func, Rule):
            return meta.func
    for arg in get_args(annotation):
        found = _rule(arg)
        if found is not None:
            return found
    return None


def _models(model: type[BaseModel], seen: dict[str, type[BaseModel]] | None = None) -> dict[str, type[BaseModel]]:
    """Every model reachable from ``model``, by class name (the keys of the schema's ``$defs``)."""
    seen = {} if seen is None else seen
    seen[model.__name__] = model
    for info in model.model_fields.values():
        for sub in _submodels(info.annotation):
            if sub.__name__ not in seen:
                _models(sub, seen)
    return seen


def _submodels(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _submodels(arg)]


def _rule_schema(rule: Rule, number: dict) -> dict:
    """A Rule's number schema with its bounds; with a unit, also the text form ("400Gb/s")."""
    number = dict(number)
    for bound, key in ((rule.ge, "minimum"), (rule.gt, "exclusiveMinimum"), (rule.le, "maximum"),
                       (rule.lt, "exclusiveMaximum")):
        if bound is not None:
            number[key] = bound
    if not rule.unit:
        return number
    text = {"type": "string", "pattern": r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*\S*\s*$",
            "description": f"a number with a unit, e.g. {UNIT_EXAMPLES.get(rule.unit, rule.unit)}"}
    return {"anyOf": [number, text]}


def _patch_rule(prop: dict, rule: Rule) -> None:
    """Put the rule's bounds and unit forms on a property (``X | None`` keeps its null branch)."""
    keep = {k: prop.pop(k) for k in ("description", "default", "title") if k in prop}
    if "anyOf" in prop:
        branches = []
        for branch in prop["anyOf"]:
            patched = branch if branch.get("type") == "null" else _rule_schema(rule, branch)
            branches += patched.get("anyOf", [patched])
        prop["anyOf"] = branches
    else:
        prop.update(_rule_schema(rule, {k: prop.pop(k) for k in list(prop)}))
    prop.update(keep)


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a scenario file, YAML or JSON."""
    schema = Scenario.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    for name, model in _models(Scenario).items():
        props = (schema if name == Scenario.__name__ else defs[name]).get("properties", {})
        for field, info in model.model_fields.items():
            rule = _rule(info.annotation, info.metadata)
            if rule is not None and field in props:
                _patch_rule(props[field], rule)
    gpu = defs[Cluster.__name__]["properties"]["gpu"]
    ref = {k: gpu.pop(k) for k in ("$ref",) if k in gpu}
    gpu["anyOf"] = [ref, {"type": "string", "enum": sorted(gpu_catalog()),
                          "description": "a GPU of the catalogue (topologies/data/gpus.yaml), by name"}]
    return {"$schema": SCHEMA_DIALECT, **schema}


def schema_text() -> str:
    return json.dumps(scenario_json_schema(), indent=1, ensure_ascii=False) + "\n"


# --- the Markdown field reference -----------------------------------------------------------------------------
def _type_words(prop: dict, defs: dict) -> str:
    """A property's accepted values, in a few words."""
    if "$ref" in prop:
        return "a section (below)"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        words = [_type_words(p, defs) for p in prop["anyOf"]]
        return " or ".join(dict.fromkeys(w for w in words if w != "null")) + (" or empty" if "null" in words else "")
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type_words(prop.get('items', {}), defs)}"
    if kind == "string" and "pattern" in prop:
        return "text with a unit"
    if kind in ("number", "integer"):
        bounds = [f"≥ {prop['minimum']:g}" if "minimum" in prop else "",
                  f"> {prop['exclusiveMinimum']:g}" if "exclusiveMinimum" in prop else "",
                  f"≤ {prop['maximum']:g}" if "maximum" in prop else "",
                  f"< {prop['exclusiveMaximum']:g}" if "exclusiveMaximum" in prop else ""]
        bounds = ", ".join(b for b in bounds if b)
        return f"{kind} ({bounds})" if bounds else kind
    return {"boolean": "true/false", "string": "text", "null": "null"}.get(kind, kind or "any")


def _default_words(info) -> str:
    if info.is_required():
        return "**required**"
    value = info.default
    if isinstance(value, BaseModel):
        return "(section defaults)"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def reference_markdown() -> str:
    """docs/scenario-reference.md: every scenario field by its dotted path, with type, default and description."""
    schema = scenario_json_schema()
    defs = schema["$defs"]
    lines = ["# Scenario field reference", "",
             "Generated from the pydantic models in `workloads/scenario.py` by `moesim schema --reference`; "
             "tests/test_scenario_schema.py checks that it matches them. Regenerate after changing a field:", "",
             "```text", "moesim schema --reference -o docs/scenario-reference.md --force", "```", "",
             "A scenario file is YAML or JSON with these sections. Editors with the YAML language server validate and "
             "complete it from the JSON Schema (`moesim schema -o scenario.schema.json`) named in its first line:", "",
             "```yaml", "# yaml-language-server: $schema=scenario.schema.json", "```", ""]
    queue: list[tuple[str, type[BaseModel]]] = [("", Scenario)]
    done: set[str] = set()
    while queue:
        prefix, model = queue.pop(0)
        if prefix in done:
            continue
        done.add(prefix)
        props = (schema if model is Scenario else defs[model.__name__])["properties"]
        title = f"`{prefix}`" if prefix else "top level"
        doc = " ".join((model.__doc__ or "").split("\n\n")[0].split()) if model.__doc__ != BaseModel.__doc__ else ""
        lines += [f"## {title}", ""] + ([doc, ""] if doc and not doc.startswith("!!!") else [])
        lines += ["| field | accepts | default | description |", "| --- | --- | --- | --- |"]
        for field, info in model.model_fields.items():
            path = f"{prefix}.{field}" if prefix else field
            subs = _submodels(info.annotation)
            for sub in subs:
                is_list = "list" in str(info.annotation)
                queue.append((f"{path}[]" if is_list else path, sub))
            description = (info.description or "").replace("|", "\\|")
            lines.append(f"| `{path}` | {_type_words(props[field], defs)} | {_default_words(info)} | {description} |")
        lines.append("")
    return "\n".join(lines)


def every_field_path() -> list[tuple[str, Any]]:
    """(dotted path, FieldInfo) of every scenario field, sections included (``faults.stragglers[].gpu``)."""
    found = []

    def walk(prefix: str, model: type[BaseModel]) -> None:
        for field, info in model.model_fields.items():
            path = f"{prefix}.{field}" if prefix else field
            found.append((path, info))
            for sub in _submodels(info.annotation):
                walk(f"{path}[]" if "list" in str(info.annotation) else path, sub)

    walk("", Scenario)
    return found
