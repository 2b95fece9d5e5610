"""ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): 1F1B with the backward split in two.

B (gradients for inputs) stays on the critical path between stages; W (gradients for weights) only has to
happen before the optimizer, so a rank may defer it to fill the idle slots 1F1B leaves. Rank i keeps 1F1B's
forward/backward order (pp − i − 1 warm-up forwards, then one forward / one backward, then the cool-down
backwards) and issues the W of micro-batch j right after the B of micro-batch j + i: the later ranks, which
1F1B leaves idle in the cool-down, defer more W's, and the B's flow back to the first rank unhindered. Every
rank then holds at most pp micro-batches between F and W — 1F1B's peak, on its first rank — and with
F = B = W the bubble falls from 1F1B's (p − 1)(F + B + W) to (p − 1)(F + B − W).
"""

from __future__ import annotations

from moesim.simulator.schedules import register
from moesim.simulator.schedules.base import Schedule, Step
from moesim.workloads.ops import Phase


@register
class ZeroBubbleH1(Schedule):
    name = "zb-h1"
    description = "ZB-H1 zero-bubble: 1F1B order with B and W split, W deferred into the bubbles"
    splits_backward = True

    def programs(self) -> list[list[Step]]:
        m, programs = self.micro_batches, []
        for rank in range(self.pp):
            warmup = min(self.pp - rank - 1, m)
            steps = [Step(mb, rank, Phase.F) for mb in range(warmup)]
            weights = 0  # W's issued so far, in micro-batch order

            def backward(mb: int) -> None:
                nonlocal weights
                steps.append(Step(mb, rank, Phase.B))
                while weights <= mb - rank:  # W of micro-batch j follows the B of j + rank
                    steps.append(Step(weights, rank, Phase.W))
                    weights += 1

            for k in range(m - warmup):
                steps.append(Step(k + warmup, rank, Phase.F))
                backward(k)
            for k in range(m - warmup, m):
                backward(k)
            steps += [Step(mb, rank, Phase.W) for mb in range(weights, m)]
            programs.append(steps)
        return programs
