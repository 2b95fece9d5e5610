"""Direct networks of routers: the canonical dragonfly and the Slim Fly (MMS graphs).

Dragonfly (Kim, Dally, Scott, Abts, ISCA 2008): groups of ``a`` routers, all-to-all inside a group; each router
has ``p`` endpoints and ``h`` global links; at most ``a·h + 1`` groups, each pair joined by global links. The
balanced default is p = h = radix/4, a = radix/2.

Slim Fly (Besta & Hoefler, SC 2014): the McKay–Miller–Širáň graph of a prime ``q = 4w + δ`` (δ = ±1), 2q²
routers of network radix (3q − δ)/2, diameter 2; each router takes p ≈ half its network radix endpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: building a graph needs networkx, sizing one does not
    import networkx as nx

from moesim.topologies.graph import add_switch, attach, connect
from moesim.topologies.spec import FabricSpec, TopologyError


def dragonfly_shape(spec: FabricSpec) -> tuple[int, int, int, int]:
    """(p, a, h, largest group count) for this spec, checked against the radix."""
    p = spec.p or spec.radix // 4
    a = spec.a or spec.radix // 2
    h = spec.h or spec.radix // 4
    if p + (a - 1) + h > spec.radix:
        raise TopologyError(f"dragonfly p+a-1+h = {p}+{a - 1}+{h} = {p + a - 1 + h} ports exceeds "
                            f"--radix {spec.radix}; lower p, a or h")
    return p, a, h, a * h + 1


def dragonfly_capacity(spec: FabricSpec) -> int:
    p, a, _, max_groups = dragonfly_shape(spec)
    return p * a * (spec.groups or max_groups)


def dragonfly(g: nx.DiGraph, spec: FabricSpec, nics: list[str]) -> None:
    p, a, h, max_groups = dragonfly_shape(spec)
    groups = spec.groups or max(2, -(-len(nics) // (p * a)))
    if groups > max_groups:
        raise TopologyError(f"dragonfly groups={groups} exceeds a·h+1 = {max_groups}; lower --groups or raise h")
    routers = [[add_switch(g, f"g{i}.r{r}", 0, "router") for r in range(a)] for i in range(groups)]
    for i, nic in enumerate(nics):
        attach(g, spec, nic, routers[i // (p * a)][(i // p) % a])
    for group in routers:
        for x in range(a):
            for y in range(x + 1, a):
                connect(g, spec, group[x], group[y])
    # Global links: every pair of groups gets the same number of links; ports taken round-robin in each group.
    per_pair = (a * h) // (groups - 1)
    next_port = [0] * groups
    for i in range(groups):
        for j in range(i + 1, groups):
            for _ in range(per_pair):
                ri, rj = next_port[i] // h, next_port[j] // h
                next_port[i] += 1
                next_port[j] += 1
                connect(g, spec, routers[i][ri], routers[j][rj])


# --- Slim Fly -------------------------------------------------------------------------------------------
def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def _primitive_root(q: int) -> int:
    factors = {d for d in range(2, q) if (q - 1) % d == 0 and _is_prime(d)}
    return next(x for x in range(2, q) if all(pow(x, (q - 1) // f, q) != 1 for f in factors))


def slimfly_shape(q: int, radix: int) -> tuple[int, int]:
    """(network radix k', endpoints per router p) of the MMS graph of prime ``q`` on ``radix``-port routers."""
    delta = 1 if q % 4 == 1 else -1
    net_radix = (3 * q - delta) // 2
    p = min(radix - net_radix, -(-net_radix // 2))
    return net_radix, p


def slimfly_q(spec: FabricSpec, endpoints: int | None) -> int:
    """The prime ``q``: given, the smallest that holds ``endpoints``, or the largest the radix allows."""
    if spec.q is not None:
        if not _is_prime(spec.q) or spec.q % 4 not in (1, 3):
            raise TopologyError(f"slimfly q={spec.q} must be an odd prime (q = 4w ± 1)")
        return spec.q
    fits = [q for q in range(3, 4 * spec.radix) if _is_prime(q) and slimfly_shape(q, spec.radix)[1] >= 1
            and slimfly_shape(q, spec.radix)[1] * 2 >= slimfly_shape(q, spec.radix)[0] - 1]
    if not fits:
        raise TopologyError(f"no Slim Fly fits --radix {spec.radix}; use a larger radix")
    if endpoints is None:
        return fits[-1]
    for q in fits:
        if 2 * q * q * slimfly_shape(q, spec.radix)[1] >= endpoints:
            return q
    return fits[-1]


def slimfly_capacity(spec: FabricSpec) -> int:
    q = slimfly_q(spec, spec.gpus)
    return 2 * q * q * slimfly_shape(q, spec.radix)[1]


def mms_edges(q: int) -> list[tuple[tuple, tuple]]:
    """Edges of the MMS graph of prime q between routers (0, x, y) and (1, m, c)."""
    delta = 1 if q % 4 == 1 else -1
    w = (q - delta) // 4
    xi = _primitive_root(q)
    if delta == 1:
        x_set = {pow(xi, e, q) for e in range(0, q - 1, 2)}
        x2_set = {pow(xi, e, q) for e in range(1, q - 1, 2)}
    else:
        x_set = {pow(xi, e, q) for e in list(range(0, 2 * w - 1, 2)) + list(range(2 * w - 1, 4 * w - 2, 2))}
        x2_set = {pow(xi, e, q) for e in list(range(1, 2 * w, 2)) + list(range(2 * w, 4 * w - 1, 2))}
    edges = []
    for x in range(q):
        for y in range(q):
            for y2 in range(y + 1, q):
                if (y - y2) % q in x_set:
                    edges.append(((0, x, y), (0, x, y2)))
                if (y - y2) % q in x2_set:
                    edges.append(((1, x, y), (1, x, y2)))
            for m in range(q):
                edges.append(((0, x, y), (1, m, (y - m * x) % q)))
    return edges


def slimfly(g: nx.DiGraph, spec: FabricSpec, nics: list[str]) -> None:
    q = slimfly_q(spec, len(nics))
    _, p = slimfly_shape(q, spec.radix)
    if len(nics) > 2 * q * q * p:
        raise TopologyError(f"slimfly q={q} holds {2 * q * q * p} endpoints, asked {len(nics)}; raise q or --radix")
    order = [(s, x, y) for s in (0, 1) for x in range(q) for y in range(q)]
    names = {r: add_switch(g, f"sf{r[0]}.{r[1]}.{r[2]}", 0, "router") for r in order}
    for i, nic in enumerate(nics):
        attach(g, spec, nic, names[order[i // p]])
    for u, v in mms_edges(q):
        connect(g, spec, names[u], names[v])
