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
from functools import cached_property

import networkx as nx
import numpy as np

from moesim.topologies.graph import nodes_of_kind
from moesim.topologies.spec import TopologyError


class RoutingError(TopologyError):
    """No path between two GPUs (after failures)."""


@dataclass(frozen=True)
class Route:
    """Directed link ids (see :attr:`Router.links`) with the fraction of the bytes each carries."""

    links: np.ndarray
    weights: np.ndarray
    latency_us: float
    # Per link: -1 for a link of a server (NVLink, PCIe, NIC-switch), -2 for the NIC-switch link that starts a
    # switch-to-switch (ECMP) segment (GPU-NIC, NIC-switch, switch-NIC, NIC-GPU, then the segment), else the
    # link's position in that segment.
    fabric_pos: np.ndarray | None = None


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
        self._signatures: dict[int, tuple] = {}

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

    @cached_property
    def _fabric_adjacency(self) -> tuple[dict[str, list[tuple[str, int]]], dict[str, list[str]]]:
        """Switch-to-switch links as plain lists (a networkx subgraph view is slow to walk): per switch its
        (next switch, lanes) in the graph's order, and the switches linking to it."""
        fabric = set(self._fabric)
        succ = {u: [(v, d["lanes"]) for v, d in self.g.succ[u].items() if v in fabric] for u in fabric}
        pred = {v: [u for u in self.g.pred[v] if u in fabric] for v in fabric}
        return succ, pred

    @cached_property
    def _fabric_lanes(self) -> dict[str, dict[str, int]]:
        """Lanes of each switch-to-switch link, by its two ends."""
        return {u: dict(hops) for u, hops in self._fabric_adjacency[0].items()}

    def fabric_ecmp(self, a: str, b: str) -> dict[tuple[str, str], float]:
        """Fraction of a switch-to-switch transfer on each fabric link, ECMP at every hop."""
        key = (a, b)
        if key in self._ecmp:
            return self._ecmp[key]
        succ, pred = self._fabric_adjacency
        lanes_to = self._fabric_lanes
        if b not in self._dist:  # hops from every switch to b (breadth first over the fabric's reverse)
            dist = {b: 0}
            level = [b]
            while level:
                nxt_level = []
                for v in level:
                    for u in pred[v]:
                        if u not in dist:
                            dist[u] = dist[v] + 1
                            nxt_level.append(u)
                level = nxt_level
            self._dist[b] = dist
        dist = self._dist[b]
        share: dict[tuple[str, str], float] = {}
        frontier = {a: 1.0}
        while frontier:
            nxt: dict[str, float] = {}
            for u, w in frontier.items():
                if u == b:
                    continue
                if dist[u] == 1:  # one hop from b: b is the only switch closer to it
                    hops = [(b, lanes_to[u][b])]
                else:
                    hops = [(v, lanes) for v, lanes in succ[u] if dist.get(v, -1) == dist[u] - 1]
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
        fabric_pos: list[int] = []
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
                fabric_pos += [-1] * (len(ids) - len(fabric_pos) - 4) + [-1, -2, -1, -1] + list(range(len(fab_ids)))
                ids += fab_ids
                weights += [w * x for x in fab_w] if w != 1.0 else fab_w
                self._nvlink(ids, weights, ig, dst, w)
        fabric_pos += [-1] * (len(ids) - len(fabric_pos))
        id_array = np.array(ids, dtype=np.int64)
        weight_array = np.array(weights, dtype=float)
        latency = float(weight_array @ self.latency_us[id_array]) if ids else 0.0
        route = self._routes[key] = Route(id_array, weight_array, latency, np.array(fabric_pos, dtype=np.int64))
        return route

    # --- symmetry: a route moved by whole servers -------------------------------------------------------
    def server_signature(self, node: int) -> tuple:
        """What routing sees of server ``node``: per GPU, its NICs that reach a switch and that switch's
        fabric component. Two servers with equal signatures route alike (same options, relative to them)."""
        sig = self._signatures.get(node)
        if sig is None:
            sig = self._signatures[node] = tuple(
                tuple((self.g.nodes[n]["index"], self._component[self.switch_of(n)]) for n in self.nics_of(gpu))
                for gpu in self._by_node.get(node, ()))
        return sig

    @cached_property
    def _server_links(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(server of each link, its slot in the server, table[server, slot] -> link id, each link's two ends as
        node numbers): a link of a server is one touching its GPUs, NVSwitch or NICs; -1 for the rest."""
        nodes = list(self.g.nodes)
        number = {n: i for i, n in enumerate(nodes)}
        data = self.g.nodes
        code: dict = {}
        server = np.full(len(nodes), -1, dtype=np.int64)
        local = [None] * len(nodes)
        for i, n in enumerate(nodes):
            d = data[n]
            if d["kind"] in ("gpu", "nic", "nvswitch"):
                server[i] = d["node"]
                local[i] = (d["kind"], d["index"])
        ends = np.array([(number[u], number[v]) for u, v in self.links], dtype=np.int64).reshape(-1, 2)
        link_server = np.where(server[ends[:, 0]] >= 0, server[ends[:, 0]], server[ends[:, 1]])
        link_slot = np.full(len(self.links), -1, dtype=np.int64)
        for i in np.flatnonzero(link_server >= 0).tolist():
            u, v = ends[i]
            link_slot[i] = code.setdefault((local[u], local[v]), len(code))
        servers = int(server.max()) + 1 if len(server) else 0
        table = np.full((servers, max(1, len(code))), -1, dtype=np.int64)
        rows = link_server >= 0
        table[link_server[rows], link_slot[rows]] = np.flatnonzero(rows)
        self._node_names = nodes
        return link_server, link_slot, table, ends[:, 0].copy(), ends[:, 1].copy()

    def shift_links(self, links: np.ndarray, fabric_pos: np.ndarray, servers: int) -> np.ndarray | None:
        """The links of routes (concatenated, ``fabric_pos`` as in :class:`Route`) moved ``servers`` servers on:
        exactly the links the routes between the moved GPUs load, or None where the move is not a symmetry
        (a link missing there, or switches whose ECMP spread differs). The caller checks server signatures."""
        link_server, link_slot, table, src_node, dst_node = self._server_links
        out = links.copy()
        local = fabric_pos < 0
        moved = link_server[links[local]] + servers
        if (link_server[links[local]] < 0).any() or (moved < 0).any() or (moved >= len(table)).any():
            return None
        out[local] = table[moved, link_slot[links[local]]]
        if (out[local] < 0).any():
            return None
        starts = np.flatnonzero(fabric_pos == -2)  # NIC -> switch; the switch -> NIC link follows
        if len(starts):
            old_pair = dst_node[links[starts]] * len(dst_node) + src_node[links[starts + 1]]
            new_pair = dst_node[out[starts]] * len(dst_node) + src_node[out[starts + 1]]
            _, old_index = np.unique(old_pair, return_inverse=True)
            new_keys, new_index = np.unique(new_pair, return_inverse=True)
            first, inverse = np.unique(old_index.reshape(-1) * len(new_keys) + new_index.reshape(-1),
                                       return_index=True, return_inverse=True)[1:]
            names = self._node_names
            moved_ids = []
            for i in starts[first].tolist():
                a, b = int(dst_node[links[i]]), int(src_node[links[i + 1]])
                c, d = int(dst_node[out[i]]), int(src_node[out[i + 1]])
                old_ids, old_w = self._fabric_arrays(names[a], names[b])
                new_ids, new_w = self._fabric_arrays(names[c], names[d])
                if len(old_ids) != len(new_ids) or old_w != new_w:
                    return None  # the switches' ECMP spreads differ: not a symmetry
                moved_ids.append(np.asarray(new_ids, dtype=np.int64))
            fabric = np.flatnonzero(fabric_pos >= 0)
            if len(fabric):
                segment = np.searchsorted(starts, fabric) - 1  # the segment each fabric link belongs to
                key = inverse.reshape(-1)[segment]
                for k in np.unique(key).tolist():
                    sel = fabric[key == k]
                    out[sel] = moved_ids[k][fabric_pos[sel]]
        if not np.array_equal(self.latency_us[out], self.latency_us[links]):
            return None
        return out

    def path_links(self, src: str, dst: str) -> list[tuple[str, str, float]]:
        """The route as readable ``(u, v, fraction)`` triples."""
        r = self.route(src, dst)
        merged: dict[int, float] = {}
        for i, w in zip(r.links.tolist(), r.weights.tolist()):
            merged[i] = merged.get(i, 0.0) + w
        return [(*self.links[i], w) for i, w in merged.items()]
