"""Routes between GPUs: ECMP over equal-cost fabric paths, NVLink forwarding where the fabric cannot reach.

A :class:`Route` is the set of directed links a GPU-to-GPU transfer loads, each with the fraction of the
transfer it carries (ECMP splits evenly over the equal-cost next hops at every switch, weighted by parallel
cables). Between servers a transfer leaves through the source GPU's own NIC when the fabric connects it to the
destination GPU's NIC; otherwise (another plane of a multi-plane fat-tree, another rail, a failed NIC link) it is
first forwarded over NVLink to a GPU of the same server whose NIC can reach it ("Insights into DeepSeek-V3"
§5.1: cross-plane traffic is forwarded inside the node), and if need be forwarded again at the destination.
Removing links or switches (:func:`fail`) gives a new graph whose :class:`Router` recomputes everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from topologies.graph import nodes_of_kind
from topologies.spec import TopologyError


class RoutingError(TopologyError):
    """No path between two GPUs (after failures)."""


@dataclass(frozen=True)
class Route:
    """Directed link ids (see :attr:`Router.links`) with the fraction of the bytes each carries."""

    links: np.ndarray
    weights: np.ndarray
    latency_us: float


def fail(g: nx.DiGraph, links=(), switches=()) -> nx.DiGraph:
    """A copy of ``g`` without the given switches and cables.

    Each ``(u, v)`` pair removes one cable between ``u`` and ``v`` (both directions): a link that folds several
    parallel cables (``lanes``) loses one lane's capacity; list a pair again to remove more.
    """
    out = g.copy()
    for u, v in links:
        if not out.has_edge(u, v):
            raise TopologyError(f"no link {u} -> {v} to fail; name a cable as it appears in the graph")
        for a, b in ((u, v), (v, u)):
            edge = out.edges[a, b]
            if edge["lanes"] > 1:
                edge["capacity_gbps"] -= edge["capacity_gbps"] / edge["lanes"]
                edge["lanes"] -= 1
            else:
                out.remove_edge(a, b)
    for s in switches:
        if s not in out or out.nodes[s]["kind"] != "switch":
            raise TopologyError(f"no switch {s!r} to fail")
        out.remove_node(s)
    return out


class Router:
    """Routes on one cluster graph; every directed link gets an integer id for array arithmetic."""

    def __init__(self, g: nx.DiGraph):
        self.g = g
        self.links: list[tuple[str, str]] = list(g.edges())
        self.link_id = {e: i for i, e in enumerate(self.links)}
        self.capacity_gbps = np.array([g.edges[e]["capacity_gbps"] for e in self.links])
        self.latency_us = np.array([g.edges[e]["latency_us"] for e in self.links])
        self.link_class = np.array([g.edges[e]["link"] for e in self.links])
        self.gpus = sorted(nodes_of_kind(g, "gpu"), key=lambda n: (g.nodes[n]["node"], g.nodes[n]["index"]))
        self._by_node: dict[int, list[str]] = {}
        for gpu in self.gpus:
            self._by_node.setdefault(g.nodes[gpu]["node"], []).append(gpu)
        fabric = g.subgraph(nodes_of_kind(g, "switch"))
        self._fabric = fabric
        self._component = {s: i for i, comp in enumerate(nx.weakly_connected_components(fabric)) for s in comp}
        self._dist: dict[str, dict[str, int]] = {}
        self._ecmp: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
        self._routes: dict[tuple[str, str], Route] = {}
        self._nics: dict[str, list[str]] = {}
        self._switch: dict[str, str | None] = {}
        self._ecmp_arrays: dict[tuple[str, str], tuple[list[int], list[float]]] = {}

    # --- the pieces of a route ------------------------------------------------------------------------
    def nics_of(self, gpu: str) -> list[str]:
        """NICs on the GPU's PCIe links that are cabled to a switch."""
        nics = self._nics.get(gpu)
        if nics is None:
            nics = self._nics[gpu] = [n for n in self.g.successors(gpu)
                                      if self.g.nodes[n]["kind"] == "nic" and self.switch_of(n)]
        return nics

    def switch_of(self, nic: str) -> str | None:
        if nic not in self._switch:
            self._switch[nic] = next((s for s in self.g.successors(nic) if self.g.nodes[s]["kind"] == "switch"),
                                     None)
        return self._switch[nic]

    def node_of(self, gpu: str) -> int:
        return self.g.nodes[gpu]["node"]

    def server_gpus(self, node: int) -> list[str]:
        return self._by_node[node]

    def nvswitch(self, gpu: str) -> str:
        return f"n{self.node_of(gpu)}.nvs"

    def fabric_ecmp(self, a: str, b: str) -> dict[tuple[str, str], float]:
        """Fraction of a switch-to-switch transfer on each fabric link, ECMP at every hop."""
        key = (a, b)
        if key in self._ecmp:
            return self._ecmp[key]
        if b not in self._dist:
            self._dist[b] = nx.single_source_shortest_path_length(self._fabric.reverse(copy=False), b)
        dist = self._dist[b]
        share: dict[tuple[str, str], float] = {}
        frontier = {a: 1.0}
        while frontier:
            nxt: dict[str, float] = {}
            for u, w in frontier.items():
                if u == b:
                    continue
                hops = [(v, self.g.edges[u, v]["lanes"]) for v in self._fabric.successors(u)
                        if dist.get(v, -1) == dist[u] - 1]
                total = sum(lanes for _, lanes in hops)
                for v, lanes in hops:
                    part = w * lanes / total
                    share[(u, v)] = share.get((u, v), 0.0) + part
                    nxt[v] = nxt.get(v, 0.0) + part
            frontier = nxt
        self._ecmp[key] = share
        return share

    def _reachable(self, nic_a: str, nic_b: str) -> bool:
        sa, sb = self.switch_of(nic_a), self.switch_of(nic_b)
        return sa is not None and sb is not None and self._component[sa] == self._component[sb]

    def _nvlink(self, ids: list[int], weights: list[float], src: str, dst: str, w: float) -> None:
        if src != dst:
            nvs = self.nvswitch(src)
            ids += (self.link_id[(src, nvs)], self.link_id[(nvs, dst)])
            weights += (w, w)

    def _fabric_arrays(self, a: str, b: str) -> tuple[list[int], list[float]]:
        key = (a, b)
        if key not in self._ecmp_arrays:
            share = self.fabric_ecmp(a, b)
            self._ecmp_arrays[key] = ([self.link_id[e] for e in share], list(share.values()))
        return self._ecmp_arrays[key]

    def _plan(self, src: str, dst: str) -> list[tuple[str, str, str, str]]:
        """(egress GPU, egress NIC, ingress NIC, ingress GPU) options of the most preferred tier."""
        direct = [(src, ne, ni, dst) for ne in self.nics_of(src) for ni in self.nics_of(dst) if self._reachable(ne, ni)]
        if direct:
            return direct
        src_server = self.server_gpus(self.node_of(src))
        dst_server = self.server_gpus(self.node_of(dst))
        relays_src = [x for x in src_server if x != src]
        relays_dst = [x for x in dst_server if x != dst]
        # Prefer the relay with the destination's in-node index (DeepSeek's same-index rule), then any.
        same_index = [x for x in relays_src if self.g.nodes[x]["index"] == self.g.nodes[dst]["index"]]
        for eg, ig in ((same_index, [dst]), (relays_src, [dst]), ([src], relays_dst),
                       (relays_src, relays_dst)):
            options = [(e, ne, ni, i) for e in eg for ne in self.nics_of(e) for i in ig for ni in self.nics_of(i)
                       if self._reachable(ne, ni)]
            if options:
                return options
        raise RoutingError(f"no route from {src} to {dst}: the fabric does not connect their servers")

    def route(self, src: str, dst: str) -> Route:
        """The route of a transfer from GPU ``src`` to GPU ``dst`` (cached). A link may appear more than once
        (several options through it); its fractions add up."""
        key = (src, dst)
        if key in self._routes:
            return self._routes[key]
        ids: list[int] = []
        weights: list[float] = []
        if src != dst and self.node_of(src) == self.node_of(dst):
            self._nvlink(ids, weights, src, dst, 1.0)
        elif src != dst:
            options = self._plan(src, dst)
            w = 1.0 / len(options)
            link_id = self.link_id
            for eg, ne, ni, ig in options:
                self._nvlink(ids, weights, src, eg, w)
                sa, sb = self.switch_of(ne), self.switch_of(ni)
                ids += (link_id[(eg, ne)], link_id[(ne, sa)], link_id[(sb, ni)], link_id[(ni, ig)])
                weights += (w, w, w, w)
                fab_ids, fab_w = self._fabric_arrays(sa, sb)
                ids += fab_ids
                weights += [w * x for x in fab_w] if w != 1.0 else fab_w
                self._nvlink(ids, weights, ig, dst, w)
        id_array = np.array(ids, dtype=np.int64)
        weight_array = np.array(weights, dtype=float)
        latency = float(weight_array @ self.latency_us[id_array]) if ids else 0.0
        route = self._routes[key] = Route(id_array, weight_array, latency)
        return route

    def path_links(self, src: str, dst: str) -> list[tuple[str, str, float]]:
        """The route as readable ``(u, v, fraction)`` triples."""
        r = self.route(src, dst)
        merged: dict[int, float] = {}
        for i, w in zip(r.links.tolist(), r.weights.tolist()):
            merged[i] = merged.get(i, 0.0) + w
        return [(*self.links[i], w) for i, w in merged.items()]
