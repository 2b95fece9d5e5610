"""Every YAML file moesim ships parses to the same document with libyaml's C loader (what moesim uses, for speed)
as with PyYAML's pure-Python SafeLoader (the reference parser)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moesim import SUBPACKAGES
from moesim.topologies.bundled import LOADER, bundled_yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for part in SUBPACKAGES for p in (REPO / part).rglob("*.yaml"))


def test_moesim_ships_yaml_files_and_reads_them_with_the_c_parser():
    assert len(SHIPPED) >= 20  # presets, catalogue, racks, fabrics, published runs, tables
    assert LOADER is getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_the_c_parser_reads_each_shipped_file_as_the_reference_parser_does(path):
    text = path.read_text()
    assert bundled_yaml(text) == yaml.load(text, Loader=yaml.SafeLoader)
