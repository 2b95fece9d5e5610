"""Faults applied to a simulation: straggler GPUs, and the expected cost of failures over the whole run.

A straggler slows every compute kernel of its GPU. Representative fidelity simulates one data-parallel
replica: since the straggler's expert-parallel peers wait for it at every dispatch and combine, and every
replica waits for the slowest at the gradient synchronisation, the step runs at the pace of the replica that
holds it, so the engine stretches the compute kernels of the straggler's whole pipeline rank by the slowdown
(``rank_slowdowns``). Full fidelity (``run.fidelity: full``) slows exactly that GPU (global index, see
:mod:`moesim.simulator.engine.cohorts`); its peers' waiting then shows in their own timelines through the rendezvous.
"""

from __future__ import annotations

from moesim.simulator.failures.reliability import Goodput, checkpoint_seconds, expected_goodput
from moesim.workloads.model import parameter_counts
from moesim.workloads.ops import DTYPE_BYTES
from moesim.workloads.scenario import Scenario


def pipeline_rank_of(scenario: Scenario, gpu: int) -> int:
    """The pipeline rank of global rank ``gpu`` (ranks are ordered tp, cp, dp, then pp slowest)."""
    par = scenario.parallelism
    return gpu // par.stage_gpus


def rank_slowdowns(scenario: Scenario) -> dict[int, float]:
    """Compute slowdown per pipeline rank: the worst straggler on it."""
    slow: dict[int, float] = {}
    for straggler in scenario.faults.stragglers:
        rank = pipeline_rank_of(scenario, straggler.gpu)
        slow[rank] = max(slow.get(rank, 1.0), straggler.slowdown)
    return slow


def run_goodput(scenario: Scenario, days_without_failures: float) -> Goodput:
    """Expected goodput of the scenario's run with its reliability settings."""
    rel, tr = scenario.faults.reliability, scenario.training
    cluster = scenario.cluster
    checkpoint_s = rel.checkpoint_s
    if checkpoint_s is None:
        counts = parameter_counts(scenario.model)
        per_param = DTYPE_BYTES[tr.weight_dtype] + 2 * DTYPE_BYTES[tr.optimizer_moment_dtype]
        per_param += DTYPE_BYTES["fp32"] if tr.master_weights else 0
        nodes = -(-cluster.gpus // cluster.node.gpus_per_node)
        checkpoint_s = checkpoint_seconds((counts.total + counts.mtp) * per_param / nodes,
                                          rel.storage_gbytes_per_s_per_node)
    interval_h = rel.checkpoint_interval_min / 60.0 if rel.checkpoint_interval_min else None
    return expected_goodput(days_without_failures, cluster.gpus, cluster.node.gpus_per_node, rel.gpu_mtbf_hours,
                            rel.node_mtbf_hours, checkpoint_s, rel.restart_s, interval_h)
