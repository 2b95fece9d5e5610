"""Scenario → operations → prices → simulated step → Result. The one path every command goes through."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable

from moesim.calibration.cost_model import CostModel
from moesim.calibration.profile import Profile, load_profiles
from moesim.simulator.auto_split import resolve_auto
from moesim.simulator.energy import energy_report
from moesim.simulator.engine.cohorts import full_layout
from moesim.simulator.engine import PipelineEngine, TailSpec, Timeline
from moesim.simulator.engine.pipeline import collector_paused
from moesim.simulator.failures.faults import rank_slowdowns, run_goodput
from moesim.simulator.limits import check_pipeline
from moesim.simulator.memory import MemoryBreakdown, check_fits, rank_memory
from moesim.simulator.engine.ledger import RankBreakdown
from moesim.simulator.metrics import pipeline_breakdowns
from moesim.simulator.network import AnalyticNetwork, NetworkModel, TimeSharedNetwork
from moesim.simulator.pricing import Pricer, StagePrice, expert_time_ratios, layer_op_classes
from moesim.simulator.schedules import scenario_schedule
from moesim.workloads.fp8 import gemm_library
from moesim.workloads.model import build_stages, parameter_counts
from moesim.workloads.ops import DTYPE_BYTES, Comm, Pattern
from moesim.workloads.scenario import Scenario

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, kw_only=True)
class StageResult(RankBreakdown):
    """One pipeline rank's share of the step: the runner's breakdown of its time (:class:`RankBreakdown`,
    seconds), extended with its peak memory (GB) and, at full fidelity, ``gpu``: the GPU the breakdown is of (its
    busiest; −1 otherwise)."""

    peak_memory_gb: float
    weights_gb: float
    gradients_gb: float
    optimizer_states_gb: float
    activations_gb: float
    gpu: int = -1

    @classmethod
    def of(cls, breakdown: RankBreakdown, memory: MemoryBreakdown, gpu: int = -1) -> "StageResult":
        """A pipeline rank's result: the runner's ``breakdown`` as it is, its ``memory`` and ``gpu`` as above."""
        return cls(**vars(breakdown), peak_memory_gb=memory.total_gb, weights_gb=memory.weights_gb,
                   gradients_gb=memory.gradients_gb, optimizer_states_gb=memory.optimizer_gb,
                   activations_gb=memory.activations_gb, gpu=gpu)

    def to_dict(self) -> dict:
        """The fields users' files hold (``--json``'s ``stages``; sweep columns ``max_<name>``), in their order."""
        return {name: getattr(self, name) for name in STAGE_COLUMNS}


# What users' files hold of a StageResult, in the order they have held it: every field but the activations in
# bytes (they show as activations_gb), the host-bound time last (a column added after the others).
_LATER = ("host_bound_s",)
STAGE_COLUMNS = tuple(f.name for f in fields(StageResult) if f.name not in ("peak_activation_bytes", *_LATER)) + _LATER


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
    tasks: int = 0  # engine tasks run (one per segment per simulated unit)
    simpy_events: int = 0  # events SimPy scheduled: stream waits, rendezvous, network transfers
    network: str = "analytic"
    # One transformer layer (the first MoE layer) per op class: ops, kernel_s, launch_gap_s, priced_by.
    op_classes: list[dict] = field(default_factory=list)
    cost_model_sources: dict[str, str] = field(default_factory=dict)  # op class and dtype → what priced it
    # Ops priced outside every curve's measured range (by the shape model): op, label, shape, why, tflops, sms, note.
    outside_range: list[dict] = field(default_factory=list)
    # The scenario as simulated where it differs from the one given (stage_layers: auto resolved); not in to_dict.
    resolved_scenario: Scenario | None = field(default=None, repr=False, compare=False)
    # With the scenario's energy section: kWh and USD per step and per run (simulator/energy.py).
    energy: dict | None = None

    def to_dict(self) -> dict:
        # Without the timeline: asdict would deep-copy its records first (seconds for DeepSeek-V3's 75,184).
        data = asdict(replace(self, timeline=None, stages=[], resolved_scenario=None))
        data.pop("timeline")
        data.pop("resolved_scenario")
        data["stages"] = [stage.to_dict() for stage in self.stages]
        if data["energy"] is None:  # a scenario without an energy section reads as before it existed
            data.pop("energy")
        return data

    def stages_frame(self):
        """The pipeline ranks as a pandas DataFrame, one row per rank (index ``stage``), the columns of
        ``--json``'s ``stages`` (seconds; memory in GB)."""
        return require_pandas().DataFrame([stage.to_dict() for stage in self.stages]).rename_axis("stage")

    def timeline_frame(self):
        """Every kernel, transfer and host wait of the step as a pandas DataFrame (columns
        :data:`TIMELINE_COLUMNS`, seconds); needs the timeline (``moesim.simulate(..., timeline=True)``)."""
        if self.timeline is None:
            raise ValueError("this result kept no timeline; simulate with timeline=True")
        return require_pandas().DataFrame(self.timeline.records, columns=list(TIMELINE_COLUMNS))


