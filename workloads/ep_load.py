"""From routed expert ids to EP load: per-GPU-pair traffic, per-expert and per-GPU token counts, link factors.

DeepSeek-style all-to-all (TR §3.2.2): a token crosses InfiniBand once per remote node it reaches, to the GPU
with the same in-node index, then NVLink forwards it to each GPU of that node hosting one of its experts; a
GPU's grouped GEMMs process one row per (token, local expert copy). Sources are statistically alike (the
routing models do not depend on the source GPU), so from the fraction of tokens that reach each GPU and each
node follow: the per-pair traffic matrix, the load on every GPU's InfiniBand and NVLink links, and each GPU's
grouped-GEMM rows. In representative mode the slowest GPU sets the pace: the busiest link prices dispatch and
combine, the busiest GPU's rows price the expert GEMMs.

Optional redundant experts (a load balancer like DeepSeek's EPLB): the hottest experts get extra copies, each
placed on the least-loaded GPU of the expert's own node, so the node-limited traffic is unchanged; an expert's
tokens are split evenly over its copies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from moesim.workloads.routing import EpTraffic, RoutingInputs, balanced_ep_traffic, sample_routing


@dataclass(frozen=True)
class ExpertPlacement:
    """``copies[e]``: the GPUs (EP ranks) holding expert e; the first is its home GPU."""

    copies: tuple[tuple[int, ...], ...]

    @property
    def redundant(self) -> int:
        return sum(len(c) - 1 for c in self.copies)


def place_experts(expert_share: np.ndarray, ep: int, gpus_per_node: int, redundant: int = 0) -> ExpertPlacement:
    """Home placement (expert e on GPU e // (experts/ep)) plus ``redundant`` copies of the hottest experts,
    each on the least-loaded GPU of the expert's node that does not hold it yet."""
    experts = len(expert_share)
    per_gpu = experts // ep
    per_node = min(ep, gpus_per_node)
    counts = np.ones(experts, dtype=int)
    for _ in range(redundant):  # each copy goes to the expert with the highest load per copy
        counts[int(np.argmax(expert_share / counts))] += 1
    copies = [[e // per_gpu] for e in range(experts)]
    load = np.zeros(ep)
    for e in range(experts):
        load[e // per_gpu] += expert_share[e] / counts[e]
    for e in np.argsort(-expert_share / counts, kind="stable"):
        node = copies[e][0] // per_node
        for _ in range(counts[e] - 1):
            gpus = [g for g in range(node * per_node, (node + 1) * per_node) if g not in copies[e]]
            gpus = gpus or list(range(node * per_node, (node + 1) * per_node))
            target = min(gpus, key=lambda g: (load[g], g))
            copies[e].append(target)
            load[target] += expert_share[e] / counts[e]
    return ExpertPlacement(tuple(tuple(c) for c in copies))


@dataclass(frozen=True)
class EpLoad:
    """The EP load of one MoE layer (averaged over the sampled layers).

    ``expert_share`` (experts,): each expert's share of picks (sums to 1). ``gpu_rows`` (ep,): grouped-GEMM rows
    per GPU relative to the mean. ``gpu_reach`` (ep,) and ``node_reach`` (nodes,): fraction of a source's tokens
    that reach each GPU / node. ``traffic`` (ep, ep): tokens GPU s sends GPU d per token s routes.
    ``stats``: the per-token link traffic and the busiest links' factors, for the network model.
    """

    routing: str
    expert_share: np.ndarray
    gpu_rows: np.ndarray
    gpu_reach: np.ndarray
    node_reach: np.ndarray
    traffic: np.ndarray
    stats: EpTraffic
    placement: ExpertPlacement

    @property
    def gemm_factor(self) -> float:
        """The busiest GPU's grouped-GEMM rows relative to the mean (1 = balanced)."""
        return float(self.gpu_rows.max())

    @property
    def busiest_gpu(self) -> int:
        return int(np.argmax(self.gpu_rows))

    def capped(self, capacity_factor: float) -> tuple[float, float]:
        """Token dropping at ``capacity_factor`` (Megatron's --moe-expert-capacity-factor: an expert takes at most
        capacity_factor × its balanced share 1/experts of the picks): (fraction of picks kept, the busiest GPU's
        kept grouped-GEMM rows relative to the mean kept rows). Picks over capacity are dropped before dispatch."""
        kept, rows = self.capped_rows(capacity_factor)
        return kept, float(rows.max())

    def capped_rows(self, capacity_factor: float) -> tuple[float, np.ndarray]:
        """(fraction of picks kept, each GPU's kept grouped-GEMM rows relative to the mean) at ``capacity_factor``
        (:meth:`capped`)."""
        experts = len(self.expert_share)
        kept = np.minimum(self.expert_share, capacity_factor / experts)
        rows = np.zeros(len(self.gpu_rows))
        for e, gpus in enumerate(self.placement.copies):
            for g in gpus:
                rows[g] += kept[e] / len(gpus)
        return float(kept.sum()), rows / rows.mean()

    def to_dict(self) -> dict:
        return {"routing": self.routing, "gemm_factor": self.gemm_factor, "busiest_gpu": self.busiest_gpu,
                "ib_link_factor": self.stats.ib_link_factor, "nvl_link_factor": self.stats.nvl_link_factor,
                "ib_nodes_per_token": self.stats.ib_nodes, "nvl_copies_per_token": self.stats.nvl_copies,
                "redundant_experts": self.placement.redundant, "gpu_rows": self.gpu_rows.round(4).tolist(),
                "node_reach": self.node_reach.round(4).tolist(), "gpu_reach": self.gpu_reach.round(4).tolist(),
                "expert_share": self.expert_share.round(6).tolist(), "traffic": self.traffic.round(4).tolist()}


def ep_load(expert_ids: np.ndarray, experts: int, ep: int, gpus_per_node: int, redundant: int = 0,
            seed: int = 0, routing: str = "sampled") -> EpLoad:
    """EP load of expert ids (layers, tokens, top_k) on an EP group of ``ep`` GPUs."""
    if expert_ids.ndim == 2:
        expert_ids = expert_ids[None]
    per_node = min(ep, gpus_per_node)
    nodes = max(1, ep // per_node)
    rng = np.random.default_rng(seed)
    picks = np.stack([np.bincount(layer.ravel(), minlength=experts) for layer in expert_ids]).astype(float)
    share = picks.sum(axis=0) / picks.sum()
    placement = place_experts(share, ep, gpus_per_node, redundant)
    rows, reach, node_reach = [], [], []
    for layer, layer_picks in zip(expert_ids, picks):
        layer_share = layer_picks / layer_picks.sum()
        gpu_rows = np.zeros(ep)
        for e, gpus in enumerate(placement.copies):
            for g in gpus:
                gpu_rows[g] += layer_share[e] / len(gpus)
        rows.append(gpu_rows / gpu_rows.mean())
        gpu = _pick_gpus(layer, placement, rng)  # (tokens, top_k) GPU of each pick
        reach.append(_reach(gpu, ep))
        node_reach.append(_reach(gpu // per_node, nodes))
    gpu_rows, gpu_reach, node_hits = (np.mean(x, axis=0) for x in (rows, reach, node_reach))
    ib_nodes = float(node_hits.sum() - node_hits.mean()) if nodes > 1 else 0.0
    nvl_copies = float(gpu_reach.sum() * (1 - 1 / per_node))
    # Per-layer busiest links, averaged: each layer's all-to-all waits for its own busiest link.
    ib_factor = float(np.mean([r.max() / r.mean() for r in node_reach])) if nodes > 1 else 1.0
    nvl_factor = float(np.mean([r.max() / r.mean() for r in reach]))
    traffic = np.tile(gpu_reach, (ep, 1))
    np.fill_diagonal(traffic, 0.0)
    stats = EpTraffic(ib_nodes, nvl_copies, float(gpu_rows.max()), ib_factor, nvl_factor)
    return EpLoad(routing, share, gpu_rows, gpu_reach, node_hits, traffic, stats, placement)


def _pick_gpus(ids: np.ndarray, placement: ExpertPlacement, rng: np.random.Generator) -> np.ndarray:
    """The GPU serving each pick: an expert's copies share its tokens evenly (chosen at random)."""
    ncopies = np.array([len(c) for c in placement.copies])
    width = ncopies.max()
    table = np.array([list(c) + [c[0]] * (width - len(c)) for c in placement.copies])
    choice = (rng.random(ids.shape) * ncopies[ids]).astype(int)
    return table[ids, choice]


def _reach(targets: np.ndarray, size: int) -> np.ndarray:
    """Fraction of tokens (rows) with at least one pick on each target."""
    hit = np.zeros((targets.shape[0], size), dtype=bool)
    np.put_along_axis(hit, targets, True, axis=1)
    return hit.mean(axis=0)


def balanced_load(experts: int, top_k: int, groups: int, groups_per_token: int, ep: int, gpus_per_node: int,
                  redundant: int, seed: int) -> EpLoad:
    """Balanced routing: equal loads by construction; the per-token link traffic from the sampled gate."""
    stats = balanced_ep_traffic(experts, top_k, groups, groups_per_token, ep, gpus_per_node, seed)
    per_node = min(ep, gpus_per_node)
    nodes = max(1, ep // per_node)
    share = np.full(experts, 1.0 / experts)
    placement = place_experts(share, ep, gpus_per_node, redundant)
    gpu_reach = np.full(ep, (stats.nvl_copies / (1 - 1 / per_node)) / ep if per_node > 1 else top_k / ep)
    traffic = np.tile(gpu_reach, (ep, 1))
    np.fill_diagonal(traffic, 0.0)
    node_reach = np.full(nodes, stats.ib_nodes / max(1, nodes - 1) if nodes > 1 else 1.0)
    return EpLoad("balanced", share, np.ones(ep), gpu_reach, node_reach, traffic,
                  EpTraffic(stats.ib_nodes, stats.nvl_copies, 1.0), placement)


def scenario_ep_load(scenario, gpus_per_node: int | None = None) -> EpLoad | None:
    """The EP load of a scenario's routing (``routing`` section), or None for a dense model.
    ``gpus_per_node``: EP group members per node (default: as many as fit on a node)."""
    moe = scenario.model.moe
    if moe is None:
        return None
    r = scenario.routing
    gpus_per_node = gpus_per_node or min(scenario.parallelism.ep, scenario.cluster.node.gpus_per_node)
    return _cached_load(r.name, RoutingInputs(moe.routed_experts, moe.top_k, moe.groups, moe.groups_per_token,
                                              moe.gating, scenario.model.hidden, r.zipf_alpha, r.file,
                                              r.gate_weights, scenario.run.seed),
                        scenario.parallelism.ep, gpus_per_node, r.redundant_experts,
                        _stamp(r.file), _stamp(r.gate_weights))


@dataclass(frozen=True)
class EpRouting:
    """What every network model prices EP dispatch and combine from: the per-token ``traffic`` of the scenario's
    routing (with its busiest-link factors, for closed-form pricing) and, for skewed routing, each EP member's
    (``gpu_weight``) and each node's (``node_weight``) share of the tokens relative to the mean (for pricing on the
    graph, transfer by transfer); both None when routing is balanced (every transfer carries the mean)."""

    traffic: EpTraffic
    gpu_weight: np.ndarray | None = None
    node_weight: np.ndarray | None = None


def scenario_ep_routing(scenario, gpus_per_node: int | None = None) -> EpRouting | None:
    """The one routing truth of a scenario's EP all-to-all (None for a dense model): the analytic, graph,
    faulted and flow network models all take it from here, so they price the same routing."""
    load = scenario_ep_load(scenario, gpus_per_node)
    if load is None:
        return None
    if load.routing == "balanced":
        return EpRouting(load.stats)
    reach, nodes = load.gpu_reach, load.node_reach
    return EpRouting(load.stats, reach / reach.mean(), nodes / nodes.mean())


def _stamp(path: str | None) -> tuple:
    """A file's identity for the cache: a rewritten routing or gate file is read again."""
    if not path or not os.path.exists(path):
        return ()
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=32)
def _cached_load(name: str, inputs: RoutingInputs, ep: int, gpus_per_node: int, redundant: int,
                 *file_stamps: tuple) -> EpLoad:
    if name == "balanced":
        return balanced_load(inputs.experts, inputs.top_k, inputs.groups, inputs.groups_per_token, ep,
                             gpus_per_node, redundant, inputs.seed)
    ids = sample_routing(name, inputs)
    return ep_load(ids, inputs.experts, ep, gpus_per_node, redundant, inputs.seed, name)
