"""The YAML files moesim ships (GPU catalogue, racks, fabrics, presets, published tables), read with libyaml's C
parser where PyYAML was built with it: the same documents as the pure-Python SafeLoader gives
(tests/test_bundled_yaml.py), ten times faster, which every command start pays (the GPU catalogue alone took
~14 ms). Files users hand moesim go through :mod:`moesim.workloads.documents` instead (duplicate keys, depth,
non-finite numbers, byte offsets)."""

from __future__ import annotations

from typing import Any

import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def bundled_yaml(text: str) -> Any:
    """A shipped YAML document, parsed."""
    return yaml.load(text, Loader=LOADER)
