"""The analytic network model on a cluster with link faults (``faults.links`` with ``run.network: analytic``).

A failed or degraded cable or switch needs routes, so its cost is measured on the cluster graph: each
communication op is priced on the graph twice at analytic fidelity (per-link loads, no cross-traffic), with the
faults and without them, and the difference (the time the faults add) is added to the closed-form price of
:class:`~moesim.simulator.network.analytic.AnalyticNetwork`. The closed form therefore prices the op as it does on a
healthy cluster (the same routing, link rates and latencies), and the graph prices only what the faults change:
a fault that leaves an op's routes alone leaves its price alone, and a cable degraded by 1 % can never make a
step faster than the healthy one (before, the whole op moved to the graph's price, and the graph routed
balanced tokens whatever the scenario's routing: a skewed step got faster with a fault).
"""

from __future__ import annotations

from moesim.workloads.ops import Comm
from moesim.workloads.scenario import Scenario

from moesim.simulator.network.analytic import AnalyticNetwork
from moesim.simulator.network.scenario_network import ScenarioNetwork


class FaultedNetwork:
    """Prices :class:`Comm` records of a scenario with link faults; ``comm_time_s`` as every network model."""

    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        self.closed_form = AnalyticNetwork(scenario)
        self.faulted = ScenarioNetwork(scenario, "analytic")
        healthy = scenario.model_copy(update={"faults": scenario.faults.model_copy(update={"links": []})})
        self.healthy = ScenarioNetwork(healthy, "analytic")

    def ep_traffic(self):
        """Per-token EP traffic of the scenario's routing (the same for every network model)."""
        return self.closed_form.ep_traffic()

    def fault_s(self, comm: Comm, rank: int = 0) -> float:
        """Seconds the faults add to ``comm`` on pipeline rank ``rank``'s GPUs (the graph's price with them
        minus without them)."""
        return self.faulted.comm_time_s(comm, rank) - self.healthy.comm_time_s(comm, rank)

    def comm_time_s(self, comm: Comm, rank: int = 0) -> float:
        """Seconds for every member of ``comm.group`` to finish ``comm`` on pipeline rank ``rank``'s GPUs."""
        return self.closed_form.comm_time_s(comm, rank) + self.fault_s(comm, rank)
