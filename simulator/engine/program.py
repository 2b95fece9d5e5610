"""The program builder: a pipeline schedule's steps and their priced segments → each pipeline rank's tasks.

Every step of a rank's program becomes tasks on its streams (:class:`~moesim.simulator.engine.tasks.RankProgram`), their
dependencies named by signals (ints, one per task completion; a named signal lets a consumer refer to a
producer built later, on another rank). Steps of one kind (same stages, phases and sends) are built and compiled
once (:mod:`moesim.simulator.engine.compiler`) and copied for each of their micro-batches, so the programs come out
compiled.

Dependencies a step gets: a chunk's segments run in order; F of stage s waits for F of stage s−1 to arrive;
B of stage s waits for B of stage s+1 to arrive (on the last stage, for its own F); W waits for its B.
An arrival across ranks is a send on the sender's pipeline stream (its own, as DualPipe and Megatron run P2P:
never queued behind an expert all-to-all). After its program, each rank synchronises gradients over data
parallelism and steps the optimizer (the "tail", :class:`TailSpec`).

An overlapped F&B pair (DualPipe) is issued component by component, in the order of DeepSeek's profiler trace
for each pair of layers: combine(B), attn(F), mlp(B), dispatch(F), dispatch(B), mlp(W), mlp(F), attn(B),
attn(W), combine(F). Each stream keeps that order, each chunk keeps its own chain, so one chunk's ATTN/MLP
runs on the compute stream while the other's DISPATCH/COMBINE run on the communication stream, and pipeline
sends on theirs, whenever their dependencies allow — how much hides is the simulation's result.

Compute runs on fewer SMs while a communication kernel runs beside it (DeepSeek reserves 20 of 132 SMs for
DeepEP, ``training.comm_sms``), on all of them otherwise. Which applies is decided here, from the program's
structure, not at run time: the compute segments of an overlapped F&B pair run beside the pair's DISPATCH and
COMBINE (DeepSeek's trace shows DeepEP kernels under every compute kernel of a pair), so they take the
segment's reduced-SM price (``Segment.duration_s``); a chunk run alone issues its own communication between its
compute segments, in series with them, so its compute takes the all-SM price (``Segment.alone_s``). Decided at
run time instead, a compute segment's price would depend on whether a communication segment that only a
later, remote arrival makes ready has started, which the streams (run ahead of SimPy's clock) do not know yet.
Known approximation: a chunk's trailing combine or a send still running when the next chunk's first compute
segment starts does not reduce that segment's SMs.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.simulator.engine.compiler import Linker, StepTemplate, compile_step
from moesim.simulator.engine.host import HostPricer, SegmentHost, issue_entry
from moesim.simulator.pricing import Segment, StagePrice
from moesim.simulator.schedules.base import Schedule, ScheduleError, Step
from moesim.simulator.engine.tasks import COMM, OWN, STREAM_INDEX, NetOp, RankProgram, Task
from moesim.workloads.ops import OpClass, Phase, Stream

# Position of each (phase, component) inside one layer pair of an overlapped F&B pair, from the order of the
# CPU annotations in deepseek-ai/profile-data's train.json (../shared/reference/deepseek-v3.md).
PAIR_ORDER: dict[tuple[Phase, str], float] = {
    (Phase.B, "COMBINE"): 0, (Phase.F, "ATTN"): 1, (Phase.B, "MLP"): 2, (Phase.F, "DISPATCH"): 3,
    (Phase.B, "DISPATCH"): 4, (Phase.W, "MLP"): 5, (Phase.F, "MLP"): 6, (Phase.B, "ATTN"): 7,
    (Phase.W, "ATTN"): 8, (Phase.F, "COMBINE"): 9,
}
# Where a chain's first component of a kind absent from the trace (EMBED, HEAD, TP all-reduce) goes.
PAIR_FIRST = {Phase.F: 1.0, Phase.B: 2.0, Phase.W: 5.0}
NUDGE = 0.01  # keeps a chain's positions strictly increasing

NO_HOST = (0, 0.0, False)  # the raw host record of a task that launches nothing


def _raw_host(host: SegmentHost | None) -> tuple[int, float, bool]:
    """A segment's raw host record (kernels, launch seconds, sync) for its tasks."""
    return NO_HOST if host is None else (host.kernels, host.launch_s, host.sync)


# Parts of an overlapped pair in its issue template: the two chunks, the fused W, the two chunks' sends.
CHUNK_0, CHUNK_1, FUSED_W, SEND_0, SEND_1 = range(5)


