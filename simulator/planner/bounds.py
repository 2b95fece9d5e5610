"""Lower bounds on a layout's step time and peak memory, from priced operations, without simulating.

Each layer kind (embedding, dense layer, MoE layer, the last stage's MTP blocks and head) is built and priced
once per (GPU kind, tp, cp, ep, micro-batch size, recomputation) — the only knobs its operations depend on — and
every candidate sharing them reuses the price. Communication inside a layer is priced on the smallest cluster
that has the layout's EP/TP/CP groups: the analytic network prices a group by its size and how it spans nodes,
not by the cluster's size.

Step time bound (seconds), per pipeline rank r:
- its work: every chunk it runs, each at least its compute time; in a schedule that does not overlap a
  forward with a backward (all but DualPipe), the communication between a chunk's first and last compute
  segment also stalls the in-order compute stream, so that span counts whole;
- in DualPipe(V), each chunk at least the busier of its compute and its communication (each stream is in order);
- plus the forwards of the stages before rank r's first chunk (in DualPipe, of the nearer end), and (when
  backward computes its weight gradients in place) the backwards of stages r−1 … 0 that must follow its last;
- and at least the time its host thread takes to launch all its chunks' kernels (moesim.simulator.engine.host).
- Also the walk of the schedule's data dependencies (:func:`chain_lower_bound_s`): each rank's compute stream in
  program order, each chunk's segments in order, each chunk after the chunk it waits for — the pipeline's
  fill and drain as the schedule's own programs make them, and each chunk's communication on that path.
The step is at least the largest such sum, plus the tail (gradient sync, optimizer step, parameter sync) that
follows every rank's last task.
Memory bound (GB): weights, gradients and optimizer states of the stages a rank holds (sharded by the ZeRO
stage) plus the activations of the micro-batches its program must hold at once.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from moesim.calibration.cost_model import CostModel
from moesim.calibration.profile import Profile
from moesim.simulator.memory import GB
from moesim.simulator.network import AnalyticNetwork
from moesim.simulator.planner.request import RECOMPUTE
from moesim.simulator.planner.space import Candidate
from moesim.simulator.pricing import Pricer
from moesim.simulator.planner.programs import chain, programs, rank_shares
from moesim.simulator.simulate import SECONDS_PER_DAY, cost_model_for
from moesim.simulator.sweep.spec import apply_value
from moesim.workloads.layers import LayerBuilder, LayerOps
from moesim.workloads.loader import validate
from moesim.workloads.model import _chunks, _transformer_layer, stage_parameters
from moesim.workloads.ops import DTYPE_BYTES, Stream
from moesim.workloads.scenario import state_shards

OVERLAPPING = ("dualpipe", "dualpipev")  # schedules that run a forward and a backward chunk at once
FUSED_WEIGHT = ("gpipe", "1f1b", "interleaved")  # backward computes weight gradients in place


@dataclass(frozen=True)
class KindPrice:
    """One layer kind for one micro-batch on one GPU: compute seconds per phase, compute-to-compute spans
    (communication in between included) per phase, saved activation bytes, parameters held (dense, expert)."""

    compute_s: tuple[float, float, float]
    span_s: tuple[float, float, float]
    activation_bytes: float
    dense_params: float
    expert_params: float
    host_s: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the host's launch time per phase (moesim.simulator.engine.host)
    # Compute seconds per phase on the SMs communication leaves (``Segment.duration_s``): what every compute
    # segment of an overlapped pair costs (moesim.simulator.engine.program runs a pair's compute beside its DeepEP kernels).
    beside_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Seconds of the segments before a chunk's first compute segment and after its last, per phase (its chain
    # runs them after its input arrives and before its output leaves). A stage chains its layers, so its own are
    # those of its first and last layer: a sum of kinds keeps the smallest of each (a lower bound); inf: none yet.
    lead_s: tuple[float, float, float] = (math.inf, math.inf, math.inf)
    trail_s: tuple[float, float, float] = (math.inf, math.inf, math.inf)

    def __add__(self, other: "KindPrice") -> "KindPrice":
        return KindPrice(tuple(a + b for a, b in zip(self.compute_s, other.compute_s)),
                         tuple(a + b for a, b in zip(self.span_s, other.span_s)),
                         self.activation_bytes + other.activation_bytes, self.dense_params + other.dense_params,
                         self.expert_params + other.expert_params,
                         tuple(a + b for a, b in zip(self.host_s, other.host_s)),
                         tuple(a + b for a, b in zip(self.beside_s, other.beside_s)),
                         tuple(map(min, self.lead_s, other.lead_s)), tuple(map(min, self.trail_s, other.trail_s)))

    def times(self, n: int) -> "KindPrice":
        return KindPrice(tuple(n * a for a in self.compute_s), tuple(n * a for a in self.span_s),
                         n * self.activation_bytes, n * self.dense_params, n * self.expert_params,
                         tuple(n * a for a in self.host_s), tuple(n * a for a in self.beside_s), self.lead_s,
                         self.trail_s)


ZERO = KindPrice((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0, 0.0, 0.0)


def _span(pricer: Pricer, chunk) -> tuple[float, float, float, float, float, float]:
    """(compute seconds, seconds from the first compute segment's start to the last one's end, the host's
    seconds to launch its kernels, compute seconds beside communication) of a chunk. Compute at its all-SM
    price (a chunk may run with no communication beside it, moesim.simulator.engine.program): still a lower bound; the last,
    at the reduced-SM price every compute segment of an overlapped pair takes."""
    segments = pricer.component_segments(chunk)
    compute = sum(s.alone_s for s in segments if s.stream is Stream.COMPUTE)
    beside = sum(s.duration_s for s in segments if s.stream is Stream.COMPUTE)
    idx = [i for i, s in enumerate(segments) if s.stream is Stream.COMPUTE]
    span = sum(s.alone_s for s in segments[idx[0]:idx[-1] + 1]) if idx else 0.0
    host = sum(s.host.launch_s for s in segments if s.host is not None)
    lead = sum(s.alone_s for s in segments[:idx[0]]) if idx else 0.0
    trail = sum(s.alone_s for s in segments[idx[-1] + 1:]) if idx else 0.0
    return compute, span, host, beside, lead, trail


class PriceCache:
    """Per-kind prices, built on first use for each (gpu, tp, cp, ep, micro_batch_size, recompute)."""

    def __init__(self, base: dict, profile: Profile | list[Profile] | None):
        self.base = base
        self.profile = profile
        self.kinds: dict[tuple, dict[str, KindPrice] | str] = {}
        self.priced = 0  # distinct keys priced (for the report)
        self.cost_models: dict[tuple[str, str], CostModel] = {}
        self.figures_cache: dict[tuple, RankFigures] = {}
        self.stages_cache: dict[tuple, list[KindPrice]] = {}
        self.probes: dict[tuple, object] = {}

    def figures(self, c: Candidate) -> RankFigures:
        """The candidate's per-rank figures (cached across candidates that differ only in dp, batch, ZeRO)."""
        key = (c.gpu, c.tp, c.cp, c.ep, c.micro_batch_size, c.recompute, c.pp, c.virtual_stages, c.schedule,
               tuple(c.stage_layers or ()))
        fig = self.figures_cache.get(key)
        if fig is None:
            skey = (key[:6], c.pp * c.virtual_stages, tuple(c.stage_layers or ()))
            stages = self.stages_cache.get(skey)
            if stages is None:
                stages = self.stages_cache[skey] = stage_prices(self.get(c), c, self.base["model"]["layers"])
            fig = self.figures_cache[key] = rank_figures(stages, c.schedule, c.pp, c.virtual_stages)
        return fig

    def probe(self, c: Candidate):
        """The smallest scenario with this candidate's groups: dp just large enough for ep, one stage."""
        dp = c.ep // math.gcd(c.ep, c.tp * c.cp)
        data = copy.deepcopy(self.base)
        for key, value in {"cluster.gpu": c.gpu, "cluster.gpus": dp * c.tp * c.cp, "parallelism.dp": dp,
                           "parallelism.tp": c.tp, "parallelism.pp": 1, "parallelism.cp": c.cp,
                           "parallelism.ep": c.ep, "parallelism.virtual_stages": 1,
                           "parallelism.micro_batch_size": c.micro_batch_size, "parallelism.stage_layers": None,
                           "parallelism.global_batch": dp * c.micro_batch_size, "schedule": "1f1b",
                           "training.recompute": RECOMPUTE[c.recompute]}.items():
            apply_value(data, key, value)
        if c.gpus_per_node:  # the GPU kind's own node (an NVL72 domain), as Candidate.overrides sets it
            apply_value(data, "cluster.node.gpus_per_node", c.gpus_per_node)
            apply_value(data, "cluster.node.nics_per_node", c.nics_per_node)
        data.setdefault("faults", {})
        data["faults"] = {**data["faults"], "stragglers": [], "links": []}
        return validate(data)

    def tail_s(self, c: Candidate, fig: "RankFigures") -> float:
        """Seconds of the step's tail (gradient sync, optimizer, parameter sync) after each rank's last chunk: as
        the simulator prices it (:func:`moesim.simulator.simulate.tail_spec`), the slowest rank's, which every rank runs."""
        from moesim.simulator.simulate import tail_spec

        probe = self.probes[(c.gpu, c.tp, c.cp, c.ep, c.micro_batch_size, c.recompute)]
        par = probe.parallelism.model_copy(update={"dp": c.dp, "pp": c.pp, "zero_stage": c.zero_stage})
        cluster = probe.cluster.model_copy(update={"gpus": c.gpus})
        scenario = probe.model_copy(update={"parallelism": par, "cluster": cluster})
        network = AnalyticNetwork(scenario)
        cost_model = self.cost_models[(probe.cluster.gpu.name, probe.training.kernels)]
        tails = [tail_spec(scenario, network, cost_model, dense, expert, rank)
                 for rank, (dense, expert) in enumerate(zip(fig.dense, fig.expert))]
        return max(t.grad_sync_s + t.optimizer_s + t.param_sync_s for t in tails)

    def fabric_refusal(self, c: Candidate) -> str:
        """Why the scenario's fabric cannot hold the candidate's GPUs ("" if it can): the check every network
        model makes before simulating (:func:`moesim.simulator.network.fabric.check_fabric`)."""
        from moesim.simulator.network.fabric import check_fabric
        from moesim.workloads.errors import ScenarioError

        probe = self.probes[(c.gpu, c.tp, c.cp, c.ep, c.micro_batch_size, c.recompute)]
        try:
            check_fabric(probe.model_copy(update={"cluster": probe.cluster.model_copy(update={"gpus": c.gpus})}))
        except ScenarioError as err:
            return f"invalid: {str(err).split(', asked')[0]}"  # one reason for every GPU count it refuses
        return ""

    def get(self, c: Candidate) -> dict[str, KindPrice]:
        """Kind → price; raises ScenarioError when the layout is invalid for a reason the probe shows."""
        key = (c.gpu, c.tp, c.cp, c.ep, c.micro_batch_size, c.recompute)
        if key not in self.kinds:
            self.probes[key] = self.probe(c)
            self.kinds[key] = self._price(self.probes[key])
            self.priced += 1
        return self.kinds[key]

    def _price(self, scenario) -> dict[str, KindPrice]:
        model = scenario.model
        builder = LayerBuilder(scenario)
        gpu = scenario.cluster.gpu
        key = (gpu.name, scenario.training.kernels)
        if key not in self.cost_models:  # None: the GPU's default profiles, as simulate prices it
            self.cost_models[key] = cost_model_for(scenario, self.profile)
        pricer = Pricer(scenario, self.cost_models[key], AnalyticNetwork(scenario))
        out: dict[str, KindPrice] = {}

        def priced(parts: list[LayerOps], first: bool, last: bool, layers: list[int]) -> KindPrice:
            forward, backward, weight = _chunks(0, parts)
            spans = [_span(pricer, chunk) for chunk in (forward, backward, weight)]
            if last:  # the head and MTP blocks only: take away the main-model layers' parameters
                dense, expert = stage_parameters(scenario, [], first=False, last=True)
            else:
                dense, expert = stage_parameters(scenario, layers, first=first, last=False)
            return KindPrice(tuple(s[0] for s in spans), tuple(s[1] for s in spans), forward.activation_bytes,
                             dense, expert, tuple(s[2] for s in spans), tuple(s[3] for s in spans),
                             tuple(s[4] for s in spans), tuple(s[5] for s in spans))

        embed = LayerOps(-1)
        builder.embedding(embed)
        out["embed"] = priced([embed], True, False, [])
        first_moe = model.moe.first_dense_layers if model.moe is not None else model.layers

        def cheapest(start: int, end: int) -> int:
            """A layer of the kind to price it by: one with sliding-window attention if any (a lower bound)."""
            return next((i for i in range(start, end) if model.attention.slides(i, model.layers)), start)

        if first_moe > 0:
            dense = cheapest(0, first_moe)
            out["dense"] = priced([_transformer_layer(builder, model, dense)], False, False, [dense])
        if first_moe < model.layers:
            moe = cheapest(first_moe, model.layers)
            out["moe"] = priced([_transformer_layer(builder, model, moe)], False, False, [moe])
        parts = []
        for depth in range(model.mtp_depth):
            layer = model.layers + depth
            for build in (builder.mtp_projection, None, builder.head):
                if build is None:
                    parts.append(_transformer_layer(builder, model, layer))
                else:
                    ops = LayerOps(layer)
                    build(ops)
                    parts.append(ops)
        head = LayerOps(model.layers + model.mtp_depth)
        builder.head(head)
        parts.append(head)
        out["last"] = priced(parts, False, True, [])
        out["_first_moe"] = first_moe  # type: ignore[assignment]
        return out


