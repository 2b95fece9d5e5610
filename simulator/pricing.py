"""Price a stage's chunks: each component becomes a :class:`Segment` (stream, seconds) for the engine.

Compute ops are priced by the cost model twice: on the SMs left after communication takes its reserved share
(``training.comm_sms``), for when a communication kernel runs beside them, and on all of the GPU's SMs, for when
none does (the program builder picks, :mod:`moesim.simulator.engine.program`); communication ops by the network model.
Neighbouring components on the same stream merge into one segment, so the engine schedules few, coarse events.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from moesim.calibration.cost_model import CostModel
from moesim.calibration.host import HostModel
from moesim.simulator.engine.host import HostPricer, SegmentHost, active
from moesim.simulator.tp_overlap import SPLITS, overlap_pairs, overlapped_s
from moesim.simulator.network.model import NetworkModel
from moesim.workloads.ep_load import scenario_ep_load
from moesim.workloads.fsdp import COMPONENT as FSDP
from moesim.workloads.model import StageWork
from moesim.workloads.ops import Chunk, Component, Kind, Op, Phase, Stream
from moesim.workloads.scenario import Scenario


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of ops on one stream of one GPU; ``name`` lists its components (e.g. ``ATTN3+MLP3``).

    ``component`` and ``layer`` name the one component an unmerged segment holds ("" and −1 when merged).
    ``group`` is the process group a communication segment synchronises (``ep``, ``tp``; "" for compute): in
    full-fidelity simulation its members meet there (a rendezvous).
    """

    name: str
    stream: Stream
    duration_s: float
    phase: Phase
    component: str = ""
    layer: int = -1
    group: str = ""
    expert_s: float = 0.0  # of duration_s, routed-expert grouped GEMMs at the busiest GPU's rows (skewed routing)
    # The communication ops the segment runs, in order, and their seconds alone on the network (of duration_s):
    # a time-shared network (``run.network: flow``) moves them in simulated time instead.
    comms: tuple = ()
    comm_s: float = 0.0
    # The same segment with no communication kernel beside it (compute on all of the GPU's SMs): its seconds and
    # expert seconds. None: as ``duration_s`` (communication, or no SMs reserved).
    full_s: float | None = None
    expert_full_s: float = 0.0
    host: SegmentHost | None = None  # kernels, host launch seconds and sync (None: the host is not modelled)
    # How the chain issues it (FSDP's collectives, moesim.workloads.fsdp): "prefetch", one unit ahead of the compute that
    # needs it; "detached", after its unit, with nothing in the chain waiting for it; "" in order.
    issue: str = ""

    @property
    def alone_s(self) -> float:
        """Seconds with no communication kernel beside the segment."""
        return self.duration_s if self.full_s is None else self.full_s


def _add(a: float | None, a_s: float, b: float | None, b_s: float) -> float | None:
    """``full_s`` of two merged segments (each None when it equals its ``duration_s``, ``a_s`` / ``b_s``)."""
    return None if a is None and b is None else (a_s if a is None else a) + (b_s if b is None else b)


@dataclass(frozen=True)
class StagePrice:
    """Per phase, the ordered segments of one chunk of this stage; ``flops`` as counted for MFU.

    ``components`` holds, per phase, one segment per component (ATTN, DISPATCH, MLP, COMBINE, …) in order;
    when absent, the engine treats each merged segment as a component.
    """

    segments: dict[Phase, tuple[Segment, ...]]
    model_flops: float
    model_flops_noncausal: float
    activation_bytes: float
    components: dict[Phase, tuple[Segment, ...]] | None = None

    def phase_time_s(self, phase: Phase, stream: Stream | None = None) -> float:
        return sum(s.duration_s for s in self.segments[phase] if stream is None or s.stream is stream)


def _wider(a: str, b: str) -> str:
    """The group a merged segment synchronises: EP groups hold whole TP groups (ep is a multiple of tp)."""
    if a == b or not b:
        return a
    if not a:
        return b
    return "ep" if "ep" in (a, b) else a


