"""Per-rank breakdowns (:class:`~moesim.simulator.engine.ledger.RankBreakdown`) of a step: from the ledgers the runner keeps
as tasks finish, or worked out again from a kept timeline's records (:func:`rank_breakdowns`).
"""

from __future__ import annotations

from collections import defaultdict

from moesim.simulator.engine import Timeline
from moesim.simulator.engine.ledger import HOLD_PHASES, RankBreakdown, communication, merge, peak_held, uncovered_s

__all__ = ["RankBreakdown", "merge", "pipeline_breakdowns", "rank_breakdowns", "uncovered_s"]

STREAM_COMPUTE, STREAM_PP, STREAM_HOST = "compute", "pp", "host"


def rank_breakdowns(timeline: Timeline, activation_bytes: list[float]) -> list[RankBreakdown]:
    """One breakdown per row rank (:meth:`Timeline.row_ranks`: pipeline ranks, or the recorded GPUs of a
    full-fidelity timeline) from the timeline's records (kept: ``keep_timeline``); ``activation_bytes[stage]``
    is what one micro-batch's F keeps on that stage."""
    by_rank: dict[int, list[tuple]] = defaultdict(list)
    for rec in timeline.records:
        by_rank[rec[0]].append(rec)
    result = []
    for rank in timeline.row_ranks():
        busy = defaultdict(float)
        compute, comm, pp, host = [], [], [], []
        held: dict[tuple[int, int], list[float]] = {}
        for _, stream, start, end, label, phase, mb, stage in by_rank[rank]:
            if stream == STREAM_COMPUTE:
                busy[phase] += end - start
                compute.append((start, end))
            elif stream == STREAM_HOST:
                host.append((start, end))
                continue
            else:
                (pp if stream == STREAM_PP else comm).append((start, end))
            # A micro-batch's activations are held from its F until its last backward use (B or W).
            if phase in HOLD_PHASES and not label.startswith("send"):
                span = held.setdefault((stage, mb), [float("inf"), 0.0])
                if phase == "F":
                    span[0] = min(span[0], start)
                else:
                    span[1] = max(span[1], end)
        comm = communication(comm, pp)  # in the order the runner's ledger adds them
        covered = merge(compute)
        host_bound = uncovered_s(host, covered) if host else 0.0
        exposed = uncovered_s(comm, merge(compute + host) if host else covered)
        peak_n, peak_bytes = peak_held(held, activation_bytes)
        useful = busy["F"] + busy["B"] + busy["W"] + busy["opt"] + exposed + host_bound
        result.append(RankBreakdown(busy["F"], busy["B"], busy["W"], exposed,
                                    max(0.0, timeline.makespan_s - useful), busy["opt"],
                                    sum(e - s for s, e in comm), peak_n, peak_bytes, host_bound))
    return result


def pipeline_breakdowns(timeline: Timeline, pipeline_ranks: int) -> tuple[list[RankBreakdown], list[int]]:
    """One breakdown per pipeline rank, from those the runner kept (:attr:`Timeline.breakdowns`), and the row
    rank it comes from.

    Representative timelines have one row per pipeline rank. In a full-fidelity timeline a pipeline rank has
    a row per distinct behaviour among its GPUs; its breakdown is that of its busiest GPU (most compute time,
    e.g. a straggler), the lowest GPU index among equals.
    """
    rows = timeline.row_ranks()
    breakdowns = [timeline.breakdowns[row] for row in rows]
    if timeline.pipeline_rank is None:
        return breakdowns, rows
    chosen: dict[int, tuple[float, int, RankBreakdown]] = {}
    for row, b in zip(rows, breakdowns):
        rank = timeline.pipeline_rank[row]
        busy = b.forward_s + b.backward_input_s + b.backward_weight_s + b.optimizer_s
        best = chosen.get(rank)
        if best is None or busy > best[0] * (1 + 1e-12):
            chosen[rank] = (busy, row, b)
    return [chosen[r][2] for r in range(pipeline_ranks)], [chosen[r][1] for r in range(pipeline_ranks)]
