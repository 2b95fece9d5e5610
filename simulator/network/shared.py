"""Links shared in simulated time (``run.network: flow``): every communication op is a set of fluid flows on the
cluster graph, started when the engine starts the op, sharing each link with all traffic in flight at that moment
(the sharing itself: :mod:`moesim.simulator.network.link_share`).

An op is planned once per distinct (op, GPUs) as a :class:`~moesim.simulator.network.link_share.Plan`: its collective
algorithm's steps on the graph's routes (a ring's p−1 repetitions folded into one step of p−1 times the bytes
and latency), each step one bundle for the flows that cross InfiniBand and one for those that stay on NVLink
(one bundle if they share links). A bundle merges those flows over every instance of the op's process group
that the GPUs run: in representative fidelity a pipeline rank stands for all its GPUs, so a rank's op moves
the traffic of all its EP groups, all its DP groups, all its GPUs' pipeline sends — by symmetry each behaves
like the one the engine simulates. The flows of a bundle are alike (same bytes, same kind of route), which is
why they may progress together.

Alone, an op takes exactly what the analytic model on the same graph gives (per step, busiest link's bytes /
capacity plus path latency), so the two agree wherever nothing contends.
"""

from __future__ import annotations

import numpy as np
import simpy

from moesim.simulator.network.collectives import check_flow_state
from moesim.simulator.network.fabric import check_fabric
from moesim.simulator.network.flow_size import check_flow_size
from moesim.simulator.network.flows import Program
from moesim.simulator.network.link_share import LinkShare, Plan, PlanStep, bundle, plan_of
from moesim.simulator.network.scenario_network import _ALGORITHM, ScenarioNetwork
from moesim.topologies.spec import TopologyError
from moesim.workloads.errors import ScenarioError
from moesim.workloads.ops import Comm, Pattern
from moesim.workloads.scenario import Scenario

# The collective algorithm each pattern runs on the graph (also its name for the flow-state check).
_NAME = {**{p: name for p, name in _ALGORITHM.items()}, Pattern.EP_DISPATCH: "ep-dispatch",
         Pattern.EP_COMBINE: "ep-combine"}


def _per_byte(comm: Comm) -> tuple[Comm, float]:
    """``comm`` with one byte per unit of size, and its size: every transfer's bytes are proportional to it
    (EP: tokens × hidden × element bytes; the rest: bytes per rank)."""
    if comm.pattern in (Pattern.EP_DISPATCH, Pattern.EP_COMBINE):
        return (Comm(comm.pattern, comm.group, 1.0, 1, 1, comm.top_k, 1.0),
                comm.tokens * comm.token_bytes)
    return Comm(comm.pattern, comm.group, 1.0), comm.bytes_per_rank


