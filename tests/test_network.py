"""The graph network model: analytic vs flow, contention, hand-computed cases, failures, properties, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.calibration.deepep import isolated_efficiencies
from moesim.simulator.cli import app
from moesim.simulator.network.flows import max_min_rates
from moesim.simulator.network.graph_model import GraphNetwork
from moesim.simulator.simulate import make_network, simulate
from moesim.topologies.registry import build_topology
from moesim.topologies.routing import fail
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.routing import balanced_ep_traffic

NIC_BPS = 50e9 * 0.8  # 400G NIC at the 0.8 efficiency of "Insights" §4.3
NVL_BPS = 200e9 * 0.8  # H800 NVLink per direction at 0.8 (DeepSeek-V3 TR §3.2.2)
FP8_TOKEN = 7168 * (1 + 4 / 128)


def nets(kind="mpft", **params):
    g = build_topology(kind, **params)
    return GraphNetwork(g, "analytic"), GraphNetwork(g, "flow")


def test_max_min_textbook_case():
    # Flow 0 crosses links 0 and 1, flow 1 only link 0, flow 2 only link 1; capacities 1 and 2.
    rates = max_min_rates(np.array([0, 0, 1, 2]), np.array([0, 1, 0, 1]), np.ones(4), 3, np.array([1.0, 2.0]))
    assert rates == pytest.approx([0.5, 0.5, 1.5])


@pytest.mark.parametrize("name", ["all-to-all", "all-reduce-hier", "reduce-scatter", "all-gather-hier",
                                  "all-reduce-tree", "send-recv"])
def test_analytic_and_flow_agree_on_symmetric_collectives(name):
    analytic, flow = nets("mpft", gpus=64, radix=8)
    members = analytic.members(64)
    a = analytic.time_s(analytic.collective(name, members, 64e6))
    f = flow.time_s(flow.collective(name, members, 64e6))
    assert f == pytest.approx(a, rel=0.02)


def test_analytic_and_flow_agree_on_ep_dispatch():
    analytic, flow = nets("mpft", gpus=64)
    traffic = balanced_ep_traffic(256, 8, 8, 4, 64, 8, 0)
    members = analytic.members(64)
    a = analytic.time_s(analytic.ep(members, 4096, FP8_TOKEN, traffic))
    f = flow.time_s(flow.ep(members, 4096, FP8_TOKEN, traffic))
    assert f == pytest.approx(a, rel=0.02)
    # The NIC binds: tokens × IB nodes per token × token bytes at 40 GB/s, plus IB + NVLink latency.
    expected = 4096 * traffic.ib_nodes * FP8_TOKEN / NIC_BPS
    assert a == pytest.approx(expected + 2.8e-6, rel=0.01)


def test_flow_shows_contention_when_two_collectives_share_nics():
    analytic, flow = nets("mpft", gpus=64)
    members = flow.members(64)
    # Two identical all-to-alls on the same GPUs: fair sharing gives each half the NICs, so both take 2x.
    a2a = flow.collective("all-to-all", members, 256e6)
    alone = flow.time_s(a2a)
    assert flow.concurrent_s([a2a, a2a]) == pytest.approx([2 * alone, 2 * alone], rel=0.02)
    # Started halfway through the first, the second slows it: half its bytes are left at half the rate.
    first, second = flow.concurrent_s([a2a, a2a], [0.0, alone / 2])
    assert first == pytest.approx(1.5 * alone, rel=0.02) and second == pytest.approx(2 * alone, rel=0.02)
    # Multi-step collectives contend step by step: two hierarchical all-reduces of 1 GB each take ~2x.
    ring = flow.collective("all-reduce-hier", members, 1e9)
    for t in flow.concurrent_s([ring, ring]):
        assert 1.95 * flow.time_s(ring) <= t <= 2 * flow.time_s(ring)
    # EP dispatch beside an all-to-all: both bound by the same NICs, so together they take about the sum.
    traffic = balanced_ep_traffic(256, 8, 8, 4, 64, 8, 0)
    dispatch = flow.ep(members, 4096, FP8_TOKEN, traffic)
    each = [flow.time_s(dispatch), alone]
    together = flow.concurrent_s([dispatch, a2a])
    assert max(together) > 1.4 * max(each) and max(together) <= sum(each) * 1.001
    # The analytic fidelity has no cross-traffic by definition.
    assert analytic.concurrent_s([dispatch, a2a]) == pytest.approx(each, rel=0.02)


def test_collectives_on_disjoint_nics_do_not_contend():
    _, flow = nets("mpft", gpus=128)
    left, right = flow.members(64), flow.members(64, first=64)
    one = flow.collective("all-to-all", left, 64e6)
    two = flow.collective("all-to-all", right, 64e6)
    assert max(flow.concurrent_s([one, two])) == pytest.approx(flow.time_s(one), rel=1e-6)


def test_hand_computed_small_cases():
    analytic, flow = nets("ft2", gpus=64)
    gpus = analytic.members(64)
    for net in (analytic, flow):
        # NVLink inside a node: bytes at 160 GB/s + 3.33 µs ("Insights" Table 5).
        t = net.time_s(net.collective("send-recv", [gpus[0], gpus[1]], 1e8))
        assert t == pytest.approx(1e8 / NVL_BPS + 3.33e-6)
        # Across leaves (node 0 on leaf 0, node 4 on leaf 1): NIC at 40 GB/s + 3.7 µs.
        t = net.time_s(net.collective("send-recv", [gpus[0], gpus[32]], 1e8))
        assert t == pytest.approx(1e8 / NIC_BPS + 3.7e-6)
        # Ring reduce-scatter inside one node: 7 steps of bytes/8 over NVLink.
        t = net.time_s(net.collective("reduce-scatter", gpus[:8], 8e8))
        assert t == pytest.approx(7 * (1e8 / NVL_BPS + 3.33e-6))


def test_failed_uplink_halves_cross_leaf_bandwidth():
    # Two-GPU nodes on 4-port switches: leaves of 2 NICs with 2 uplinks, 2 spines.
    g = build_topology("ft2", gpus=8, radix=4, gpus_per_node=2, nics_per_node=2)
    src, dst = ["n0.gpu0", "n0.gpu1"], ["n2.gpu0", "n2.gpu1"]
    for fidelity in ("analytic", "flow"):
        healthy = GraphNetwork(g, fidelity)
        broken = GraphNetwork(fail(g, links=[("leaf0", "spine0")]), fidelity)
        t_ok = healthy.time_s(healthy.collective("send-recv", src + dst, 1e9))
        t_bad = broken.time_s(broken.collective("send-recv", src + dst, 1e9))
        assert t_ok == pytest.approx(1e9 / NIC_BPS + 3.7e-6)  # two NICs, two uplinks: the NICs bind
        assert t_bad == pytest.approx(2e9 / NIC_BPS + 3.7e-6)  # one uplink left for both flows


@settings(max_examples=15, deadline=None)
@given(matrix=st.lists(st.lists(st.integers(0, 50), min_size=16, max_size=16), min_size=16, max_size=16),
       scale=st.floats(1e5, 1e8))
def test_bytes_conserved_and_time_monotone(matrix, scale):
    m = np.array(matrix, dtype=float) * scale
    np.fill_diagonal(m, 0)
    net = _FLOW_NET
    members = net.members(16)
    program = net.collective("all-to-all", members, 0.0, m)
    if not program.steps:
        return
    # Bytes conserved: what leaves the GPUs (their NVLink and PCIe egress) is exactly what was sent; this
    # fabric (one plane) never forwards through a relay GPU.
    step = program.steps[0]
    load = step.link_bytes(len(net.capacity_bps))
    out_of_gpus = sum(load[i] for i, (u, _) in enumerate(net.router.links) if net.router.g.nodes[u]["kind"] == "gpu")
    assert out_of_gpus == pytest.approx(m.sum(), rel=1e-9)
    t = net.time_s(program)
    bigger = net.time_s(net.collective("all-to-all", members, 0.0, m * 2))
    assert bigger >= t
    faster = GraphNetwork(_G, "flow", nic_efficiency=1.0, nvlink_efficiency=1.0)
    assert faster.time_s(faster.collective("all-to-all", members, 0.0, m)) <= t


_G = build_topology("ft2", gpus=16, radix=8)
_FLOW_NET = GraphNetwork(_G, "flow")


def test_scenario_network_flow_is_selected_and_close_to_analytic():
    sc = load_scenario(preset="deepseek-v2-lite-h800")
    flow_sc = sc.model_copy(update={"run": sc.run.model_copy(update={"network": "flow"})})
    assert type(make_network(flow_sc)).__name__ == "SharedNetwork"
    a, f = simulate(sc), simulate(flow_sc)
    assert f.step_time_s == pytest.approx(a.step_time_s, rel=0.05)


def test_scenario_that_does_not_fit_the_topology_is_a_scenario_error():
    sc = load_scenario(preset="deepseek-v3-h800", overrides=["run.network=flow", "cluster.network.topology=rail"])
    with pytest.raises(ScenarioError, match="cluster.network"):
        make_network(sc)


def test_cli_ep_dispatch_json(runner):
    out = runner.invoke(app, ["collective", "ep-dispatch", "--ep", "64", "--tokens", "4096", "--hidden", "7168",
                              "--topk", "8", "--max-nodes", "4", "--dtype", "fp8", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {"time_us", "rdma_gbps", "nvl_gbps", "link_bytes", "algbw_gbps", "notify_us"} <= set(data)
    # Alone, EP moves at what DeepEP's kernels reach alone (derived from DeepEP's table).
    assert (data["nic_efficiency"], data["nvlink_efficiency"]) == isolated_efficiencies()
    # DeepEP's RDMA figure counts every node a token reaches, its own too; its NVL figure every row received.
    us = data["time_us"] * 1e-6
    token_bytes = 7168 * (1 + 4 / 128)
    assert data["rdma_gbps"] == pytest.approx(4096 * data["nodes_per_token"] * token_bytes / us / 1e9, rel=1e-12)
    assert data["nvl_gbps"] == pytest.approx(4096 * data["ranks_per_token"] * token_bytes / us / 1e9, rel=1e-12)
    assert data["nodes_per_token"] > data["ib_nodes_per_token"] > 3  # the own node is counted, not crossed


def test_cli_ep_dispatch_moves_its_ib_bytes_at_the_nic_rate(runner):
    """NIC-bound, the transfer (time less notify and latency) is the GPU's IB bytes / (fraction × 50 GB/s):
    halving the fraction adds exactly one more such transfer time."""
    times = {}
    for eff in ("0.5", "0.25"):
        out = runner.invoke(app, ["collective", "ep-dispatch", "--ep", "64", "--nic-efficiency", eff, "--json"])
        assert out.exit_code == 0, out.output
        times[eff] = data = json.loads(out.output)
        assert data["bottleneck"] == "nic"
    ib_bytes = 4096 * data["ib_nodes_per_token"] * 7168 * (1 + 4 / 128)
    transfer_us = {eff: d["time_us"] - d["notify_us"] for eff, d in times.items()}
    delta_s = (transfer_us["0.25"] - transfer_us["0.5"]) * 1e-6
    assert delta_s == pytest.approx(ib_bytes / (0.25 * 50e9) - ib_bytes / (0.5 * 50e9), rel=1e-9)


def test_cli_deepep_comparison_matches_the_rows_that_set_the_rates(runner):
    """DeepEP's published rows priced as its test runs them: the rows the rates come from agree within 3 %;
    EP16 (held out) is reported with its error."""
    for name in ("ep-dispatch", "ep-combine"):
        out = runner.invoke(app, ["collective", name, "--deepep", "--json"])
        assert out.exit_code == 0, out.output
        rows = json.loads(out.output)
        assert [r["ep"] for r in rows] == [8, 16, 32, 64]
        for r in rows:
            assert r["error"] == pytest.approx(r["moesim_gbps"] / r["published_gbps"] - 1, rel=1e-12)
            if not r["held_out"]:
                assert abs(r["error"]) < 0.03, r
        assert [r["held_out"] for r in rows] == [False, True, False, False]
    out = runner.invoke(app, ["collective", "all-reduce", "--deepep"])
    assert out.exit_code != 0 and "ep-dispatch" in out.output


def test_cli_collective_flow_and_bad_input(runner):
    out = runner.invoke(app, ["collective", "all-reduce-hier", "--topology", "ft2", "--gpus", "64", "--bytes",
                              "64MB", "--fidelity", "flow", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["link_bytes"]["nvlink"] > 0
    for args in (["collective", "all-reduce", "--bytes", "lots"], ["collective", "bogus"],
                 ["collective", "all-to-all", "--topology", "ft2", "--gpus", "4096"],
                 ["collective", "ep-dispatch", "--ep", "64", "--max-nodes", "9"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 2 and "Traceback" not in out.output and out.output.startswith("error:"), args


def test_cli_traffic_matrix(runner, tmp_path):
    # GPU 0 sends 24 MB to each of the 8 GPUs of the other node, everyone else 1 MB: GPU 0's NIC binds.
    m = [[0.0 if i == j else (24e6 if i == 0 and j >= 8 else 1e6) for j in range(16)] for i in range(16)]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(m))
    out = runner.invoke(app, ["collective", "all-to-all", "--topology", "ft2", "--gpus", "16", "--matrix",
                              str(path), "--fidelity", "flow", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["time_us"] == pytest.approx((8 * 24e6 / NIC_BPS + 2.8e-6) * 1e6, rel=1e-6)
    out = runner.invoke(app, ["collective", "all-to-all", "--gpus", "8", "--matrix", str(path)])
    assert out.exit_code == 2 and "8x8" in out.output
