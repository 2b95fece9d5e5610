"""Network models that price communication ops, behind one interface (``comm_time_s``)."""

from simulator.network.analytic import AnalyticNetwork
from simulator.network.groups import GroupGeometry, group_geometry

__all__ = ["AnalyticNetwork", "GroupGeometry", "group_geometry"]
