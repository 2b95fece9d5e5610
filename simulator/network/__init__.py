"""Network models that price communication ops, behind one interface (:class:`NetworkModel`)."""

from simulator.network.analytic import AnalyticNetwork
from simulator.network.graph_model import GraphNetwork
from simulator.network.groups import GroupGeometry, group_geometry
from simulator.network.model import NetworkModel, TimeSharedNetwork

__all__ = ["AnalyticNetwork", "GraphNetwork", "GroupGeometry", "NetworkModel", "TimeSharedNetwork",
           "group_geometry"]
