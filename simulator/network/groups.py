"""Where the members of each process group sit: how many share a node, how many nodes they span.

Ranks are ordered tp fastest, then cp, then dp, then pp (Megatron's default). EP groups are contiguous runs
of ``ep`` ranks inside a stage's dp·cp·tp ranks; the expert-data-parallel group (``edp``) strides over them.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.scenario import Scenario


@dataclass(frozen=True)
class GroupGeometry:
    size: int
    per_node: int  # members on one node
    nodes: int  # nodes spanned

    @property
    def intra_node(self) -> bool:
        return self.nodes == 1


def _geometry(size: int, stride: int, gpus_per_node: int) -> GroupGeometry:
    per_node = max(1, min(size, gpus_per_node // stride)) if stride < gpus_per_node else 1
    return GroupGeometry(size, per_node, -(-size // per_node))


def group_geometry(scenario: Scenario, group: str) -> GroupGeometry:
    """Geometry of process group ``group`` (``tp``, ``cp``, ``dp``, ``ep``, ``edp``, ``pp``)."""
    par = scenario.parallelism
    gpn = scenario.cluster.node.gpus_per_node
    size_stride = {
        "tp": (par.tp, 1),
        "cp": (par.cp, par.tp),
        "dp": (par.dp, par.tp * par.cp),
        "ep": (par.ep, 1),
        "edp": (par.dp * par.cp * par.tp // par.ep, par.ep),
        "pp": (par.pp, par.dp * par.cp * par.tp),
    }
    if group not in size_stride:
        raise KeyError(f"unknown process group {group!r}")
    return _geometry(*size_stride[group], gpn)
