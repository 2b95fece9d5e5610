"""Network models that price communication ops, behind one interface (:class:`NetworkModel`)."""

from moesim.simulator.network.analytic import AnalyticNetwork
from moesim.simulator.network.groups import GroupGeometry, group_geometry
from moesim.simulator.network.model import NetworkModel, TimeSharedNetwork

__all__ = ["AnalyticNetwork", "GraphNetwork", "GroupGeometry", "NetworkModel", "TimeSharedNetwork",
           "group_geometry"]


def __getattr__(name: str):
    # The graph model needs networkx (~0.1 CPU s to import): loaded when asked for, not by the analytic model.
    if name == "GraphNetwork":
        from moesim.simulator.network.graph_model import GraphNetwork
        return GraphNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
