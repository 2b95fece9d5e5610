"""The topology registry, keyed by name: each entry builds a fabric and knows the largest one its radix allows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from moesim.topologies import dragonfly, fattree
from moesim.topologies.base_registry import Registry
from moesim.topologies.graph import add_servers
from moesim.topologies.spec import FabricSpec, TopologyError, make_spec

if TYPE_CHECKING:  # annotations only: sizing a fabric (check_capacity) needs no networkx
    import networkx as nx


@dataclass(frozen=True)
class Topology:
    """A fabric builder: ``build(graph, spec, nics)`` cables the NICs; ``capacity(spec)`` is its most endpoints."""

    name: str
    description: str
    build: Callable[[nx.DiGraph, FabricSpec, list[str]], None]
    capacity: Callable[[FabricSpec], int]


TOPOLOGIES = Registry("unknown topology {name!r}; known: {known}", TopologyError, sort=False)
# Measured: ft3 --radix 64 (65,536 GPUs: 139,264 GPUs, NVSwitches and NICs) builds in 47 s and 0.5 GB on 2 cores.
MAX_GRAPH_ENDPOINTS = 300_000


def register(topology: Topology) -> None:
    TOPOLOGIES.add(topology.name, topology)


register(Topology("ft2", "two-layer fat-tree (leaf-spine)", fattree.ft2, fattree.two_layer_capacity))
register(Topology("ft3", "three-layer fat-tree (edge-aggregation-core)", fattree.ft3, fattree.ft3_capacity))
register(Topology("mpft", "multi-plane fat-tree: one two-layer fat-tree per plane, GPU-NIC pair i on plane i",
                  fattree.mpft, fattree.mpft_capacity))
register(Topology("mrft", "multi-rail (rail-optimized) fat-tree: rail-grouped leaves, spines shared by all rails",
                  fattree.mrft, fattree.two_layer_capacity))
register(Topology("rail", "rail-only: one switch per rail, no spines; rails meet only over NVLink", fattree.rail,
                  fattree.rail_capacity))
register(Topology("dragonfly", "canonical dragonfly (p, a, h, groups)", dragonfly.dragonfly,
                  dragonfly.dragonfly_capacity))
register(Topology("slimfly", "Slim Fly on an MMS graph (prime q)", dragonfly.slimfly, dragonfly.slimfly_capacity))


def get_topology(name: str) -> Topology:
    return TOPOLOGIES.lookup(name)


def endpoint_capacity(spec: FabricSpec) -> int:
    """GPUs of the largest instance of this spec's kind and radix (whole nodes)."""
    nics = get_topology(spec.kind).capacity(spec)
    nodes = nics // spec.nics_per_node
    return nodes * spec.gpus_per_node


def check_capacity(spec: FabricSpec) -> int:
    """The GPUs ``spec`` builds; more than its kind and radix can hold is a TopologyError. Every network model
    checks a cluster here, the analytic one too (it builds no graph)."""
    largest = endpoint_capacity(spec)
    gpus = spec.gpus or largest
    if largest < spec.gpus_per_node:
        raise TopologyError(f"{spec.kind} with --radix {spec.radix} cannot hold one {spec.gpus_per_node}-GPU node; "
                            "use a larger --radix")
    if gpus > largest:
        raise TopologyError(f"{spec.kind} with --radix {spec.radix} holds at most {largest} GPUs, asked "
                            f"--gpus {gpus}; use a larger --radix, more --planes or another topology")
    return gpus


def build(spec: FabricSpec) -> nx.DiGraph:
    """The cluster graph of ``spec``: servers, NICs and the fabric. Too many GPUs for the radix fails."""
    import networkx as nx

    topology = get_topology(spec.kind)
    gpus = check_capacity(spec)
    nodes = max(1, gpus // spec.gpus_per_node)
    endpoints = gpus + nodes + nodes * spec.nics_per_node  # GPUs, NVSwitches and NICs, before any fabric switch
    if endpoints > MAX_GRAPH_ENDPOINTS:
        raise TopologyError(f"{spec.kind} with --radix {spec.radix} and {gpus:,} GPUs would build {endpoints:,} GPUs, "
                            f"NVSwitches and NICs; the limit is {MAX_GRAPH_ENDPOINTS:,} (about two minutes and 1 GB "
                            "on a small machine); give fewer --gpus")
    g = nx.DiGraph(kind=spec.kind, spec=spec, nodes=nodes, gpus_per_node=spec.gpus_per_node)
    nics = add_servers(g, spec, nodes)
    topology.build(g, spec, nics)
    return g


def build_topology(kind: str, **params) -> nx.DiGraph:
    """Build topology ``kind`` (a registry name) from data-file defaults and ``params``."""
    get_topology(kind)
    return build(make_spec(kind, **params))
