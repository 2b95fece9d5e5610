"""Collective algorithms as sequences of phases of GPU-to-GPU transfers (before routing).

Members are GPU names in rank order. Bytes are per rank, as in :class:`moesim.workloads.ops.Comm`: what each member
contributes (all-reduce, reduce-scatter, all-gather: the full buffer; all-to-all: all it sends).

- ring reduce-scatter / all-gather: p−1 steps, each member sends bytes/p to the next; all-reduce is both.
- hierarchical (NVLink then IB): a ring inside every server at once, then rings across servers between members
  with the same position in their server, on 1/(members per server) of the data; all-gather mirrors it.
- tree all-reduce: NCCL's double binary tree — each half of the buffer is reduced up one of two complementary
  binary trees and broadcast back down, pipelined, so a step carries the whole half at once and pays the
  tree depth in latency.
- EP dispatch (DeepSeek-V3 TR §3.2.2): each token crosses IB once per remote target node, to the member with
  the same position (same in-node index) there, and is forwarded over NVLink to its expert GPUs; both hops run
  at once (DeepEP pipelines them). Combine is the reverse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from moesim.workloads.routing import EpTraffic


@dataclass
class Phase:
    """Concurrent transfers (src GPU, dst GPU, bytes), repeated ``repeat`` times in sequence."""

    name: str
    transfers: list[tuple[str, str, float]] = field(default_factory=list)
    repeat: int = 1
    latency_factor: float = 1.0


def by_server(node_of, members: list[str]) -> list[list[str]]:
    """Members grouped by server, in order of first appearance."""
    groups: dict[int, list[str]] = {}
    for m in members:
        groups.setdefault(node_of(m), []).append(m)
    return list(groups.values())


def _ring(rings: list[list[str]], chunk: float, name: str) -> Phase | None:
    transfers = [(r[i], r[(i + 1) % len(r)], chunk) for r in rings if len(r) > 1 for i in range(len(r))]
    steps = max((len(r) for r in rings), default=1) - 1
    return Phase(name, transfers, steps) if transfers and steps > 0 else None


def ring_phases(members: list[str], nbytes: float, kind: str) -> list[Phase]:
    """Flat ring ``kind`` (``reduce_scatter``, ``all_gather``, ``all_reduce``) over all members."""
    p = len(members)
    rs = _ring([members], nbytes / p, "reduce-scatter")
    ag = _ring([members], nbytes / p, "all-gather")
    chosen = {"reduce_scatter": [rs], "all_gather": [ag], "all_reduce": [rs, ag]}[kind]
    return [x for x in chosen if x]


def hierarchical_phases(node_of, members: list[str], nbytes: float, kind: str) -> list[Phase]:
    """NVLink rings inside servers, then IB rings across servers (a flat ring if servers hold unequal shares)."""
    servers = by_server(node_of, members)
    per = len(servers[0])
    if any(len(s) != per for s in servers):
        return ring_phases(members, nbytes, kind)
    columns = [[s[i] for s in servers] for i in range(per)]
    intra_rs = _ring(servers, nbytes / per, "reduce-scatter (NVLink)")
    inter_rs = _ring(columns, nbytes / per / len(servers), "reduce-scatter (IB)")
    inter_ag = _ring(columns, nbytes / per / len(servers), "all-gather (IB)")
    intra_ag = _ring(servers, nbytes / per, "all-gather (NVLink)")
    chosen = {"reduce_scatter": [intra_rs, inter_rs], "all_gather": [inter_ag, intra_ag],
              "all_reduce": [intra_rs, inter_rs, inter_ag, intra_ag]}[kind]
    return [x for x in chosen if x]


def tree_all_reduce(members: list[str], nbytes: float) -> list[Phase]:
    """Double binary tree all-reduce: tree A over the members, tree B over them reversed; half the data each."""
    p = len(members)
    if p < 2:
        return []
    depth = max(1, math.ceil(math.log2(p + 1)) - 1)
    up = []
    for order in (members, members[::-1]):
        for i in range(1, p):
            up.append((order[i], order[(i - 1) // 2], nbytes / 2))
    down = [(d, s, b) for s, d, b in up]
    return [Phase("tree reduce", up, 1, depth), Phase("tree broadcast", down, 1, depth)]


def all_to_all(members: list[str], nbytes: float, matrix=None) -> list[Phase]:
    """Direct all-to-all: each member sends nbytes/p to every other (or ``matrix[i][j]`` bytes from i to j)."""
    p = len(members)
    if matrix is None:
        transfers = [(a, b, nbytes / p) for a in members for b in members if a != b]
    else:
        transfers = [(members[i], members[j], float(matrix[i][j])) for i in range(p) for j in range(p)
                     if i != j and matrix[i][j] > 0]
    return [Phase("all-to-all", transfers)] if transfers else []


def send_recv(pairs: list[tuple[str, str]], nbytes: float) -> list[Phase]:
    return [Phase("send/recv", [(a, b, nbytes) for a, b in pairs if a != b])]


def ep_phases(node_of, members: list[str], tokens: int, token_bytes: float, traffic: EpTraffic,
              combine: bool = False, gpu_weight=None, node_weight=None) -> list[Phase]:
    """DeepSeek-style dispatch (or combine, reversed) of ``tokens`` tokens per member.

    Balanced routing sends every remote node and every GPU the same share. Skewed routing gives, per member
    and per node of the group, its share of the tokens relative to the mean (``gpu_weight``: tokens reaching
    each GPU; ``node_weight``: each node; both average 1): a transfer carries its target's share, so the NICs
    and NVLinks of hot experts' GPUs receive more (and, in combine, send more back).
    """
    servers = by_server(node_of, members)
    per = len(servers[0])
    transfers = []
    if len(servers) > 1:
        ib_bytes = tokens * traffic.ib_nodes / (len(servers) - 1) * token_bytes
        for a, src_server in enumerate(servers):
            for i, src in enumerate(src_server):
                for b, dst_server in enumerate(servers):
                    if a != b and i < len(dst_server):
                        weight = node_weight[b] if node_weight is not None else 1.0
                        transfers.append((src, dst_server[i], ib_bytes * weight))
    if per > 1:
        nvl_bytes = tokens * traffic.nvl_copies * token_bytes / (per - 1)
        for a, server in enumerate(servers):
            for j, y in enumerate(server):
                weight = gpu_weight[a * per + j] if gpu_weight is not None else 1.0
                transfers.extend((x, y, nvl_bytes * weight) for x in server if x != y)
    if combine:
        transfers = [(d, s, b) for s, d, b in transfers]
    return [Phase("ep combine" if combine else "ep dispatch", transfers)] if transfers else []


# A routed transfer holds its (src, dst, bytes) record and ~16 link ids and weights (int64 + float64) plus
# Python overhead: ~384 bytes. Beyond this much flow state a collective is refused before it is built.
FLOW_STATE_BYTES = 384
MAX_FLOW_STATE_GB = 4.0


def transfer_count(name: str, members: int, per_node: int) -> int:
    """GPU-to-GPU transfers of collective ``name`` (an algorithm of :data:`COLLECTIVES` or ep-dispatch /
    ep-combine) over ``members`` GPUs, ``per_node`` of them per node."""
    if name == "all-to-all":
        return members * (members - 1)
    if name.startswith("ep-"):
        nodes = -(-members // max(1, per_node))
        return members * (nodes - 1) + nodes * per_node * (per_node - 1)
    return 4 * members  # rings and trees: a few transfers per member and step


def check_flow_state(name: str, members: int, per_node: int, instances: int = 1) -> None:
    """Refuse (ValueError, one line with the size) a collective whose flows would not fit in memory."""
    flows = transfer_count(name, members, per_node) * instances
    need_gb = flows * FLOW_STATE_BYTES / 1e9
    if need_gb > MAX_FLOW_STATE_GB:
        over = f"{instances:,} × {members:,}" if instances > 1 else f"{members:,}"
        raise ValueError(f"{name} over {over} GPUs: {flows:,} flows, ~{need_gb:,.0f} GB to simulate (limit "
                         f"{MAX_FLOW_STATE_GB:g} GB); use fewer GPUs or the analytic network model")
