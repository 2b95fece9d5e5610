"""The what-if model behind the dashboard: a preset plus a handful of knobs → a scenario → a simulated step.

Knobs are the ones people turn first: schedule, pipeline and expert parallelism, micro-batches per step,
dispatch precision, NIC bandwidth and routing skew (a Zipf exponent; 0 is the preset's balanced routing).
Data parallelism absorbs what pp leaves of the GPUs, the global batch
follows from the micro-batch count, and a preset's hand-tuned ``stage_layers`` is replaced by a near-even
split when pp changes. Every knob becomes a ``--set`` override, so validation and error messages are the
same as on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.simulator.simulate import Result, simulate
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.scenario import Scenario


@dataclass(frozen=True)
class Knobs:
    preset: str
    schedule: str
    pp: int
    ep: int
    micro_batches: int
    dispatch_dtype: str
    nic_gbps: float
    routing_skew: float = 0.0  # Zipf exponent of expert popularity; 0: the preset's own routing


def preset_knobs(preset: str) -> Knobs:
    """The knobs as the preset ships them."""
    sc = load_scenario(preset=preset)
    par = sc.parallelism
    skew = sc.routing.zipf_alpha if sc.routing.name == "zipf" else 0.0
    return Knobs(preset, sc.schedule, par.pp, par.ep, sc.micro_batches, sc.training.dispatch_dtype,
                 sc.cluster.network.nic_gbytes_per_s, skew)


def even_split(layers: int, stages: int) -> list[int]:
    """Layers per stage as even as possible; the extra layers go to the middle stages, away from the
    embedding (first stage) and the head (last stage)."""
    base, extra = divmod(layers, stages)
    counts = [base] * stages
    middle = sorted(range(stages), key=lambda s: (abs(s - (stages - 1) / 2), s))
    for s in middle[:extra]:
        counts[s] += 1
    return counts


def _positive_int(name: str, value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ScenarioError(f"{name}: give a whole number, not {value!r}") from None
    if number != value and not (isinstance(value, str) and str(number) == value.strip()):
        raise ScenarioError(f"{name}: give a whole number, not {value!r}")
    if number < 1:
        raise ScenarioError(f"{name}: must be at least 1, not {number}")
    return number


def scenario_for(knobs: Knobs) -> Scenario:
    """Apply the knobs to the preset; raises ScenarioError with one line naming the knob on bad input."""
    base = load_scenario(preset=knobs.preset)
    par = base.parallelism
    pp = _positive_int("pp", knobs.pp)
    ep = _positive_int("ep", knobs.ep)
    micro_batches = _positive_int("micro-batches", knobs.micro_batches)
    per_replica = par.tp * par.cp * pp
    if base.cluster.gpus % per_replica:
        raise ScenarioError(f"pp={pp}: tp·cp·pp = {per_replica} must divide the {base.cluster.gpus} GPUs")
    dp = base.cluster.gpus // per_replica
    overrides = [
        f"schedule={knobs.schedule}", f"parallelism.pp={pp}", f"parallelism.dp={dp}", f"parallelism.ep={ep}",
        f"parallelism.global_batch={micro_batches * dp * par.micro_batch_size}",
        f"training.dispatch_dtype={knobs.dispatch_dtype}",
        f"cluster.network.nic_gbytes_per_s={float(knobs.nic_gbps)}",
    ]
    skew = float(knobs.routing_skew or 0.0)
    if skew < 0:
        raise ScenarioError(f"routing skew: must be 0 or more, not {skew:g}")
    if skew > 0 and base.model.moe is not None:
        overrides += ["routing.name=zipf", f"routing.zipf_alpha={skew}"]
    if pp != par.pp:
        stages = pp * par.virtual_stages
        if base.model.layers < stages:
            raise ScenarioError(f"pp={pp}: the model has {base.model.layers} layers, fewer than pp·virtual_stages")
        overrides.append(f"parallelism.stage_layers={even_split(base.model.layers, stages)}")
    return load_scenario(preset=knobs.preset, overrides=overrides)


def what_if(knobs: Knobs) -> tuple[Scenario, Result]:
    """Simulate the knobs' scenario in representative mode, keeping the timeline for the Gantt chart."""
    scenario = scenario_for(knobs)
    return scenario, simulate(scenario, keep_timeline=True)
