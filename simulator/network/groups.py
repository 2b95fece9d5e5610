"""Process groups: which GPUs meet in each TP, CP, DP, EP, expert-DP and PP group, and where they sit.

Ranks are ordered tp fastest, then cp, then dp, then pp (Megatron's default): GPU ``g`` sits on pipeline rank
``g // S`` at local index ``g % S``, with ``S = dp·cp·tp`` GPUs per pipeline rank. EP groups are contiguous runs
of ``ep`` ranks inside a stage's dp·cp·tp ranks, ``expert_tp`` apart (expert tensor parallelism, ``etp``, is
fastest, as in Megatron's expert rank order tp-ep-dp); the expert-data-parallel group (``edp``) strides over
the ep·expert_tp block. FSDP's shard group (``fsdp``) is a run of the DP group, its replicas (``hsdp``) stride it. The
gradient and parameter synchronisation at the end of a step (DP and expert-DP together) meets over the union of
the two groups, the ``tail`` group. One :class:`ProcessGroups` serves the engine's rendezvous (via
:mod:`moesim.simulator.engine.cohorts`), the network models' group instances and their geometry alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from moesim.workloads.scenario import Scenario

KINDS = ("tp", "cp", "dp", "ep", "etp", "edp", "fsdp", "hsdp", "pp")


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


@dataclass(frozen=True)
class ProcessGroups:
    """The process groups of a parallel layout on nodes of ``gpus_per_node`` GPUs."""

    tp: int
    cp: int
    dp: int
    ep: int
    pp: int
    gpus_per_node: int
    etp: int = 1  # expert tensor parallelism
    fsdp_shard: int = 0  # FSDP shard group size (0: no FSDP, the whole DP group)

    @classmethod
    def of(cls, scenario: Scenario) -> ProcessGroups:
        par = scenario.parallelism
        shard = par.fsdp.shard if par.fsdp is not None else 0
        return cls(par.tp, par.cp, par.dp, par.ep, par.pp, scenario.cluster.node.gpus_per_node, par.expert_tp, shard)

    @property
    def stage_gpus(self) -> int:
        """GPUs per pipeline rank."""
        return self.dp * self.cp * self.tp

    def size_stride(self, kind: str) -> tuple[int, int]:
        """Members of one group of ``kind`` and the rank distance between neighbours."""
        block, shard = self.ep * self.etp, self.fsdp_shard or self.dp
        table = {"tp": (self.tp, 1), "cp": (self.cp, self.tp), "dp": (self.dp, self.tp * self.cp),
                 "ep": (self.ep, self.etp), "etp": (self.etp, 1), "edp": (self.stage_gpus // block, block),
                 "pp": (self.pp, self.stage_gpus), "fsdp": (shard, self.tp * self.cp),
                 "hsdp": (self.dp // shard, self.tp * self.cp * shard)}
        if kind not in table:
            raise KeyError(f"unknown process group {kind!r}")
        return table[kind]

    def geometry(self, kind: str) -> GroupGeometry:
        return _geometry(*self.size_stride(kind), self.gpus_per_node)

    def key(self, kind: str, local: int):
        """The instance of group ``kind`` (``tp``, ``cp``, ``dp``, ``ep``, ``edp``, ``tail``) that the GPU at
        local index ``local`` of its pipeline rank belongs to; equal keys, same instance."""
        tp, cp = self.tp, self.cp
        if kind == "tp":
            return local // tp
        if kind == "cp":
            return local % tp, local // (tp * cp)
        if kind == "dp":
            return local % (tp * cp)
        if kind == "ep":
            return local // self.ep if self.etp == 1 else (local // (self.ep * self.etp), local % self.etp)
        if kind == "etp":
            return local // self.etp
        if kind == "edp":
            return local % (self.ep * self.etp)
        if kind in ("fsdp", "hsdp"):
            shard = self.fsdp_shard or self.dp
            data = local // (tp * cp)  # index in the DP group
            return (local % (tp * cp), data // shard) if kind == "fsdp" else (local % (tp * cp), data % shard)
        if kind == "tail":
            return self._tail[local]
        raise KeyError(f"unknown process group {kind!r}")

    @cached_property
    def _tail(self) -> list[int]:
        """Per local index, its component of DP ∪ expert-DP (union-find)."""
        stage = self.stage_gpus
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for local in range(stage):
            a, b = find(local), find(stage + local % (self.tp * self.cp))
            c = find(2 * stage + local % (self.ep * self.etp))
            parent[a] = b
            parent[find(c)] = find(b)
        return [find(local) for local in range(stage)]

    def instances(self, kind: str, rank: int = 0) -> list[list[int]]:
        """Global GPUs of every instance of group ``kind`` on pipeline rank ``rank``, in rank order."""
        stage = self.stage_gpus
        groups: dict = {}
        for local in range(stage):
            groups.setdefault(self.key(kind, local), []).append(rank * stage + local)
        return list(groups.values())


def group_geometry(scenario: Scenario, group: str) -> GroupGeometry:
    """Geometry of process group ``group`` (``tp``, ``cp``, ``dp``, ``ep``, ``edp``, ``pp``)."""
    return ProcessGroups.of(scenario).geometry(group)
