"""A rank's time, kept as its tasks finish: busy time per phase, exposed communication, host-bound time, bubble,
peak activations (:class:`RankBreakdown`), without keeping the timeline.

For one rank over the step (makespan M):
  forward_s, backward_input_s, backward_weight_s  compute-stream time in F, B and W chunks;
  optimizer_s                                      compute-stream time of the optimizer step;
  host_bound_s                                     time the compute stream waits for the host thread to issue
                                                   its kernels (simulator.host), not covered by compute;
  exposed_comm_s                                   communication-stream time (collectives and pipeline
                                                   send/recv) not covered by compute or a wait for the host;
  bubble_s = M − all of the above                  time with no stream doing useful work.

The runner (:mod:`simulator.runner`) gives each recorded GPU a :class:`Ledger` and enters every task as it
finishes; :func:`simulator.metrics.rank_breakdowns` works out the same breakdown from a kept timeline's records
(the two agree exactly: sums are added in the order the timeline's records, sorted by end, give them).
"""

from __future__ import annotations

from dataclasses import dataclass

SEND = "send"  # labels of pipeline sends: they hold no activations of their own
HOLD_PHASES = ("F", "B", "W")  # phases of a micro-batch's chunks, which hold its activations


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
    """One recorded GPU's time, entered task by task in the order its streams finish them (seconds).

    ``busy[phase]`` sums compute-stream time per phase: a stream runs in order, so its tasks end in queue order,
    the order a timeline sorted by end gives them. ``covered`` is the union of compute-stream intervals, merged
    as they come (starts never go back on one stream). ``comm`` and ``host`` keep the communication-stream
    (collectives and pipeline sends) and host-wait intervals; ``held[(stage, micro_batch)]`` the span a
    micro-batch's activations are held, with where that micro-batch first ends a task (end, then entry
    number) so that peaks are added up in the timeline's order.
    """

    __slots__ = ("busy", "covered", "comm", "host", "held", "entries")

    def __init__(self):
        self.busy: dict[str, float] = {}
        self.covered: list[list[float]] = []
        self.comm: list[tuple[float, float]] = []
        self.host: list[tuple[float, float]] = []
        self.held: dict[tuple[int, int], list] = {}
        self.entries = 0

    def compute(self, start: float, end: float, label: str, phase: str, micro_batch: int, stage: int) -> None:
        """A compute-stream task ran from ``start`` to ``end``."""
        busy = self.busy
        busy[phase] = busy.get(phase, 0.0) + (end - start)
        covered = self.covered
        if covered and start <= covered[-1][1]:
            if end > covered[-1][1]:
                covered[-1][1] = end
        else:
            covered.append([start, end])
        if phase in HOLD_PHASES:
            self._hold(start, end, label, phase, micro_batch, stage)

    def communicate(self, start: float, end: float, label: str, phase: str, micro_batch: int, stage: int) -> None:
        """A communication or pipeline send/recv task ran from ``start`` to ``end``."""
        self.comm.append((start, end))
        if phase in HOLD_PHASES:
            self._hold(start, end, label, phase, micro_batch, stage)

    def wait_host(self, start: float, end: float) -> None:
        """A stream waited for its host thread from ``start`` to ``end``."""
        self.host.append((start, end))

    def _hold(self, start: float, end: float, label: str, phase: str, micro_batch: int, stage: int) -> None:
        # A micro-batch's activations are held from its F until its last backward use (B or W).
        if label.startswith(SEND):
            return
        self.entries += 1
        span = self.held.get((stage, micro_batch))
        if span is None:
            span = self.held[(stage, micro_batch)] = [float("inf"), 0.0, end, self.entries]
        elif end < span[2]:
            span[2], span[3] = end, self.entries
        if phase == "F":
            if start < span[0]:
                span[0] = start
        elif end > span[1]:
            span[1] = end

    def breakdown(self, makespan_s: float, activation_bytes: list[float]) -> RankBreakdown:
        """The rank's breakdown over a step of ``makespan_s``; ``activation_bytes[stage]`` is what one
        micro-batch's F keeps on that stage."""
        busy = self.busy
        covered = [(a, b) for a, b in self.covered]
        host_bound = uncovered_s(self.host, covered) if self.host else 0.0
        exposed = uncovered_s(self.comm, merge(covered + self.host) if self.host else covered)
        comm_s = sum(end - start for start, end in sorted(self.comm, key=_end))  # in the timeline's order
        # The timeline's order: by the end of the micro-batch's first task, then by entry.
        held = {key: span for key, span in sorted(self.held.items(), key=_first)}
        peak_n, peak_bytes = peak_held(held, activation_bytes)
        f, b, w, opt = (busy.get(p, 0.0) for p in ("F", "B", "W", "opt"))
        useful = f + b + w + opt + exposed + host_bound
        return RankBreakdown(f, b, w, exposed, max(0.0, makespan_s - useful), opt, comm_s, peak_n, peak_bytes,
                             host_bound)


def _end(interval: tuple[float, float]) -> float:
    return interval[1]


def _first(item: tuple) -> tuple[float, int]:
    return item[1][2], item[1][3]


def merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of ``intervals`` as sorted, disjoint (start, end) pairs (touching ones joined)."""
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
    for start, end in merge(intervals):
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


def peak_held(held: dict[tuple[int, int], list], activation_bytes: list[float]) -> tuple[int, float]:
    """Peak count and bytes of micro-batches between their F start and B end on one rank; ``held`` maps
    (stage, micro_batch) to its [F start, last backward end, …] span."""
    events = []
    for (stage, _), span in held.items():
        start, end = span[0], span[1]
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
