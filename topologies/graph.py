"""The machine as a networkx DiGraph: typed nodes and directed links.

Nodes carry ``kind``: ``gpu``, ``nvswitch``, ``nic`` or ``switch``; GPUs, NVSwitches and NICs carry ``node``
(the server) and ``index`` (position in it); NICs and switches carry ``plane``; switches carry ``tier``
(0 leaf/router, 1 spine/aggregation, 2 core) and ``role`` (leaf, spine, agg, core, rail, router). Every cable is
two directed links, each with ``capacity_gbps`` (GB/s per direction, all parallel cables together),
``latency_us`` (one traversal), ``link`` (its class: ``nvlink``, ``pcie``, ``nic`` for NIC–switch, ``fabric``
for switch–switch) and ``lanes`` (parallel cables folded into it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: building a graph needs networkx, sizing one does not
    import networkx as nx

from moesim.topologies.gpus import gpu_spec
from moesim.topologies.spec import FabricSpec

LINK_CLASSES = ("nvlink", "pcie", "nic", "fabric")


def add_link(g: nx.DiGraph, u: str, v: str, capacity_gbps: float, latency_us: float, link: str,
             lanes: int = 1) -> None:
    """Add ``lanes`` cables between ``u`` and ``v`` (both directions); parallel cables add up."""
    for a, b in ((u, v), (v, u)):
        if g.has_edge(a, b):
            edge = g.edges[a, b]
            edge["capacity_gbps"] += capacity_gbps * lanes
            edge["lanes"] += lanes
        else:
            g.add_edge(a, b, capacity_gbps=capacity_gbps * lanes, latency_us=latency_us, link=link, lanes=lanes)


def add_switch(g: nx.DiGraph, name: str, tier: int, role: str, plane: int = 0) -> str:
    g.add_node(name, kind="switch", tier=tier, role=role, plane=plane)
    return name


def gpu_name(node: int, index: int) -> str:
    return f"n{node}.gpu{index}"


def nic_name(node: int, index: int) -> str:
    return f"n{node}.nic{index}"


def add_servers(g: nx.DiGraph, spec: FabricSpec, nodes: int) -> list[str]:
    """Add ``nodes`` servers (GPUs on one NVSwitch, NICs over PCIe); return the NICs, node-major."""
    nvlink_gbps = spec.nvlink_gbps or gpu_spec(spec.gpu)["nvlink_gbps"]
    gpn, npn = spec.gpus_per_node, spec.nics_per_node
    nics = []
    for n in range(nodes):
        nvs = f"n{n}.nvs"
        g.add_node(nvs, kind="nvswitch", node=n, index=0)
        for i in range(gpn):
            g.add_node(gpu_name(n, i), kind="gpu", node=n, index=i)
            # One logical NVSwitch per node: each GPU's NVLink bandwidth to all its peers together.
            add_link(g, gpu_name(n, i), nvs, nvlink_gbps, spec.nvlink_latency_us, "nvlink")
        for k in range(npn):
            nic = nic_name(n, k)
            g.add_node(nic, kind="nic", node=n, index=k, plane=0)
            nics.append(nic)
        if npn >= gpn:  # each GPU owns npn/gpn NICs
            pairs = [(i, k) for k in range(npn) for i in [k * gpn // npn]]
        else:  # each NIC serves gpn/npn GPUs
            pairs = [(i, i * npn // gpn) for i in range(gpn)]
        for i, k in pairs:
            add_link(g, gpu_name(n, i), nic_name(n, k), spec.pcie_gbps, spec.pcie_latency_us, "pcie")
    return nics


def attach(g: nx.DiGraph, spec: FabricSpec, nic: str, switch: str) -> None:
    """Cable a NIC to its switch port; the NIC takes the switch's plane."""
    g.nodes[nic]["plane"] = g.nodes[switch]["plane"]
    add_link(g, nic, switch, min(spec.nic_gbps, spec.switch_gbps), spec.nic_latency_us, "nic")


def connect(g: nx.DiGraph, spec: FabricSpec, u: str, v: str, lanes: int = 1) -> None:
    """Cable two switches with ``lanes`` parallel links."""
    add_link(g, u, v, spec.switch_gbps, spec.switch_latency_us, "fabric", lanes)


def nodes_of_kind(g: nx.DiGraph, kind: str) -> list[str]:
    return [n for n, d in g.nodes(data=True) if d["kind"] == kind]


def gpus(g: nx.DiGraph) -> list[str]:
    """GPUs in rank order: node-major, then index."""
    return sorted(nodes_of_kind(g, "gpu"), key=lambda n: (g.nodes[n]["node"], g.nodes[n]["index"]))
