"""DualPipe and DualPipeV (DeepSeek-V3 TR §3.2.1; deepseek-ai/DualPipe dualpipe.py and dualpipev.py).

DualPipe feeds micro-batches from both ends of the pipeline. With R ranks (R even) and m micro-batches (m even,
m ≥ 2R), the first m/2 travel in direction 0 (stage s on rank s) and the other m/2 in direction 1 (stage s on
rank R − 1 − s), so rank r holds the parameters of stages r and R − 1 − r: two copies of the model in all.
DualPipeV is the same program "cut in half": R ranks, 2R stages in a V, stage s on rank s going down and stage
2R − 1 − s on rank s coming back (m ≥ 2R micro-batches), one copy of the parameters.

Each rank runs the reference implementation's eight phases, where "phase 0/1" is the chunk a rank holds for
direction 0/1 (swapped on the second half of the ranks, so phase 0 always enters at the nearer end) in
DualPipe, or the down/up leg of the V in DualPipeV, n = R/2 (DualPipe) or R (DualPipeV), h the
rank's half-rank and c the micro-batches per phase:
  1. 2(n − h − 1) forwards of phase 0;            2. h + 1 pairs (F0, F1);
  3. n − h − 1 triples (B1 with W deferred, W, F1) — zero-bubble style;
  4. c − 2n + h + 1 times: overlapped (F0 with B1), then overlapped (F1 with B0) — the main phase;
  5. n − h − 1 times: B1, then overlapped (F1 with B0);
  6. h + 1 pairs (B1, B0), deferring W from the middle on;
  7. n − h − 1 pairs (W, B0 with W deferred);    8. h + 1 remaining W.
Deferred W's are taken first-in first-out, as the reference's WeightGradStore queue does. On the middle ranks
(DualPipe) and the last rank (DualPipeV) the first pair of phase 4 runs back to back, not overlapped, as in the
reference. Every other backward computes its W in place, overlapped pairs included.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque

from moesim.simulator.schedules import register
from moesim.simulator.schedules.base import Schedule, ScheduleError, Step
from moesim.workloads.ops import Phase


class _RankProgram:
    """Builds one rank's steps, tracking each phase's next forward and backward and the deferred-W queue."""

    def __init__(self, schedule: "_DualPipeBase", rank: int):
        self.schedule = schedule
        self.rank = rank
        self.next_f = [0, 0]
        self.next_b = [0, 0]
        self.deferred: deque[Step] = deque()
        self.steps: list[Step] = []

    def _chunk(self, phase: int, index: int, kind: Phase, with_weight: bool = False) -> Step:
        mb, stage = self.schedule.chunk_of(self.rank, phase, index)
        return Step(mb, stage, kind, with_weight=with_weight)

    def forward(self, phase: int) -> Step:
        step = self._chunk(phase, self.next_f[phase], Phase.F)
        self.next_f[phase] += 1
        return step

    def backward(self, phase: int, zero_bubble: bool = False) -> Step:
        step = self._chunk(phase, self.next_b[phase], Phase.B, with_weight=not zero_bubble)
        self.next_b[phase] += 1
        if zero_bubble:
            self.deferred.append(Step(step.micro_batch, step.stage, Phase.W))
        return step

    def add_forward(self, phase: int) -> None:
        self.steps.append(self.forward(phase))

    def add_backward(self, phase: int, zero_bubble: bool = False) -> None:
        self.steps.append(self.backward(phase, zero_bubble))

    def add_weight(self) -> None:
        self.steps.append(self.deferred.popleft())

    def add_pair(self, forward_phase: int, backward_phase: int) -> None:
        forward = self.forward(forward_phase)
        self.steps.append(Step(forward.micro_batch, forward.stage, Phase.F,
                               overlap=self.backward(backward_phase)))


class _DualPipeBase(Schedule):
    """The eight-phase program shared by DualPipe and DualPipeV; subclasses say where each chunk sits."""

    splits_backward = True

    @property
    @abstractmethod
    def halves(self) -> int:
        """n: R/2 for DualPipe, R for DualPipeV."""

    @property
    @abstractmethod
    def chunks_per_phase(self) -> int:
        """c: micro-batches each of a rank's two chunks runs."""

    @abstractmethod
    def half_rank(self, rank: int) -> int:
        """h: the rank's distance from the nearer pipeline end (DualPipe) or the rank (DualPipeV)."""

    @abstractmethod
    def first_pair_serial(self, rank: int) -> bool:
        """Whether the first pair of phase 4 runs back to back (the ranks where the two flows meet)."""

    @abstractmethod
    def chunk_of(self, rank: int, phase: int, index: int) -> tuple[int, int]:
        """(micro_batch, stage) of the ``index``-th chunk of ``phase`` on ``rank``."""

    def programs(self) -> list[list[Step]]:
        n, c = self.halves, self.chunks_per_phase
        programs = []
        for rank in range(self.pp):
            h = self.half_rank(rank)
            p = _RankProgram(self, rank)
            for _ in range(2 * (n - h - 1)):                          # 1: nF0
                p.add_forward(0)
            for _ in range(h + 1):                                    # 2: nF0F1
                p.add_forward(0)
                p.add_forward(1)
            for _ in range(n - h - 1):                                # 3: nB1W1F1, zero bubble
                p.add_backward(1, zero_bubble=True)
                p.add_weight()
                p.add_forward(1)
            for i in range(c - 2 * n + h + 1):                        # 4: nF0B1F1B0, the main phase
                if i == 0 and self.first_pair_serial(rank):
                    p.add_forward(0)
                    p.add_backward(1)
                else:
                    p.add_pair(0, 1)
                p.add_pair(1, 0)
            for _ in range(n - h - 1):                                # 5: nB1F1B0
                p.add_backward(1)
                p.add_pair(1, 0)
            zero_bubble = False                                       # 6: nB1B0, W deferred from the middle
            for i in range(h + 1):
                if i == (h + 1) // 2 and h % 2 == 1:
                    zero_bubble = True
                p.add_backward(1, zero_bubble)
                if i == (h + 1) // 2 and h % 2 == 0:
                    zero_bubble = True
                p.add_backward(0, zero_bubble)
            for _ in range(n - h - 1):                                # 7: nWB0, zero bubble
                p.add_weight()
                p.add_backward(0, zero_bubble=True)
            while p.deferred:                                         # 8: nW
                p.add_weight()
            programs.append(p.steps)
        return programs


