"""Network models that price communication ops, behind one interface (``comm_time_s``)."""

from simulator.network.analytic import AnalyticNetwork
from simulator.network.graph_model import GraphNetwork
from simulator.network.groups import GroupGeometry, group_geometry

__all__ = ["AnalyticNetwork", "GraphNetwork", "GroupGeometry", "group_geometry"]
