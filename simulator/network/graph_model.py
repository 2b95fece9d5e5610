"""The graph network model: collectives routed over a cluster graph and priced analytically or as flows.

Both fidelities use the same routes and capacities. Each link moves at its usable rate, EP dispatch/combine at
their EP rate (:mod:`moesim.simulator.network.link_rates`, as the analytic model). Latencies are per link
(topologies/data/topologies.yaml, from "Insights" Table 5).

- ``analytic``: per step, the busiest link's bytes / capacity plus the slowest path's latency; concurrent
  collectives do not see each other.
- ``flow``: max-min fair fluid sharing (:mod:`moesim.simulator.network.flows`); concurrent collectives contend.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np

from moesim.simulator.network import collectives as algo
from moesim.simulator.network.flows import GB, US, Program, Step, analytic_step_s, simulate
from moesim.simulator.network.link_rates import LinkRates
from moesim.topologies.graph import LINK_CLASSES
from moesim.topologies.routing import Router
from moesim.workloads.routing import EpTraffic

FIDELITIES = ("analytic", "flow")


@dataclass(frozen=True)
class CollectiveResult:
    """A priced collective: seconds, algorithm bandwidth (bytes per rank / time, GB/s), bytes per link class."""

    name: str
    fidelity: str
    members: int
    time_s: float
    bytes_per_rank: float
    algbw_gbps: float
    link_bytes: dict[str, float]
    flows: int
    steps: int
    bottleneck: str


class GraphNetwork:
    """Routes and prices collectives on one cluster graph."""

    def __init__(self, graph: nx.DiGraph, fidelity: str = "analytic", nvlink_efficiency: float = 0.8,
                 nic_efficiency: float = 0.8, ep_nvlink_efficiency: float | None = None,
                 ep_nic_efficiency: float | None = None):
        if fidelity not in FIDELITIES:
            raise ValueError(f"fidelity must be one of {', '.join(FIDELITIES)}, not {fidelity!r}")
        self.graph = graph
        self.fidelity = fidelity
        self.router = Router(graph)
        rates = LinkRates(nvlink_efficiency, nic_efficiency, ep_nvlink_efficiency, ep_nic_efficiency)
        classes = self.router.link_class
        eff = np.array([rates.efficiency(c) for c in classes])
        self.capacity_bps = self.router.capacity_gbps * eff * GB
        # EP dispatch/combine: a GPU's own NVLink and NIC links at their EP rate, the kernels' limit being a
        # fraction of the class's nominal rate (its fastest link: a degraded link keeps its own lower limit).
        self.ep_capacity_bps = None
        for cls in ("nvlink", "nic"):
            links = classes == cls
            kernel_gbps = rates.ep_kernel_gbps(cls, float(self.router.capacity_gbps[links].max())) \
                if links.any() else None
            if kernel_gbps is None:
                continue
            kernel_bps = kernel_gbps * GB
            if (self.capacity_bps[links] > kernel_bps).any():
                if self.ep_capacity_bps is None:
                    self.ep_capacity_bps = self.capacity_bps.copy()
                self.ep_capacity_bps[links] = np.minimum(self.capacity_bps[links], kernel_bps)
        self.gpus = self.router.gpus

    def node_of(self, gpu: str) -> int:
        return self.router.node_of(gpu)

    def members(self, count: int, first: int = 0, stride: int = 1) -> list[str]:
        """GPU names of ranks first, first+stride, ... (``count`` of them)."""
        ranks = [first + i * stride for i in range(count)]
        if ranks and ranks[-1] >= len(self.gpus):
            raise ValueError(f"{count} members at stride {stride} need {ranks[-1] + 1} GPUs; the topology has "
                             f"{len(self.gpus)}")
        return [self.gpus[r] for r in ranks]

    # --- routing phases into steps ----------------------------------------------------------------------
    def step(self, phase: algo.Phase) -> Step:
        route = self.router.route
        routes = [route(src, dst) for src, dst, _ in phase.transfers]
        if not routes:
            empty = np.zeros(0)
            return Step(empty, empty, empty.astype(np.int64), empty.astype(np.int64), empty, phase.repeat,
                        phase.latency_factor, phase.name, empty.astype(np.int64))
        lengths = np.fromiter((len(r.links) for r in routes), dtype=np.int64, count=len(routes))
        return Step(np.fromiter((t[2] for t in phase.transfers), dtype=float, count=len(routes)),
                    np.fromiter((r.latency_us for r in routes), dtype=float, count=len(routes)) * US,
                    np.repeat(np.arange(len(routes)), lengths), np.concatenate([r.links for r in routes]),
                    np.concatenate([r.weights for r in routes]), phase.repeat, phase.latency_factor, phase.name,
                    np.concatenate([r.fabric_pos for r in routes]))

    # --- symmetry: one group routed, its copies moved -----------------------------------------------------
    @cached_property
    def _gpu_server(self) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
        """(GPU name -> number, server of each GPU, in-node index of each GPU)."""
        data = self.router.g.nodes
        number = {gpu: i for i, gpu in enumerate(self.gpus)}
        return (number, np.array([data[g]["node"] for g in self.gpus], dtype=np.int64),
                np.array([data[g]["index"] for g in self.gpus], dtype=np.int64))

    def shifted(self, program: Program, members: list[str], image: list[str]) -> Program | None:
        """``program`` of ``members`` as the same collective of ``image`` would be routed, when ``image`` is
        ``members`` moved by whole servers (same in-node indices, servers routing alike): every transfer
        keeps its bytes, weights and latency, its links move with it. None where that is not a symmetry."""
        if len(members) != len(image) or any(s.fabric_pos is None for s in program.steps):
            return None
        number, server, index = self._gpu_server
        a = np.fromiter((number[m] for m in members), dtype=np.int64, count=len(members))
        b = np.fromiter((number[m] for m in image), dtype=np.int64, count=len(image))
        delta = server[b] - server[a]
        if (delta != delta[0]).any() or (index[a] != index[b]).any():
            return None
        servers = int(delta[0])
        if servers == 0:
            return program if members == image else None
        signature = self.router.server_signature
        if any(signature(s) != signature(s + servers) for s in np.unique(server[a]).tolist()):
            return None
        steps = []
        for step in program.steps:
            links = self.router.shift_links(step.link, step.fabric_pos, servers)
            if links is None:
                return None
            steps.append(Step(step.bytes, step.latency_s, step.flow, links, step.weight, step.repeat,
                              step.latency_factor, step.name, step.fabric_pos))
        return Program(program.name, steps, program.capacity_bps)

    def program(self, name: str, phases: list[algo.Phase]) -> Program:
        return Program(name, [self.step(p) for p in phases])

    # --- pricing --------------------------------------------------------------------------------------
    def capacity_for(self, programs: list[Program]) -> np.ndarray:
        """Link rates for ``programs`` run together: their own (EP) when they all have the same, else the links'."""
        first = programs[0].capacity_bps if programs else None
        if first is not None and all(p.capacity_bps is first for p in programs):
            return first
        return self.capacity_bps

    def time_s(self, program: Program) -> float:
        """Seconds for ``program`` alone on the network (no other traffic)."""
        capacity = self.capacity_for([program])
        total = 0.0
        for step in program.steps:
            if self.fidelity == "analytic":
                one = analytic_step_s(step, capacity)
            else:  # repetitions of a step alone are identical: simulate one
                single = Step(step.bytes, step.latency_s, step.flow, step.link, step.weight, 1,
                              step.latency_factor, step.name)
                one = simulate([Program(program.name, [single])], capacity)[0][0]
            total += one * step.repeat
        return total

    def concurrent_s(self, programs: list[Program], starts_s: list[float] | None = None) -> list[float]:
        """Finish time of each program when they run together (flow: they share links; analytic: they don't)."""
        starts_s = starts_s or [0.0] * len(programs)
        if self.fidelity == "analytic":
            return [s + self.time_s(p) for s, p in zip(starts_s, programs)]
        return simulate(programs, self.capacity_for(programs), starts_s)[0]

    def link_bytes(self, program: Program) -> dict[str, float]:
        """Bytes carried by all links of each class (``nvlink``, ``pcie``, ``nic``, ``fabric``)."""
        out = dict.fromkeys(LINK_CLASSES, 0.0)
        total = np.zeros(len(self.capacity_bps))
        for step in program.steps:
            total += step.link_bytes(len(total)) * step.repeat
        for cls in LINK_CLASSES:
            out[cls] = float(total[self.router.link_class == cls].sum())
        return out

    def bottleneck(self, program: Program) -> str:
        """The link class whose busiest link needs the most time over the whole program."""
        worst, name = 0.0, "none"
        capacity = self.capacity_for([program])
        for step in program.steps:
            load = step.link_bytes(len(capacity)) / capacity
            if load.size and load.max() * step.repeat > worst:
                worst, name = load.max() * step.repeat, str(self.router.link_class[int(load.argmax())])
        return name

    def result(self, program: Program, members: int, bytes_per_rank: float) -> CollectiveResult:
        t = self.time_s(program)
        return CollectiveResult(program.name, self.fidelity, members, t, bytes_per_rank,
                                bytes_per_rank / t / GB if t > 0 else 0.0, self.link_bytes(program),
                                program.flows, sum(s.repeat for s in program.steps), self.bottleneck(program))

    # --- collectives by name --------------------------------------------------------------------------
    def collective(self, name: str, members: list[str], nbytes: float, matrix=None) -> Program:
        """Program of collective ``name`` (see :data:`COLLECTIVES`) over ``members`` with ``nbytes`` per rank."""
        node_of = self.node_of
        if name == "all-to-all":
            phases = algo.all_to_all(members, nbytes, matrix)
        elif name == "send-recv":
            half = len(members) // 2
            phases = algo.send_recv(list(zip(members[:half], members[half:2 * half])), nbytes)
        elif name == "all-reduce-tree":
            phases = algo.tree_all_reduce(members, nbytes)
        elif name.endswith("-hier"):
            phases = algo.hierarchical_phases(node_of, members, nbytes, name[:-5].replace("-", "_"))
        elif name in ("all-reduce", "reduce-scatter", "all-gather"):
            phases = algo.ring_phases(members, nbytes, name.replace("-", "_"))
        else:
            raise ValueError(f"unknown collective {name!r}; known: {', '.join(COLLECTIVES)}")
        return self.program(name, phases)

    def ep(self, members: list[str], tokens: int, token_bytes: float, traffic: EpTraffic,
           combine: bool = False, gpu_weight=None, node_weight=None) -> Program:
        """DeepSeek-style EP dispatch (or combine) of ``tokens`` tokens of ``token_bytes`` per member; skewed
        routing weights each transfer by its target's share (see :func:`collectives.ep_phases`)."""
        name = "ep-combine" if combine else "ep-dispatch"
        program = self.program(name, algo.ep_phases(self.node_of, members, tokens, token_bytes, traffic, combine,
                                                    gpu_weight, node_weight))
        program.capacity_bps = self.ep_capacity_bps
        return program


COLLECTIVES = ("all-to-all", "all-reduce", "all-reduce-tree", "all-reduce-hier", "reduce-scatter",
               "reduce-scatter-hier", "all-gather", "all-gather-hier", "send-recv")
