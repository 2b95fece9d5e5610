"""Routing sampled from a real torch MoE gate: a Linear hidden → experts with DeepSeek's gating.

DeepSeek-V3 (TR §2.1.2; inference/model.py ``Gate``): affinities s = sigmoid(x·Wᵀ) (V2: softmax), a per-expert
bias (aux-loss-free balancing) added for selection only, experts split into ``groups``; a group scores the sum
of its two best affinities (the max for softmax), the best ``groups_per_token`` groups are kept, and the top-k
experts among them are selected. The gate weights are either loaded (``routing.gate_weights``: a .npy or torch
file holding an (experts, hidden) matrix, e.g. from a checkpoint) or initialised at random from the seed,
with N(0, 1/hidden) entries; hidden states are drawn N(0, 1). torch is an optional extra (``moesim[routing]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moesim.workloads.errors import ScenarioError

BATCH_TOKENS = 4096  # gate in slices so the (tokens, hidden) activations stay small


def _torch():
    try:
        import torch
    except ImportError:
        raise ScenarioError("routing.name=gate needs torch: pip install 'moesim[routing]' (torch==2.13.0)") from None
    return torch


def gate_weights(inputs, torch) -> "torch.Tensor":
    """The (experts, hidden) gate matrix: loaded from ``inputs.gate_weights`` or drawn from the seed."""
    if inputs.gate_weights:
        path = Path(inputs.gate_weights)
        if not path.is_file():
            raise ScenarioError(f"routing.gate_weights: {str(path)!r} not found")
        try:
            array = np.load(path) if path.suffix == ".npy" else torch.load(path, map_location="cpu",
                                                                           weights_only=True)
        except Exception as err:  # torch.load raises many types for a bad file
            raise ScenarioError(f"routing.gate_weights: cannot read {path}: {str(err).splitlines()[0]}") from None
        weight = torch.as_tensor(np.asarray(array) if isinstance(array, np.ndarray) else array).float()
        if tuple(weight.shape) != (inputs.experts, inputs.hidden):
            raise ScenarioError(f"routing.gate_weights: {path} is {tuple(weight.shape)}; expected "
                                f"(routed_experts, hidden) = ({inputs.experts}, {inputs.hidden})")
        return weight
    generator = torch.Generator().manual_seed(inputs.seed)
    return torch.randn(inputs.experts, inputs.hidden, generator=generator) / inputs.hidden ** 0.5


def route(scores, top_k: int, groups: int, groups_per_token: int, gating: str, torch):
    """DeepSeek's group-limited top-k on gate scores (tokens, experts) → expert ids (tokens, top_k)."""
    tokens, experts = scores.shape
    affinity = scores.sigmoid() if gating == "sigmoid" else scores.softmax(dim=-1)
    if groups > 1 and groups_per_token < groups:
        grouped = affinity.view(tokens, groups, experts // groups)
        if gating == "sigmoid":
            group_score = grouped.topk(min(2, experts // groups), dim=-1).values.sum(dim=-1)
        else:
            group_score = grouped.amax(dim=-1)
        kept = group_score.topk(groups_per_token, dim=-1).indices
        mask = torch.ones(tokens, groups, dtype=torch.bool).scatter_(1, kept, False)
        affinity = grouped.masked_fill(mask.unsqueeze(-1), float("-inf")).view(tokens, experts)
    return affinity.topk(top_k, dim=-1).indices


def sample_gate(inputs, tokens: int) -> np.ndarray:
    """Expert ids (tokens, top_k) chosen by a torch gate for ``tokens`` sampled hidden states."""
    torch = _torch()
    weight = gate_weights(inputs, torch)
    gate = torch.nn.Linear(inputs.hidden, inputs.experts, bias=False)
    with torch.no_grad():
        gate.weight.copy_(weight)
    generator = torch.Generator().manual_seed(inputs.seed + 1)
    out = []
    with torch.no_grad():
        for start in range(0, tokens, BATCH_TOKENS):
            n = min(BATCH_TOKENS, tokens - start)
            hidden = torch.randn(n, inputs.hidden, generator=generator)
            out.append(route(gate(hidden), inputs.top_k, inputs.groups, inputs.groups_per_token, inputs.gating,
                             torch))
    return torch.cat(out).numpy().astype(np.int64)
