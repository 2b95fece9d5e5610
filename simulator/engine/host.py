"""The host: each rank's CPU thread issuing its kernels in program order, and where it waits for the GPU.

A framework's host thread issues every kernel of a rank, whatever its stream, in program order; each costs the
thread its launch time (:class:`moesim.calibration.host.HostModel`). A kernel cannot start before it is issued, so a
step of small kernels is bound by the host. A host synchronisation (an op with ``host_sync``: the forward
dispatch's token counts, the optimizer's grad-norm read-back) blocks the thread until the GPU has drained to
that point, then costs it the sync's own time. CUDA graphs (``training.cuda_graphs``) replace the launches of a
captured run of kernels by one graph launch, and a captured region cannot synchronise.

The engine runs coarse segments, not kernels, so the host is modelled per segment (:class:`SegmentHost`): a
segment of ``kernels`` kernels costs ``launch_s`` of host time; its first kernel is issued ``launch_s /
kernels`` after the host reaches it, its last when the host has issued them all, and it ends no earlier than
that last issue plus one mean kernel (``duration_s / kernels``). GPU-bound, the host runs ahead and changes
nothing; host-bound, the segment ends when its last kernel has been issued and run. A sync segment's sync comes
first: the host waits for the GPU to reach the segment's start (its stream free and its inputs done).

At run time (:mod:`moesim.simulator.engine.runner`) a task's host times are offsets from the host's last *release* (the end
of the last sync it passed, 0 at the start of the step), worked out here once per program
(:func:`plan_host`): between syncs the host's times are static sums of launch costs, so the runner only adds
an offset to a release time, kept in a slot of the unit's table of end times.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.calibration.host import DEFAULT, HostModel
from moesim.simulator.engine.tasks import RankProgram, Task
from moesim.workloads.ops import Component, Kind, Op, OpClass

# What each scope of ``training.cuda_graphs`` captures (Megatron-LM's module names; attn is the attention block,
# moe_router the gate and its router kernels, moe_preprocess the dispatcher's token→expert index kernels, mlp a
# dense layer's MLP, moe a MoE layer's dispatch, experts and combine). full_iteration captures everything.
ROUTER_OPS = ("gate", "router.")


def captured(op: Op, component: Component, moe_layer: bool, scopes: frozenset[str]) -> bool:
    """Whether ``op`` of ``component`` runs inside a CUDA graph under ``scopes``."""
    if not scopes:
        return False
    if "full_iteration" in scopes:
        return True
    router = op.op_class is OpClass.ROUTER or op.name.startswith(ROUTER_OPS)
    if component.name == "ATTN":
        if router:
            return "moe_router" in scopes
        if op.name.startswith("dispatch."):  # the cast before an FP8 dispatch belongs to the MoE layer
            return "moe" in scopes
        return "attn" in scopes
    if op.op_class is OpClass.INDEX and "moe_preprocess" in scopes:
        return True
    if component.name in ("DISPATCH", "COMBINE"):
        return "moe" in scopes
    if component.name == "MLP":
        return ("moe" if moe_layer else "mlp") in scopes
    return False


@dataclass(frozen=True, slots=True)
class SegmentHost:
    """The host side of one component or segment: ``kernels`` it runs, ``launch_s`` of host time to issue them
    (seconds), and whether the host synchronises before it (``sync``)."""

    kernels: int = 0
    launch_s: float = 0.0
    sync: bool = False

    def __add__(self, other: "SegmentHost") -> "SegmentHost":
        return SegmentHost(self.kernels + other.kernels, self.launch_s + other.launch_s, self.sync)


class HostPricer:
    """Host costs of components for one scenario: per-kernel launches from ``model``, CUDA-graph ``scopes``."""

    def __init__(self, model: HostModel, scopes):
        self.model = model
        self.scopes = frozenset(scopes)
        self.graph_launch_s = model.launch_s.get(DEFAULT, 0.0)  # a graph launch costs one launch
        # (name, ids of the ops) → (ops, host): layers of a kind share their ops (moesim.workloads.model); the entry
        # holds the ops, so that their ids stay theirs while it is cached.
        self._components: dict[tuple, tuple] = {}

    def component(self, component: Component) -> SegmentHost:
        """Kernels, host launch seconds and sync of ``component``: each captured run of its ops is one graph
        launch; an op outside a graph costs its own launch; a sync inside a graph is gone (static shapes)."""
        key = (component.name, *map(id, component.ops))
        cached = self._components.get(key)
        if cached is None:
            cached = self._components[key] = (tuple(component.ops), self._component(component))
        return cached[1]

    def _component(self, component: Component) -> SegmentHost:
        moe_layer = any(op.kind is Kind.GROUPED_GEMM for op in component.ops)
        launch_s, in_graph, sync = 0.0, False, False
        for op in component.ops:
            inside = captured(op, component, moe_layer, self.scopes)
            if inside:
                if not in_graph:
                    launch_s += self.graph_launch_s
            else:
                launch_s += self.model.op_launch_s(op)
                sync = sync or op.host_sync
            in_graph = inside
        return SegmentHost(len(component.ops), launch_s, sync)

    def launch_s(self, op_class: OpClass) -> float:
        """One launch of a kernel of ``op_class`` (a pipeline send, a tail collective)."""
        return self.model.launch_s.get(op_class.value, self.graph_launch_s)


def active(model: HostModel) -> bool:
    """Whether ``model`` has any host cost: with none the host is not modelled at all (syncs included), so
    results are exactly those without a host."""
    return model.sync_s > 0 or any(v > 0 for v in model.launch_s.values())


def issue_entry(si: int, position: int, task: Task) -> tuple[int, int, float, float, float, bool]:
    """A task as :func:`plan_host` reads it, worked out once per task of a step's kind: (stream, position in the
    copy, launch seconds, its first kernel's issue after the host reaches it, one mean kernel's seconds, sync)."""
    if task.host is None:  # the host is not modelled
        return si, position, 0.0, 0.0, 0.0, False
    kernels, launch_s, sync = task.host
    n = kernels or 1
    return si, position, launch_s, launch_s / n, task.duration_s / n, sync


def plan_host(programs: list[RankProgram], slots: list[int]) -> None:
    """Turn the tasks' raw host records (kernels, launch seconds, sync; set by the program builder) into what the
    runner reads, in each program's ``hosts`` at the task's position, going through the copies of steps in issue
    order (``RankProgram.order``, tasks as :func:`issue_entry` gives them), and add each sync's release slot to
    its rank's ``slots``.

    A position's host record is (release slot it counts from, −1 for the step's start; host offset of its first
    kernel's issue; host offset of its last issue plus one mean kernel; sync) with sync None or (release slot of
    the previous sync, host offset at which the host reaches this one, the slot of this sync's release).
    """
    for rank, program in enumerate(programs):
        hosts = program.hosts
        release, offset = -1, 0.0
        for issued, starts in program.order:  # ~75,000 tasks a DeepSeek-V3 step: kept to plain arithmetic
            for si, position, launch_s, first_s, kernel_s, sync in issued:
                if sync:
                    new = slots[rank]
                    slots[rank] += 1
                    hosts[si][starts[si] + position] = (new, first_s, launch_s + kernel_s, (release, offset, new))
                    release, offset = new, launch_s
                else:
                    first = offset + first_s
                    offset += launch_s
                    hosts[si][starts[si] + position] = (release, first, offset + kernel_s, None)
