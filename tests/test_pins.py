"""The dependency ranges in pyproject.toml are what the tests run, and the plotly.js moesim inlines is one version.

A page carries either the vendored plotly.js partial bundle (simulator/report/vendor) or the full bundle of the
installed ``plotly`` package, and the dashboard draws with the latter: all must be the same plotly.js release line
as the one moesim.js is tested with, or a report and the dashboard would draw with different code (issue 26).
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VENDORED = ROOT / "simulator" / "report" / "vendor" / "plotly-cartesian.min.js"


def requirement(name: str, extra: str | None = None) -> Requirement:
    listed = PROJECT["optional-dependencies"][extra] if extra else PROJECT["dependencies"]
    return next(Requirement(r) for r in listed if Requirement(r).name == name)


@pytest.mark.parametrize("name, extra", [("plotly", None), ("dash", "dashboard"), ("dash", "test")])
def test_installed_versions_are_inside_the_pinned_ranges(name, extra):
    pytest.importorskip(name)
    pin = requirement(name, extra)
    assert pin.specifier, f"{name} is unpinned in pyproject.toml"
    assert pin.specifier.contains(version(name)), f"{name} {version(name)} is outside {pin}"
    upper = [s for s in pin.specifier if s.operator == "<"]
    assert upper, f"{pin}: no upper bound, so an untested major release would install"


def test_one_plotly_js_release_line():
    from plotly.offline import get_plotlyjs_version

    vendored = re.search(r"plotly\.js \(cartesian - minified\) v(\d+\.\d+)\.\d+", VENDORED.read_text()[:300])
    assert vendored, "the vendored bundle's header names no version"
    installed = get_plotlyjs_version()
    assert installed.rsplit(".", 1)[0] == vendored.group(1), (installed, vendored.group(1))
