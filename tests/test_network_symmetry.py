"""The flow network routes one group of each shape and moves it to its copies: exactly a direct routing."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.network.scenario_network import ScenarioNetwork
from simulator.network.shared import SharedNetwork
from workloads.loader import load_scenario
from workloads.ops import Comm, Pattern

# DeepSeek-V3 on 32 nodes (pp 4, dp 64, EP 16 = two nodes): every pipeline rank's groups are copies.
SMALL = ["cluster.gpus=256", "parallelism.pp=4", "parallelism.dp=64", "parallelism.ep=16",
         "parallelism.global_batch=512", "parallelism.stage_layers=[16, 15, 15, 15]", "run.network=flow"]
COMMS = [Comm(Pattern.EP_DISPATCH, "ep", 0.0, 4096, 7168, 8, 1.03), Comm(Pattern.EP_COMBINE, "ep", 0.0, 4096, 7168, 8, 2),
         Comm(Pattern.ALL_REDUCE, "dp", 1e8), Comm(Pattern.REDUCE_SCATTER, "edp", 1e8),
         Comm(Pattern.ALL_GATHER, "tail", 1e8), Comm(Pattern.SEND_RECV, "pp", 1e7)]


def scenario(*extra):
    return load_scenario(preset="deepseek-v3-h800", overrides=[*SMALL, *extra])


def assert_same_routes(moved, direct):
    assert len(moved) == len(direct)
    for p, q in zip(moved, direct):
        assert p.name == q.name and len(p.steps) == len(q.steps)
        assert (p.capacity_bps is None) == (q.capacity_bps is None)
        for s, t in zip(p.steps, q.steps):
            for field in ("bytes", "latency_s", "flow", "link", "weight", "fabric_pos"):
                assert np.array_equal(getattr(s, field), getattr(t, field)), field
            assert (s.repeat, s.latency_factor) == (t.repeat, t.latency_factor)


@pytest.mark.parametrize("extra", [[], ["cluster.network.topology=ft2", "cluster.network.switch_radix=32"],
                                   ["cluster.network.topology=ft3", "cluster.network.switch_radix=12"],
                                   ["routing.name=zipf"],
                                   ["faults.links=[{link: [n9.nic0, p0.leaf0]}, {link: [n2.gpu3, n2.nic3]}]"]])
def test_groups_moved_by_symmetry_have_exactly_the_routes_of_a_direct_routing(extra):
    sc = scenario(*extra)
    moved_net = ScenarioNetwork(sc, "flow")
    direct_net = ScenarioNetwork(sc, "flow")
    routed = 0
    for rank in range(sc.parallelism.pp):
        for comm in COMMS:
            moved = moved_net.programs(comm, rank)
            direct = ([direct_net.route(comm, [direct_net.network.gpus[r] for r in range(
                min(rank, 2) * 64, min(rank, 2) * 64 + 128)])] if comm.pattern is Pattern.SEND_RECV else
                [direct_net.route(comm, [direct_net.network.gpus[r] for r in ranks])
                 for ranks in direct_net.instances(comm.group, rank) if len(ranks) > 1])
            assert_same_routes(moved, direct)
            routed += len(direct)
    shapes = sum(len(v) for v in moved_net._shapes.values())
    assert shapes < routed / 4  # most groups were moved, not routed


def test_a_flow_step_is_unchanged_by_routing_once_per_shape():
    sc = scenario()
    net = SharedNetwork(sc)
    direct = SharedNetwork(sc)
    direct.graph.program = lambda comm, ranks: direct.graph.route(comm, [direct.graph.network.gpus[r] for r in ranks])
    for rank in range(4):
        for comm in COMMS:
            a, b = net.comm_time_s(comm, rank), direct.comm_time_s(comm, rank)
            assert a == b
