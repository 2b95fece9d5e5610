"""Memory per pipeline rank: weights, gradients, optimizer states (sharded by the ZeRO stage), activations.

Bytes per parameter follow the scenario's training recipe: working weights in ``weight_dtype``, gradients in
``grad_dtype``, an fp32 master copy when ``master_weights``, and two AdamW moments in
``optimizer_moment_dtype``. ZeRO-1 shards master weights and moments over the data-parallel group, ZeRO-2
gradients too, ZeRO-3 the weights as well. Dense parameters shard over dp·cp; routed experts over the
expert-data-parallel group (dp·cp·tp / (ep·expert_tp)). With ``parallelism.fsdp`` all three are sharded (dense
over the shard group), plus two units' weights and one unit's gradients unsharded at once; with pipeline
parallelism weights and gradients stay gathered for the whole step (only the optimizer states sharded).
Activations are the peak of bytes held from F until B, as the engine measured it. Under DualPipe a rank holds
two stages, so all of these count both (two parameter copies).
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.workloads.errors import ScenarioError
from moesim.workloads.ops import DTYPE_BYTES
from moesim.workloads.scenario import Scenario

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
    dense_shards, expert_shards = par.dense_shards, par.expert_shards

    zero_stage = par.zero_stage
    if par.fsdp is not None:  # FSDP shards weights, gradients and states; with PP they stay gathered for the step
        zero_stage = 3 if par.pp == 1 else 1

    def sharded(bytes_per_param: float, from_stage: int) -> float:
        if zero_stage >= from_stage:
            return bytes_per_param * (dense_params / dense_shards + expert_params / expert_shards)
        return bytes_per_param * (dense_params + expert_params)

    weights = sharded(DTYPE_BYTES[tr.weight_dtype], 3)
    grads = sharded(DTYPE_BYTES[tr.grad_dtype], 2)
    opt_per_param = 2 * DTYPE_BYTES[tr.optimizer_moment_dtype] + (DTYPE_BYTES["fp32"] if tr.master_weights else 0)
    optimizer = sharded(opt_per_param, 1)
    if par.fsdp is not None and par.pp == 1:
        # Unsharded at once: the unit computing and the one prefetched (weights), the unit reducing (gradients).
        from moesim.workloads.model import largest_unit_parameters

        unit = largest_unit_parameters(scenario)
        weights += 2 * unit * DTYPE_BYTES[tr.weight_dtype]
        grads += unit * DTYPE_BYTES[tr.grad_dtype]
    return weights, grads, optimizer


def rank_memory(scenario: Scenario, dense_params: float, expert_params: float,
                peak_activation_bytes: float) -> MemoryBreakdown:
    weights, grads, optimizer = state_bytes(scenario, dense_params, expert_params)
    return MemoryBreakdown(weights / GB, grads / GB, optimizer / GB, peak_activation_bytes / GB)


AT_LEAST = "at least "  # in the message of a layout refused from its memory floor (check_fits(at_least=True))


class MemoryLayoutError(ScenarioError):
    """A layout whose peak memory on some pipeline rank exceeds the GPU's HBM."""


def check_fits(per_rank: list[MemoryBreakdown], hbm_gb: float, at_least: bool = False) -> None:
    """Raise :class:`MemoryLayoutError` naming the fullest rank and by how many GB it overflows HBM;
    ``at_least``: the breakdowns are lower bounds (:func:`memory_floor`), and the message says so."""
    rank, worst = max(enumerate(per_rank), key=lambda item: item[1].total_gb)
    if worst.total_gb > hbm_gb:
        raise MemoryLayoutError(
            f"memory: pipeline rank {rank} needs {AT_LEAST if at_least else ''}{worst.total_gb:.1f} GB of "
            f"{hbm_gb:g} GB HBM "
            f"({worst.total_gb - hbm_gb:.1f} GB over: weights {worst.weights_gb:.1f}, gradients "
            f"{worst.gradients_gb:.1f}, optimizer {worst.optimizer_gb:.1f}, activations {worst.activations_gb:.1f}); "
            "raise parallelism.pp, ep or zero_stage, enable training.recompute, lower micro_batch_size, "
            "or set run.check_memory=false to simulate it anyway")


def memory_floor(scenario: Scenario) -> list[MemoryBreakdown]:
    """Per pipeline rank, a lower bound on the memory :func:`moesim.simulator.simulate.simulate` measures, without
    simulating (GB): its weights, gradients and optimizer states exactly, and the activations of the micro-batches
    the schedule's program must hold at once (:func:`moesim.simulator.planner.programs.programs`: a rank computes in
    program order, so those are held together whatever the timing; the engine may hold more, never fewer).

    Raises as :func:`simulate` does first for a layout the schedule cannot run (:class:`ScheduleError`)."""
    from moesim.simulator.planner.programs import programs
    from moesim.simulator.schedules import scenario_schedule
    from moesim.workloads.model import build_stages

    par = scenario.parallelism
    schedule = scenario_schedule(scenario)
    stages = build_stages(scenario)
    held = programs(scenario.schedule, par.pp, par.virtual_stages, scenario.micro_batches).held
    floors = []
    for rank in range(par.pp):
        own = schedule.rank_stages(rank)
        activations = max((sum(n * stages[s].forward.activation_bytes for s, n in peak) for peak in held[rank]),
                          default=0.0)
        floors.append(rank_memory(scenario, sum(stages[s].dense_params for s in own),
                                  sum(stages[s].expert_params for s in own), activations))
    return floors
