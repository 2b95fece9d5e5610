"""Packaging: the four top-level folders install as subpackages of the one import name, ``moesim``.

pyproject.toml holds the metadata; this file only maps the folders (``simulator/`` → ``moesim.simulator``) and
lists their subpackages, data folders included (presets, profiles, topology data, the report's vendored JS).
"""

from setuptools import find_namespace_packages, setup

PARTS = ("simulator", "workloads", "topologies", "calibration")


def packages() -> list[str]:
    found = ["moesim"]
    for part in PARTS:
        found += [f"moesim.{part}"] + [f"moesim.{part}.{sub}" for sub in find_namespace_packages(where=part)
                                        if "__pycache__" not in sub]
    return found


setup(packages=packages(), package_dir={"moesim": "moesim", **{f"moesim.{part}": part for part in PARTS}})
