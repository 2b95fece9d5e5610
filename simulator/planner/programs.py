"""What a pipeline schedule's programs imply for the planner's bounds, without simulating: which stages each rank
runs and holds, how often it issues each kind of step, and how many micro-batches' activations it holds at once.
Cached per (schedule, pp, virtual stages, micro-batches): many layouts share them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from moesim.simulator.schedules import build_schedule


@lru_cache(maxsize=4096)
def rank_shares(schedule: str, pp: int, virtual: int) -> tuple[tuple[tuple[tuple[int, float], ...], ...],
                                                                 tuple[tuple[int, ...], ...]]:
    """Per rank, (stage, share of the micro-batches it runs that stage for), from the schedule's own placement;
    and per rank, the stages whose parameters it holds."""
    m0 = 4 * pp
    sched = build_schedule(schedule, pp, m0, virtual)
    shares: list[dict[int, float]] = [dict() for _ in range(pp)]
    for mb in range(m0):
        for stage in range(pp * virtual):
            rank = sched.rank_of(mb, stage)
            shares[rank][stage] = shares[rank].get(stage, 0.0) + 1.0 / m0
    held = [tuple(sched.rank_stages(r)) for r in range(pp)]
    return tuple(tuple(sorted(s.items())) for s in shares), tuple(held)


@dataclass(frozen=True)
class Programs:
    """What a schedule's programs imply for the bounds, per rank: ``steps`` how often it issues each kind of
    step — ((overlapped, chunks), count) with ``chunks`` the (stage, phase letter) pairs the step runs (a fused W
    shows as its own entry) — and ``held`` the micro-batches whose activations it must hold at once, as
    {stage: count} at each peak (only the peaks no other peak exceeds on every stage)."""

    steps: tuple[tuple[tuple[tuple[bool, tuple], int], ...], ...]
    held: tuple[tuple[tuple[tuple[int, int], ...], ...], ...]


@lru_cache(maxsize=2048)
def programs(schedule: str, pp: int, virtual: int, micro_batches: int) -> Programs:
    """:class:`Programs` from the schedule's own programs, so every schedule and micro-batch count is exact.

    Held activations: a rank runs its compute in program order, so just after a forward, every forward issued
    before it is done and no backward issued after it has started: the count then is held for real. In an
    overlapped pair the backward is taken to free its micro-batch before the forward adds one (the smaller)."""
    sched = build_schedule(schedule, pp, micro_batches, virtual)
    steps, held = [], []
    for program in sched.programs():
        counts: dict[tuple, int] = {}
        live: dict[int, int] = {}
        peaks: list[tuple[tuple[int, int], ...]] = []
        for step in program:
            chunks = list(sched.chunks(step))
            key = (step.overlap is not None, tuple((stage, phase.value) for _, stage, phase in chunks))
            counts[key] = counts.get(key, 0) + 1
            grew = False
            for _, stage, phase in sorted(chunks, key=lambda ch: ch[2].value != "B"):
                if phase.value == "B":
                    live[stage] = live.get(stage, 0) - 1
                elif phase.value == "F":
                    live[stage] = live.get(stage, 0) + 1
                    grew = True
            if grew:
                peaks.append(tuple(sorted((s, n) for s, n in live.items() if n > 0)))
        steps.append(tuple(counts.items()))
        held.append(_maximal(peaks))
    return Programs(tuple(steps), tuple(held))


def _maximal(peaks: list[tuple[tuple[int, int], ...]]) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The peaks that no other peak matches or exceeds on every stage."""
    out: list[dict[int, int]] = []
    for peak in sorted(set(peaks), key=lambda p: -sum(n for _, n in p)):
        cand = dict(peak)
        if not any(all(o.get(s, 0) >= n for s, n in cand.items()) for o in out):
            out.append(cand)
    return tuple(tuple(sorted(p.items())) for p in out)


@lru_cache(maxsize=512)
def chain(schedule: str, pp: int, virtual: int, micro_batches: int) -> tuple[tuple, ...]:
    """Every step of every rank in an order that puts each chunk after the chunk it waits for (the engine's data
    dependencies: F of stage s after F of stage s−1; B of stage s after B of stage s+1, on the last stage after
    its own F; W after its B), each as (rank, overlapped, chunks) with chunks (stage, phase index 0/1/2 for
    F/B/W, the chunk's id, the id of the chunk it waits for or −1, (stage, phase index) of the chunk whose output
    arrives from another stage as its input or (−1, −1)) in the order the step runs them. Ids number the
    (micro-batch, stage, phase) chunks from 0."""
    sched = build_schedule(schedule, pp, micro_batches, virtual)
    last = sched.stages - 1
    ids: dict[tuple[int, int, str], int] = {}

    def ident(key: tuple[int, int, str]) -> int:
        return ids.setdefault(key, len(ids))

    def waits_for(mb: int, stage: int, phase: str) -> tuple[int, int, str] | None:
        if phase == "F":
            return (mb, stage - 1, "F") if stage > 0 else None
        if phase == "B":
            return (mb, stage + 1, "B") if stage < last else (mb, stage, "F")
        return mb, stage, "B"

    def arrives_from(mb: int, stage: int, phase: str) -> tuple[int, int]:
        """(stage, phase index) of the chunk whose output arrives as this one's input, or (−1, −1)."""
        if phase == "F" and stage > 0:
            return stage - 1, 0
        if phase == "B" and stage < last:
            return stage + 1, 1
        return -1, -1

    programs_ = sched.programs()
    steps = [[(step.overlap is not None, [(mb, stage, phase.value) for mb, stage, phase in sched.chunks(step)])
              for step in program] for program in programs_]
    done: set[tuple[int, int, str]] = set()
    at = [0] * pp
    out = []
    while True:
        moved = False
        for rank in range(pp):
            while at[rank] < len(steps[rank]):
                overlapped, chunks = steps[rank][at[rank]]
                own = {ch for ch in chunks}
                if any(d is not None and d not in done and d not in own for d in (waits_for(*ch) for ch in chunks)):
                    break
                out.append((rank, overlapped, tuple(
                    (stage, "FBW".index(phase), ident((mb, stage, phase)),
                     -1 if waits_for(mb, stage, phase) is None else ident(waits_for(mb, stage, phase)),
                     arrives_from(mb, stage, phase))
                    for mb, stage, phase in chunks)))
                done.update(own)
                at[rank] += 1
                moved = True
        if not moved:
            break
    if any(a < len(s) for a, s in zip(at, steps)):  # pragma: no cover - the schedules validate their programs
        raise ValueError(f"schedule {schedule}: programs deadlock under the data dependencies")
    return tuple(out)