# A timeline record's fields (moesim.simulator.engine.pipeline.Timeline): at full fidelity ``rank`` is the GPU.
TIMELINE_COLUMNS = ("rank", "stream", "start_s", "end_s", "label", "phase", "micro_batch", "stage")


def require_pandas():
    """The pandas module, or an ImportError naming the extra that installs it."""
    try:
        import pandas
    except ImportError:
        raise ImportError("results as DataFrames need pandas: pip install 'moesim[pandas]'") from None
    return pandas


def tail_spec(scenario: Scenario, network: NetworkModel, cost_model: CostModel, dense: float,
              expert: float, rank: int = 0) -> TailSpec:
    """Gradient sync, optimizer step and parameter sync of pipeline rank ``rank`` holding these parameters."""
    tr, par = scenario.training, scenario.parallelism
    grad_b, weight_b = DTYPE_BYTES[tr.grad_dtype], DTYPE_BYTES[tr.weight_dtype]
    zero = par.zero_stage >= 1
    reduce = Pattern.REDUCE_SCATTER if zero else Pattern.ALL_REDUCE
    grad_comms = (Comm(reduce, "dp", dense * grad_b), Comm(reduce, "edp", expert * grad_b))
    param_comms = ((Comm(Pattern.ALL_GATHER, "dp", dense * weight_b), Comm(Pattern.ALL_GATHER, "edp", expert * weight_b))
                   if zero else ())
    if par.fsdp is not None:
        grad_comms, param_comms = fsdp_tail_comms(scenario, dense, expert)
        zero = True
    grad_s = sum(network.comm_time_s(c, rank) for c in grad_comms)
    param_s = sum(network.comm_time_s(c, rank) for c in param_comms)
    # AdamW on this rank's shard: read master, gradient and both moments; write master, moments, weights.
    shard = dense + expert
    if zero:
        shard = dense / par.dense_shards + expert / par.expert_shards
    states = 2 * DTYPE_BYTES[tr.optimizer_moment_dtype] + (DTYPE_BYTES["fp32"] if tr.master_weights else 0)
    optimizer_bytes = shard * (2 * states + grad_b + weight_b)
    optimizer_s = optimizer_bytes / (cost_model.memory_efficiency() * scenario.cluster.gpu.hbm_tbps * 1e12)
    return TailSpec(grad_s, optimizer_s, param_s, grad_comms, param_comms)


def fsdp_tail_comms(scenario: Scenario, dense: float, expert: float) -> tuple[tuple, tuple]:
    """FSDP's collectives in a rank's tail (gradients, parameters) for these parameters: none without pipeline
    parallelism (each layer gathers and reduces its own, :mod:`moesim.workloads.fsdp`); with it, PyTorch's pipelining keeps
    the gathered parameters across micro-batches and syncs gradients after the last backward, so the step ends
    with a reduce-scatter over the shard group (an all-reduce of the shard over the replicas for HSDP, experts
    over their expert-DP group) and the parameters are gathered again for the next step."""
    par, tr = scenario.parallelism, scenario.training
    if par.pp == 1:
        return (), ()
    grad_b, weight_b = DTYPE_BYTES[tr.grad_dtype], DTYPE_BYTES[tr.weight_dtype]
    grads = [Comm(Pattern.REDUCE_SCATTER, "fsdp", dense * grad_b), Comm(Pattern.REDUCE_SCATTER, "edp", expert * grad_b)]
    if par.fsdp.replicate > 1:
        grads.append(Comm(Pattern.ALL_REDUCE, "hsdp", dense * grad_b / par.fsdp.shard))
    params = (Comm(Pattern.ALL_GATHER, "fsdp", dense * weight_b), Comm(Pattern.ALL_GATHER, "edp", expert * weight_b))
    return tuple(grads), params