@register
class DualPipe(_DualPipeBase):
    name = "dualpipe"
    description = "DualPipe (DeepSeek-V3): bidirectional, overlapped F&B pairs, parameters held twice"
    stages_per_rank = 2

    def check(self) -> None:
        if self.virtual_stages != 1:
            raise ScheduleError(f"schedule {self.name} places two stages per rank itself; set "
                                "parallelism.virtual_stages=1")
        if self.pp % 2:
            raise ScheduleError(f"schedule {self.name} needs an even pp (got {self.pp}); set parallelism.pp "
                                "to an even number or use dualpipev")
        if self.micro_batches % 2 or self.micro_batches < 2 * self.pp:
            raise ScheduleError(f"schedule {self.name} needs an even number of micro-batches ≥ 2·pp = "
                                f"{2 * self.pp} (got {self.micro_batches}); raise parallelism.global_batch")

    @property
    def halves(self) -> int:
        return self.pp // 2

    @property
    def chunks_per_phase(self) -> int:
        return self.micro_batches // 2

    def half_rank(self, rank: int) -> int:
        return min(rank, self.pp - 1 - rank)

    def first_pair_serial(self, rank: int) -> bool:
        return rank in (self.pp // 2 - 1, self.pp // 2)

    def rank_of(self, micro_batch: int, stage: int) -> int:
        return stage if micro_batch < self.micro_batches // 2 else self.pp - 1 - stage

    def rank_stages(self, rank: int) -> list[int]:
        return [rank, self.pp - 1 - rank]

    def chunk_of(self, rank: int, phase: int, index: int) -> tuple[int, int]:
        # As in the reference, ranks of the second half swap their two phases: phase 0 is always the
        # direction whose micro-batches enter at the nearer end.
        if phase ^ (rank >= self.pp // 2) == 0:
            return index, rank
        return self.micro_batches // 2 + index, self.pp - 1 - rank


@register
class DualPipeV(_DualPipeBase):
    name = "dualpipev"
    description = "DualPipeV: DualPipe cut in half, two stages per rank in a V, one parameter copy"
    stages_per_rank = 2

    def check(self) -> None:
        if self.virtual_stages != 2:
            raise ScheduleError(f"schedule {self.name} runs two stages per rank in a V; set "
                                "parallelism.virtual_stages=2")
        if self.micro_batches < 2 * self.pp:
            raise ScheduleError(f"schedule {self.name} needs micro-batches ≥ 2·pp = {2 * self.pp} "
                                f"(got {self.micro_batches}); raise parallelism.global_batch")

    @property
    def halves(self) -> int:
        return self.pp

    @property
    def chunks_per_phase(self) -> int:
        return self.micro_batches

    def half_rank(self, rank: int) -> int:
        return rank

    def first_pair_serial(self, rank: int) -> bool:
        return rank == self.pp - 1

    def stage_rank(self, stage: int) -> int:
        return stage if stage < self.pp else 2 * self.pp - 1 - stage

    def chunk_of(self, rank: int, phase: int, index: int) -> tuple[int, int]:
        return index, (rank if phase == 0 else 2 * self.pp - 1 - rank)
