"""Scenario → operations → prices → simulated step → Result. The one path every command goes through."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from calibration.cost_model import CostModel
from calibration.profile import Profile, load_profile
from simulator.cohorts import full_layout
from simulator.engine import PipelineEngine, TailSpec, Timeline
from simulator.faults import rank_slowdowns, run_goodput
from simulator.limits import check_pipeline
from simulator.memory import check_fits, rank_memory
from simulator.metrics import pipeline_breakdowns
from simulator.network import AnalyticNetwork
from simulator.pricing import Pricer, StagePrice, expert_time_ratios
from simulator.schedules import get_schedule
from workloads.model import build_stages, parameter_counts
from workloads.ops import DTYPE_BYTES, Comm, Pattern
from workloads.scenario import Scenario

SECONDS_PER_DAY = 86_400.0


@dataclass
class StageResult:
    """One pipeline rank's share of the step (seconds) and its peak memory (GB)."""

    forward_s: float
    backward_input_s: float
    backward_weight_s: float
    exposed_comm_s: float
    bubble_s: float
    optimizer_s: float
    comm_s: float
    peak_inflight: int
    peak_memory_gb: float
    weights_gb: float
    gradients_gb: float
    optimizer_states_gb: float
    activations_gb: float
    gpu: int = -1  # full fidelity: the GPU this pipeline rank's breakdown is of (its busiest)


@dataclass
class Result:
    scenario: str
    schedule: str
    gpus: int
    step_time_s: float
    tokens_per_s: float
    tflops_per_gpu_causal: float
    tflops_per_gpu_noncausal: float
    mfu_causal: float
    mfu_noncausal: float
    gpu_hours_per_trillion_tokens: float
    training_days: float
    training_days_with_failures: float
    micro_batches: int
    tokens_per_step: int
    hbm_gb: float
    fits_in_memory: bool
    stages: list[StageResult]
    parameters: dict[str, float]
    reliability: dict[str, float]
    cost_model_notes: list[str]
    sim_wall_s: float
    events: int
    timeline: Timeline | None = field(default=None, repr=False)
    samples: dict | None = None  # with run.samples > 1: the jittered step times (simulator/uncertainty.py)
    fidelity: str = "representative"
    simulated_units: int = 0  # GPUs (or classes of identical GPUs) the engine ran: pp when representative

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("timeline")
        return data


