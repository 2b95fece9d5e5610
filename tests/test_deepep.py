"""DeepEP's kernels: its test's byte accounting, the link rates its table implies, and how moesim prices them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moesim.calibration.deepep import deepep_figures, deepep_test_routing, in_situ_nic_rate, isolated_efficiencies, report
from moesim.simulator.network.analytic import AnalyticNetwork
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Comm, Pattern
from moesim.workloads.routing import EpCounts, ep_counts
from moesim.workloads.scenario import NetworkSpec

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepseek-profile-data" / "train.json"


def test_ep_counts_by_hand():
    """4 GPUs, 2 per node, 4 experts each; tokens from GPU 0 (node 0, index 0)."""
    ids = np.array([[0, 5],     # GPUs 0, 1 (own node): 1 node, none remote; forward to GPU 1 only
                    [8, 13],    # GPUs 2, 3 (node 1): arrives at GPU 2 (index 0), forwarded to GPU 3
                    [12, 13]])  # GPU 3 only: arrives at GPU 2, forwarded to GPU 3
    counts = ep_counts(ids, experts=16, ep=4, gpus_per_node=2)
    assert counts == EpCounts(nodes=1.0, remote_nodes=2 / 3, ranks=5 / 3, nvl_forwards=1.0)


def test_deepep_figures_are_its_byte_counts_over_time():
    counts = EpCounts(nodes=3.5, remote_nodes=3.0, ranks=7.0, nvl_forwards=6.0)
    figures = deepep_figures(counts, tokens=1000, token_bytes_=2000.0, time_s=1e-3)
    assert figures == {"rdma_gbps": pytest.approx(1000 * 3.5 * 2000 / 1e-3 / 1e9, rel=1e-15),
                       "nvl_gbps": pytest.approx(1000 * 7.0 * 2000 / 1e-3 / 1e9, rel=1e-15)}


def test_deepep_test_routing_keeps_its_node_limit():
    ids = deepep_test_routing(2000, 256, 8, nodes=8, groups_per_token=4, seed=3)
    assert ids.shape == (2000, 8)
    assert all(len(set(row)) == 8 for row in ids.tolist())
    nodes_per_token = [len(set((row // 32).tolist())) for row in ids]
    assert max(nodes_per_token) <= 4 and min(nodes_per_token) >= 1


def test_in_situ_rate_by_hand():
    kernels = [("ep.dispatch", 2e-3), ("ep.combine", 4e-3), ("ep.notify", 9.0), ("gemm:fwd", 1.0)]
    situ = in_situ_nic_rate(kernels, tokens=100, hidden=10, remote_nodes=3.0, dispatch_bytes=1.0,
                            combine_bytes=2.0, latency_s=1e-3)
    assert situ.kernels == 2
    assert situ.ib_bytes == 100 * 3 * 10 * 1.0 + 100 * 3 * 10 * 2.0
    assert situ.time_s == pytest.approx(1e-3 + 3e-3, rel=1e-12)
    assert situ.nic_gbps == pytest.approx(9000 / 4e-3 / 1e9, rel=1e-12)


def test_isolated_rates_come_from_the_ib_and_nvlink_bound_rows():
    nic, nvlink = isolated_efficiencies()
    out = report(None, "deepseek-v3-h800")
    ib = [r["ib_gbps"] for r in out["rows"] if r["ep"] in (32, 64)]
    nvl = [r["nvlink_gbps"] for r in out["rows"] if r["ep"] == 8]
    assert nic == pytest.approx(np.mean(ib) / 50, rel=1e-12)
    assert nvlink == pytest.approx(np.mean(nvl) / 200, rel=1e-12)
    assert [r["calibrates"] for r in out["rows"]] == [True, True, False, False, True, True, True, True]
    # EP64 alone is NIC-bound: NVLink carries well under its rate there (the in-situ rate relies on it).
    ep64 = [r for r in out["rows"] if r["ep"] == 64]
    assert all(r["nvlink_gbps"] < 0.7 * np.mean(nvl) for r in ep64)


def test_scenario_defaults_are_the_derived_rates():
    assert NetworkSpec().ep_nvlink_efficiency == round(isolated_efficiencies()[1], 3)
    if not TRACE.is_file():
        pytest.skip("DeepSeek's profiler trace (../shared/data) is not beside this checkout")
    situ = report(TRACE, "deepseek-v3-h800")["in_situ"]
    assert situ["kernels"] == 16
    assert NetworkSpec().ep_nic_efficiency == round(situ["nic_efficiency"], 3)


def _ep_seconds(overrides: list[str], pattern=Pattern.EP_DISPATCH) -> float:
    sc = load_scenario(preset="deepseek-v3-h800", overrides=overrides)
    net = AnalyticNetwork(sc)
    comm = Comm(pattern, "ep", 4096 * 8 * 7168 * 1.03125, 4096, 7168, 8, 1.03125)
    latency = net.nvlink_latency_s + net.nic_latency_s
    return net.comm_time_s(comm) - latency


def test_analytic_ep_moves_at_the_lower_of_link_and_kernel():
    """NIC-bound EP64 dispatch: its transfer scales as 1 / min(nic_efficiency, ep_nic_efficiency)."""
    kernel_bound = _ep_seconds(["cluster.network.ep_nic_efficiency=0.4"])
    assert _ep_seconds(["cluster.network.ep_nic_efficiency=0.2"]) == pytest.approx(2 * kernel_bound, rel=1e-12)
    # Above the link's usable fraction (0.8) the link binds, whatever the kernels could do.
    link_bound = _ep_seconds(["cluster.network.ep_nic_efficiency=1.0"])
    assert link_bound == pytest.approx(kernel_bound * 0.4 / 0.8, rel=1e-12)
    assert _ep_seconds(["cluster.network.ep_nic_efficiency=0.9"]) == pytest.approx(link_bound, rel=1e-12)


def test_in_situ_refusals_are_one_line(runner, tmp_path):
    import json

    from moesim.simulator.cli import app

    excerpt = Path(__file__).parent / "data" / "deepseek-train-excerpt.json"
    out = runner.invoke(app, ["calibrate", "deepep", str(excerpt), "--traced-as", "mixtral-8x7b-h100"])
    assert out.exit_code == 2 and "stays inside one node" in out.output
    data = json.loads(excerpt.read_text())
    events = data["traceEvents"] if isinstance(data, dict) else data
    kept = [e for e in events if "ep::" not in str(e.get("name", ""))]
    no_deepep = tmp_path / "no-deepep.json"
    no_deepep.write_text(json.dumps({**data, "traceEvents": kept} if isinstance(data, dict) else kept))
    out = runner.invoke(app, ["calibrate", "deepep", str(no_deepep)])
    assert out.exit_code == 2 and "no DeepEP dispatch or combine kernels" in out.output
    out = runner.invoke(app, ["calibrate", "deepep", str(excerpt), "--json"])
    assert out.exit_code == 0, out.output
    situ = json.loads(out.output)["in_situ"]
    assert situ["kernels"] > 0 and 0 < situ["nic_efficiency"] < 1