def stage_prices(kinds: dict[str, KindPrice], c: Candidate, layers: int) -> list[KindPrice]:
    """Per model stage, the sum of its kinds (embedding on the first, head and MTP on the last)."""
    stages = c.pp * c.virtual_stages
    split = c.stage_layers or [layers // stages] * stages
    first_moe = kinds["_first_moe"]
    out, start = [], 0
    for index, count in enumerate(split):
        dense = max(0, min(start + count, first_moe) - start)
        price = kinds["dense"].times(dense) if dense else ZERO
        if count - dense:
            price = price + kinds["moe"].times(count - dense)
        if index == 0:
            price = price + kinds["embed"]
        if index == stages - 1:
            price = price + kinds["last"]
        out.append(price)
        start += count
    return out


@dataclass(frozen=True)
class RankFigures:
    """Per model stage its price; per pipeline rank the forward chain before its first chunk and the backward
    chain after its last (seconds) and the parameters it holds (dense, expert)."""

    stages: tuple[KindPrice, ...]
    before_s: tuple[float, ...]
    dense: tuple[float, ...]
    expert: tuple[float, ...]
    work_s: tuple[float, ...]  # per micro-batch, from the schedule's placement alone (the quick bound)
    serial_s: tuple[float, ...]  # the same with no overlap of compute and communication at all (an estimate)
    activation_bytes: tuple[float, ...]  # of the chunk the quick memory bound counts per held micro-batch
    host_s: tuple[float, ...] = ()  # per micro-batch, the host's time to launch the rank's kernels


PHASES = {"F": 0, "B": 1, "W": 2}


def step_s(stages: list[KindPrice], overlapped: bool, chunks: tuple) -> float:
    """A bound on one step: a lone chunk's compute-to-compute span (its W, fused, at compute time); an overlapped
    pair at least the busier of its two in-order streams, its compute at the reduced-SM price it always runs at."""
    if not overlapped:
        total = 0.0
        for i, (stage, phase) in enumerate(chunks):
            p = stages[stage].span_s if (phase != "W" or i == 0) else stages[stage].compute_s
            total += p[PHASES[phase]]
        return total
    compute = sum(stages[s].beside_s[PHASES[ph]] for s, ph in chunks)
    comm = sum(stages[s].span_s[PHASES[ph]] - stages[s].compute_s[PHASES[ph]] for s, ph in chunks)
    return max(compute, comm)


def rank_figures(stages: list[KindPrice], schedule: str, pp: int, virtual: int) -> RankFigures:
    """The parts of the bounds that do not depend on the micro-batch count."""
    _, held = rank_shares(schedule, pp, virtual)
    forward = [p.compute_s[0] for p in stages]
    backward = [p.compute_s[1] + p.compute_s[2] for p in stages]
    before = []
    for rank in range(pp):
        if schedule == "dualpipe":
            # Micro-batches enter from both ends: rank r runs stage r for one direction and stage pp−1−r for
            # the other, so its first chunk waits for the forwards of the stages before one of those.
            before.append(min(sum(forward[:rank]), sum(forward[:pp - 1 - rank])))
        else:
            # Stage r is rank r's first chunk (its first virtual stage) and, when backward computes its weight
            # gradients in place, the last: the backwards of stages r−1 … 0 still follow it. (Where W may be
            # deferred, rank r's last task need not be that backward, so only the forwards count.)
            before.append(sum(forward[:rank]) + (sum(backward[:rank]) if schedule in FUSED_WEIGHT else 0.0))
    dense = tuple(sum(stages[s].dense_params for s in own) for own in held)
    expert = tuple(sum(stages[s].expert_params for s in own) for own in held)
    shares, _ = rank_shares(schedule, pp, virtual)
    work, serial, host = [], [], []
    for share in shares:
        host.append(sum(f * sum(stages[s].host_s) for s, f in share))
        if schedule in OVERLAPPING:  # each in-order stream carries all of its own work
            compute = sum(f * sum(stages[s].compute_s) for s, f in share)
            comm = sum(f * (sum(stages[s].span_s) - sum(stages[s].compute_s)) for s, f in share)
            work.append(max(compute, comm))
            serial.append(compute + comm)
        else:
            work.append(sum(f * step_s(stages, False, ((s, "F"),)) + f * step_s(stages, False, ((s, "B"), (s, "W")))
                            for s, f in share))
            serial.append(work[-1])
    if schedule not in OVERLAPPING and virtual == 1:
        act = tuple(stages[r].activation_bytes for r in range(pp))
    else:
        act = tuple(min(stages[s].activation_bytes for s in own) for own in held)
    return RankFigures(tuple(stages), tuple(before), dense, expert, tuple(work), tuple(serial), act, tuple(host))


def bubble_fraction(c: Candidate) -> float:
    """The textbook idle fraction of a schedule (bubble over useful time), for ordering the search only — never
    for pruning: 1F1B and GPipe (pp−1)/m, interleaved (pp−1)/(v·m), ZB-H1 a third of 1F1B's, DualPipe
    (pp/2−1)/m (DualPipe paper, Table 2, with F, B, W of similar size)."""
    m, pp, v = c.micro_batches, c.pp, c.virtual_stages
    if c.schedule in ("gpipe", "1f1b"):
        return (pp - 1) / m
    if c.schedule == "interleaved":
        return (pp - 1) / (v * m)
    if c.schedule == "zb-h1":
        return (pp - 1) / (3 * m)
    return max(pp / 2 - 1, 0) / m + (2 * pp / m if m < 4 * pp else 0.0)


def quick_step_lower_bound_s(fig: RankFigures, c: Candidate) -> float:
    """A looser step-time bound from the schedule's placement alone (no program walk), in seconds."""
    m = c.micro_batches
    # The host issues every kernel of the rank, whatever the GPU does meanwhile.
    return max(max(b + m * w, m * h) for w, b, h in zip(fig.work_s, fig.before_s, fig.host_s))


def estimate_step_s(fig: RankFigures, c: Candidate) -> float:
    """An estimate for ordering the search, never for pruning (seconds): halfway between perfect and no overlap
    of compute and communication, stretched by the schedule's textbook bubble (:func:`bubble_fraction`)."""
    m = c.micro_batches
    step = max(b + m * (w + s) / 2 for w, s, b in zip(fig.work_s, fig.serial_s, fig.before_s))
    return step * (1 + bubble_fraction(c))


def quick_in_flight(c: Candidate, rank: int) -> int:
    """Micro-batches a rank holds at once for sure, without walking the program: all of them in GPipe, pp − r
    in 1F1B, ZB-H1 and interleaved (their warm-up), one otherwise."""
    if c.schedule == "gpipe":
        return c.micro_batches
    if c.schedule in ("1f1b", "zb-h1", "interleaved"):
        return min(c.pp - rank, c.micro_batches)
    return 1


def step_lower_bound_s(fig: RankFigures, c: Candidate, tail_s: float = 0.0, with_chain: bool = True) -> float:
    """The step-time bound of the module docstring, in seconds; ``tail_s`` the step's tail, which follows every
    rank's last task (see :meth:`PriceCache.tail_s`). ``with_chain`` adds the dependency walk of
    :func:`chain_lower_bound_s` (tighter on pipeline bubbles, a few milliseconds more)."""
    steps = programs(c.schedule, c.pp, c.virtual_stages, c.micro_batches).steps
    best = 0.0
    for rank, counts in enumerate(steps):
        work = sum(n * step_s(fig.stages, overlapped, chunks) for (overlapped, chunks), n in counts)
        # The host issues every kernel of the rank, whatever the GPU does meanwhile (moesim.simulator.engine.host).
        host = sum(n * sum(fig.stages[s].host_s[PHASES[ph]] for s, ph in chunks) for (_, chunks), n in counts)
        best = max(best, fig.before_s[rank] + work, host)
    return (max(best, chain_lower_bound_s(fig, c)) if with_chain else best) + tail_s


def chain_lower_bound_s(fig: RankFigures, c: Candidate) -> float:
    """A bound on the step before its tail (seconds) from the data dependencies (:func:`~moesim.simulator.planner.programs.chain`):
    every rank's compute stream runs its steps' compute in program order; a chunk's segments run in order, so
    from its first compute segment to its last takes at least its span (compute and the communication between);
    no compute of a chunk starts before the chunk it waits for has finished its compute. So a chunk's last
    compute ends no earlier than max(its rank's compute so far, its input's) plus its span — compute at the
    all-SM price alone, at the reduced-SM price in an overlapped pair, whose compute segments all run beside
    DeepEP kernels (a lone B's fused W follows its span at compute time, as :func:`step_s` takes it) — and a
    pair's compute ends no earlier than the rank's compute so far plus all of the pair's compute. This sees
    the pipeline's fill and drain (its bubble) as the schedule's own programs make it, and the communication
    on the dependency path; communication that only delays a rank's own stream it takes as free."""
    stages = fig.stages
    done = [0.0] * (3 * c.micro_batches * c.pp * c.virtual_stages)
    free = [0.0] * c.pp  # when each rank's compute stream is free, at the earliest

    def first_compute(stage: int, phase: int, waits: int, source: tuple[int, int]) -> float:
        """When a chunk's first compute segment may start, at the earliest, but for its rank's stream: after its
        input (an arrival from another stage after that chunk's trailing segments) and its own leading ones."""
        if waits < 0:
            return 0.0
        ready = done[waits]
        if source[0] >= 0:
            trail = stages[source[0]].trail_s[source[1]]
            ready += trail if math.isfinite(trail) else 0.0
        lead = stages[stage].lead_s[phase]
        return ready + (lead if math.isfinite(lead) else 0.0)

    for rank, overlapped, chunks in chain(c.schedule, c.pp, c.virtual_stages, c.micro_batches):
        start = free[rank]
        if overlapped:
            end = start
            ready_b = None  # when the pair's B may start its compute, if the pair has one
            for stage, phase, own, waits, source in chunks:
                price = stages[stage]
                end += price.beside_s[phase]
                if phase == 2:  # its W: after its B's input, all of the B's and the W's compute
                    ready = done[waits] if waits >= 0 else 0.0
                    done[own] = max(start, ready) + price.beside_s[2] if ready_b is None else \
                        max(start, ready_b) + price.beside_s[1] + price.beside_s[2]
                    continue
                ready = first_compute(stage, phase, waits, source)
                if phase == 1:
                    ready_b = ready
                # A chunk's segments run in order: from its first compute to its last takes its span, the
                # compute at the reduced-SM price.
                done[own] = max(start, ready) + price.span_s[phase] - price.compute_s[phase] + price.beside_s[phase]
            free[rank] = max(end, max(done[own] for _, _, own, _, _ in chunks))
        else:
            for i, (stage, phase, own, waits, source) in enumerate(chunks):  # a chunk and its fused W, in series
                if phase == 2 and i:
                    start = max(start, done[waits]) + stages[stage].compute_s[2]
                else:
                    start = max(start, first_compute(stage, phase, waits, source)) + stages[stage].span_s[phase]
                done[own] = start
            free[rank] = start
    return max(free)


def state_factors(training) -> tuple[float, float, float]:
    """Bytes per parameter of weights, gradients and optimizer states (as :func:`moesim.simulator.memory.state_bytes`)."""
    optimizer = 2 * DTYPE_BYTES[training.optimizer_moment_dtype] + (DTYPE_BYTES["fp32"] if training.master_weights
                                                                     else 0)
    return DTYPE_BYTES[training.weight_dtype], DTYPE_BYTES[training.grad_dtype], optimizer


def memory_lower_bound_gb(fig: RankFigures, c: Candidate, factors: tuple[float, float, float],
                          zero_stage: int, quick: bool = False) -> float:
    """Peak memory bound over pipeline ranks (GB) at this ZeRO stage (the sharding of moesim.simulator.memory), with the
    activations of the micro-batches the schedule's program must hold at once (:func:`programs`)."""
    dense_shards, expert_shards = state_shards(c.dp, c.cp, c.tp, c.ep)
    weights, grads, optimizer = factors
    per_full = (weights if zero_stage < 3 else 0.0) + (grads if zero_stage < 2 else 0.0) + \
        (optimizer if zero_stage < 1 else 0.0)
    per_sharded = weights + grads + optimizer - per_full
    held = None if quick else programs(c.schedule, c.pp, c.virtual_stages, c.micro_batches).held
    worst = 0.0
    for rank, (dense, expert) in enumerate(zip(fig.dense, fig.expert)):
        if held is None:
            act = quick_in_flight(c, rank) * fig.activation_bytes[rank]
        else:
            act = max((sum(n * fig.stages[s].activation_bytes for s, n in peak) for peak in held[rank]),
                      default=0.0)
        total = per_full * (dense + expert) + per_sharded * (dense / dense_shards + expert / expert_shards) + act
        if total > worst:
            worst = total
    return worst / GB


def seconds_per_day() -> float:
    return SECONDS_PER_DAY


def days_for(step_s: float, c: Candidate, seq_len: int, tokens: float) -> float:
    """Training days at ``step_s`` seconds per step of ``global_batch × seq_len`` tokens."""
    return tokens / (c.global_batch * seq_len / step_s) / seconds_per_day()
