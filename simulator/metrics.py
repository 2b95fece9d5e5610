"""Per-rank breakdowns from a timeline: busy time per phase, exposed communication, bubble, peak activations.

For one rank over the step (makespan M):
  forward_s, backward_input_s, backward_weight_s  compute-stream time in F, B and W chunks;
  optimizer_s                                      compute-stream time of the optimizer step;
  host_bound_s                                     time the compute stream waits for the host thread to issue
                                                   its kernels (simulator.host), not covered by compute;
  exposed_comm_s                                   communication-stream time (collectives and pipeline
                                                   send/recv) not covered by compute or a wait for the host;
  bubble_s = M − all of the above                  time with no stream doing useful work.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from simulator.engine import Timeline

STREAM_COMPUTE, STREAM_COMM, STREAM_HOST = "compute", "comm", "host"


@dataclass(frozen=True)
class RankBreakdown:
    forward_s: float
    backward_input_s: float
    backward_weight_s: float
    exposed_comm_s: float
    bubble_s: float
    optimizer_s: float
    comm_s: float  # all communication-stream time, hidden or not
    peak_inflight: int  # micro-batch chunks held between their F and their B
    peak_activation_bytes: float
    host_bound_s: float = 0.0


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def uncovered_s(intervals: list[tuple[float, float]], cover: list[tuple[float, float]]) -> float:
    """Total length of ``intervals`` outside the union of ``cover`` (``cover`` already merged)."""
    total, j = 0.0, 0
    for start, end in _merge(intervals):
        while j < len(cover) and cover[j][1] <= start:
            j += 1
        cursor, k = start, j
        while k < len(cover) and cover[k][0] < end:
            if cover[k][0] > cursor:
                total += cover[k][0] - cursor
            cursor = max(cursor, cover[k][1])
            k += 1
        if cursor < end:
            total += end - cursor
    return total


def rank_breakdowns(timeline: Timeline, activation_bytes: list[float]) -> list[RankBreakdown]:
    """One breakdown per row rank (:meth:`Timeline.row_ranks`: pipeline ranks, or the recorded GPUs of a
    full-fidelity timeline); ``activation_bytes[stage]`` is what one micro-batch's F keeps on that stage."""
    by_rank: dict[int, list[tuple]] = defaultdict(list)
    for rec in timeline.records:
        by_rank[rec[0]].append(rec)
    result = []
    for rank in timeline.row_ranks():
        busy = defaultdict(float)
        compute, comm, host = [], [], []
        held: dict[tuple[int, int], list[float]] = {}
        for _, stream, start, end, label, phase, mb, stage in by_rank[rank]:
            if stream == STREAM_COMPUTE:
                busy[phase] += end - start
                compute.append((start, end))
            elif stream == STREAM_HOST:
                host.append((start, end))
                continue
            else:
                comm.append((start, end))
            # A micro-batch's activations are held from its F until its last backward use (B or W).
            if phase in ("F", "B", "W") and not label.startswith("send"):
                span = held.setdefault((stage, mb), [float("inf"), 0.0])
                if phase == "F":
                    span[0] = min(span[0], start)
                else:
                    span[1] = max(span[1], end)
        covered = _merge(compute)
        host_bound = uncovered_s(host, covered) if host else 0.0
        exposed = uncovered_s(comm, _merge(compute + host) if host else covered)
        peak_n, peak_bytes = _peak_held(held, activation_bytes)
        useful = busy["F"] + busy["B"] + busy["W"] + busy["opt"] + exposed + host_bound
        result.append(RankBreakdown(busy["F"], busy["B"], busy["W"], exposed,
                                    max(0.0, timeline.makespan_s - useful), busy["opt"],
                                    sum(e - s for s, e in comm), peak_n, peak_bytes, host_bound))
    return result


def pipeline_breakdowns(timeline: Timeline, activation_bytes: list[float],
                        pipeline_ranks: int) -> tuple[list[RankBreakdown], list[int]]:
    """One breakdown per pipeline rank, and the row rank it comes from.

    Representative timelines have one row per pipeline rank. In a full-fidelity timeline a pipeline rank has
    a row per distinct behaviour among its GPUs; its breakdown is that of its busiest GPU (most compute time,
    e.g. a straggler), the lowest GPU index among equals.
    """
    rows = timeline.row_ranks()
    breakdowns = rank_breakdowns(timeline, activation_bytes)
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


def _peak_held(held: dict[tuple[int, int], list[float]], activation_bytes: list[float]) -> tuple[int, float]:
    """Peak count and bytes of micro-batches between their F start and B end on one rank."""
    events = []
    for (stage, _), (start, end) in held.items():
        if start == float("inf"):
            continue
        events.append((start, 1, activation_bytes[stage]))
        events.append((end, -1, -activation_bytes[stage]))
    events.sort(key=lambda e: (e[0], e[1]))  # releases before acquisitions at the same instant
    count = peak_count = 0
    held_bytes = peak_bytes = 0.0
    for _, delta, nbytes in events:
        count += delta
        held_bytes += nbytes
        peak_count = max(peak_count, count)
        peak_bytes = max(peak_bytes, held_bytes)
    return peak_count, peak_bytes
