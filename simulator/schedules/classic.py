"""GPipe and 1F1B (PipeDream-Flush): the textbook synchronous pipeline schedules."""

from __future__ import annotations

from moesim.simulator.schedules import register
from moesim.simulator.schedules.base import Schedule, Step
from moesim.workloads.ops import Phase


@register
class GPipe(Schedule):
    """All forwards, then all backwards (in reverse micro-batch order). Bubble (p−1)/(m+p−1) of the step."""

    name = "gpipe"
    description = "GPipe: all forwards, then all backwards; every micro-batch in flight at once"

    def programs(self) -> list[list[Step]]:
        programs = []
        for rank in range(self.pp):
            steps = [Step(mb, rank, Phase.F) for mb in range(self.micro_batches)]
            for mb in reversed(range(self.micro_batches)):
                steps += self.backward_steps(mb, rank)
            programs.append(steps)
        return programs


@register
class OneFOneB(Schedule):
    """1F1B: pp−rank−1 warm-up forwards, then one forward / one backward, then the cool-down backwards.

    Same bubble as GPipe, but at most pp − rank micro-batches in flight on rank ``rank``.
    """

    name = "1f1b"
    description = "1F1B (PipeDream-Flush): GPipe's bubble, at most pp − rank micro-batches in flight"

    def programs(self) -> list[list[Step]]:
        programs = []
        m = self.micro_batches
        for rank in range(self.pp):
            warmup = min(self.pp - rank - 1, m)
            steps = [Step(mb, rank, Phase.F) for mb in range(warmup)]
            backward = 0
            for mb in range(warmup, m):
                steps.append(Step(mb, rank, Phase.F))
                steps += self.backward_steps(backward, rank)
                backward += 1
            while backward < m:
                steps += self.backward_steps(backward, rank)
                backward += 1
            programs.append(steps)
        return programs
