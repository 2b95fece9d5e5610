"""Shared fixtures: scenarios built from presets with overrides, and a CLI runner."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from moesim.workloads.loader import load_scenario


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def small():
    """(scenario, result with its timeline) of the small report preset, simulated once per test module."""
    from moesim.simulator.simulate import simulate
    from tests.report_data import SMALL

    scenario = load_scenario(preset=SMALL)
    return scenario, simulate(scenario, keep_timeline=True)


def tiny_dense(**overrides):
    """A small dense model on 4 GPUs (pp=4) that simulates in milliseconds."""
    return load_scenario(preset="mixtral-8x7b-h100", overrides=tiny_dense_sets(**overrides))


def tiny_dense_sets(**overrides) -> list[str]:
    """The ``--set`` overrides that turn the mixtral-8x7b-h100 preset into :func:`tiny_dense`'s scenario."""
    sets = {
        "cluster.gpus": 4, "cluster.gpu": "h100", "model.moe": None, "model.layers": 8, "model.hidden": 1024,
        "model.vocab": 32000, "model.ffn_intermediate": 4096, "model.mtp_depth": 0,
        "model.attention": {"kind": "gqa", "heads": 8, "kv_heads": 2, "head_dim": 128},
        "parallelism.dp": 1, "parallelism.tp": 1, "parallelism.pp": 4, "parallelism.ep": 1,
        "parallelism.stage_layers": None, "parallelism.global_batch": 8, "parallelism.seq_len": 1024,
        "schedule": "1f1b",
    }
    sets.update(overrides)
    return [f"{k}={_yaml(v)}" for k, v in sets.items()]


def _yaml(value) -> str:
    import json
    return json.dumps(value) if isinstance(value, (dict, list)) or value is None else str(value)


def pytest_terminal_summary(terminalreporter):
    """Print how many generated inputs the fuzz tests ran (``("fuzz_inputs", [family, n])`` user properties;
    they travel with the reports from xdist workers)."""
    totals: dict[str, int] = {}
    for report in (*terminalreporter.stats.get("passed", ()), *terminalreporter.stats.get("failed", ())):
        for name, value in getattr(report, "user_properties", ()):
            if name == "fuzz_inputs" and getattr(report, "when", "call") == "call":
                totals[value[0]] = totals.get(value[0], 0) + value[1]
    if totals:
        terminalreporter.write_line("fuzz inputs run: " + ", ".join(f"{n:,} {family}" for family, n in totals.items()))
