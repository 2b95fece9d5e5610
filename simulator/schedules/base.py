"""What a pipeline schedule produces: per rank, the ordered program of chunk steps.

A :class:`Step` names one chunk (micro-batch, stage, phase). Stages are numbered along the model
(0 … pp·virtual_stages − 1); ``stage_rank`` says which pipeline rank holds each. A step may carry an
``overlap`` partner: a second chunk run at the same time (DualPipe's overlapped F&B pairs), so that one
chunk's computation hides the other's communication. The engine adds the data dependencies (F of a stage
after F of the stage before; B after the B of the stage after, or after its own F on the last stage; W
after its B); the schedule only fixes the order each rank issues its chunks in. A schedule that does not
split the backward issues only F and B steps, and each B step also computes its weight gradients.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from workloads.ops import Phase


@dataclass(frozen=True, slots=True)
class Step:
    micro_batch: int
    stage: int
    phase: Phase
    overlap: "Step | None" = None

    def label(self) -> str:
        own = f"{self.phase.value}{self.micro_batch}@{self.stage}"
        return own if self.overlap is None else f"{own}+{self.overlap.label()}"


class ScheduleError(ValueError):
    """A layout the schedule cannot run (one line naming the field and the fix)."""


class Schedule(ABC):
    """Base class. Subclasses set ``name`` and implement :meth:`programs` (and :meth:`check` if needed)."""

    name: ClassVar[str] = ""
    splits_backward: ClassVar[bool] = False  # whether B and W are separate steps
    stages_per_rank: ClassVar[int] = 1  # model stages each rank holds per virtual stage (2 for DualPipe)

    def __init__(self, pp: int, micro_batches: int, virtual_stages: int = 1):
        self.pp = pp
        self.micro_batches = micro_batches
        self.virtual_stages = virtual_stages
        self.check()

    @property
    def stages(self) -> int:
        return self.pp * self.virtual_stages

    def check(self) -> None:
        if self.virtual_stages != 1:
            raise ScheduleError(f"schedule {self.name} takes no virtual stages; set parallelism.virtual_stages=1")

    def stage_rank(self, stage: int) -> int:
        """The pipeline rank that holds model stage ``stage`` (default: stage s on rank s mod pp)."""
        return stage % self.pp

    @abstractmethod
    def programs(self) -> list[list[Step]]:
        """For each rank, its steps in issue order."""

    def backward_steps(self, micro_batch: int, stage: int) -> list[Step]:
        """A full backward. Unless ``splits_backward``, the engine runs W's segments inside the B step."""
        return [Step(micro_batch, stage, Phase.B)]
