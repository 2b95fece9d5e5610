"""FSDP2 / HSDP per layer (``parallelism.fsdp``), as TorchTitan composes it with TP, without PP.

Each unit of the model (the embedding, a transformer layer, an MTP projection, the head) is one FSDP module: its
parameters are all-gathered over the shard group before its forward, freed after it (reshard after forward) and
gathered again before its backward; its gradients are reduce-scattered over the shard group after its weight
gradients and, with ``replicate`` > 1 (HSDP), the shard all-reduced over the replicas. Routed experts are
FSDP-sharded over their expert-data-parallel group. The collectives are ops of an ``FSDP`` component on the
communication stream, priced by the network model; the engine issues each gather one unit ahead (FSDP2's
prefetch) and lets each reduce-scatter run behind the next unit's compute (:mod:`moesim.simulator.engine.program`).
Each micro-batch gathers and reduces again (FSDP2's defaults). With pipeline parallelism PyTorch's pipelining keeps
the gathered parameters across micro-batches and syncs gradients after the last backward: that is priced in the
step's tail instead (:func:`moesim.simulator.simulate.fsdp_tail_comms`).
"""

from __future__ import annotations

from moesim.workloads.layers import LayerOps
from moesim.workloads.ops import DTYPE_BYTES, Comm, Component, Kind, Op, Pattern, Phase

COMPONENT = "FSDP"


def fsdp_ops(scenario, dense: float, expert: float) -> dict[Phase, list[Op]]:
    """The FSDP collectives of one unit holding ``dense`` and ``expert`` parameters per GPU (after TP/EP)."""
    tr, fsdp = scenario.training, scenario.parallelism.fsdp
    wb, gb = DTYPE_BYTES[tr.weight_dtype], DTYPE_BYTES[tr.grad_dtype]

    def op(name: str, phase: Phase, pattern: Pattern, group: str, nbytes: float, dtype: str) -> Op:
        return Op(f"{name}.{phase.value}", Kind.COMM, phase, COMPONENT, dtype, comm=Comm(pattern, group, nbytes))

    ops: dict[Phase, list[Op]] = {phase: [] for phase in Phase}
    for phase in (Phase.F, Phase.B):  # gathered again for backward: resharded after forward
        ops[phase].append(op("fsdp_gather", phase, Pattern.ALL_GATHER, "fsdp", dense * wb, tr.weight_dtype))
        if expert:
            ops[phase].append(op("fsdp_gather_experts", phase, Pattern.ALL_GATHER, "edp", expert * wb,
                                 tr.weight_dtype))
    ops[Phase.W].append(op("fsdp_scatter", Phase.W, Pattern.REDUCE_SCATTER, "fsdp", dense * gb, tr.grad_dtype))
    if fsdp.replicate > 1:
        ops[Phase.W].append(op("hsdp_reduce", Phase.W, Pattern.ALL_REDUCE, "hsdp", dense * gb / fsdp.shard,
                               tr.grad_dtype))
    if expert:
        ops[Phase.W].append(op("fsdp_scatter_experts", Phase.W, Pattern.REDUCE_SCATTER, "edp", expert * gb,
                               tr.grad_dtype))
    return ops


def with_fsdp(part: LayerOps, ops: dict[Phase, list[Op]]) -> LayerOps:
    """``part`` with its FSDP collectives: the gather first in forward and in backward (whose list is reversed at
    execution, so it goes last here), the reduce-scatter after its weight gradients (first here, reversed too)."""
    layer = part.layer
    out = LayerOps(layer, saved_bytes=part.saved_bytes)
    out.forward = [Component(COMPONENT, layer, Phase.F, ops[Phase.F])] + part.forward
    out.backward = part.backward + [Component(COMPONENT, layer, Phase.B, ops[Phase.B])]
    out.weight = [Component(COMPONENT, layer, Phase.W, ops[Phase.W])] + part.weight
    return out
