"""Megatron-Core's pipeline layout notation: which units each pipeline stage holds.

``--pipeline-model-parallel-layout`` (Megatron-LM docs/user-guide/features/pipeline_parallel_layout.md): stages are
separated by ``|``; ``E`` is the embedding, ``t`` a transformer decoder layer, ``m`` an MTP layer, ``L`` the loss
(output head); ``x*n`` repeats a unit and ``(…)*n`` a group, stage separators included; commas are cosmetic and
a stage may be empty. Stages are listed in model order: with PP ``p`` and ``v`` virtual stages, stage
``i`` runs on pipeline rank ``i mod p`` (e.g. ``Et*3|(tt|)*29,m|L`` is DeepSeek-V3 on PP16 × VPP2: 32 stages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moesim.workloads.errors import ScenarioError

UNITS = {"E": "embedding", "t": "decoder layer", "m": "MTP layer", "L": "loss"}
FIELD = "parallelism.pipeline_layout"


@dataclass(frozen=True)
class StageUnits:
    """What one stage holds: the embedding, ``layers`` decoder layers, ``mtp`` MTP layers, the loss (head)."""

    embedding: bool
    layers: int
    mtp: int
    loss: bool


MAX_UNITS = 100_000  # far above any model's layers and stages; a longer expansion is a typo, not a layout


def _unroll(pattern: str, text: str, layout: str) -> str:
    """``text`` with every match of ``pattern`` (a unit or group, then ``*n``) repeated n times, refused before it
    grows past :data:`MAX_UNITS` characters."""
    grown = len(text) + sum(len(m.group(1)) * (int(m.group(2)) - 1) for m in re.finditer(pattern, text))
    if grown > MAX_UNITS:
        raise ScenarioError(f"{FIELD} {layout[:60]!r}: expands to {grown:,} units and separators, over "
                            f"{MAX_UNITS:,}; check its repeat counts")
    return re.sub(pattern, lambda m: m.group(1) * int(m.group(2)), text)


def expand(layout: str) -> str:
    """The layout with every ``(…)*n`` and ``x*n`` unrolled and commas and spaces removed."""
    text = re.sub(r"[,\s]", "", layout)
    for _ in range(100):  # innermost groups first, so nested groups unroll too
        unrolled = _unroll(r"\(([^()]*)\)\*(\d+)", text, layout)
        if unrolled == text:
            break
        text = unrolled
    return _unroll(r"([EtmL])\*(\d+)", text, layout)


def parse_layout(layout: str) -> list[StageUnits]:
    """The stages of ``layout``, or a one-line ScenarioError naming the field and what to fix."""
    text = expand(layout)
    bad = sorted(set(re.sub(r"[EtmL|]", "", text)))
    if bad:
        raise ScenarioError(f"{FIELD} {layout!r}: cannot read {''.join(bad)!r}; use E (embedding), t (decoder "
                            "layer), m (MTP), L (loss), | between stages, x*n and (…)*n to repeat, e.g. "
                            "Et*3|(tt|)*29,m|L")
    stages = [StageUnits("E" in s, s.count("t"), s.count("m"), "L" in s) for s in text.split("|")]
    for i, stage in enumerate(text.split("|")):
        for unit in "EL":
            if stage.count(unit) > 1:
                raise ScenarioError(f"{FIELD} {layout!r}: stage {i} holds {UNITS[unit]} {stage.count(unit)} "
                                    "times; give it once")
    return stages


def check_layout(layout: str, stages: int, layers: int, mtp_depth: int) -> list[StageUnits]:
    """The parsed layout after checking it against the model and the pipeline: ``stages`` = pp × virtual_stages."""
    units = parse_layout(layout)
    if len(units) != stages:
        raise ScenarioError(f"{FIELD} has {len(units)} stages; pp × virtual_stages = {stages}; set "
                            "virtual_stages to its stage count / pp, or add or remove stages")
    found = sum(u.layers for u in units)
    if found != layers:
        raise ScenarioError(f"{FIELD} holds {found} decoder layers (t); model.layers = {layers}; add or remove t")
    mtp = sum(u.mtp for u in units)
    if mtp != mtp_depth:
        raise ScenarioError(f"{FIELD} holds {mtp} MTP layers (m); model.mtp_depth = {mtp_depth}; add or remove m")
    for unit, name in (("embedding", "E"), ("loss", "L")):
        count = sum(getattr(u, unit) for u in units)
        if count != 1:
            raise ScenarioError(f"{FIELD} holds the {UNITS[name]} ({name}) {count} times; give it exactly once")
    if not units[0].embedding:
        raise ScenarioError(f"{FIELD}: the embedding (E) must be on the first stage, where the tokens enter")
    if not units[-1].loss:
        raise ScenarioError(f"{FIELD}: the loss (L) must be on the last stage, where the pipeline ends")
    return units


def default_units(layers_per_stage: list[int], mtp_depth: int) -> list[StageUnits]:
    """moesim's placement without a layout: the embedding on the first stage, the MTP layers and the loss on the
    last."""
    last = len(layers_per_stage) - 1
    return [StageUnits(i == 0, n, mtp_depth if i == last else 0, i == last) for i, n in enumerate(layers_per_stage)]
