"""A rank's time, kept as its tasks finish: busy time per phase, exposed communication, host-bound time, bubble,
peak activations (:class:`RankBreakdown`), without keeping the timeline.

For one rank over the step (makespan M):
  forward_s, backward_input_s, backward_weight_s  compute-stream time in F, B and W chunks;
  optimizer_s                                      compute-stream time of the optimizer step;
  host_bound_s                                     time the compute stream waits for the host thread to issue
                                                   its kernels (moesim.simulator.engine.host), not covered by compute;
  exposed_comm_s                                   communication-stream time (collectives and pipeline
                                                   send/recv) not covered by compute or a wait for the host;
  bubble_s = M − all of the above                  time with no stream doing useful work.

The runner (:mod:`moesim.simulator.engine.runner`) gives each recorded GPU a :class:`Ledger` and enters every task in it as
it finishes; :func:`moesim.simulator.metrics.rank_breakdowns` works out the same breakdown from a kept timeline's records
(the two agree exactly: both add their sums in one order, :meth:`Ledger.breakdown` says which).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter

from moesim.simulator.engine.tasks import COMM, COMPUTE, PP, RankProgram

HOLD_PHASES = ("F", "B", "W")  # phases of a micro-batch's chunks, which hold its activations
START, END = itemgetter(0), itemgetter(1)  # an interval's start; its end, the key the timeline's order sorts by


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


class Ledger:
    """One recorded GPU's tasks as its streams finish them: ``starts[stream]`` and ``ends[stream]`` (seconds) of each
    stream's tasks in the order it ran them (a stream runs in order, so its k-th are those of the task at position k
    of that stream in the GPU's :class:`~moesim.simulator.engine.tasks.RankProgram` ``program``), and ``host`` the
    (start, end) intervals a stream waited for its host thread, in the order they were entered. The runner appends
    to the lists directly (two floats a task, no object of its own); :meth:`breakdown` works the rank's time out at
    the end of the step.
    """

    __slots__ = ("program", "starts", "ends", "host")

    def __init__(self, program: RankProgram):
        self.program = program
        self.starts: tuple[list[float], ...] = ([], [], [])
        self.ends: tuple[list[float], ...] = ([], [], [])
        self.host: list[tuple[float, float]] = []

    def breakdown(self, makespan_s: float, activation_bytes: list[float]) -> RankBreakdown:
        """The rank's breakdown over a step of ``makespan_s``; ``activation_bytes[stage]`` is what one
        micro-batch's F keeps on that stage.

        Every sum is added in the order :func:`moesim.simulator.metrics.rank_breakdowns` adds it from a timeline's
        records: compute time in the compute stream's order; communication time by end, the communication
        stream's before the pipeline stream's at equal ends (each stream's tasks end in the order it ran them)."""
        queues, starts, ends = self.program.queues, self.starts, self.ends
        f = b = w = opt = 0.0  # compute-stream time in F, B and W chunks and in the optimizer step
        # Compute intervals merged as they come (starts never go back on one stream): starts, ends, last end.
        cover_starts: list[float] = []
        cover_ends: list[float] = []
        last = -math.inf
        for start, end, task in zip(starts[COMPUTE], ends[COMPUTE], queues[COMPUTE]):
            phase = task.phase
            if phase == "F":
                f += end - start
            elif phase == "B":
                b += end - start
            elif phase == "W":
                w += end - start
            elif phase == "opt":
                opt += end - start
            if start <= last:
                if end > last:
                    last = cover_ends[-1] = end
            else:
                cover_starts.append(start)
                cover_ends.append(end)
                last = end
        # A micro-batch's activations are held from its F until its last backward use (B or W): per step copy, its
        # chunks' first F start and last backward end on each stream (compiler.StepTemplate.holds).
        held: dict[tuple[int, int], list] = {}  # (stage, micro_batch) → [F start, last backward end]
        inf = math.inf
        for holds, first, micro_batches in self.program.holds:
            for si, position, stage, index, forward in holds:
                chunk = (stage, micro_batches[index])
                span = held.get(chunk)
                if span is None:
                    span = held[chunk] = [inf, 0.0]
                if forward:
                    start = starts[si][first[si] + position]
                    if start < span[0]:
                        span[0] = start
                else:
                    end = ends[si][first[si] + position]
                    if end > span[1]:
                        span[1] = end
        comm = communication(list(zip(starts[COMM], ends[COMM])), list(zip(starts[PP], ends[PP])))
        host = sorted(self.host, key=END)
        cover = list(zip(cover_starts, cover_ends))
        host_bound = uncovered_s(host, cover) if host else 0.0
        exposed = uncovered_s(comm, merge(cover + host) if host else cover)
        comm_s = sum([end - start for start, end in comm])
        peak_n, peak_bytes = peak_held(held, activation_bytes)
        useful = f + b + w + opt + exposed + host_bound
        return RankBreakdown(f, b, w, exposed, max(0.0, makespan_s - useful), opt, comm_s, peak_n, peak_bytes,
                             host_bound)


def communication(comm: list[tuple[float, float]], pp: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A rank's communication intervals in the order their time adds up: by end, the communication stream's (``comm``)
    before the pipeline stream's (``pp``) at equal ends; each list in its stream's order."""
    return sorted(comm + pp, key=END)


def merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``intervals`` as sorted, disjoint (start, end) pairs (touching ones joined)."""
    merged: list[tuple[float, float]] = []
    first = last = None
    for start, end in sorted(intervals, key=START):  # the union is the same whatever the order of equal starts
        if last is not None and start <= last:
            if end > last:
                last = end
        else:
            if last is not None:
                merged.append((first, last))
            first, last = start, end
    if last is not None:
        merged.append((first, last))
    return merged


def uncovered_s(intervals: list[tuple[float, float]], cover: list[tuple[float, float]]) -> float:
    """Total length of ``intervals`` outside the union of ``cover`` (``cover`` already merged)."""
    cover_starts = [start for start, _ in cover]
    cover_ends = [end for _, end in cover]
    n = len(cover)
    total, j = 0.0, 0
    for start, end in merge(intervals):
        while j < n and cover_ends[j] <= start:
            j += 1
        cursor, k = start, j
        while k < n and cover_starts[k] < end:
            if cover_starts[k] > cursor:
                total += cover_starts[k] - cursor
            if cover_ends[k] > cursor:
                cursor = cover_ends[k]
            k += 1
        if cursor < end:
            total += end - cursor
    return total


def peak_held(held: dict[tuple[int, int], list], activation_bytes: list[float]) -> tuple[int, float]:
    """Peak count and bytes of micro-batches between their F start and B end on one rank; ``held`` maps
    (stage, micro_batch) to its [F start, last backward end] span."""
    events = []
    for (stage, micro_batch), span in held.items():
        start, end = span[0], span[1]
        if start == float("inf"):
            continue
        events.append((start, 1, stage, micro_batch, activation_bytes[stage]))
        events.append((end, -1, stage, micro_batch, -activation_bytes[stage]))
    # Releases before acquisitions at the same instant; then by chunk, so that the sums below add in one order
    # whatever order ``held`` came in (the runner's ledger and a timeline's records give it differently).
    events.sort()
    count = peak_count = 0
    held_bytes = peak_bytes = 0.0
    for _, delta, _, _, nbytes in events:
        count += delta
        held_bytes += nbytes
        peak_count = max(peak_count, count)
        peak_bytes = max(peak_bytes, held_bytes)
    return peak_count, peak_bytes