class Pricer:
    """Prices chunks for one scenario with a cost model (compute) and a network model (comm)."""

    def __init__(self, scenario: Scenario, cost_model: CostModel, network: NetworkModel, stage_rank=None):
        self.cost_model = cost_model
        self.network = network
        self.compute_sms = scenario.cluster.gpu.sms - scenario.training.comm_sms  # beside communication
        self.full_sms = scenario.cluster.gpu.sms  # alone
        host = HostModel.from_profiles(cost_model.profiles)
        # The host's costs (None when the profiles measured none: then no host is modelled).
        self.host = HostPricer(host, scenario.training.cuda_graphs) if active(host) else None
        self.stage_rank = stage_rank  # stage -> the pipeline rank whose GPUs run its communication
        self._rank = 0
        load = scenario_ep_load(scenario) if scenario.model.moe is not None else None
        # The busiest GPU's expert rows relative to the mean: its grouped GEMMs set the MoE layer's pace.
        self.expert_rows_factor = load.gemm_factor if load is not None else 1.0
        self.gpu_rows = load.gpu_rows if load is not None else None  # each EP rank's rows relative to the mean
        if load is not None and scenario.training.capacity_factor is not None:
            # Dropped picks cap each expert's rows (moesim.workloads.dispatchers): the busiest GPU's kept rows set the pace.
            self.gpu_rows = load.capped_rows(scenario.training.capacity_factor)[1]
            self.expert_rows_factor = float(self.gpu_rows.max())
        self.ep_load = load
        # Megatron's --tp-comm-overlap: TP collectives pipelined with their GEMMs (moesim.simulator.tp_overlap).
        self.tp_comm_overlap = scenario.training.tp_comm_overlap and scenario.parallelism.tp > 1
        # (id(op), sms, rank of a comm op) → (op, seconds): layers of a kind share their op objects
        # (moesim.workloads.model), so each distinct op is priced once (compute ops once for every stage); the entry
        # holds its op, so that the id stays that op's while it is cached.
        self._op_prices: dict[tuple, tuple] = {}
        # (ids of a component's ops, sms, rank) → (its ops, seconds): a kind of layer's components repeat on every
        # layer of the kind (998 sums of 20,949 ops for 274 distinct ones on DeepSeek-V3).
        self._component_prices: dict[tuple, tuple] = {}

    def op_time_s(self, op, sms: int | None = None) -> float:
        """Seconds ``op`` holds its stream: the kernel plus the launch gap before it (the profile's measured
        idle time between kernels queued back to back); compute on ``sms`` SMs (default: those left beside
        communication)."""
        key = (id(op), sms, self._rank if op.comm is not None else -1)
        cached = self._op_prices.get(key)
        if cached is not None:
            return cached[1]
        gap = self.cost_model.launch_gap_s
        if op.comm is not None:
            seconds = gap + self.network.comm_time_s(op.comm, self._rank)
        elif op.kind is Kind.GROUPED_GEMM and self.expert_rows_factor != 1.0:
            seconds = gap + self.cost_model.op_time_s(busiest_gpu_op(op, self.expert_rows_factor),
                                                      sms or self.compute_sms)
        else:
            seconds = gap + self.cost_model.op_time_s(op, sms or self.compute_sms)
        self._op_prices[key] = (op, seconds)
        return seconds

    def outside_reason(self, op) -> str | None:
        """Why the cost model priced compute ``op`` (as :meth:`op_time_s` prices it) outside every curve's measured
        range, by the shape model (None: inside, or a communication op)."""
        if op.comm is not None:
            return None
        if op.kind is Kind.GROUPED_GEMM and self.expert_rows_factor != 1.0:
            op = busiest_gpu_op(op, self.expert_rows_factor)
        return self.cost_model.outside_reason(op, self.compute_sms)

    def component_time_s(self, component: Component, sms: int | None = None) -> float:
        """Seconds for one component (its ops back to back on its stream), compute on ``sms`` SMs (default:
        those left beside communication)."""
        key = (*map(id, component.ops), sms, self._rank)
        cached = self._component_prices.get(key)
        if cached is None:
            cached = self._component_prices[key] = (tuple(component.ops),
                                                    sum(self.op_time_s(op, sms) for op in component.ops))
        return cached[1]

    def component_segments(self, chunk: Chunk) -> tuple[Segment, ...]:
        """One segment per non-empty component, in execution order; with ``training.tp_comm_overlap`` a
        tensor-parallel collective and its GEMM become one overlapped segment (:mod:`moesim.simulator.tp_overlap`)."""
        segments = []
        pairs = overlap_pairs(chunk) if self.tp_comm_overlap else {}
        partners = {j: gemm for j, gemm in pairs.values()}
        for index, component in enumerate(chunk.components):
            if index in pairs:
                j, gemm = pairs[index]
                segments.append(self._overlapped(chunk, component, chunk.components[j].ops[gemm]))
                continue
            if index in partners:  # its GEMM runs in the overlapped segment
                ops = component.ops[:partners[index]] + component.ops[partners[index] + 1:]
                component = Component(component.name, component.layer, component.phase, ops)
            if not component.ops:
                continue
            seconds = self.component_time_s(component)
            alone = self.full_sms != self.compute_sms and component.stream is Stream.COMPUTE
            full = self.component_time_s(component, self.full_sms) if alone else None
            label = f"{component.name}{component.layer}" if component.layer >= 0 else component.name
            groups = [op.comm.group for op in component.ops if op.comm is not None]
            # EP holds the expert-TP peers' rows too: a component with both meets over EP.
            group = "ep" if "ep" in groups else (groups[0] if groups else "")
            expert = expert_full = 0.0
            if self.expert_rows_factor != 1.0:
                experts = [op for op in component.ops if op.kind is Kind.GROUPED_GEMM]
                expert = sum(self.op_time_s(op) for op in experts)
                expert_full = sum(self.op_time_s(op, self.full_sms) for op in experts) if alone else expert
            comms = tuple(op.comm for op in component.ops if op.comm is not None)
            # The network's part only (launch gaps stay fixed time): a time-shared network replaces just this.
            comm_s = sum(self.network.comm_time_s(op.comm, self._rank) for op in component.ops if op.comm is not None)
            issue = ""
            if component.name == FSDP:  # a collective of a DP subgroup: no rendezvous of its own (see moesim.workloads.fsdp)
                issue, group = ("detached" if chunk.phase is Phase.W else "prefetch"), ""
            segments.append(Segment(label, component.stream, seconds, chunk.phase, component.name,
                                    component.layer, group, expert, comms, comm_s, full, expert_full,
                                    self.host.component(component) if self.host is not None else None, issue))
        return tuple(segments)

    def _overlapped(self, chunk: Chunk, collective: Component, gemm: Op) -> Segment:
        """A tensor-parallel collective pipelined with ``gemm`` (:mod:`moesim.simulator.tp_overlap`): one compute-stream
        segment, a rendezvous of the TP group."""
        seconds = overlapped_s(self, gemm, collective.ops, self.compute_sms)
        full = overlapped_s(self, gemm, collective.ops, self.full_sms) if self.full_sms != self.compute_sms else None
        host = None
        if self.host is not None:
            kernels = SPLITS * (1 + len(collective.ops))
            launch = SPLITS * (self.host.model.op_launch_s(gemm) + sum(self.host.model.op_launch_s(op)
                                                                       for op in collective.ops))
            host = SegmentHost(kernels, launch, False)
        label = f"{collective.name}{collective.layer}" if collective.layer >= 0 else collective.name
        return Segment(label, Stream.COMPUTE, seconds, chunk.phase, collective.name, collective.layer, "tp",
                       full_s=full, host=host)

    @staticmethod
    def merge_segments(components: tuple[Segment, ...]) -> tuple[Segment, ...]:
        """Neighbouring segments on the same stream joined into one."""
        segments: list[Segment] = []
        for seg in components:
            # A sync starts a segment: the host waits for the GPU to reach it.
            if segments and segments[-1].stream is seg.stream and not (seg.host is not None and seg.host.sync) \
                    and not seg.issue and not segments[-1].issue:
                last = segments[-1]
                segments[-1] = Segment(f"{last.name}+{seg.name}", last.stream, last.duration_s + seg.duration_s,
                                       seg.phase, group=_wider(last.group, seg.group),
                                       expert_s=last.expert_s + seg.expert_s, comms=last.comms + seg.comms,
                                       comm_s=last.comm_s + seg.comm_s,
                                       full_s=_add(last.full_s, last.duration_s, seg.full_s, seg.duration_s),
                                       expert_full_s=last.expert_full_s + seg.expert_full_s,
                                       host=last.host + seg.host if last.host is not None else None)
            else:
                segments.append(Segment(seg.name, seg.stream, seg.duration_s, seg.phase, group=seg.group,
                                        expert_s=seg.expert_s, comms=seg.comms, comm_s=seg.comm_s,
                                        full_s=seg.full_s, expert_full_s=seg.expert_full_s, host=seg.host,
                                        issue=seg.issue))
        return tuple(segments)

    def chunk_segments(self, chunk: Chunk) -> tuple[Segment, ...]:
        return self.merge_segments(self.component_segments(chunk))

    def at_stage(self, stage: int) -> None:
        """Price communication from now on on the GPUs of the pipeline rank that runs ``stage``."""
        self._rank = self.stage_rank(stage) if self.stage_rank else 0

    def price_stage(self, stage: StageWork) -> StagePrice:
        self.at_stage(stage.stage)
        components = {phase: self.component_segments(stage.chunk(phase)) for phase in Phase}
        segments = {phase: self.merge_segments(c) for phase, c in components.items()}
        ops = [op for phase in Phase for op in stage.chunk(phase).ops()]
        return StagePrice(segments, sum(o.model_flops for o in ops), sum(o.model_flops_noncausal for o in ops),
                          stage.forward.activation_bytes, components)


