"""What a link moves, for every network model: its nominal rate × the efficiency of its class, and for expert
parallelism's dispatch and combine no more than DeepEP's kernels reach on a GPU's own NVLink and NIC links.

Written once here; :class:`~moesim.simulator.network.analytic.AnalyticNetwork` applies it per GPU (NVLink, NIC) and
:class:`~moesim.simulator.network.graph_model.GraphNetwork` per link of the cluster graph.

- usable rate: NVLink × ``nvlink_efficiency`` (DeepSeek-V3 TR §3.2.2: ~160 of 200 GB/s on H800), NIC and
  switch links × ``nic_efficiency`` ("Insights into DeepSeek-V3" §4.3: ~40 of 50 GB/s per 400G NIC), PCIe at
  its nominal rate.
- EP rate: the lower of the usable rate and ``ep_nvlink_efficiency`` / ``ep_nic_efficiency`` × the class's
  nominal per-GPU rate (DeepEP's kernels, measured: :mod:`moesim.calibration.deepep`). A per-GPU limit, so capping the
  GPU's links is exact; switch-to-switch links keep their usable rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkRates:
    """Link efficiencies of one network (fractions of nominal); ``ep_*`` None: EP moves at the usable rate."""

    nvlink_efficiency: float = 0.8
    nic_efficiency: float = 0.8
    ep_nvlink_efficiency: float | None = None
    ep_nic_efficiency: float | None = None

    @classmethod
    def of(cls, network) -> LinkRates:
        """The rates a scenario's ``cluster.network`` section sets."""
        return cls(network.nvlink_efficiency, network.nic_efficiency, network.ep_nvlink_efficiency,
                   network.ep_nic_efficiency)

    def efficiency(self, link_class: str) -> float:
        """Usable fraction of a link of class ``nvlink``, ``pcie``, ``nic`` or ``fabric``."""
        return {"nvlink": self.nvlink_efficiency, "pcie": 1.0, "nic": self.nic_efficiency,
                "fabric": self.nic_efficiency}[link_class]

    def usable_gbps(self, link_class: str, nominal_gbps):
        """What a link of ``link_class`` moves (GB/s; a number or a numpy array of them)."""
        return nominal_gbps * self.efficiency(link_class)

    def ep_kernel_gbps(self, link_class: str, nominal_gbps: float) -> float | None:
        """What DeepEP's kernels reach on a GPU's ``nvlink`` or ``nic`` link of ``nominal_gbps`` (GB/s); None
        where they set no limit (other classes, or no measured fraction)."""
        fraction = {"nvlink": self.ep_nvlink_efficiency, "nic": self.ep_nic_efficiency}.get(link_class)
        return None if fraction is None else fraction * nominal_gbps

    def ep_gbps(self, link_class: str, usable_gbps: float, nominal_gbps: float) -> float:
        """What EP dispatch/combine moves on a GPU's link: the lower of its usable rate and the kernels'."""
        kernel = self.ep_kernel_gbps(link_class, nominal_gbps)
        return usable_gbps if kernel is None else min(usable_gbps, kernel)