def host_notes(pricer: Pricer, scenario: Scenario) -> list[str]:
    """What the host model priced with, when it is on (moesim.simulator.engine.host)."""
    host = pricer.host
    if host is None:
        return []
    graphs = ", ".join(scenario.training.cuda_graphs) or "none"
    source = host.model.source.split(":")[0]  # what measured them, without how
    return [f"host: kernel launch and sync costs from {source}; CUDA graphs: {graphs}"]


def parallel_notes(scenario: Scenario) -> list[str]:
    """What the MoE dispatcher, expert parallel groups and token dropping did (only when set off their defaults)."""
    from moesim.workloads.dispatchers import kept_fraction

    tr, par, notes = scenario.training, scenario.parallelism, []
    if scenario.model.moe is None:
        return notes
    if tr.dispatcher != "deepep" or par.expert_tp > 1:
        notes.append(f"moe: dispatcher {tr.dispatcher}; expert groups: ep {par.ep} × expert_tp {par.expert_tp} × "
                     f"expert_dp {par.expert_dp_size}")
    if tr.capacity_factor is not None:
        dropped = 1.0 - kept_fraction(scenario)
        notes.append(f"moe: capacity factor {tr.capacity_factor:g} drops {dropped:.2%} of routed tokens "
                     f"(routing {scenario.routing.name})")
    return notes


def make_network(scenario: Scenario) -> NetworkModel:
    """The network model ``run.network`` names: closed-form ``analytic``, or ``flow``, links on the cluster
    graph shared in simulated time by all concurrent traffic (:mod:`moesim.simulator.network.shared`).

    Link or switch faults need routes, so with ``faults.links`` ``analytic`` adds to its closed-form prices the
    time the faults add on the cluster graph (:mod:`moesim.simulator.network.faulted`).
    """
    if scenario.run.network == "flow":
        from moesim.simulator.network.shared import SharedNetwork
        return SharedNetwork(scenario)
    if scenario.faults.links:
        from moesim.simulator.network.faulted import FaultedNetwork
        return FaultedNetwork(scenario)
    return AnalyticNetwork(scenario)


def cost_model_for(scenario: Scenario, profile: Profile | list[Profile] | None = None) -> CostModel:
    """The cost model of a scenario: the given profile(s), else its GPU's default stack, at the GEMM kernel
    generation the scenario names (``training.kernels``; cuBLAS for a per-tensor or MX ``training.fp8_recipe``)."""
    if profile is None:
        profile = load_profiles(None, scenario.cluster.gpu.name)
    return CostModel(profile, scenario.cluster.gpu, gemm_library(scenario.training))


def _candidate_step_s(scenario: Scenario, profile, pricer_factory) -> float:
    """The simulated step of a candidate split for ``stage_layers: auto`` (infinite where it does not fit HBM or
    the schedule cannot run it)."""
    from moesim.simulator.memory import MemoryLayoutError
    from moesim.simulator.schedules import ScheduleError

    try:
        return simulate(scenario, profile, pricer_factory=pricer_factory).step_time_s
    except (MemoryLayoutError, ScheduleError):
        return float("inf")


