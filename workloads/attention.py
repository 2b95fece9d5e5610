"""Attention variants: how many query-key pairs a layer's attention kernel computes (causal, or a causal band
for sliding-window layers). Attention sinks and QK-norm are kernels of their own in :mod:`moesim.workloads.layers`.

A query at position i (0-based) of a sequence of s tokens attends to the i+1 keys up to itself (causal), or to the
last ``window`` of them, itself included, in a sliding-window layer (Mistral 7B's and GPT-OSS's band: keys
i-window+1 … i). Summed over the sequence:

    causal:  s(s+1)/2
    band:    W(W+1)/2 + (s-W)·W      for W < s (the first W queries see a growing prefix, the rest W keys each)

Counted without the mask, as MFU's non-causal convention counts a full square s·s, a band is s·min(s, W).
Backward needs every key and value whatever the window, so the window changes FLOPs, not the activations kept.
"""

from __future__ import annotations


def causal_pairs(seq: int, window: int | None = None) -> float:
    """Query-key pairs one sequence of ``seq`` tokens computes, causal, within ``window`` keys if given."""
    if window is None or window >= seq:
        return seq * (seq + 1) / 2
    return window * (window + 1) / 2 + (seq - window) * window


def full_pairs(seq: int, window: int | None = None) -> float:
    """The same pairs counted without the causal mask: a full square, or every query against a full window."""
    if window is None or window >= seq:
        return seq * seq
    return seq * window
