"""Interleaved 1F1B (Megatron-LM, Narayanan et al. 2021): each rank holds ``virtual_stages`` model chunks.

Stage s sits on rank s mod pp, so a micro-batch loops over the ranks ``virtual_stages`` times. Micro-batches
go through in groups of pp: a rank runs forward of group g on its chunk 0, then chunk 1, …, and backward in
the reverse chunk order. Warm-up is (pp − rank − 1)·2 + (v − 1)·pp forwards, then one forward / one backward,
then the cool-down backwards. The bubble shrinks to (p − 1)/v chunk-times of the whole model per rank, at the
cost of v× more pipeline sends. As in Megatron-LM, the micro-batch count must be a multiple of pp.

With ``overlap_ep`` (``training.ep_overlap``, Megatron-LM's --overlap-moe-expert-parallel-comm) each steady-state
forward runs beside the backward issued with it, as one overlapped pair (:class:`Step` ``overlap``): one
micro-batch's expert all-to-all runs while the other computes, as DualPipe pairs them. Warm-up takes one forward
more, so that the last rank never pairs a backward with its own forward.
"""

from __future__ import annotations

from dataclasses import replace

from moesim.simulator.schedules import register
from moesim.simulator.schedules.base import Schedule, ScheduleError, Step
from moesim.workloads.ops import Phase


@register
class Interleaved1F1B(Schedule):
    name = "interleaved"
    description = "interleaved 1F1B (Megatron-LM): v virtual stages per rank, bubble ÷ v"
    overlap_ep = False  # steady-state F and B issued as overlapped pairs (training.ep_overlap)

    def check(self) -> None:
        if self.virtual_stages < 2:
            raise ScheduleError(f"schedule {self.name} needs virtual stages; set parallelism.virtual_stages=2 "
                                "or more (with v=1 use 1f1b)")
        if self.micro_batches % self.pp:
            raise ScheduleError(f"schedule {self.name} needs micro-batches ({self.micro_batches}) to be a multiple "
                                f"of pp={self.pp}; change parallelism.global_batch")

    def _chunk(self, k: int, forward: bool) -> tuple[int, int]:
        """(micro_batch, virtual chunk) of the k-th forward (or backward) a rank runs."""
        pp, v = self.pp, self.virtual_stages
        group, within = divmod(k, pp * v)
        chunk = within // pp
        if not forward:
            chunk = v - 1 - chunk
        return group * pp + within % pp, chunk

    def programs(self) -> list[list[Step]]:
        pp, v = self.pp, self.virtual_stages
        total = self.micro_batches * v
        programs = []
        for rank in range(pp):
            warmup = min((pp - rank - 1) * 2 + (v - 1) * pp, total)
            if self.overlap_ep:  # one forward more, so that no pair's B needs its own F
                warmup = min(warmup + 1, total)

            def forward(k: int) -> Step:
                mb, chunk = self._chunk(k, True)
                return Step(mb, chunk * pp + rank, Phase.F)

            def backward(k: int) -> list[Step]:
                mb, chunk = self._chunk(k, False)
                return self.backward_steps(mb, chunk * pp + rank)

            steps = [forward(k) for k in range(warmup)]
            for k in range(total - warmup):
                if self.overlap_ep:
                    steps.append(replace(forward(k + warmup), overlap=backward(k)[0]))
                    continue
                steps.append(forward(k + warmup))
                steps += backward(k)
            for k in range(total - warmup, total):
                steps += backward(k)
            programs.append(steps)
        return programs
