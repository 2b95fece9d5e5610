"""Expected goodput of a long run under failures, with periodic checkpoints and restarts (Young/Daly).

A run on N GPUs and N/8 nodes fails at the system rate Λ = N_gpu / MTBF_gpu + N_node / MTBF_node (failures
per hour), so its mean time between failures is M = 1/Λ. With a checkpoint every τ hours costing C hours of
stalled training and a restart costing R hours, the expected fraction of wall time lost is, to first order
(Young 1974; Daly 2006):

    waste = C/τ + (τ/2 + R)/M        (the checkpoints; on each failure, half an interval of lost work + restart)

and goodput = 1 − waste. Without a given τ the optimum τ* = sqrt(2·C·M) is used. The expected training time
with failures is the failure-free time divided by goodput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOUR_S = 3600.0


@dataclass(frozen=True)
class Goodput:
    system_mtbf_h: float  # mean time between failures of the whole run
    checkpoint_interval_h: float
    checkpoint_s: float
    restart_s: float
    goodput: float  # useful fraction of wall time, in (0, 1]
    expected_failures: float  # over the run, failures included
    days_without_failures: float
    days_with_failures: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def checkpoint_seconds(checkpoint_bytes_per_node: float, storage_gbps_per_node: float) -> float:
    """Seconds to write one node's share of a checkpoint at the node's storage bandwidth (GB/s)."""
    return checkpoint_bytes_per_node / (storage_gbps_per_node * 1e9)


def expected_goodput(days_without_failures: float, gpus: int, gpus_per_node: int, gpu_mtbf_h: float,
                     node_mtbf_h: float | None, checkpoint_s: float, restart_s: float,
                     checkpoint_interval_h: float | None = None) -> Goodput:
    """Goodput and expected training days for a run that takes ``days_without_failures`` when nothing fails."""
    nodes = math.ceil(gpus / gpus_per_node)
    rate_per_h = gpus / gpu_mtbf_h + (nodes / node_mtbf_h if node_mtbf_h else 0.0)
    mtbf_h = 1.0 / rate_per_h
    c_h, r_h = checkpoint_s / HOUR_S, restart_s / HOUR_S
    if checkpoint_interval_h is None:
        checkpoint_interval_h = math.sqrt(2.0 * c_h * mtbf_h) if c_h > 0 else mtbf_h / 10.0
    tau = checkpoint_interval_h
    waste = (c_h / tau if tau > 0 else 0.0) + (tau / 2.0 + r_h) / mtbf_h
    goodput = max(1e-6, 1.0 - waste)
    days = days_without_failures / goodput
    return Goodput(mtbf_h, tau, checkpoint_s, restart_s, goodput, days * 24.0 * rate_per_h,
                   days_without_failures, days)