def tail_spec(scenario: Scenario, network: AnalyticNetwork, cost_model: CostModel, dense: float,
              expert: float, rank: int = 0) -> TailSpec:
    """Gradient sync, optimizer step and parameter sync of pipeline rank ``rank`` holding these parameters."""
    tr, par = scenario.training, scenario.parallelism
    grad_b, weight_b = DTYPE_BYTES[tr.grad_dtype], DTYPE_BYTES[tr.weight_dtype]
    zero = par.zero_stage >= 1
    reduce = Pattern.REDUCE_SCATTER if zero else Pattern.ALL_REDUCE
    grad_s = network.comm_time_s(Comm(reduce, "dp", dense * grad_b), rank)
    grad_s += network.comm_time_s(Comm(reduce, "edp", expert * grad_b), rank)
    param_s = 0.0
    if zero:
        param_s = network.comm_time_s(Comm(Pattern.ALL_GATHER, "dp", dense * weight_b), rank)
        param_s += network.comm_time_s(Comm(Pattern.ALL_GATHER, "edp", expert * weight_b), rank)
    # AdamW on this rank's shard: read master, gradient and both moments; write master, moments, weights.
    shard = dense + expert
    if zero:
        shard = dense / (par.dp * par.cp) + expert / max(1, par.dp * par.cp * par.tp // par.ep)
    states = 2 * DTYPE_BYTES[tr.optimizer_moment_dtype] + (DTYPE_BYTES["fp32"] if tr.master_weights else 0)
    optimizer_bytes = shard * (2 * states + grad_b + weight_b)
    optimizer_s = optimizer_bytes / (cost_model.memory_efficiency() * scenario.cluster.gpu.hbm_tbps * 1e12)
    return TailSpec(grad_s, optimizer_s, param_s)


def make_network(scenario: Scenario):
    """The network model ``run.network`` names: closed-form ``analytic``, or ``flow`` on the cluster graph.

    Link or switch faults need routes, so with ``faults.links`` even ``analytic`` is priced on the graph.
    """
    if scenario.run.network == "flow" or scenario.faults.links:
        from simulator.network.scenario_network import ScenarioNetwork
        return ScenarioNetwork(scenario, scenario.run.network)
    return AnalyticNetwork(scenario)


def simulate(scenario: Scenario, profile: Profile | None = None, keep_timeline: bool = False,
             check_memory: bool | None = None, pricer_factory: Callable[..., Pricer] | None = None,
             full_units: str = "auto") -> Result:
    """Simulate one training step of ``scenario`` at its ``run.fidelity``.

    ``representative``: one simulated rank per pipeline rank. ``full``: every GPU, with collectives as
    rendezvous of their members and stragglers on their own GPU. ``full_units`` (see
    :func:`simulator.cohorts.full_layout`): ``classes`` runs GPUs that provably behave alike once, ``gpus``
    runs each GPU on its own (same result; for checks and benchmarks), ``auto`` picks the cheaper.

    ``pricer_factory(scenario, cost_model, network, stage_rank)`` replaces the :class:`Pricer` that prices each
    stage's components (trace replay injects measured per-layer costs this way).

    Raises :class:`~simulator.schedules.ScheduleError` for a layout the schedule cannot run and, when
    ``check_memory`` (default: the scenario's ``run.check_memory``), :class:`~simulator.memory.MemoryLayoutError`
    when a rank's peak memory exceeds HBM.
    """
    wall = time.perf_counter()
    profile = profile or load_profile(None)
    cost_model = CostModel(profile, scenario.cluster.gpu)
    network = make_network(scenario)
    par = scenario.parallelism
    check_pipeline(par.pp, scenario.micro_batches, par.virtual_stages,
                   "lower parallelism.global_batch or raise dp·micro_batch_size")
    schedule = get_schedule(scenario.schedule)(par.pp, scenario.micro_batches, par.virtual_stages)
    pricer = (pricer_factory or Pricer)(scenario, cost_model, network, schedule.stage_rank)
    stages = build_stages(scenario)
    prices: list[StagePrice] = [pricer.price_stage(s) for s in stages]

    # A rank holds the parameters of every stage it runs: DualPipe's two directions make that two copies.
    rank_params = [[sum(stages[s].dense_params for s in schedule.rank_stages(rank)),
                    sum(stages[s].expert_params for s in schedule.rank_stages(rank))] for rank in range(par.pp)]
    # Every rank's tail is priced on its own parameters, but the step ends with the slowest.
    tails = [tail_spec(scenario, network, cost_model, d, e, rank) for rank, (d, e) in enumerate(rank_params)]
    tail = max(tails, key=lambda t: t.grad_sync_s + t.optimizer_s + t.param_sync_s)
    send_bytes = par.micro_batch_size * par.seq_len // par.cp * scenario.model.hidden * DTYPE_BYTES["bf16"] / par.tp
    send_s = network.comm_time_s(Comm(Pattern.SEND_RECV, "pp", send_bytes))

    full = scenario.run.fidelity == "full"
    layout = full_layout(scenario, full_units, expert_time_ratios(pricer, stages)) if full else None
    if layout is not None:
        check_pipeline(par.pp, scenario.micro_batches, par.virtual_stages, "use run.fidelity=representative or "
                       "fewer micro-batches", max(1, len(layout.units) // par.pp))
    timeline = PipelineEngine(schedule, prices, send_s, tail, compute_slowdown=None if full else
                              rank_slowdowns(scenario), layout=layout).run()
    breakdowns, rows = pipeline_breakdowns(timeline, [p.activation_bytes for p in prices], par.pp)
    step_s = timeline.makespan_s

    gpu = scenario.cluster.gpu
    gpus_per_stage = par.dp * par.tp * par.cp
    flops = sum(p.model_flops for p in prices) * scenario.micro_batches * gpus_per_stage
    flops_nc = sum(p.model_flops_noncausal for p in prices) * scenario.micro_batches * gpus_per_stage
    tflops_c = flops / step_s / scenario.cluster.gpus / 1e12
    tflops_nc = flops_nc / step_s / scenario.cluster.gpus / 1e12
    tokens_per_s = scenario.tokens_per_step / step_s

    memories = [rank_memory(scenario, *rank_params[rank], b.peak_activation_bytes)
                for rank, b in enumerate(breakdowns)]
    if scenario.run.check_memory if check_memory is None else check_memory:
        check_fits(memories, gpu.hbm_gb)
    stage_results = []
    for b, mem, row in zip(breakdowns, memories, rows):
        stage_results.append(StageResult(
            b.forward_s, b.backward_input_s, b.backward_weight_s, b.exposed_comm_s, b.bubble_s,
            b.optimizer_s, b.comm_s, b.peak_inflight, mem.total_gb, mem.weights_gb, mem.gradients_gb,
            mem.optimizer_gb, mem.activations_gb, row if full else -1))
    counts = parameter_counts(scenario.model)
    days = scenario.training.tokens / tokens_per_s / SECONDS_PER_DAY
    goodput = run_goodput(scenario, days)
    return Result(
        scenario=scenario.name, schedule=scenario.schedule, gpus=scenario.cluster.gpus,
        step_time_s=step_s, tokens_per_s=tokens_per_s,
        tflops_per_gpu_causal=tflops_c, tflops_per_gpu_noncausal=tflops_nc,
        mfu_causal=tflops_c / gpu.bf16_tflops, mfu_noncausal=tflops_nc / gpu.bf16_tflops,
        gpu_hours_per_trillion_tokens=scenario.cluster.gpus * 1e12 / tokens_per_s / 3600.0,
        training_days=days, training_days_with_failures=goodput.days_with_failures,
        micro_batches=scenario.micro_batches, tokens_per_step=scenario.tokens_per_step,
        hbm_gb=gpu.hbm_gb, fits_in_memory=max(s.peak_memory_gb for s in stage_results) <= gpu.hbm_gb,
        stages=stage_results,
        parameters={"total": counts.total, "activated": counts.activated, "mtp": counts.mtp},
        reliability=goodput.to_dict(),
        cost_model_notes=sorted(cost_model.fallbacks.values()),
        sim_wall_s=time.perf_counter() - wall, events=timeline.events,
        timeline=timeline if keep_timeline else None, fidelity=scenario.run.fidelity,
        simulated_units=timeline.units)