def expert_time_ratios(pricer: Pricer, stages: list[StageWork]) -> list[dict[str, float]] | None:
    """Per EP rank, per phase letter: its routed-expert grouped GEMM time over the busiest GPU's (None when
    routing is balanced). Each EP rank processes its own rows (``Pricer.gpu_rows``); full fidelity runs each
    GPU's expert GEMMs at its own pace and the busiest one's peers wait at the combine."""
    load = pricer.ep_load
    if load is None or pricer.expert_rows_factor == 1.0:
        return None
    moe = next((s for s in stages if any(op.kind is Kind.GROUPED_GEMM for op in s.chunk(Phase.F).ops())), None)
    if moe is None:
        return None
    ops = {phase: [op for op in moe.chunk(phase).ops() if op.kind is Kind.GROUPED_GEMM] for phase in Phase}

    def seconds(phase: Phase, factor: float) -> float:
        return sum(pricer.cost_model.op_time_s(busiest_gpu_op(op, factor), pricer.compute_sms)
                   for op in ops[phase])

    busiest = {phase: seconds(phase, pricer.expert_rows_factor) for phase in Phase}
    ratios = []
    for rows in pricer.gpu_rows:
        ratios.append({phase.value: seconds(phase, float(rows)) / busiest[phase] if busiest[phase] > 0 else 1.0
                       for phase in Phase})
    return ratios


