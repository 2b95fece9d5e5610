"""Fat-tree fabrics: two-layer (ft2), three-layer (ft3), multi-plane (mpft), multi-rail (mrft), rail-only (rail).

Each builder cables a list of NICs (the endpoints) to switches of ``spec.radix`` ports. A leaf splits its
ports down:up = oversubscription:1. Smaller instances than the largest keep every leaf's uplinks but use fewer
spines, folding parallel cables into one link (``lanes``), so bisection stays what the oversubscription says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: building a graph needs networkx, sizing one does not
    import networkx as nx

from moesim.topologies.graph import add_switch, attach, connect
from moesim.topologies.spec import FabricSpec, TopologyError, split_ports


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _spread(ports_each: int, users: int, radix: int) -> tuple[int, int]:
    """(switches, lanes): fewest upper switches, each user spreading ``ports_each`` ports evenly over them."""
    for count in range(1, ports_each + 1):
        if ports_each % count == 0 and count * radix >= users * ports_each:
            return count, ports_each // count
    raise TopologyError(f"{users} switches need more than {ports_each} upper switches of radix {radix}")


def two_layer_capacity(spec: FabricSpec) -> int:
    """Endpoints of the largest two-layer fat-tree: radix leaves × their down ports."""
    down, _ = split_ports(spec.radix, spec.oversubscription)
    return spec.radix * down


def two_layer(g: nx.DiGraph, spec: FabricSpec, nics: list[str], plane: int = 0, prefix: str = "") -> None:
    """Leaves of ``down`` endpoints each; every leaf cabled evenly to the spines (none if one leaf)."""
    down, up = split_ports(spec.radix, spec.oversubscription)
    leaves = _ceil_div(len(nics), down)
    if leaves > spec.radix:
        raise TopologyError(f"{len(nics)} endpoints need {leaves} leaves but a {spec.radix}-port spine "
                            f"reaches {spec.radix}; use a larger --radix")
    leaf_names = [add_switch(g, f"{prefix}leaf{j}", 0, "leaf", plane) for j in range(leaves)]
    for i, nic in enumerate(nics):
        attach(g, spec, nic, leaf_names[i // down])
    if leaves == 1:
        return
    spines, lanes = _spread(up, leaves, spec.radix)
    for s in range(spines):
        spine = add_switch(g, f"{prefix}spine{s}", 1, "spine", plane)
        for leaf in leaf_names:
            connect(g, spec, leaf, spine, lanes)


def ft2(g: nx.DiGraph, spec: FabricSpec, nics: list[str]) -> None:
    """A two-layer fat-tree over all NICs in node order (a node's NICs share a leaf)."""
    two_layer(g, spec, nics)


def mrft(g: nx.DiGraph, spec: FabricSpec, nics: list[str]) -> None:
    """Multi-rail fat-tree: one two-layer fabric whose leaves each serve one rail (NIC index) of many nodes,
    with spines shared by all rails ("Insights into DeepSeek-V3" §5.1 compares it with MPFT)."""
    rail_major = sorted(nics, key=lambda n: (g.nodes[n]["index"], g.nodes[n]["node"]))
    two_layer(g, spec, rail_major)


def mpft(g: nx.DiGraph, spec: FabricSpec, nics: list[str]) -> None:
    """Multi-plane fat-tree: NIC ``k`` of every node on plane ``k mod planes``, each plane its own two-layer
    fat-tree with no links between planes ("Insights" §5.1); cross-plane traffic goes through the node."""
    if spec.nics_per_node % spec.planes:
        raise TopologyError(f"planes={spec.planes} must divide nics_per_node={spec.nics_per_node}; "
                            "one NIC per GPU on its own plane needs planes = NICs per node")
    for plane in range(spec.planes):
        members = [n for n in nics if g.nodes[n]["index"] % spec.planes == plane]
        two_layer(g, spec, members, plane, f"p{plane}.")


def mpft_capacity(spec: FabricSpec) -> int:
    return spec.planes * two_layer_capacity(spec)


def rail(g: nx.DiGraph, spec: FabricSpec, nics: list[str]) -> None:
    """Rail-only (Wang et al., "Rail-only", arXiv 2307.12169): one switch per rail joins NIC ``k`` of every
    node; rails are not connected, so traffic between rails is forwarded over NVLink inside a node."""
    for k in range(spec.nics_per_node):
        switch = add_switch(g, f"rail{k}", 0, "rail", k)
        for nic in nics:
            if g.nodes[nic]["index"] == k:
                attach(g, spec, nic, switch)


def rail_capacity(spec: FabricSpec) -> int:
    return spec.radix * spec.nics_per_node


def ft3_capacity(spec: FabricSpec) -> int:
    """k pods of k/2 edge switches with ``down`` endpoints each (k³/4 at 1:1)."""
    down, _ = split_ports(spec.radix, spec.oversubscription)
    return spec.radix * (spec.radix // 2) * down


def ft3(g: nx.DiGraph, spec: FabricSpec, nics: list[str]) -> None:
    """Three-layer fat-tree (k-ary, Al-Fares et al. 2008): pods of edge and aggregation switches, a core."""
    down, up = split_ports(spec.radix, spec.oversubscription)
    half = spec.radix // 2
    if up > half:
        raise TopologyError(f"oversubscription={spec.oversubscription:g} gives edges more uplinks than a "
                            "pod has aggregation switches; use oversubscription >= 1")
    pod_endpoints = half * down
    pods = _ceil_div(len(nics), pod_endpoints)
    if pods > spec.radix:
        raise TopologyError(f"{len(nics)} endpoints need {pods} pods; a {spec.radix}-port core reaches "
                            f"{spec.radix}; use a larger --radix")
    aggs_by_pod = []
    for pod in range(pods):
        members = nics[pod * pod_endpoints:(pod + 1) * pod_endpoints]
        edges = [add_switch(g, f"pod{pod}.edge{e}", 0, "leaf") for e in range(_ceil_div(len(members), down))]
        for i, nic in enumerate(members):
            attach(g, spec, nic, edges[i // down])
        aggs = [add_switch(g, f"pod{pod}.agg{a}", 1, "agg") for a in range(up)]
        for edge in edges:
            for agg in aggs:
                connect(g, spec, edge, agg)
        aggs_by_pod.append(aggs)
    if pods == 1:
        return
    cores, lanes = _spread(half, pods, spec.radix)
    for a in range(up):  # aggregation switch a of every pod reaches core group a
        for c in range(cores):
            core = add_switch(g, f"core{a}.{c}", 2, "core")
            for aggs in aggs_by_pod:
                connect(g, spec, aggs[a], core, lanes)
