"""The one place a scenario's ``cluster`` section becomes a topology: its :class:`FabricSpec` and graph.

Every graph-based network model (``run.network: flow``, and ``analytic`` once link faults need routes) builds
its cluster here, so a field of ``cluster.network`` means the same to all of them.

Latencies: the scenario gives end-to-end figures ("Insights into DeepSeek-V3" Table 5, 64-byte message):
``nic_latency_us`` for an InfiniBand transfer between GPUs on different leaves (GPU→NIC→leaf→spine→leaf→NIC→GPU)
and ``nvlink_latency_us`` for GPU→NVSwitch→GPU. The graph holds latencies per link traversal, so they are
split over the links such a transfer crosses: two NVLink links of ``nvlink_latency_us``/2; two switch links
at the topology default (0.45 µs, Table 5: 3.7 µs across leaves − 2.8 µs within one) and two NIC links sharing
the rest. So a transfer across leaves takes exactly ``nic_latency_us`` — as the analytic model charges it —
and a change of ``nic_latency_us`` moves every inter-node path by the same amount.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moesim.topologies.registry import build, check_capacity
from moesim.topologies.spec import FabricSpec, TopologyError, make_spec, topology_defaults
from moesim.workloads.errors import ScenarioError
from moesim.workloads.scenario import Scenario

if TYPE_CHECKING:
    import networkx as nx

NVLINK_HOPS = 2  # GPU → NVSwitch → GPU
NIC_HOPS = 2  # NIC → leaf, leaf → NIC
SWITCH_HOPS = 2  # leaf → spine → leaf: what a transfer across leaves adds


def link_latencies_us(nic_latency_us: float, nvlink_latency_us: float) -> dict[str, float]:
    """Per-link latencies (µs per traversal) whose sums along the reference paths give the end-to-end
    figures: across leaves ``nic_latency_us``; GPU to GPU over NVLink ``nvlink_latency_us``."""
    switch_us = min(topology_defaults()["switch_latency_us"], nic_latency_us / (NIC_HOPS + SWITCH_HOPS))
    return {"nic_latency_us": (nic_latency_us - SWITCH_HOPS * switch_us) / NIC_HOPS,
            "switch_latency_us": switch_us,
            "nvlink_latency_us": nvlink_latency_us / NVLINK_HOPS}


def topology_spec(scenario: Scenario) -> FabricSpec:
    """The scenario's cluster as a :class:`FabricSpec`; one it cannot describe is a ScenarioError."""
    cl, net = scenario.cluster, scenario.cluster.network
    try:
        return make_spec(net.topology, radix=net.switch_radix, planes=net.planes,
                         oversubscription=max(1.0, net.oversubscription), gpus=cl.gpus,
                         gpus_per_node=cl.node.gpus_per_node, nics_per_node=cl.node.nics_per_node,
                         nic_gbps=net.nic_gbytes_per_s, switch_gbps=net.nic_gbytes_per_s, nvlink_gbps=cl.gpu.nvlink_gbps,
                         **link_latencies_us(net.nic_latency_us, net.nvlink_latency_us))
    except TopologyError as err:
        raise ScenarioError(f"cluster.network: {err}") from None


def check_fabric(scenario: Scenario) -> None:
    """Refuse (ScenarioError naming ``cluster.network``) a cluster its fabric cannot hold: the one size check of
    every network model, analytic included, before any graph is built."""
    try:
        check_capacity(topology_spec(scenario))
    except TopologyError as err:
        raise ScenarioError(f"cluster.network: {err}") from None


def cluster_graph(scenario: Scenario, with_faults: bool = True) -> nx.DiGraph:
    """The scenario's cluster graph, with ``faults.links`` applied unless ``with_faults`` is False."""
    try:
        graph = build(topology_spec(scenario))
    except TopologyError as err:
        raise ScenarioError(f"cluster.network: {err}") from None
    if with_faults and scenario.faults.links:
        graph = apply_link_faults(graph, scenario.faults.links)
    return graph


def apply_link_faults(graph: nx.DiGraph, faults) -> nx.DiGraph:
    """The graph with ``faults.links`` applied: failed cables and switches removed, degraded ones slowed."""
    from moesim.topologies.routing import fail

    failed_links = [tuple(f.link) for f in faults if f.link and f.bandwidth_factor == 0]
    failed_switches = [f.switch for f in faults if f.switch and f.bandwidth_factor == 0]
    try:
        out = fail(graph, failed_links, failed_switches)
    except TopologyError as err:
        raise ScenarioError(f"faults.links: {err}") from None
    for i, f in enumerate(faults):
        if f.bandwidth_factor == 0:
            continue
        if f.link:
            u, v = f.link
            if not out.has_edge(u, v):
                raise ScenarioError(f"faults.links[{i}]: no link {u} -> {v}; name a cable as "
                                    "`moesim topology route` prints it")
            edges = [(u, v), (v, u)]
        else:
            if f.switch not in out or out.nodes[f.switch].get("kind") != "switch":
                raise ScenarioError(f"faults.links[{i}]: no switch {f.switch!r}")
            edges = list(out.in_edges(f.switch)) + list(out.out_edges(f.switch))
        for edge in edges:
            out.edges[edge]["capacity_gbps"] *= f.bandwidth_factor
    return out
