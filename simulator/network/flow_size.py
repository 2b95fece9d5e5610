"""What a ``run.network: flow`` simulation will cost, estimated before any graph is built, and the guard that
refuses one that would not fit (one line with the numbers, naming the fields to change).

The cost model is of this simulator's own code, measured with ``tests/benchmarks/bench_flow_network.py --sizes``
(DeepSeek-V3 preset, representative fidelity, 120 micro-batches per pipeline, 2-core development machine; see
README "Flow network at scale"): building and routing the cluster graph grows with its GPUs; the engine's work
grows with the network ops it starts (about four per layer and micro-batch: dispatch and combine, forward and
backward, plus the pipeline sends), each costing more the more GPUs of a pipeline rank it moves (one op moves
the traffic of all of them, by symmetry). Group shapes are routed once, so routing adds little beyond the graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from moesim.workloads.errors import ScenarioError
from moesim.workloads.scenario import Scenario

# Measured (bench_flow_network --sizes, 2,048 / 16,384 / 131,072 GPUs; see the module docstring).
FIXED_S = 0.5  # pricing and everything the analytic network also does
GRAPH_S_PER_GPU = 48e-6  # cluster graph and router: 6.3 s at 131,072 GPUs
# Ops from 31,952 ops at 16,384 and 131,072 GPUs (CPU 3.54 s and 21.7 s whole; 1.51 s at 2,048, where this
# model says 1.27 s), after link sharing was keyed by bundle shape (rates of a recurring set solved once).
OP_S = 14e-6  # one network op started in the engine, and
OP_S_PER_STAGE_GPU = 0.055e-6  # per GPU of its pipeline rank (its bundles' links): 15 s at 131,072 GPUs
BASE_GB = 0.13  # the interpreter, modules, pricing
GB_PER_GPU = 9.3e-6  # graph, router tables, plans: RSS 143 MB at 2,048 GPUs, 293 at 16,384, 1,335 at 131,072

MAX_FLOW_CPU_S = 1800.0  # past half an hour a study wants the analytic network (or a smaller cluster)


@dataclass(frozen=True)
class FlowEstimate:
    """CPU seconds and peak memory (GB) a flow run is expected to take, and the network ops it starts."""

    cpu_s: float
    memory_gb: float
    ops: int


def estimate_flow(scenario: Scenario) -> FlowEstimate:
    """The cost of simulating ``scenario`` with ``run.network: flow`` (representative fidelity; full fidelity
    runs classes of GPUs, each as a pipeline rank does)."""
    par = scenario.parallelism
    gpus = scenario.cluster.gpus
    stage_gpus = par.dp * par.cp * par.tp
    ops = scenario.micro_batches * (4 * scenario.model.layers + 2 * par.pp)
    cpu_s = FIXED_S + GRAPH_S_PER_GPU * gpus + ops * (OP_S + OP_S_PER_STAGE_GPU * stage_gpus)
    return FlowEstimate(cpu_s, BASE_GB + GB_PER_GPU * gpus, ops)


def memory_limit_gb() -> float:
    """This machine's physical memory (GB), what a run must fit in."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (ValueError, OSError, AttributeError):
        return float("inf")


def check_flow_size(scenario: Scenario, max_cpu_s: float = MAX_FLOW_CPU_S, max_gb: float | None = None) -> FlowEstimate:
    """The estimate of a flow run; ScenarioError (one line, the numbers and the fix) when it would take more than
    ``max_cpu_s`` CPU seconds or ``max_gb`` GB (default: this machine's memory)."""
    est = estimate_flow(scenario)
    max_gb = memory_limit_gb() if max_gb is None else max_gb
    if est.cpu_s > max_cpu_s or est.memory_gb > max_gb:
        raise ScenarioError(
            f"run.network=flow: {scenario.cluster.gpus:,} GPUs and {scenario.micro_batches:,} micro-batches per "
            f"pipeline ({est.ops:,} network ops) would take ~{est.cpu_s:,.0f} CPU s and ~{est.memory_gb:,.2f} GB "
            f"(limits {max_cpu_s:,.0f} s, {max_gb:,.2f} GB); use run.network=analytic, or fewer cluster.gpus or "
            "a smaller parallelism.global_batch")
    return est
