"""Describe a cluster graph: endpoints, switches per tier, links, bisection bandwidth, diameter."""

from __future__ import annotations

from collections import Counter

import networkx as nx

from moesim.topologies.graph import nodes_of_kind

DIAMETER_SOURCES = 256  # BFS sources for the diameter; the fabrics here are symmetric enough for a spread sample


def _cables(g: nx.DiGraph, link: str) -> int:
    """Physical cables of a link class (each cable is two directed edges, ``lanes`` parallel cables each)."""
    return sum(d["lanes"] for u, v, d in g.edges(data=True) if d["link"] == link and u < v)


def fabric_graph(g: nx.DiGraph) -> nx.Graph:
    """The switches and their cables, undirected."""
    switches = nodes_of_kind(g, "switch")
    return nx.Graph(g.subgraph(switches))


def diameter(g: nx.DiGraph) -> tuple[int, bool]:
    """(largest switch-to-switch hop count between two endpoint switches that can reach each other, exact?).

    Planes of a multi-plane fabric are separate components; the diameter is the largest within one.
    """
    fabric = fabric_graph(g)
    sources = sorted({v for u, v, d in g.edges(data=True) if d["link"] == "nic" and g.nodes[u]["kind"] == "nic"})
    exact = len(sources) <= DIAMETER_SOURCES
    if not exact:
        step = len(sources) / DIAMETER_SOURCES
        sources = [sources[int(i * step)] for i in range(DIAMETER_SOURCES)]
    endpoint_switches = set(sources) if exact else None
    worst = 0
    for s in sources:
        lengths = nx.single_source_shortest_path_length(fabric, s)
        if endpoint_switches is None:
            worst = max(worst, max(lengths.values()))
        else:
            worst = max(worst, max(d for t, d in lengths.items() if t in endpoint_switches))
    return worst, exact


def bisection_gbps(g: nx.DiGraph) -> float:
    """Max flow (GB/s, one direction) from the first half of the servers to the second over the fabric.

    Each half's NICs are folded into one virtual node per switch, so the flow problem has switch size.
    """
    half = g.graph["nodes"] // 2
    if half == 0:
        return 0.0
    flow = nx.DiGraph()
    for u, v, d in g.edges(data=True):
        if d["link"] == "fabric":
            flow.add_edge(u, v, capacity=d["capacity_gbps"])
        elif d["link"] == "nic" and g.nodes[u]["kind"] == "nic":
            side = "src" if g.nodes[u]["node"] < half else ("dst" if g.nodes[u]["node"] < 2 * half else None)
            if side == "src":
                _add(flow, "S", ("src", v), d["capacity_gbps"])
                _add(flow, ("src", v), v, d["capacity_gbps"])
            elif side == "dst":
                _add(flow, v, ("dst", v), d["capacity_gbps"])
                _add(flow, ("dst", v), "T", d["capacity_gbps"])
    if "S" not in flow or "T" not in flow:
        return 0.0
    return float(nx.maximum_flow_value(flow, "S", "T"))


def _add(flow: nx.DiGraph, u, v, capacity: float) -> None:
    if flow.has_edge(u, v):
        flow.edges[u, v]["capacity"] += capacity
    else:
        flow.add_edge(u, v, capacity=capacity)


def describe(g: nx.DiGraph, with_bisection: bool = True) -> dict:
    """A summary of the cluster graph; keys ``endpoints``, ``switches``, ``switch_links``, ``endpoint_links``."""
    switches = nodes_of_kind(g, "switch")
    tiers = Counter(g.nodes[s]["role"] for s in switches)
    hops, exact = diameter(g) if switches else (0, True)
    spec = g.graph["spec"]
    out = {
        "kind": g.graph["kind"],
        "radix": spec.radix,
        "gpus": len(nodes_of_kind(g, "gpu")),
        "nodes": g.graph["nodes"],
        "endpoints": sum(1 for n in nodes_of_kind(g, "nic") if any(
            g.edges[n, s]["link"] == "nic" for s in g.successors(n))),
        "switches": len(switches),
        "switches_per_tier": dict(sorted(tiers.items())),
        "switch_links": _cables(g, "fabric"),
        "endpoint_links": _cables(g, "nic"),
        "planes": len({g.nodes[s]["plane"] for s in switches}) if spec.kind in ("mpft", "rail") else 1,
        "diameter": hops,
        "diameter_exact": exact,
    }
    if with_bisection:
        out["bisection_gbps"] = bisection_gbps(g)
    if spec.rack is not None:  # the NVLink domains' physical parts, from the published rack description
        from moesim.topologies.racks import domain_parts

        out["nvlink_domain"] = {**domain_parts(spec.rack, g.graph["nodes"]), "gpus_used_per_domain": spec.gpus_per_node}
    return out
