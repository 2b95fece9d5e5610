"""The flow network routes one group of each shape and moves it to its copies: exactly a direct routing."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.simulator.network.scenario_network import ScenarioNetwork
from moesim.simulator.network.shared import SharedNetwork
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Comm, Pattern

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


def test_a_flow_run_that_would_not_fit_is_refused_with_its_numbers_before_the_graph(tmp_path):
    from typer.testing import CliRunner

    from moesim.simulator.cli import app
    from moesim.simulator.network.flow_size import check_flow_size, estimate_flow

    # 131,072 GPUs (radix 256) and 100,000 micro-batches per pipeline: far past half an hour of CPU.
    big = ["cluster.gpus=131072", "parallelism.dp=8192", "parallelism.global_batch=819200000",
           "cluster.network.switch_radix=256", "run.network=flow"]
    result = CliRunner().invoke(app, ["simulate", *[x for o in big for x in ("--set", o)]])
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: run.network=flow: 131,072 GPUs and 100,000 micro-batches per pipeline")
    assert "CPU s" in line and "GB" in line and "run.network=analytic" in line and "parallelism.global_batch" in line
    # The estimate grows with the GPUs a flow run moves, and its memory limit is enforced the same way.
    small = load_scenario(preset="deepseek-v3-h800", overrides=["run.network=flow"])
    assert estimate_flow(small).cpu_s < estimate_flow(load_scenario(preset="deepseek-v3-h800", overrides=[
        "cluster.gpus=16384", "parallelism.dp=1024", "parallelism.global_batch=122880"])).cpu_s
    with pytest.raises(ScenarioError, match=r"~0\.15 GB \(limits 1,800 s, 0\.10 GB\)"):
        check_flow_size(small, max_gb=0.1)


def test_the_analytic_network_refuses_the_fabric_the_flow_network_refuses():
    from moesim.simulator.simulate import make_network

    too_big = ["cluster.gpus=131072", "parallelism.dp=8192", "parallelism.global_batch=983040"]  # radix 64
    messages = []
    for network in ("analytic", "flow"):
        sc = load_scenario(preset="deepseek-v3-h800", overrides=[*too_big, f"run.network={network}"])
        with pytest.raises(ScenarioError) as err:
            make_network(sc)
        messages.append(str(err.value))
    assert messages[0] == messages[1] == ("cluster.network: mpft with --radix 64 holds at most 16384 GPUs, asked "
                                          "--gpus 131072; use a larger --radix, more --planes or another topology")
    # A radix that holds them: the analytic network accepts the cluster.
    make_network(load_scenario(preset="deepseek-v3-h800", overrides=[*too_big, "cluster.network.switch_radix=256"]))
