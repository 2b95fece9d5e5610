"""What every network model is: the protocols the pricer and the engine program against.

- :class:`NetworkModel`: prices a communication op alone on the network (``comm_time_s``). The closed-form
  :class:`~moesim.simulator.network.analytic.AnalyticNetwork`, the graph-priced
  :class:`~moesim.simulator.network.scenario_network.ScenarioNetwork` (analytic or per-op flow fidelity) and the
  time-shared :class:`~moesim.simulator.network.shared.SharedNetwork` all are.
- :class:`TimeSharedNetwork`: also moves ops in simulated time, sharing links between all traffic in flight;
  the engine starts each op on it when the op starts (``plan`` once per op and GPUs, ``start`` per run).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import simpy

from moesim.workloads.ops import Comm


@runtime_checkable
class NetworkModel(Protocol):
    def comm_time_s(self, comm: Comm, rank: int = 0) -> float:
        """Seconds for every member of ``comm.group`` to finish ``comm``, all arriving together, on the GPUs of
        pipeline rank ``rank``, with no other traffic."""
        ...


@runtime_checkable
class TimeSharedNetwork(NetworkModel, Protocol):
    def rank_gpus(self, rank: int) -> tuple[int, ...]:
        """The global GPUs of pipeline rank ``rank`` (what a representative unit stands for)."""
        ...

    def plan(self, comms: tuple[Comm, ...], gpus: tuple[int, ...], send_to: int = -1):
        """What ``comms``, run one after another by ``gpus``, move on which links (reused across runs)."""
        ...

    def attach(self, env: simpy.Environment):
        """Start moving plans on ``env``'s clock, nothing in flight."""
        ...

    def start(self, plan) -> simpy.Event:
        """Start ``plan`` now; the event fires when its bytes have arrived, its value the last latency (s)."""
        ...
