"""Routing models: which experts each token picks, and what that means for the EP all-to-all.

``balanced`` samples a DeepSeek-style gate with independent uniform affinities: group-limited routing keeps
the ``groups_per_token`` groups with the highest sum of their two best affinities, then the top-k experts
inside them. Balanced in expectation, with the real node-limited structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAMPLE_TOKENS = 4096


def sample_balanced(experts: int, top_k: int, groups: int, groups_per_token: int, tokens: int,
                    seed: int) -> np.ndarray:
    """Expert ids, shape (tokens, top_k), from a group-limited top-k gate over uniform random affinities."""
    rng = np.random.default_rng(seed)
    scores = rng.random((tokens, experts))
    if groups > 1 and groups_per_token < groups:
        per_group = scores.reshape(tokens, groups, experts // groups)
        best_two = np.sort(per_group, axis=2)[:, :, -min(2, experts // groups):].sum(axis=2)
        kept = np.argsort(-best_two, axis=1)[:, :groups_per_token]
        mask = np.zeros((tokens, groups), dtype=bool)
        np.put_along_axis(mask, kept, True, axis=1)
        scores = np.where(np.repeat(mask, experts // groups, axis=1), scores, -1.0)
    return np.argsort(-scores, axis=1)[:, :top_k]


@dataclass(frozen=True)
class EpTraffic:
    """Per-token traffic of a DeepSeek-style dispatch from one source GPU, averaged over sampled tokens.

    ``ib_nodes``: remote nodes a token crosses InfiniBand to (once each, to the same-index GPU).
    ``nvl_copies``: NVLink forwards per token (to each distinct expert GPU other than the arrival GPU).
    ``max_gpu_share``: the busiest GPU's share of received token copies relative to the mean (1 = balanced).
    """

    ib_nodes: float
    nvl_copies: float
    max_gpu_share: float


def ep_traffic(expert_ids: np.ndarray, experts: int, ep: int, gpus_per_node: int) -> EpTraffic:
    """Traffic of routing ``expert_ids`` from source GPU 0 of an EP group of ``ep`` GPUs."""
    per_gpu = experts // ep
    gpu = expert_ids // per_gpu  # (tokens, top_k)
    node = gpu // gpus_per_node
    local = gpu % gpus_per_node
    tokens, k = gpu.shape
    nodes_total = max(1, ep // gpus_per_node)
    node_hit = np.zeros((tokens, nodes_total), dtype=bool)
    np.put_along_axis(node_hit, node, True, axis=1)
    ib_nodes = node_hit[:, 1:].sum(axis=1).mean() if nodes_total > 1 else 0.0
    # Distinct (node, local GPU) targets, minus the arrival GPU (local index 0) of each node hit.
    slots = min(ep, gpus_per_node)
    gpu_hit = np.zeros((tokens, nodes_total * slots), dtype=bool)
    np.put_along_axis(gpu_hit, node * slots + local, True, axis=1)
    arrivals = gpu_hit.reshape(tokens, nodes_total, slots)[:, :, 0]
    nvl = gpu_hit.sum(axis=1) - arrivals.sum(axis=1)
    counts = np.bincount(gpu.ravel(), minlength=ep)
    return EpTraffic(float(ib_nodes), float(nvl.mean()), float(counts.max() / counts.mean()))


@lru_cache(maxsize=64)
def balanced_ep_traffic(experts: int, top_k: int, groups: int, groups_per_token: int, ep: int,
                        gpus_per_node: int, seed: int = 0) -> EpTraffic:
    """EpTraffic of balanced group-limited routing (cached; sampled with ``SAMPLE_TOKENS`` tokens)."""
    ids = sample_balanced(experts, top_k, groups, groups_per_token, SAMPLE_TOKENS, seed)
    return ep_traffic(ids, experts, ep, gpus_per_node)
