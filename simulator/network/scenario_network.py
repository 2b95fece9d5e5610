"""A scenario's communication priced on its cluster graph (``run.network: flow``); ``comm_time_s`` as the rest.

The cluster graph is built from ``cluster.network`` (topology, radix, planes, oversubscription, NIC rate) and
``cluster.gpu`` (NVLink). A :class:`~moesim.workloads.ops.Comm` of group ``g`` is priced with every instance of ``g``
inside the first pipeline stage running at once (they share NICs, planes and spines), so the flow fidelity
sees the contention between, e.g., the two EP groups of a DeepSeek-V3 stage. Prices are cached per distinct
Comm, so representative-mode simulation stays as fast as with the analytic model.
"""

from __future__ import annotations

from moesim.workloads.errors import ScenarioError
from moesim.workloads.ops import Comm, Pattern
from moesim.workloads.ep_load import EpRouting, scenario_ep_routing
from moesim.workloads.routing import EpTraffic
from moesim.workloads.scenario import Scenario

from moesim.simulator.network.fabric import apply_link_faults, cluster_graph  # noqa: F401 (re-exported)
from moesim.simulator.network.flows import Program
from moesim.simulator.network.graph_model import GraphNetwork
from moesim.simulator.network.groups import ProcessGroups
from moesim.topologies.spec import TopologyError

MAX_SHAPES = 4  # routed groups kept per comm to move onto their copies (each try costs a comparison)
_ALGORITHM = {Pattern.ALL_REDUCE: "all-reduce-hier", Pattern.REDUCE_SCATTER: "reduce-scatter-hier",
              Pattern.ALL_GATHER: "all-gather-hier", Pattern.ALL_TO_ALL: "all-to-all"}


class ScenarioNetwork:
    """Prices :class:`Comm` records of one scenario on its cluster graph at ``fidelity``."""

    def __init__(self, scenario: Scenario, fidelity: str = "flow"):
        self.scenario = scenario
        net = scenario.cluster.network
        graph = cluster_graph(scenario)
        self.faulty = bool(scenario.faults.links)
        self.groups = ProcessGroups.of(scenario)
        self.network = GraphNetwork(graph, fidelity, net.nvlink_efficiency, net.nic_efficiency,
                                    net.ep_nvlink_efficiency, net.ep_nic_efficiency)
        self._cache: dict[tuple[Comm, int], float] = {}
        self._shapes: dict[tuple[Comm, int], list[tuple[list[str], Program]]] = {}

    def instances(self, group: str, rank: int = 0) -> list[list[int]]:
        """GPUs of every instance of process group ``group`` inside pipeline rank ``rank`` (order tp, cp, dp)."""
        return self.groups.instances(group, rank)

    def ep_routing(self) -> EpRouting:
        """The scenario's routing (``routing`` section) as every network model prices it."""
        return scenario_ep_routing(self.scenario, self.groups.geometry("ep").per_node)

    def ep_traffic(self) -> EpTraffic:
        """Per-token traffic of the scenario's routing model, as the analytic model prices it."""
        return self.ep_routing().traffic

    def programs(self, comm: Comm, rank: int = 0) -> list[Program]:
        """One program per concurrent instance of the comm's group on pipeline rank ``rank``'s GPUs."""
        if comm.pattern is Pattern.SEND_RECV:
            stage = self.groups.stage_gpus
            if self.groups.pp == 1:
                return []
            first = min(rank, self.groups.pp - 2) * stage  # the send from this rank to the next (the last one's to it)
            return [self.program(comm, list(range(first, first + 2 * stage)))]
        return [self.program(comm, ranks) for ranks in self.instances(comm.group, rank) if len(ranks) > 1]

    def program(self, comm: Comm, ranks: list[int]) -> Program:
        """The program of ``comm`` over global GPUs ``ranks`` (a send-recv: senders, then receivers). Routed once
        per shape: a copy of a group already routed, moved by whole servers, reuses its routes
        (:meth:`GraphNetwork.shifted`), exactly the routes a direct routing gives."""
        members = [self.network.gpus[r] for r in ranks]
        shapes = self._shapes.setdefault((comm, len(ranks)), [])
        for known, program in shapes:
            moved = self.network.shifted(program, known, members)
            if moved is not None:
                return moved
        program = self.route(comm, members)
        if len(shapes) < MAX_SHAPES:
            shapes.append((members, program))
        return program

    def route(self, comm: Comm, members: list[str]) -> Program:
        """The program of ``comm`` over GPUs ``members``, every transfer routed on the graph."""
        if comm.pattern is Pattern.SEND_RECV:
            return self.network.collective("send-recv", members, comm.bytes_per_rank)
        if comm.pattern in (Pattern.EP_DISPATCH, Pattern.EP_COMBINE):
            routing = self.ep_routing()  # skewed routing: each transfer carries its target's share
            return self.network.ep(members, comm.tokens, comm.token_bytes, routing.traffic,
                                   comm.pattern is Pattern.EP_COMBINE, routing.gpu_weight, routing.node_weight)
        return self.network.collective(_ALGORITHM[comm.pattern], members, comm.bytes_per_rank)

    def comm_time_s(self, comm: Comm, rank: int = 0) -> float:
        """Seconds until every instance of the collective on pipeline rank ``rank`` has finished.

        All instances start together. Without link faults every pipeline rank's GPUs see the same fabric, so
        rank 0 stands for all of them.
        """
        key = (comm, rank if self.faulty else 0)
        cached = self._cache.get(key)
        if cached is None:
            try:
                programs = self.programs(comm, key[1])
                if not programs:
                    cached = 0.0
                elif len(programs) == 1:
                    cached = self.network.time_s(programs[0])
                else:
                    cached = max(self.network.concurrent_s(programs))
            except TopologyError as err:  # a routing error after failures: the group is cut off
                raise ScenarioError(f"faults.links: {err}; the {comm.group} group of pipeline rank {key[1]} "
                                    "cannot communicate") from None
            self._cache[key] = cached
        return cached
