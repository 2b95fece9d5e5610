"""A scenario's communication priced on its cluster graph (``run.network: flow``); ``comm_time_s`` as the rest.

The cluster graph is built from ``cluster.network`` (topology, radix, planes, oversubscription, NIC rate) and
``cluster.gpu`` (NVLink). A :class:`~workloads.ops.Comm` of group ``g`` is priced with every instance of ``g``
inside the first pipeline stage running at once (they share NICs, planes and spines), so the flow fidelity
sees the contention between, e.g., the two EP groups of a DeepSeek-V3 stage. Prices are cached per distinct
Comm, so representative-mode simulation stays as fast as with the analytic model.
"""

from __future__ import annotations

from workloads.errors import ScenarioError
from workloads.ops import Comm, Pattern
from workloads.routing import EpTraffic, balanced_ep_traffic
from workloads.scenario import Scenario

from simulator.network.flows import Program
from simulator.network.graph_model import GraphNetwork
from topologies.registry import build
from topologies.spec import TopologyError, make_spec

_ALGORITHM = {Pattern.ALL_REDUCE: "all-reduce-hier", Pattern.REDUCE_SCATTER: "reduce-scatter-hier",
              Pattern.ALL_GATHER: "all-gather-hier", Pattern.ALL_TO_ALL: "all-to-all"}


def cluster_graph(scenario: Scenario):
    """The scenario's cluster as a topology graph; a cluster the topology cannot hold is a ScenarioError."""
    cl, net = scenario.cluster, scenario.cluster.network
    try:
        spec = make_spec(net.topology, radix=net.switch_radix, planes=net.planes,
                         oversubscription=max(1.0, net.oversubscription), gpus=cl.gpus,
                         gpus_per_node=cl.node.gpus_per_node, nics_per_node=cl.node.nics_per_node,
                         nic_gbps=net.nic_gbps, switch_gbps=net.nic_gbps, nvlink_gbps=cl.gpu.nvlink_gbps)
        return build(spec)
    except TopologyError as err:
        raise ScenarioError(f"cluster.network: {err}") from None


class ScenarioNetwork:
    """Prices :class:`Comm` records of one scenario on its cluster graph at ``fidelity``."""

    def __init__(self, scenario: Scenario, fidelity: str = "flow"):
        self.scenario = scenario
        net = scenario.cluster.network
        self.network = GraphNetwork(cluster_graph(scenario), fidelity, net.nvlink_efficiency, net.nic_efficiency)
        self._cache: dict[Comm, float] = {}

    def instances(self, group: str) -> list[list[int]]:
        """Ranks of every instance of process group ``group`` inside pipeline stage 0 (rank order tp, cp, dp)."""
        par = self.scenario.parallelism
        stage = par.dp * par.cp * par.tp
        key = {
            "tp": lambda r: r // par.tp,
            "cp": lambda r: (r % par.tp, r // (par.tp * par.cp)),
            "dp": lambda r: r % (par.tp * par.cp),
            "ep": lambda r: r // par.ep,
            "edp": lambda r: r % par.ep,
        }
        if group not in key:
            raise KeyError(f"unknown process group {group!r}")
        groups: dict = {}
        for r in range(stage):
            groups.setdefault(key[group](r), []).append(r)
        return list(groups.values())

    def ep_traffic(self) -> EpTraffic:
        moe, par = self.scenario.model.moe, self.scenario.parallelism
        per_node = min(par.ep, self.scenario.cluster.node.gpus_per_node)
        return balanced_ep_traffic(moe.routed_experts, moe.top_k, moe.groups, moe.groups_per_token, par.ep,
                                   per_node, self.scenario.run.seed)

    def programs(self, comm: Comm) -> list[Program]:
        """One program per concurrent instance of the comm's group."""
        gpus = self.network.gpus
        if comm.pattern is Pattern.SEND_RECV:
            par = self.scenario.parallelism
            stage = par.dp * par.cp * par.tp
            if par.pp == 1:
                return []
            pairs = [(gpus[r], gpus[r + stage]) for r in range(stage)]
            return [self.network.collective("send-recv", [a for a, _ in pairs] + [b for _, b in pairs],
                                            comm.bytes_per_rank)]
        out = []
        for ranks in self.instances(comm.group):
            if len(ranks) < 2:
                continue
            members = [gpus[r] for r in ranks]
            if comm.pattern in (Pattern.EP_DISPATCH, Pattern.EP_COMBINE):
                out.append(self.network.ep(members, comm.tokens, comm.hidden * comm.element_bytes,
                                           self.ep_traffic(), comm.pattern is Pattern.EP_COMBINE))
            else:
                out.append(self.network.collective(_ALGORITHM[comm.pattern], members, comm.bytes_per_rank))
        return out

    def comm_time_s(self, comm: Comm) -> float:
        """Seconds until every instance of the collective has finished (all start together)."""
        cached = self._cache.get(comm)
        if cached is None:
            programs = self.programs(comm)
            if not programs:
                cached = 0.0
            elif len(programs) == 1:
                cached = self.network.time_s(programs[0])
            else:
                cached = max(self.network.concurrent_s(programs))
            self._cache[comm] = cached
        return cached