def simulate(scenario: Scenario, profile: Profile | list[Profile] | None = None, keep_timeline: bool = False,
             check_memory: bool | None = None, pricer_factory: Callable[..., Pricer] | None = None,
             full_units: str = "auto") -> Result:
    """Simulate one training step of ``scenario`` at its ``run.fidelity``.

    ``representative``: one simulated rank per pipeline rank. ``full``: every GPU, with collectives as
    rendezvous of their members and stragglers on their own GPU. ``full_units`` (see
    :func:`moesim.simulator.engine.cohorts.full_layout`): ``classes`` runs GPUs that provably behave alike once, ``gpus``
    runs each GPU on its own (same result; for checks and benchmarks), ``auto`` picks the cheaper.

    ``pricer_factory(scenario, cost_model, network, stage_rank)`` replaces the :class:`Pricer` that prices each
    stage's components (trace replay injects measured per-layer costs this way).

    Raises :class:`~moesim.simulator.schedules.ScheduleError` for a layout the schedule cannot run and, when
    ``check_memory`` (default: the scenario's ``run.check_memory``), :class:`~moesim.simulator.memory.MemoryLayoutError`
    when a rank's peak memory exceeds HBM.
    """
    wall = time.perf_counter()
    cost_model = cost_model_for(scenario, profile)
    network = make_network(scenario)
    par = scenario.parallelism
    schedule = scenario_schedule(scenario)
    pricer = (pricer_factory or Pricer)(scenario, cost_model, network, schedule.stage_rank)
    scenario, chosen_split = resolve_auto(scenario, pricer, schedule,
                                         lambda candidate: _candidate_step_s(candidate, profile, pricer_factory))
    # The stages' ops and prices: tens of thousands of small objects for the whole step, no cycles (a full
    # collection while DeepSeek-V3's were built cost 15-30 ms of a 0.4 CPU s simulate, timed with gc.callbacks).
    with collector_paused():
        stages = build_stages(scenario)
        prices: list[StagePrice] = [pricer.price_stage(s) for s in stages]

    # A rank holds the parameters of every stage it runs: DualPipe's two directions make that two copies.
    rank_params = [[sum(stages[s].dense_params for s in schedule.rank_stages(rank)),
                    sum(stages[s].expert_params for s in schedule.rank_stages(rank))] for rank in range(par.pp)]
    # Every rank's tail is priced on its own parameters, but the step ends with the slowest.
    tails = [tail_spec(scenario, network, cost_model, d, e, rank) for rank, (d, e) in enumerate(rank_params)]
    tail = max(tails, key=lambda t: t.grad_sync_s + t.optimizer_s + t.param_sync_s)
    send_bytes = par.micro_batch_size * par.seq_len // par.cp * scenario.model.hidden * DTYPE_BYTES["bf16"] / par.tp
    send_comm = Comm(Pattern.SEND_RECV, "pp", send_bytes)
    send_s = network.comm_time_s(send_comm)

    full = scenario.run.fidelity == "full"
    # A time-shared network runs with one process per unit: full fidelity then simulates classes of GPUs.
    shared = network if isinstance(network, TimeSharedNetwork) else None
    units = "classes" if shared is not None else full_units
    layout = full_layout(scenario, units, expert_time_ratios(pricer, stages)) if full else None
    if layout is not None:
        check_pipeline(par.pp, scenario.micro_batches, par.virtual_stages, "use run.fidelity=representative or "
                       "fewer micro-batches", max(1, len(layout.units) // par.pp))
    timeline = PipelineEngine(schedule, prices, send_s, tail, compute_slowdown=None if full else
                              rank_slowdowns(scenario), layout=layout, network=shared,
                              send_comm=send_comm if shared is not None else None, host=pricer.host,
                              keep_records=keep_timeline).run()
    breakdowns, rows = pipeline_breakdowns(timeline, par.pp)
    step_s = timeline.makespan_s

    gpu = scenario.cluster.gpu
    gpus_per_stage = par.stage_gpus
    flops = sum(p.model_flops for p in prices) * scenario.micro_batches * gpus_per_stage
    flops_nc = sum(p.model_flops_noncausal for p in prices) * scenario.micro_batches * gpus_per_stage
    tflops_c = flops / step_s / scenario.cluster.gpus / 1e12
    tflops_nc = flops_nc / step_s / scenario.cluster.gpus / 1e12
    tokens_per_s = scenario.tokens_per_step / step_s

    memories = [rank_memory(scenario, *rank_params[rank], b.peak_activation_bytes)
                for rank, b in enumerate(breakdowns)]
    if scenario.run.check_memory if check_memory is None else check_memory:
        check_fits(memories, gpu.hbm_gb)
    stage_results = [StageResult.of(b, mem, row if full else -1) for b, mem, row in zip(breakdowns, memories, rows)]
    op_classes = layer_op_classes(pricer, stages)
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
        cost_model_notes=([chosen_split.note()] if chosen_split else []) + cost_model.notes()
        + host_notes(pricer, scenario) + parallel_notes(scenario),
        sim_wall_s=time.perf_counter() - wall, events=timeline.events,
        timeline=timeline if keep_timeline else None, fidelity=scenario.run.fidelity,
        simulated_units=timeline.units, tasks=timeline.tasks, simpy_events=timeline.simpy_events,
        network=scenario.run.network, op_classes=op_classes,
        cost_model_sources=dict(sorted(cost_model.sources.items())),
        outside_range=[asdict(o) for o in sorted(cost_model.outside.values(), key=lambda o: o.op)],
        resolved_scenario=scenario if chosen_split else None,
        energy=energy_report(scenario, step_s, days))