@dataclass(frozen=True, slots=True)
class TailSpec:
    """A rank's work after its last chunk, in seconds: gradient reduce-scatter, optimizer step, parameter
    all-gather."""

    grad_sync_s: float
    optimizer_s: float
    param_sync_s: float
    grad_comms: tuple = ()  # the Comm records of grad_sync_s and param_sync_s (for a time-shared network)
    param_comms: tuple = ()


@dataclass(frozen=True, slots=True)
class PairTemplate:
    """How an overlapped pair's tasks interleave, worked out once per kind of pair.

    ``order`` lists the pair's tasks in issue order as (part, index in that part); parts are numbered
    ``CHUNK_0``, ``CHUNK_1``, ``FUSED_W``, ``SEND_0``, ``SEND_1``. ``w_deps`` gives, per task of the fused W,
    whether it follows the previous W task and the (part, index) of the B task it needs.
    """

    order: list[tuple[int, int]]
    w_deps: list[tuple[bool, tuple[int, int]]]


class ProgramBuilder:
    """Builds every pipeline rank's program from a schedule and its stages' prices.

    ``send_s`` is one pipeline send/recv (seconds); ``pair_s``, for synthetic studies only (``moesim schedule
    --fb``), replaces the priced components of every overlapped pair by that many seconds of compute, split
    between its chunks in proportion to their own times. With a time-shared ``network`` communication tasks
    get a :class:`~moesim.simulator.engine.tasks.NetOp` (``send_comm``: the Comm of one pipeline send).

    With a ``host`` (:class:`~moesim.simulator.engine.host.HostPricer`) every task gets its raw host record (kernels, launch
    seconds, sync) and each program its issue ``order`` (:mod:`moesim.simulator.engine.host`): a segment's from its price, a
    pipeline send and a tail collective one launch each, the optimizer step one launch after a host sync (its
    grad-norm and found-inf read-back: Megatron-LM megatron/core/optimizer/clip_grads.py ``total_norm.item()``,
    optimizer.py ``found_inf_flag.item()``).

    After :meth:`build`: ``slots`` is how many slots each rank's units keep, ``net_ops`` the network ops tasks
    refer to by index.
    """

    def __init__(self, schedule: Schedule, prices: list[StagePrice], send_s: float, tail: TailSpec,
                 pair_s: float | None = None, network=None, send_comm=None, host: HostPricer | None = None):
        self.schedule = schedule
        self.prices = prices
        self.send_s = send_s
        self.tail = tail
        self.pair_s = pair_s
        self.network = network
        self.send_comm = send_comm
        self.host = host
        self.signals = 0
        self.net_ops: list[NetOp] = []
        self._net_index: dict[NetOp, int] = {}
        self._named: dict[tuple, int] = {}
        # Caches keyed by what repeats across micro-batches (a step has tens of thousands of tasks).
        self._plain_cache: dict[tuple[int, bool], list[tuple]] = {}
        self._keep_alive: list[tuple] = []
        self._fused: dict[int, tuple[Segment, ...]] = {}
        self._pair_templates: dict[tuple, PairTemplate] = {}
        self._templates: dict[tuple, StepTemplate] = {}  # kept while the programs are built (they hold tasks)
        self.linker: Linker | None = None  # each build's, while it builds
        self.slots: list[int] = []

    def build(self) -> list[RankProgram]:
        """One compiled program per pipeline rank: its schedule's steps, then the tail (``slots``: how many slots
        each rank's units keep)."""
        steps = self.schedule.programs()
        if len(steps) != self.schedule.pp:
            raise ScheduleError(f"schedule {self.schedule.name} built {len(steps)} programs for "
                                f"pp={self.schedule.pp}")
        self.linker = Linker(self.schedule.pp)
        programs = [RankProgram() for _ in range(self.schedule.pp)]
        for rank, (program, rank_steps) in enumerate(zip(programs, steps)):
            for step in rank_steps:
                self.add_step(program, rank, step)
            self.add_tail(program, rank)
        self.slots = self.linker.link(self.schedule.name)
        for program in programs:
            program.clear_hosts()  # planned later if the host is modelled
        self._templates, self.linker = {}, None  # the tasks are the programs' now, and go with them
        return programs

    def add_step(self, program: RankProgram, rank: int, step: Step) -> None:
        """Append a step's tasks (a chunk and its send, or an overlapped pair), compiled, to ``program``.

        Steps of one kind (:meth:`_kind`) differ only in their micro-batches and the signals they exchange with
        other steps, so each kind is built once (:meth:`step_tasks`) and compiled into a
        :class:`~moesim.simulator.engine.compiler.StepTemplate` that every step of the kind copies."""
        chunks = (step,) if step.overlap is None else (step, step.overlap)
        links = [self._links(chunk) for chunk in chunks]
        key, roles = self._kind(chunks, links)
        template = self._templates.get(key)
        if template is None:
            first = step.micro_batch
            template = self._templates[key] = compile_step(
                self.step_tasks(step, links), roles, lambda i, task: 0 if task.micro_batch == first else 1)
        template.add_to(program, rank, tuple(c.micro_batch for c in chunks), roles, self.linker,
                        self.host is not None)

    def _kind(self, chunks: tuple[Step, ...], links: list[tuple]) -> tuple[tuple, list[int]]:
        """What makes steps alike, and the step's roles: per chunk (its :meth:`_links`) its start dependencies,
        its completion and, if it sends to another rank, its send's. A kind is the chunks' stages and phases,
        which chunk computes W, the rank each sends to (a time-shared network's op names it), whether the chunks
        share a micro-batch (no schedule pairs two chunks of one micro-batch today; a copy gives each task its
        chunk's micro-batch by that) and which roles are one signal."""
        roles = []
        key: list = []
        for chunk, (start, done, sent, to_rank) in zip(chunks, links):
            roles += start
            roles.append(done)
            if sent is not None:
                roles.append(sent)
            key += (chunk.stage, chunk.phase, self._fuses_weight(chunk), to_rank)
        if len(chunks) > 1:
            key.append(chunks[0].micro_batch == chunks[1].micro_batch)
        if len(set(roles)) < len(roles):
            key.append(tuple(roles.index(signal) for signal in roles))
        return tuple(key), roles

    def step_tasks(self, step: Step, links: list[tuple] | None = None) -> list[Task]:
        """A step's tasks in issue order, their dependencies named by signals (``links``: each chunk's
        :meth:`_links`, worked out here if not given)."""
        chunks = (step,) if step.overlap is None else (step, step.overlap)
        links = links or [self._links(chunk) for chunk in chunks]
        if step.overlap is not None:
            return self._pair_tasks(step, links)
        tasks = self._chunk_tasks(step, links[0])
        send = self._send_task(step, links[0])
        if send is not None:
            tasks.append(send)
        return tasks

    def add_tail(self, program: RankProgram, rank: int) -> None:
        """The DP gradient reduce-scatter, the optimizer step and the parameter all-gather, after everything,
        compiled (slots outside every step: base 0): the reduce-scatter waits for the last task of every stream."""
        tail, new_slot = self.tail, self.linker.new_slot
        grads = Task("grad_reduce_scatter", tail.grad_sync_s, "dp", -1, -1, (), -1, "tail", Stream.COMM,
                     net=self._net(tail.grad_comms))
        optimizer = Task("optimizer", tail.optimizer_s, "opt", -1, -1, (), -1, None, Stream.COMPUTE)
        params = Task("param_all_gather", tail.param_sync_s, "dp", -1, -1, (), -1, "tail", Stream.COMM,
                      net=self._net(tail.param_comms))
        queues, bases = program.queues, program.bases
        # The communication stream's own last task is implied by its order; every step's last tasks have slots.
        grads.inputs = tuple((OWN, bases[si][-1] + queue[-1].slot) for si, queue in enumerate(queues)
                             if queue and si != COMM)
        grads.slot = new_slot(rank)
        optimizer.inputs, optimizer.slot = ((OWN, grads.slot),), new_slot(rank)
        params.inputs, params.slot = ((OWN, optimizer.slot),), -1
        if self.host is not None:
            collective = self.host.launch_s(OpClass.COLLECTIVE)
            grads.host, params.host = (1, collective, False), (1, collective, False)
            optimizer.host = (1, self.host.launch_s(OpClass.ADD), True)
        starts = [len(queue) for queue in queues]
        issued = []
        for task in (grads, optimizer, params):
            si = STREAM_INDEX[task.stream]
            issued.append(issue_entry(si, len(queues[si]) - starts[si], task))
            queues[si].append(task)
            bases[si].append(0)
            program.micro_batches[si].append(-1)
        if self.host is not None:  # as the steps' copies: the issue order is kept only for the host plan
            program.order.append((issued, starts))

    # Signals.
    def new_signal(self) -> int:
        self.signals += 1
        return self.signals - 1

    def _named_signal(self, key: tuple) -> int:
        signal = self._named.get(key)
        if signal is None:
            signal = self._named[key] = self.new_signal()
        return signal

    def _links(self, step: Step) -> tuple[list[int], int, int | None, int | None]:
        """A chunk's signals to and from other steps: (its start dependencies, its completion, its send's or
        None, the rank its send goes to or None: its consumer sits on its own rank, or it has none).

        F of stage s waits for F of stage s−1 to arrive; B of stage s waits for B of stage s+1 to arrive (on the
        last stage, for its own F); W waits for its B. An arrival from another rank is that chunk's send."""
        rank_of, named = self.schedule.rank_of, self._named_signal
        mb, stage, phase = step.micro_batch, step.stage, step.phase
        own = rank_of(mb, stage)
        if phase is Phase.F:
            start = [] if stage == 0 else [
                named(("done" if rank_of(mb, stage - 1) == own else "sent", Phase.F, mb, stage - 1))]
            target = stage + 1
        elif phase is Phase.B:
            start = [named(("done", Phase.F, mb, stage))] if stage == self.schedule.stages - 1 else [
                named(("done" if rank_of(mb, stage + 1) == own else "sent", Phase.B, mb, stage + 1))]
            target = stage - 1
        else:
            start, target = [named(("done", Phase.B, mb, stage))], -1
        to_rank = rank_of(mb, target) if 0 <= target < self.schedule.stages else None
        if to_rank == own:
            to_rank = None
        sent = named(("sent", phase, mb, stage)) if to_rank is not None else None
        return start, named(("done", phase, mb, stage)), sent, to_rank

    def _net(self, comms: tuple, fixed_s: float = 0.0, send_to: int = -1) -> int | None:
        """Index of the network op moving ``comms`` (None without a time-shared network or comms)."""
        if self.network is None or not comms:
            return None
        op = NetOp(comms, max(0.0, fixed_s), send_to)
        index = self._net_index.get(op)
        if index is None:
            index = self._net_index[op] = len(self.net_ops)
            self.net_ops.append(op)
        return index

    # Chunks and sends.
    def _fuses_weight(self, step: Step) -> bool:
        return self.schedule.computes_weight(step)

    def _chain(self, step: Step, segments: tuple[Segment, ...], deps: list[int], done: int,
               beside_comm: bool = False) -> list[Task]:
        """Tasks running ``segments`` one after another; the last completes ``done``. Compute segments take
        their price beside communication (``beside_comm``, reduced SMs) or alone (all SMs)."""
        plain = self._plain(segments, beside_comm)
        mb, stage = step.micro_batch, step.stage
        if not plain:  # an empty chunk still completes, once its inputs are there
            task = Task("empty", 0.0, step.phase.value, mb, stage, deps, done, None, Stream.COMPUTE)
            task.host = NO_HOST if self.host is not None else None
            return [task]
        if any(p[-1] for p in plain):  # a segment with an FSDP issue mode
            return self._issued_chain(step, plain, deps, done)
        tasks, last, first = [], len(plain) - 1, self.signals
        self.signals += last  # signals of the chain's inner links
        for i, (name, duration_s, phase, group, stream, expert_s, net, host, _) in enumerate(plain):
            signal = done if i == last else first + i
            tasks.append(Task(name, duration_s, phase, mb, stage, deps, signal, group, stream, expert_s, net, host))
            deps = [signal]
        return tasks

    def _issued_chain(self, step: Step, plain: list[tuple], deps: list[int], done: int) -> list[Task]:
        """A chain with FSDP's collectives (``Segment.issue``): a "prefetch" gather is issued when the unit before
        its own starts (FSDP2 prefetches one unit ahead) and placed ahead of that unit's tasks on its stream, and
        the first task of its unit waits for it; a "detached" reduce-scatter follows its unit and nothing in the
        chain waits for it (the step's tail does). The chain's last in-order task completes ``done``."""
        mb, stage = step.micro_batch, step.stage
        last = max((i for i, p in enumerate(plain) if p[-1] != "detached"), default=len(plain) - 1)
        tasks: list[Task] = []
        unit_start, unit_index, gather = list(deps), 0, None
        for i, (name, duration_s, phase, group, stream, expert_s, net, seg_host, issue) in enumerate(plain):
            signal = done if i == last else self.new_signal()
            if issue == "prefetch":
                task = Task(name, duration_s, phase, mb, stage, list(unit_start), signal, group, stream, expert_s,
                            net)
                tasks.insert(unit_index, task)  # ahead of the unit before it on the stream
                gather, unit_index = signal, unit_index + 1
            else:
                task = Task(name, duration_s, phase, mb, stage, deps + ([gather] if gather is not None else []),
                            signal, group, stream, expert_s, net)
                if gather is not None:  # the first task of a unit: the next gather goes when it starts
                    unit_start, unit_index, gather = task.deps, len(tasks), None
                tasks.append(task)
                if issue != "detached":
                    deps = [signal]
            if self.host is not None:
                task.host = seg_host
        return tasks

    def _plain(self, segments: tuple[Segment, ...], beside_comm: bool) -> list[tuple]:
        """(name, seconds, phase letter, group, stream, expert seconds, net op, raw host record or None, FSDP issue
        mode) of each segment, its compute priced beside communication or alone; worked out once per segment tuple."""
        key = (id(segments), beside_comm)
        plain = self._plain_cache.get(key)
        if plain is None:
            host = self.host is not None
            plain = [(seg.name, seg.duration_s if beside_comm else seg.alone_s, seg.phase.value, seg.group or None,
                      seg.stream, seg.expert_s if beside_comm or seg.full_s is None else seg.expert_full_s,
                      self._net(seg.comms, seg.duration_s - seg.comm_s), _raw_host(seg.host) if host else None,
                      seg.issue)
                     for seg in segments]
            self._plain_cache[key] = plain
            self._keep_alive.append(segments)  # ids stay unique while the tuple lives
        return plain

    def _chunk_tasks(self, step: Step, links: tuple) -> list[Task]:
        """The tasks of one chunk, chained; the last one completes the chunk's "done" signal (``links``: its
        :meth:`_links`)."""
        price = self.prices[step.stage]
        segments = price.segments[step.phase]
        if self._fuses_weight(step):
            # A full backward: weight gradients are computed before the input gradient is sent on.
            segments = self._fused.get(step.stage)
            if segments is None:
                segments = self._fused[step.stage] = price.segments[Phase.B] + price.segments[Phase.W]
        return self._chain(step, segments, links[0], links[1])

    def _send_task(self, step: Step, links: tuple) -> Task | None:
        """The pipeline send that follows a chunk, if its consumer sits on another rank (``links``: the chunk's
        :meth:`_links`)."""
        _, done, sent, to_rank = links
        if to_rank is None:
            return None
        net = self._net((self.send_comm,), 0.0, to_rank) if self.send_comm is not None else None
        task = Task(f"send{step.phase.value}", self.send_s, step.phase.value, step.micro_batch, step.stage, [done],
                    sent, None, Stream.PP, net=net)
        if self.host is not None:
            task.host = (1, self.host.launch_s(OpClass.COLLECTIVE), False)
        return task

    # Overlapped pairs.
    def _pair_tasks(self, step: Step, links: list[tuple]) -> list[Task]:
        """An overlapped pair's tasks (both chunks, the backward's W if fused, their sends) in issue order
        (``links``: each chunk's :meth:`_links`).

        The order depends only on the two chunks' stages and phases, on which of them computes W and on which
        sends cross ranks, so it is worked out once per such pair (:meth:`_pair_template`) and reused.
        """
        chunks = [step, step.overlap]
        if self.pair_s is not None:
            return self._synthetic_pair(chunks, links)
        weight = next((i for i, c in enumerate(chunks) if self._fuses_weight(c)), None)
        sends = [self._send_task(c, c_links) for c, c_links in zip(chunks, links)]
        key = (chunks[0].stage, chunks[0].phase, chunks[1].stage, chunks[1].phase, weight,
               sends[0] is not None, sends[1] is not None)
        template = self._pair_templates.get(key)
        if template is None:
            template = self._pair_templates[key] = self._pair_template(chunks, weight, sends)
        parts = [self._chain(c, self._components(c.stage, c.phase), start, done, True)
                 for c, (start, done, _, _) in zip(chunks, links)]
        if weight is not None:
            w = chunks[weight]
            w_tasks = self._chain(Step(w.micro_batch, w.stage, Phase.W), self._components(w.stage, Phase.W),
                                  [links[weight][1]], self.new_signal(), True)
            for task, (chained, (part, index)) in zip(w_tasks, template.w_deps):
                task.deps = ([task.deps[0]] if chained else []) + [parts[part][index].done]
            parts.append(w_tasks)
        else:
            parts.append([])
        parts.extend([send] if send is not None else [] for send in sends)
        return [parts[part][index] for part, index in template.order]

    def _pair_template(self, chunks: list[Step], weight: int | None, sends: list) -> PairTemplate:
        """Issue order of an overlapped pair and the dependencies of its fused W (:class:`PairTemplate`).

        Components go in the order of DeepSeek's profiler trace (``PAIR_ORDER``) layer by layer; each chunk
        keeps its own order; a send follows its chunk's last component; W of a component follows its B.
        """
        keyed: list[tuple[tuple[int, float], int, tuple[int, int]]] = []
        b_tasks: dict[tuple[int, str], tuple[tuple[int, float], tuple[int, int]]] = {}
        b_units: dict[int, tuple[tuple[int, float], tuple[int, int]]] = {}
        b_end = None
        for order, chunk in enumerate(chunks):
            segments = self._components(chunk.stage, chunk.phase)
            unit, layer, pos = -1, None, 0.0
            for index, seg in enumerate(segments or (None,)):
                seg_layer = seg.layer if seg is not None else -1
                template = PAIR_ORDER.get((chunk.phase, seg.component)) if seg is not None else None
                if seg_layer != layer or unit < 0:
                    unit, layer = unit + 1, seg_layer
                    pos = template if template is not None else PAIR_FIRST[chunk.phase]
                else:
                    pos = max(template if template is not None else pos, pos + NUDGE)
                key = (unit, pos)
                keyed.append((key, order, (order, index)))
                if chunk.phase is Phase.B and seg is not None:
                    b_tasks[(seg_layer, seg.component)] = (key, (order, index))
                    b_units[seg_layer] = (key, (order, index))
            if chunk.phase is Phase.B:
                b_end = (key, (order, max(0, len(segments) - 1)))
            if sends[order] is not None:
                keyed.append(((key[0], key[1] + NUDGE / 10), order, (SEND_0 + order, 0)))
        w_deps: list[tuple[bool, tuple[int, int]]] = []
        if weight is not None:
            segments = self._components(chunks[weight].stage, Phase.W)
            previous = None
            for index, seg in enumerate(segments or (None,)):
                # W of a component needs the B of the same component; without one, the B of its layer or all of B.
                b_key, b_ref = (b_tasks.get((seg.layer, seg.component)) or b_units.get(seg.layer) or b_end
                                if seg is not None else b_end)
                template = PAIR_ORDER.get((Phase.W, seg.component)) if seg is not None else None
                key = (b_key[0], max(template if template is not None else b_key[1], b_key[1] + NUDGE / 2))
                if previous is not None and key <= previous:
                    key = (previous[0], previous[1] + NUDGE)
                w_deps.append((previous is not None, b_ref))
                keyed.append((key, FUSED_W, (FUSED_W, index)))
                previous = key
        keyed.sort(key=lambda item: (item[0], item[1]))
        return PairTemplate([ref for _, _, ref in keyed], w_deps)

    def _components(self, stage: int, phase: Phase) -> tuple[Segment, ...]:
        price = self.prices[stage]
        return price.components[phase] if price.components is not None else price.segments[phase]

    def _synthetic_pair(self, chunks: list[Step], links: list[tuple]) -> list[Task]:
        """``pair_s`` seconds of compute for the whole pair, in chunk order F, B, W; then the sends (``links``:
        each chunk's :meth:`_links`)."""
        parts = [(i, c.phase) for i, c in enumerate(chunks)] + [(i, Phase.W) for i, c in enumerate(chunks)
                                                                 if self._fuses_weight(c)]
        times = [self.prices[chunks[i].stage].phase_time_s(phase) for i, phase in parts]
        scale = self.pair_s / sum(times) if sum(times) > 0 else 0.0
        deps = [d for start, _, _, _ in links for d in start]
        tasks = []
        for (i, phase), seconds in zip(parts, times):
            chunk = chunks[i]
            done = links[i][1] if phase is chunk.phase else self.new_signal()
            tasks.append(Task(phase.value, seconds * scale, phase.value, chunk.micro_batch, chunk.stage, deps, done,
                              None, Stream.COMPUTE))
            tasks[-1].host = NO_HOST if self.host is not None else None
            deps = [done]
        sends = [self._send_task(c, c_links) for c, c_links in zip(chunks, links)]
        return tasks + [s for s in sends if s is not None]
