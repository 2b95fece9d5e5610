"""Named scenario presets: YAML data files in ``workloads/presets/``."""

from __future__ import annotations

from importlib import resources

from moesim.topologies.bundled import bundled_yaml
from moesim.workloads.errors import ScenarioError

DEFAULT_PRESET = "deepseek-v3-h800"


def _preset_dir():
    return resources.files("moesim.workloads").joinpath("presets")


def preset_names() -> list[str]:
    """All preset names, sorted."""
    return sorted(p.name.removesuffix(".yaml") for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The preset's YAML text exactly as shipped."""
    if name not in preset_names():
        raise ScenarioError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    return _preset_dir().joinpath(f"{name}.yaml").read_text()


def preset_data(name: str) -> dict:
    """The preset as a fresh dict (callers may modify it)."""
    return bundled_yaml(preset_text(name))
