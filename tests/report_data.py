"""Real report inputs for the report tests: a small simulated sweep over GPU count and pipeline depth."""

from __future__ import annotations

from moesim.simulator.report.whatif import even_split
from moesim.simulator.simulate import simulate
from moesim.workloads.loader import load_scenario

SMALL = "deepseek-v2-lite-h800"


def sweep_rows() -> list[dict]:
    """Six simulated layouts of the small preset (8/16/32 GPUs × pp 1/2, ep 4), as flat rows like a sweep."""
    rows = []
    for gpus in (8, 16, 32):
        for pp in (1, 2):
            dp = gpus // pp
            scenario = load_scenario(preset=SMALL, overrides=[
                f"cluster.gpus={gpus}", f"parallelism.dp={dp}", f"parallelism.pp={pp}", "parallelism.ep=4",
                f"parallelism.stage_layers={even_split(27, pp)}"])
            result = simulate(scenario)
            rows.append({"schedule": scenario.schedule, "dp": dp, "pp": pp, "ep": 4, "gpus": gpus,
                         "step_time_s": result.step_time_s, "mfu_causal": result.mfu_causal,
                         "gpu_hours_per_trillion_tokens": result.gpu_hours_per_trillion_tokens})
    return rows
