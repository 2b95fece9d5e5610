"""The analytic network model: a collective's time from the bytes its busiest link class carries.

Per GPU, the scale-up link is NVLink and the scale-out link is its NIC (/ oversubscription), each at its usable
rate (:mod:`moesim.simulator.network.link_rates`). Each collective is priced with the
standard algorithm costs (ring for all-reduce, reduce-scatter and all-gather; hierarchical NVLink-then-NIC
when the group spans nodes) plus per-step latency. EP dispatch and combine follow DeepSeek-V3 (TR §3.2.2):
one NIC transfer per remote target node to the same-index GPU, then NVLink forwarding; the two hops overlap,
so the time is the slower of the two plus both latencies. Each hop moves at its EP rate (:mod:`moesim.simulator.network.link_rates`); their notify is an op of its own. No cross-traffic between collectives.
"""

from __future__ import annotations

from moesim.workloads.ops import Comm, Pattern
from moesim.workloads.ep_load import scenario_ep_routing
from moesim.workloads.routing import EpTraffic
from moesim.workloads.scenario import Scenario

from moesim.simulator.network.fabric import check_fabric
from moesim.simulator.network.groups import GroupGeometry, group_geometry
from moesim.simulator.network.link_rates import LinkRates

GB = 1e9
US = 1e-6


class AnalyticNetwork:
    """Prices :class:`moesim.workloads.ops.Comm` records for one scenario; ``comm_time_s`` is the interface."""

    def __init__(self, scenario: Scenario):
        check_fabric(scenario)  # the fabric must hold the cluster, as the graph models require
        self.scenario = scenario
        net, node = scenario.cluster.network, scenario.cluster.node
        rates = LinkRates.of(net)
        nvlink = scenario.cluster.gpu.nvlink_gbps
        self.nvlink_gbps = rates.usable_gbps("nvlink", nvlink)
        nics_per_gpu = node.nics_per_node / node.gpus_per_node
        self.nic_gbps = rates.usable_gbps("nic", net.nic_gbytes_per_s) * nics_per_gpu / net.oversubscription
        # DeepEP's kernels: the lower of the link's usable rate and what the kernels reach on it.
        self.ep_nvlink_gbps = rates.ep_gbps("nvlink", self.nvlink_gbps, nvlink)
        self.ep_nic_gbps = min(self.nic_gbps, rates.ep_kernel_gbps("nic", net.nic_gbytes_per_s) * nics_per_gpu)
        self.nvlink_latency_s = net.nvlink_latency_us * US
        self.nic_latency_s = net.nic_latency_us * US
        self._groups: dict[str, GroupGeometry] = {}
        self._cache: dict[Comm, float] = {}

    def group(self, name: str) -> GroupGeometry:
        if name not in self._groups:
            self._groups[name] = group_geometry(self.scenario, name)
        return self._groups[name]

    def comm_time_s(self, comm: Comm, rank: int = 0) -> float:
        """Seconds for every member of ``comm.group`` to finish the collective (all arrive together).

        ``rank`` (the pipeline rank whose GPUs run it) does not matter here: every group of a kind is alike.
        """
        cached = self._cache.get(comm)
        if cached is None:
            cached = self._cache[comm] = self._price(comm)
        return cached

    def _price(self, comm: Comm) -> float:
        g = self.group(comm.group)
        if g.size == 1 and comm.pattern is not Pattern.SEND_RECV:
            return 0.0
        if comm.pattern in (Pattern.EP_DISPATCH, Pattern.EP_COMBINE):
            return self.ep_time_s(comm, g)
        if comm.pattern is Pattern.SEND_RECV:
            return self.send_recv_s(comm.bytes_per_rank, inter_node=True)
        if comm.pattern is Pattern.ALL_TO_ALL:
            return self.all_to_all_s(comm.bytes_per_rank, g)
        factor = 2.0 if comm.pattern is Pattern.ALL_REDUCE else 1.0
        return factor * self.reduce_scatter_s(comm.bytes_per_rank, g)

    # --- collective costs (bytes are per rank) ----------------------------------------------------------
    def send_recv_s(self, nbytes: float, inter_node: bool) -> float:
        if inter_node:
            return nbytes / (self.nic_gbps * GB) + self.nic_latency_s
        return nbytes / (self.nvlink_gbps * GB) + self.nvlink_latency_s

    def reduce_scatter_s(self, nbytes: float, g: GroupGeometry) -> float:
        """Ring reduce-scatter (all-gather costs the same): NVLink inside a node, then NICs across nodes."""
        p, n = g.per_node, g.nodes
        t = (p - 1) / p * nbytes / (self.nvlink_gbps * GB) + (p - 1) * self.nvlink_latency_s if p > 1 else 0.0
        if n > 1:
            t += (n - 1) / n * (nbytes / p) / (self.nic_gbps * GB) + (n - 1) * self.nic_latency_s
        return t

    def all_to_all_s(self, nbytes: float, g: GroupGeometry) -> float:
        """Uniform all-to-all: each rank sends nbytes/size to every other rank."""
        share = nbytes / g.size
        nvl = share * (g.per_node - 1) / (self.nvlink_gbps * GB)
        nic = share * (g.size - g.per_node) / (self.nic_gbps * GB)
        latency = self.nvlink_latency_s + (self.nic_latency_s if g.nodes > 1 else 0.0)
        return max(nvl, nic) + latency

    def ep_traffic(self) -> EpTraffic:
        """Per-token traffic of the scenario's routing model (``routing`` section), with busiest-link factors."""
        return scenario_ep_routing(self.scenario, self.group("ep").per_node).traffic

    def ep_time_s(self, comm: Comm, g: GroupGeometry) -> float:
        """DeepSeek-style dispatch or combine of ``comm.tokens`` tokens (combine is dispatch reversed).
        Skewed routing loads some links more than the mean; the busiest InfiniBand and NVLink links set the pace."""
        traffic = self.ep_traffic()
        token_bytes = comm.token_bytes
        nic_s = comm.tokens * traffic.ib_nodes * traffic.ib_link_factor * token_bytes / (self.ep_nic_gbps * GB)
        nvl_s = comm.tokens * traffic.nvl_copies * traffic.nvl_link_factor * token_bytes / (self.ep_nvlink_gbps * GB)
        latency = self.nvlink_latency_s + (self.nic_latency_s if g.nodes > 1 else 0.0)
        return max(nic_s, nvl_s) + latency
