"""What a pipeline schedule produces: per rank, the ordered program of chunk steps.

A :class:`Step` names one chunk (micro-batch, stage, phase). Stages are numbered along the model
(0 … stages − 1); :meth:`Schedule.rank_of` says which pipeline rank runs a micro-batch's stage (in DualPipe
it depends on the direction the micro-batch travels). A step may carry an ``overlap`` partner: a second chunk
run at the same time (DualPipe's overlapped F&B pairs), so that one chunk's computation hides the other's
communication. The engine adds the data dependencies (F of a stage after F of the stage before; B after the
B of the stage after, or after its own F on the last stage; W after its B); the schedule only fixes the order
each rank issues its chunks in.

Weight gradients: a schedule that does not split the backward issues only F and B steps, and each B step also
computes its weight gradients. One that does (``splits_backward``) issues W steps itself, except for a B step
marked ``with_weight``, which computes them in place (DualPipe does so outside its zero-bubble phases and in
every overlapped pair).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Iterator

from moesim.workloads.ops import Phase


@dataclass(frozen=True, slots=True)
class Step:
    micro_batch: int
    stage: int
    phase: Phase
    overlap: "Step | None" = None
    with_weight: bool = False  # a B step that also computes its W (only meaningful when splits_backward)

    def label(self) -> str:
        own = f"{self.phase.value}{'W' if self.with_weight else ''}{self.micro_batch}@{self.stage}"
        return own if self.overlap is None else f"{own}+{self.overlap.label()}"


class ScheduleError(ValueError):
    """A layout the schedule cannot run (one line naming the field and the fix)."""


class Schedule(ABC):
    """Base class. Subclasses set ``name`` and implement :meth:`programs` (and :meth:`check` if needed)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    splits_backward: ClassVar[bool] = False  # whether B and W are separate steps
    stages_per_rank: ClassVar[int] = 1  # model stages each rank holds parameters of (2 for DualPipe)

    def __init__(self, pp: int, micro_batches: int, virtual_stages: int = 1):
        if pp < 1 or micro_batches < 1 or virtual_stages < 1:
            raise ScheduleError(f"schedule {self.name}: pp, micro-batches and virtual stages must be ≥ 1")
        self.pp = pp
        self.micro_batches = micro_batches
        self.virtual_stages = virtual_stages
        self.check()

    @property
    def stages(self) -> int:
        """Model stages the layers are cut into (pp × virtual_stages)."""
        return self.pp * self.virtual_stages

    def check(self) -> None:
        if self.virtual_stages != 1:
            raise ScheduleError(f"schedule {self.name} takes no virtual stages; set parallelism.virtual_stages=1")

    def stage_rank(self, stage: int) -> int:
        """The pipeline rank that holds model stage ``stage`` (default: stage s on rank s mod pp)."""
        return stage % self.pp

    def rank_of(self, micro_batch: int, stage: int) -> int:
        """The rank that runs ``stage`` for ``micro_batch`` (the same for every micro-batch unless overridden)."""
        return self.stage_rank(stage)

    def rank_stages(self, rank: int) -> list[int]:
        """The model stages whose parameters ``rank`` holds."""
        return [s for s in range(self.stages) if self.stage_rank(s) == rank]

    @abstractmethod
    def programs(self) -> list[list[Step]]:
        """For each rank, its steps in issue order."""

    def backward_steps(self, micro_batch: int, stage: int) -> list[Step]:
        """A full backward. Unless ``splits_backward``, the engine runs W's segments inside the B step."""
        return [Step(micro_batch, stage, Phase.B)]

    def computes_weight(self, step: Step) -> bool:
        """Whether this step (not its overlap partner) is a B that also computes its W in place."""
        return step.phase is Phase.B and (step.with_weight or not self.splits_backward)

    def chunks(self, step: Step) -> Iterator[tuple[int, int, Phase]]:
        """The (micro_batch, stage, phase) chunks a step runs, its overlap partner and fused W included."""
        for part in (step, step.overlap):
            if part is None:
                continue
            yield part.micro_batch, part.stage, part.phase
            if self.computes_weight(part):
                yield part.micro_batch, part.stage, Phase.W

    def validate(self, programs: list[list[Step]] | None = None) -> list[list[Step]]:
        """Check the program statically: one program per rank, every chunk exactly once, on the rank that runs
        it, F before B before W on each rank. Returns the programs; raises :class:`ScheduleError`."""
        programs = self.programs() if programs is None else programs
        if len(programs) != self.pp:
            raise ScheduleError(f"schedule {self.name} built {len(programs)} programs for pp={self.pp}")
        seen: Counter = Counter()
        for rank, program in enumerate(programs):
            order: dict[tuple[int, int, Phase], int] = {}
            for index, step in enumerate(program):
                for chunk in self.chunks(step):
                    mb, stage, phase = chunk
                    if self.rank_of(mb, stage) != rank:
                        raise ScheduleError(f"schedule {self.name}: rank {rank} runs {phase.value}{mb}@{stage}, "
                                            f"which belongs to rank {self.rank_of(mb, stage)}")
                    seen[chunk] += 1
                    order.setdefault(chunk, index)
            for (mb, stage, phase), index in order.items():
                before = {Phase.B: Phase.F, Phase.W: Phase.B}.get(phase)
                if before is not None and order.get((mb, stage, before), index + 1) > index:
                    raise ScheduleError(f"schedule {self.name}: rank {rank} issues {phase.value}{mb}@{stage} "
                                        f"before its {before.value}")
        expected = {(mb, s, ph) for mb in range(self.micro_batches) for s in range(self.stages) for ph in Phase}
        wrong = [c for c in expected if seen[c] != 1] + [c for c in seen if c not in expected]
        if wrong:
            first = sorted(wrong)[0]
            mb, stage, phase = first
            raise ScheduleError(f"schedule {self.name}: chunk {phase.value}{mb}@{stage} runs {seen[first]} "
                                f"times, not once")
        return programs
