"""The GPU catalogue: named hardware specifications loaded from ``data/gpus.yaml``."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml


@cache
def gpu_catalog() -> dict[str, dict]:
    """Return ``{key: spec}`` for every GPU in the catalogue (units in the field names)."""
    text = resources.files("topologies").joinpath("data/gpus.yaml").read_text()
    return yaml.safe_load(text)


def gpu_spec(key: str) -> dict:
    """Return a copy of the spec of GPU ``key`` (e.g. ``"h800"``); KeyError names the known ones."""
    catalog = gpu_catalog()
    if key not in catalog:
        raise KeyError(f"unknown GPU {key!r}; known: {', '.join(sorted(catalog))}")
    return dict(catalog[key])
