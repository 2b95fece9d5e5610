"""The GPU catalogue: named hardware specifications loaded from ``data/gpus.yaml``, each number with its source.

An entry holds the spec fields a scenario's ``cluster.gpu`` takes (:data:`SPEC_FIELDS`), facts about the GPU's
reference system (NVLink generation, its NIC), ``sources`` (field → where the number comes from) and
``unpublished`` (field → why no vendor document gives it, and what was used instead, if anything).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from moesim.topologies.bundled import bundled_yaml

# The fields of a scenario's GPU spec (moesim.workloads.scenario.GpuSpec); the rest of an entry describes the GPU.
SPEC_FIELDS = ("name", "sms", "bf16_tflops", "fp8_tflops", "fp4_tflops", "hbm_gb", "hbm_tbps", "nvlink_gbps",
               "l2_mb", "tdp_w")
# What an entry says about the GPU beyond its spec (the reference system's NVLink and NIC), and its provenance.
FACT_FIELDS = ("nvlink_generation", "nvlink_domain_gpus", "nic", "nic_gbytes_per_s")


@cache
def _catalog_text() -> dict[str, dict]:
    return bundled_yaml(resources.files("moesim.topologies").joinpath("data/gpus.yaml").read_text())


def gpu_catalog() -> dict[str, dict]:
    """Return ``{key: spec}`` for every GPU in the catalogue (the spec fields only, units in their names)."""
    return {key: _spec(entry) for key, entry in _catalog_text().items()}


def _spec(entry: dict) -> dict:
    # Unset optional figures are left out, so the scenario's defaults (and earlier JSON dumps) stay as they were.
    return {k: entry[k] for k in SPEC_FIELDS if k in entry and not (entry[k] is None and k in ("fp4_tflops",
                                                                                          "tdp_w"))}


def gpu_spec(key: str) -> dict:
    """Return a copy of the spec of GPU ``key`` (e.g. ``"h800"``); KeyError names the known ones."""
    return _spec(gpu_entry(key))


def gpu_entry(key: str) -> dict:
    """The whole catalogue entry of ``key``: spec, reference-system facts, ``sources`` and ``unpublished``."""
    catalog = _catalog_text()
    if key not in catalog:
        raise KeyError(f"unknown GPU {key!r}; known: {', '.join(sorted(catalog))}")
    entry = dict(catalog[key])
    entry.setdefault("sources", {})
    entry.setdefault("unpublished", {})
    return entry


def gpu_kinds() -> list[str]:
    """The catalogue's keys, sorted."""
    return sorted(_catalog_text())


def catalogue_key(device_name: str) -> str | None:
    """The catalogue key a device name means (``NVIDIA GB200`` → ``gb200``), the longest key that matches its
    words, so ``H200`` is not read as ``H20`` nor ``GB200`` as ``B200``; None if none does."""
    words = device_name.lower().replace("nvidia", " ").replace("-", " ").split()
    matches = [key for key in _catalog_text() if any(w == key or (w.startswith(key) and not w[len(key):len(key) + 1]
                                                                   .isdigit()) for w in words)]
    return max(matches, key=len) if matches else None