class SharedNetwork:
    """The time-shared network of one scenario: plans ops on its cluster graph and moves them in SimPy time.

    ``comm_time_s`` (the interface every network model has) gives an op's time alone, for pricing; the engine
    calls :meth:`attach` with its SimPy environment and then :meth:`start` for every op as it begins.
    """

    def __init__(self, scenario: Scenario):
        check_fabric(scenario)  # before the graph: a fabric too small, then a run too large, is refused
        check_flow_size(scenario)
        self.scenario = scenario
        self.graph = ScenarioNetwork(scenario, "analytic")
        self.capacity_bps = self.graph.network.capacity_bps
        self.is_nic = np.asarray(self.graph.network.router.link_class == "nic")
        par = scenario.parallelism
        self.stage_gpus = par.dp * par.cp * par.tp
        self._plans: dict[tuple, Plan] = {}
        self.share: LinkShare | None = None

    # --- planning -------------------------------------------------------------------------------------
    def rank_gpus(self, rank: int) -> tuple[int, ...]:
        return tuple(range(rank * self.stage_gpus, (rank + 1) * self.stage_gpus))

    def comm_time_s(self, comm: Comm, rank: int = 0) -> float:
        """Seconds for ``comm`` alone on the network, run by every GPU of pipeline rank ``rank`` at once."""
        if comm.pattern is Pattern.SEND_RECV:
            pp = self.scenario.parallelism.pp
            if pp == 1:
                return 0.0
            src = min(rank, pp - 2)
            return self.plan((comm,), self.rank_gpus(src), src + 1).solo_s
        return self.plan((comm,), self.rank_gpus(rank)).solo_s

    def plan(self, comms: tuple[Comm, ...], gpus: tuple[int, ...], send_to: int = -1) -> Plan:
        """The plan of ``comms`` run one after another by ``gpus`` (global ranks, all on one pipeline rank);
        a send goes from each of them to the GPU with the same local index on pipeline rank ``send_to``."""
        key = (comms, gpus, send_to)
        plan = self._plans.get(key)
        if plan is None:
            steps: list[PlanStep] = []
            for comm in comms:
                unit, factor = _per_byte(comm)
                steps += [PlanStep([b.scaled(factor) for b in step.bundles] if factor > 0 else [], step.latency_s)
                          for step in self._unit_steps(unit, gpus, send_to)]
            plan = self._plans[key] = plan_of(steps)
        return plan

    def _unit_steps(self, comm: Comm, gpus: tuple[int, ...], send_to: int) -> list[PlanStep]:
        """Steps of ``comm`` at one byte per unit of its size (see :func:`_per_byte`): routes are worked out once
        per pattern and GPUs, whatever the bytes."""
        key = (comm, gpus, send_to)
        steps = self._plans.get(key)
        if steps is None:
            try:
                steps = self._plans[key] = self._steps(self._programs(comm, gpus, send_to))
            except TopologyError as err:  # a routing error after failures: the group is cut off
                raise ScenarioError(f"faults.links: {err}; the {comm.group} group of GPU {gpus[0]} cannot "
                                    "communicate") from None
        return steps

    def _programs(self, comm: Comm, gpus: tuple[int, ...], send_to: int) -> list[Program]:
        if comm.pattern is Pattern.SEND_RECV:
            if send_to < 0:
                return []
            shift = (send_to - gpus[0] // self.stage_gpus) * self.stage_gpus
            return [self.graph.program(comm, [*gpus, *(g + shift for g in gpus)])]
        wanted = set(gpus)
        rank = gpus[0] // self.stage_gpus
        instances = [ranks for ranks in self.graph.instances(comm.group, rank)
                     if len(ranks) > 1 and wanted.intersection(ranks)]
        if not instances:
            return []
        size = len(instances[0])
        try:
            check_flow_state(_NAME[comm.pattern], size, min(size, self.scenario.cluster.node.gpus_per_node),
                             len(instances))
        except ValueError as err:
            raise ScenarioError(f"run.network=flow: {err}") from None
        return [self.graph.program(comm, ranks) for ranks in instances]

    def _steps(self, programs: list[Program]) -> list[PlanStep]:
        # EP programs' bundles go no faster than DeepEP's kernels (their demand); links are still shared at
        # their own capacity (LinkShare).
        capacity = self.graph.network.capacity_for(programs) if programs else self.capacity_bps
        return plan_steps(programs, capacity, self.is_nic)

    # --- moving in simulated time ---------------------------------------------------------------------
    def attach(self, env: simpy.Environment) -> LinkShare:
        """Start moving plans on ``env``'s clock (nothing in flight)."""
        self.share = LinkShare(env, self.capacity_bps)
        return self.share

    def start(self, plan: Plan) -> simpy.Event:
        """Start ``plan`` now (see :meth:`LinkShare.start`)."""
        return self.share.start(plan)


def plan_steps(programs: list[Program], capacity_bps: np.ndarray, is_nic: np.ndarray) -> list[PlanStep]:
    """Step k of every program together; per step, a bundle of the flows that cross a NIC link (``is_nic``
    per link id) and one of those that do not — one bundle if the two share links."""
    links = len(capacity_bps)
    out = []
    for k in range(max((len(p.steps) for p in programs), default=0)):
        loads = [np.zeros(links), np.zeros(links)]  # flows crossing a NIC, flows that do not
        latency = 0.0
        for p in programs:
            if k >= len(p.steps):
                continue
            step = p.steps[k]
            if step.flows == 0:
                continue
            crosses = np.bincount(step.flow, is_nic[step.link], minlength=step.flows) > 0
            for part, mask in ((0, crosses), (1, ~crosses)):
                rows = mask[step.flow]
                if not rows.any():
                    continue
                # Summed over this program's own links (a bincount over every link of the graph, per program,
                # grew with the cluster twice over); the same sums, added once per program as before.
                ids, where = np.unique(step.link[rows], return_inverse=True)
                loads[part][ids] += np.bincount(where.reshape(-1), step.weight[rows] * step.bytes[step.flow[rows]],
                                                minlength=len(ids)) * step.repeat
            latency = max(latency, float(step.latency_s.max()) * step.latency_factor * step.repeat)
        if (loads[0] > 0).any() and (loads[1] > 0).any() and ((loads[0] > 0) & (loads[1] > 0)).any():
            loads = [loads[0] + loads[1]]  # the two kinds share links (forwarding): they move as one
        bundles = []
        for load in loads:
            ids = np.flatnonzero(load > 0)
            if len(ids) == 0:
                continue
            bundles.append(bundle(ids, load[ids], capacity_bps))
        if bundles or latency > 0:
            out.append(PlanStep(bundles, latency))
    return out
