"""Memory per pipeline rank: weights, gradients, optimizer states (sharded by the ZeRO stage), activations.

Bytes per parameter follow the scenario's training recipe: working weights in ``weight_dtype``, gradients in
``grad_dtype``, an fp32 master copy when ``master_weights``, and two AdamW moments in
``optimizer_moment_dtype``. ZeRO-1 shards master weights and moments over the data-parallel group, ZeRO-2
gradients too, ZeRO-3 the weights as well. Dense parameters shard over dp·cp; routed experts over the
expert-data-parallel group (dp·cp·tp / ep). Activations are the peak of bytes held from F until B, as the
engine measured it.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.ops import DTYPE_BYTES
from workloads.scenario import Scenario

GB = 1e9


@dataclass(frozen=True)
class MemoryBreakdown:
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.gradients_gb + self.optimizer_gb + self.activations_gb


def state_bytes(scenario: Scenario, dense_params: float, expert_params: float) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes on one GPU holding these parameters."""
    tr, par = scenario.training, scenario.parallelism
    dense_shards = par.dp * par.cp
    expert_shards = max(1, par.dp * par.cp * par.tp // par.ep)

    def sharded(bytes_per_param: float, from_stage: int) -> float:
        if par.zero_stage >= from_stage:
            return bytes_per_param * (dense_params / dense_shards + expert_params / expert_shards)
        return bytes_per_param * (dense_params + expert_params)

    weights = sharded(DTYPE_BYTES[tr.weight_dtype], 3)
    grads = sharded(DTYPE_BYTES[tr.grad_dtype], 2)
    opt_per_param = 2 * DTYPE_BYTES[tr.optimizer_moment_dtype] + (DTYPE_BYTES["fp32"] if tr.master_weights else 0)
    optimizer = sharded(opt_per_param, 1)
    return weights, grads, optimizer


def rank_memory(scenario: Scenario, dense_params: float, expert_params: float,
                peak_activation_bytes: float) -> MemoryBreakdown:
    weights, grads, optimizer = state_bytes(scenario, dense_params, expert_params)
    return MemoryBreakdown(weights / GB, grads / GB, optimizer / GB, peak_activation_bytes / GB)
