"""Energy (kWh) and cost (USD) of a simulated step and of the whole run, from the scenario's ``energy`` section.

Power per GPU = (GPU power under load + the node's overhead per GPU + the network's per GPU) × PUE. GPU power is
``energy.gpu_power_w`` or, unset, the catalogue TDP (topologies/data/gpus.yaml, with its source): the maximum board
power, an upper bound, used because no measured training power is published for these GPUs. The run is the token
budget at the simulated step time, without failures (the days with failures are in ``reliability``).
"""

from __future__ import annotations

from moesim.workloads.scenario import Scenario

J_PER_KWH = 3.6e6


def energy_report(scenario: Scenario, step_time_s: float, training_days: float) -> dict | None:
    """kWh and USD per step and per run, the power they assume and where it comes from; None without ``energy``."""
    energy = scenario.energy
    if energy is None:
        return None
    gpu = scenario.cluster.gpu
    gpus = scenario.cluster.gpus
    if energy.gpu_power_w is not None:
        gpu_w, source = energy.gpu_power_w, "energy.gpu_power_w"
    else:
        gpu_w, source = float(gpu.tdp_w), f"{gpu.name} TDP (GPU catalogue; an upper bound for power under load)"
    per_gpu_w = (gpu_w + energy.node_overhead_w_per_gpu + energy.network_w_per_gpu) * energy.pue
    step_kwh = gpus * per_gpu_w * step_time_s / J_PER_KWH
    steps = scenario.training.tokens / scenario.tokens_per_step
    gpu_hours = gpus * training_days * 24.0
    run_kwh = step_kwh * steps
    out = {"gpu_power_w": gpu_w, "gpu_power_source": source, "power_per_gpu_w": per_gpu_w,
           "kwh_per_step": step_kwh, "run_mwh": run_kwh / 1000.0, "run_gpu_hours": gpu_hours,
           "usd_per_gpu_hour": energy.usd_per_gpu_hour, "usd_per_kwh": energy.usd_per_kwh}
    gpu_usd = None if energy.usd_per_gpu_hour is None else gpu_hours * energy.usd_per_gpu_hour
    power_usd = None if energy.usd_per_kwh is None else run_kwh * energy.usd_per_kwh
    out["run_usd"] = None if gpu_usd is None and power_usd is None else (gpu_usd or 0.0) + (power_usd or 0.0)
    return out