def busiest_gpu_op(op: Op, factor: float) -> Op:
    """The routed-expert grouped GEMM ``op`` as the busiest GPU runs it: ``factor`` × the mean token rows.
    The token dimension is m in F (g, m, n, k) and B (g, m, k, n), and the reduction k in W (g, k, n, m)."""
    shape = list(op.shape)
    token_axis = 3 if op.phase is Phase.W else 1
    shape[token_axis] = max(1, round(shape[token_axis] * factor))
    return replace(op, shape=tuple(shape), flops=op.flops * factor, bytes=op.bytes * factor)


def layer_op_classes(pricer: Pricer, stages: list[StageWork]) -> list[dict]:
    """What one transformer layer (its F, B and W; the first MoE layer when there is one) costs per op class on
    the stream that runs it: ops, kernel seconds, launch-gap seconds and what priced the class. DualPipe pairs
    the forward of one such layer with the backward of another, so this is one "layer pair" of a trace."""
    layers = [(s, layer) for s in stages for layer in s.layers]
    moe = [(s, layer) for s, layer in layers
           if any(op.kind is Kind.GROUPED_GEMM for c in s.forward.components if c.layer == layer for op in c.ops)]
    if not (moe or layers):
        return []
    stage, layer = (moe or layers)[0]
    pricer.at_stage(stage.stage)
    rows: dict[str, dict] = {}
    gap = pricer.cost_model.launch_gap_s
    for phase in Phase:
        for component in stage.chunk(phase).components:
            if component.layer != layer:
                continue
            for op in component.ops:
                row = rows.setdefault(op.op_class.value, {"class": op.op_class.value, "stream": op.stream.value,
                                                          "ops": 0, "kernel_s": 0.0, "launch_gap_s": 0.0})
                row["ops"] += 1
                row["kernel_s"] += pricer.op_time_s(op) - gap
                why = pricer.outside_reason(op)
                if why is not None:
                    row.setdefault("outside", {}).setdefault(why, None)
                row["launch_gap_s"] += gap
    sources = pricer.cost_model.sources
    for row in rows.values():
        # Sources are per class over the whole model: the shape model is named only where this layer's ops used it.
        priced = [v for k, v in sources.items() if k.startswith(row["class"] + " ")
                  and ("outside" in row or not v.startswith("shape model"))]
        row["priced_by"] = "network model" if row["stream"] == "comm" and row["class"].startswith(("ep.", "coll")) \
            else "; ".join(sorted(set(priced))) or "roofline"
        if "outside" in row:  # which ops of the class, and why, as the notes say it
            row["priced_by"] += "".join(f"; outside measured range: {why}; priced by the shape model"
                                        for why in row.pop("outside"))
    return sorted(rows.values(), key=lambda r: (r["stream"], r["class"]))
