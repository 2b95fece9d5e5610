"""Routing models: which experts each token picks, registered by name, and what that means for the EP all-to-all.

A routing model returns expert ids of shape (layers, tokens, top_k). Registered models:

- ``balanced``: a DeepSeek-style gate over independent uniform affinities: group-limited routing keeps the
  ``groups_per_token`` groups with the highest sum of their two best affinities, then the top-k experts inside
  them. Balanced in expectation, with the real node-limited structure; its per-expert loads are taken as
  exactly equal (as in DeepSeek's profiling runs, where routing was forced to perfect balance).
- ``zipf``: expert popularity ∝ 1 / rank^zipf_alpha (ranks shuffled over experts by the seed); each token draws
  its top-k without replacement in proportion (Gumbel top-k), under the same group limit. alpha 0 is balanced.
- ``gate``: a torch MoE gate (see :mod:`moesim.workloads.gate`) with the model's gating (sigmoid or softmax,
  group-limited top-k) applied to sampled hidden states.
- ``file``: expert ids loaded from a file (see :func:`load_routing_file`).

:mod:`moesim.workloads.ep_load` turns the ids into per-GPU-pair traffic and per-expert token counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from moesim.topologies.base_registry import Registry
from moesim.workloads.documents import read_document
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_input

SAMPLE_TOKENS = 4096
BALANCED_CHUNK_TOKENS = 512  # tokens the balanced gate is sampled for at a time (sample_balanced)
# Tokens sampled per layer for skewed models: 16384 tokens × 8 picks over 256 experts is 512 picks per
# expert on average, so sampling noise (~4% per expert, ~2% per GPU of 4 experts) stays below the skews studied.
SKEW_SAMPLE_TOKENS = 16384
MAX_ROUTING_FILE_BYTES = 512_000_000


@dataclass(frozen=True)
class RoutingInputs:
    """What a routing model needs: the MoE shape, the routing options and a seed."""

    experts: int
    top_k: int
    groups: int
    groups_per_token: int
    gating: str
    hidden: int
    zipf_alpha: float = 1.0
    file: str | None = None
    gate_weights: str | None = None
    seed: int = 0


# Each entry: ``fn(inputs, tokens) -> ids (layers, tokens, top_k)``.
ROUTING_MODELS = Registry("routing.name: unknown routing model {name!r}; known: {known}", ScenarioError)


def register_routing(name: str):
    """Register ``fn(inputs, tokens) -> ids (layers, tokens, top_k)`` as routing model ``name``."""
    return ROUTING_MODELS.register(name)


def routing_names() -> list[str]:
    return ROUTING_MODELS.names()


def sample_routing(name: str, inputs: RoutingInputs, tokens: int = SKEW_SAMPLE_TOKENS) -> np.ndarray:
    """Expert ids (layers, tokens, top_k) from routing model ``name``."""
    return ROUTING_MODELS.lookup(name)(inputs, tokens)


def group_limited_topk(scores: np.ndarray, top_k: int, groups: int, groups_per_token: int) -> np.ndarray:
    """Top-k expert ids per row of ``scores`` (tokens, experts) inside the best ``groups_per_token`` groups,
    a group's score being the sum of its two best scores (DeepSeek-V3's node-limited routing)."""
    tokens, experts = scores.shape
    if groups > 1 and groups_per_token < groups:
        size = experts // groups
        per_group = scores.reshape(tokens, groups, size)
        best_two = np.sort(per_group, axis=2)[:, :, -min(2, size):].sum(axis=2)
        kept = np.argsort(-best_two, axis=1)[:, :groups_per_token]
        # The kept groups' experts side by side, in expert order: their top k are the picks, ties still going to
        # the lower expert id. (Selecting over every expert with the others at -inf, as the gate defines it, is
        # the same answer where the kept experts' scores are finite and at least k; partial selection over rows
        # half of equal values cost 23 of the 36 ms of DeepSeek-V3's balanced sample.)
        kept = np.sort(kept, axis=1)
        candidates = np.take_along_axis(per_group, kept[:, :, None], axis=1).reshape(tokens, groups_per_token * size)
        if candidates.shape[1] >= top_k and np.isfinite(candidates).all():
            picks = stable_top_k(candidates, top_k)
            return np.take_along_axis(kept, picks // size, axis=1) * size + picks % size
        mask = np.zeros((tokens, groups), dtype=bool)
        np.put_along_axis(mask, kept, True, axis=1)
        scores = np.where(np.repeat(mask, size, axis=1), scores, -np.inf)
    return stable_top_k(scores, top_k)


def stable_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column ids of the ``k`` largest ``scores`` of each row, largest first and ties by column: the first ``k``
    columns of ``np.argsort(-scores, axis=1, kind="stable")``, found by partial selection (a full sort of
    every row cost ~20 ms of the 4,096 × 256 balanced sample)."""
    if k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    negated = -scores
    picked = np.argpartition(negated, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(negated, picked, axis=1)
    top = np.take_along_axis(picked, np.lexsort((picked, values), axis=1), axis=1)  # by value, then by column
    # A row where a score left out ties the k-th picked one: which of the tied columns the selection kept is
    # arbitrary, so that row is sorted in full.
    tied = (negated <= values.max(axis=1, keepdims=True)).sum(axis=1) > k
    if tied.any():
        top[tied] = np.argsort(negated[tied], axis=1, kind="stable")[:, :k]
    return top


def sample_balanced(experts: int, top_k: int, groups: int, groups_per_token: int, tokens: int,
                    seed: int) -> np.ndarray:
    """Expert ids, shape (tokens, top_k), from a group-limited top-k gate over uniform random affinities.

    Drawn and routed ``BALANCED_CHUNK_TOKENS`` tokens at a time: the same draws in the same order (a generator's
    stream does not depend on how it is cut; each token is routed on its own), in arrays that fit in cache and reuse
    their pages (DeepSeek-V3's 4,096 × 256 sample at once: 26-31 ms and 3,020 page faults in a fresh process; in
    512-token pieces 16-18 ms and 1,298, the ids equal)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([group_limited_topk(rng.random((min(BALANCED_CHUNK_TOKENS, tokens - first), experts)),
                                              top_k, groups, groups_per_token)
                           for first in range(0, max(tokens, 1), BALANCED_CHUNK_TOKENS)])


@register_routing("balanced")
def _balanced(inputs: RoutingInputs, tokens: int) -> np.ndarray:
    ids = sample_balanced(inputs.experts, inputs.top_k, inputs.groups, inputs.groups_per_token,
                          min(tokens, SAMPLE_TOKENS), inputs.seed)
    return ids[None]


def zipf_log_popularity(experts: int, alpha: float, seed: int) -> np.ndarray:
    """Log of each expert's share of picks ∝ 1/rank^alpha, ranks shuffled over expert ids by ``seed``.

    Kept in logs so that a steep skew (alpha in the hundreds) stays finite: the shares of cold experts
    underflow to 0, their logs do not."""
    log_w = -alpha * np.log(np.arange(1, experts + 1, dtype=float))
    log_w -= log_w.max() + np.log(np.exp(log_w - log_w.max()).sum())
    rng = np.random.default_rng(seed + 1)
    return log_w[rng.permutation(experts)]


def zipf_popularity(experts: int, alpha: float, seed: int) -> np.ndarray:
    """Each expert's share of picks ∝ 1/rank^alpha, ranks shuffled over expert ids by ``seed``."""
    return np.exp(zipf_log_popularity(experts, alpha, seed))


@register_routing("zipf")
def _zipf(inputs: RoutingInputs, tokens: int) -> np.ndarray:
    log_p = zipf_log_popularity(inputs.experts, inputs.zipf_alpha, inputs.seed)
    rng = np.random.default_rng(inputs.seed)
    # Gumbel top-k: the k largest of log p + Gumbel noise are a draw without replacement ∝ p.
    scores = log_p[None, :] + rng.gumbel(size=(tokens, inputs.experts))
    return group_limited_topk(scores, inputs.top_k, inputs.groups, inputs.groups_per_token)[None]


@register_routing("gate")
def _gate(inputs: RoutingInputs, tokens: int) -> np.ndarray:
    from moesim.workloads.gate import sample_gate  # torch is an optional extra; import it only when asked
    return sample_gate(inputs, tokens)[None]


@register_routing("file")
def _file(inputs: RoutingInputs, tokens: int) -> np.ndarray:
    if not inputs.file:
        raise ScenarioError("routing.file: the file routing model needs routing.file (a .npy, .npz or .json)")
    return load_routing_file(inputs.file, inputs.experts, inputs.top_k)


def load_routing_file(path: str | Path, experts: int, top_k: int) -> np.ndarray:
    """Expert ids (layers, tokens, top_k) from a file of ids indexed [token][layer][k].

    ``.npy``: an integer array (tokens, layers, top_k) (or (tokens, layers) when top_k is 1); ``.npz``: the
    same under key ``expert_ids``; ``.json``: ``{"expert_ids": [[[...]]]}`` or the bare nested list.
    """
    path = check_input(path, MAX_ROUTING_FILE_BYTES, "routing.file:", "sample fewer tokens")
    try:
        if path.suffix == ".json":
            data = read_document(path, "routing.file:", MAX_ROUTING_FILE_BYTES, "json")
            data = data.get("expert_ids") if isinstance(data, dict) else data
            ids = np.asarray(data)
        elif path.suffix == ".npz":
            with np.load(path) as archive:
                if "expert_ids" not in archive:
                    raise ScenarioError(f"routing.file: {path} has no array named 'expert_ids'")
                ids = archive["expert_ids"]
        else:
            ids = np.load(path, allow_pickle=False)
    except ScenarioError:
        raise
    except (OSError, ValueError) as err:
        raise ScenarioError(f"routing.file: cannot read {path}: {str(err).splitlines()[0]}") from None
    if ids.ndim == 2 and top_k == 1:
        ids = ids[:, :, None]
    if ids.ndim != 3 or not np.issubdtype(ids.dtype, np.integer):
        raise ScenarioError(f"routing.file: {path} must hold integer expert ids shaped (tokens, layers, top_k); "
                            f"got {ids.dtype} {tuple(ids.shape)}")
    if ids.shape[2] != top_k:
        raise ScenarioError(f"routing.file: {path} has {ids.shape[2]} experts per token; model.moe.top_k is {top_k}")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ScenarioError(f"routing.file: {path} holds no tokens")
    if ids.min() < 0 or ids.max() >= experts:
        raise ScenarioError(f"routing.file: {path} has expert ids outside 0..{experts - 1} "
                            f"(min {ids.min()}, max {ids.max()})")
    return np.ascontiguousarray(ids.transpose(1, 0, 2))


@dataclass(frozen=True)
class EpTraffic:
    """Per-token traffic of a DeepSeek-style dispatch from one source GPU, averaged over sampled tokens.

    ``ib_nodes``: remote nodes a token crosses InfiniBand to (once each, to the same-index GPU).
    ``nvl_copies``: NVLink forwards per token (to each distinct expert GPU other than the arrival GPU).
    ``max_gpu_share``: the busiest GPU's share of received token copies relative to the mean (1 = balanced).
    ``ib_link_factor`` / ``nvl_link_factor``: the busiest InfiniBand / NVLink link's load relative to the
    mean (1 = balanced): in representative mode the busiest link sets the all-to-all's pace.
    """

    ib_nodes: float
    nvl_copies: float
    max_gpu_share: float
    ib_link_factor: float = 1.0
    nvl_link_factor: float = 1.0


@dataclass(frozen=True)
class EpCounts:
    """Copies of one token from one source GPU of an EP group, averaged over tokens."""

    nodes: float  # distinct nodes reached, the source's own included (what DeepEP's RDMA figure counts)
    remote_nodes: float  # other nodes reached: InfiniBand transfers, to the same-index GPU there
    ranks: float  # distinct GPUs reached (DeepEP's NVL figure: rows a GPU receives per token sent, by symmetry)
    nvl_forwards: float  # NVLink transfers: distinct target GPUs other than each reached node's arrival GPU


def ep_counts(expert_ids: np.ndarray, experts: int, ep: int, gpus_per_node: int) -> EpCounts:
    """:class:`EpCounts` of tokens routed to ``expert_ids`` (tokens, top_k) from GPU 0 (node 0, index 0) of an
    EP group of ``ep`` GPUs, ``gpus_per_node`` of them per node."""
    tokens = expert_ids.shape[0]
    per_node = min(ep, gpus_per_node)
    nodes = max(1, ep // per_node)
    gpu_hit = np.zeros((tokens, ep), dtype=bool)
    np.put_along_axis(gpu_hit, expert_ids // (experts // ep), True, axis=1)
    by_node = gpu_hit.reshape(tokens, nodes, per_node)
    node_hit = by_node.any(axis=2)
    arrivals = by_node[:, :, 0].sum(axis=1)  # GPU 0's copies land on index 0 of each node
    return EpCounts(float(node_hit.sum(axis=1).mean()), float(node_hit[:, 1:].sum(axis=1).mean()),
                    float(gpu_hit.sum(axis=1).mean()), float((gpu_hit.sum(axis=1) - arrivals).mean()))


def ep_traffic(expert_ids: np.ndarray, experts: int, ep: int, gpus_per_node: int) -> EpTraffic:
    """Traffic of routing ``expert_ids`` from source GPU 0 of an EP group of ``ep`` GPUs."""
    counts = ep_counts(expert_ids, experts, ep, gpus_per_node)
    received = np.bincount((expert_ids // (experts // ep)).ravel(), minlength=ep)
    return EpTraffic(counts.remote_nodes, counts.nvl_forwards, float(received.max() / received.mean()))


@lru_cache(maxsize=64)
def balanced_ep_traffic(experts: int, top_k: int, groups: int, groups_per_token: int, ep: int,
                        gpus_per_node: int, seed: int = 0) -> EpTraffic:
    """EpTraffic of balanced group-limited routing (cached; sampled with ``SAMPLE_TOKENS`` tokens)."""
    ids = sample_balanced(experts, top_k, groups, groups_per_token, SAMPLE_TOKENS, seed)
    return ep_traffic(ids, experts, ep, gpus_per_node)
