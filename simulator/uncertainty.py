"""Uncertainty of the step time: repeat the simulation with jittered kernel times and resampled routing.

Each sample draws, for every distinct compute component (stage, phase, component, layer), a multiplicative
factor from a log-normal with coefficient of variation ``run.kernel_time_cv``, and routes tokens with the
routing model under a seed of its own, so a skewed router places its hot experts differently each time.
Sample i uses seed ``run.seed + i``: the same scenario and seed give the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moesim.simulator.pricing import Pricer
from moesim.workloads.ops import Component, Stream
from moesim.workloads.scenario import Scenario


class JitterPricer(Pricer):
    """A :class:`Pricer` whose compute components take a log-normal factor each (mean 1, given CV)."""

    def __init__(self, scenario: Scenario, cost_model, network, stage_rank=None, *, cv: float, seed: int):
        super().__init__(scenario, cost_model, network, stage_rank)
        sigma = math.sqrt(math.log(1.0 + cv * cv))
        self._draw = lambda: float(np.exp(rng.normal(-sigma * sigma / 2.0, sigma)))
        rng = np.random.default_rng(seed)
        self._factors: dict[tuple, float] = {}
        self._stage = 0

    def price_stage(self, stage):
        self._stage = stage.stage
        return super().price_stage(stage)

    def component_time_s(self, component: Component, sms: int | None = None) -> float:
        seconds = super().component_time_s(component, sms)
        if component.stream is not Stream.COMPUTE:
            return seconds
        key = (self._stage, component.phase, component.name, component.layer)
        if key not in self._factors:
            self._factors[key] = self._draw()
        return seconds * self._factors[key]


@dataclass(frozen=True)
class StepTimeSamples:
    """Step times of ``len(step_times_s)`` jittered simulations (seconds) and their summary."""

    step_times_s: list[float]
    kernel_time_cv: float

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.step_times_s, q))

    def histogram(self, bins: int = 20) -> dict[str, list[float]]:
        counts, edges = np.histogram(self.step_times_s, bins=min(bins, max(1, len(self.step_times_s))))
        return {"counts": counts.tolist(), "edges_s": edges.tolist()}

    def to_dict(self) -> dict:
        return {"samples": len(self.step_times_s), "kernel_time_cv": self.kernel_time_cv,
                "mean_s": float(np.mean(self.step_times_s)), "p50_s": self.quantile(0.5),
                "p95_s": self.quantile(0.95), "min_s": min(self.step_times_s), "max_s": max(self.step_times_s),
                "step_times_s": list(self.step_times_s), "histogram": self.histogram()}


def sample_step_times(scenario: Scenario, profile=None, progress=None) -> StepTimeSamples:
    """Simulate ``run.samples`` jittered copies of the scenario's step; ``progress()`` is called after each."""
    from moesim.simulator.simulate import simulate

    run = scenario.run
    times = []
    for i in range(run.samples):
        seed = run.seed + i
        sample = scenario.model_copy(update={"run": run.model_copy(update={"seed": seed})})

        def factory(sc, cost_model, network, stage_rank=None, _seed=seed):
            return JitterPricer(sc, cost_model, network, stage_rank, cv=run.kernel_time_cv, seed=_seed)

        times.append(simulate(sample, profile, pricer_factory=factory).step_time_s)
        if progress is not None:
            progress()
    return StepTimeSamples(times, run.kernel_time_cv)
