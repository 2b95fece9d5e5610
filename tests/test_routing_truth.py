"""One routing truth (issue 21): every network model prices EP dispatch and combine from the scenario's routing.

The skewed scenario of the issue: DeepSeek-V2-Lite on 32 H800 (PP2, DP16, EP16 over two nodes), Zipf 1.2
routing. Before, a link fault switched the analytic model to the cluster graph, which always routed balanced
tokens: degrading one cable by 1 % dropped the step from 3.43 s to 2.67 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from moesim.simulator.network.analytic import AnalyticNetwork
from moesim.simulator.network.faulted import FaultedNetwork
from moesim.simulator.network.scenario_network import ScenarioNetwork
from moesim.simulator.network.shared import SharedNetwork
from moesim.simulator.simulate import make_network, simulate
from moesim.workloads.ep_load import scenario_ep_routing
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Comm, Pattern
from moesim.workloads.routing import balanced_ep_traffic

DEGRADED = "faults.links=[{link: [n0.nic0, p0.leaf0], bandwidth_factor: 0.99}]"
HALF = "faults.links=[{link: [n0.nic0, p0.leaf0], bandwidth_factor: 0.5}]"


def skewed(*extra: str):
    return load_scenario(preset="deepseek-v2-lite-h800", overrides=[
        "cluster.gpus=32", "parallelism.dp=16", "parallelism.ep=16", "routing.name=zipf", "routing.zipf_alpha=1.2",
        *extra])


def routings(scenario) -> dict[str, tuple]:
    """(traffic, gpu weights, node weights) each network model prices EP all-to-alls from."""
    analytic = AnalyticNetwork(scenario).ep_traffic()
    graph = ScenarioNetwork(scenario, "analytic").ep_routing()
    flow_graph = ScenarioNetwork(scenario, "flow").ep_routing()
    shared = SharedNetwork(scenario).graph.ep_routing()
    out = {"analytic": (analytic, None, None)}
    out.update({name: (r.traffic, r.gpu_weight, r.node_weight)
                for name, r in (("graph", graph), ("graph-flow", flow_graph), ("flow", shared))})
    if scenario.faults.links:
        out["faulted"] = (FaultedNetwork(scenario).ep_traffic(), None, None)
    return out


@pytest.mark.parametrize("fault", [None, DEGRADED])
def test_every_network_model_takes_the_same_skewed_ep_traffic(fault):
    scenario = skewed(*([fault] if fault else []))
    truth = scenario_ep_routing(scenario)
    assert truth.traffic.nvl_link_factor > 2.5  # skewed: the hottest GPU's NVLinks carry > 2.5× the mean
    moe = scenario.model.moe
    assert truth.traffic != balanced_ep_traffic(moe.routed_experts, moe.top_k, moe.groups, moe.groups_per_token,
                                                16, 8, scenario.run.seed)
    for name, (traffic, gpu_weight, node_weight) in routings(scenario).items():
        assert traffic == truth.traffic, name
        if gpu_weight is not None:
            np.testing.assert_array_equal(gpu_weight, truth.gpu_weight, err_msg=name)
            np.testing.assert_array_equal(node_weight, truth.node_weight, err_msg=name)
            assert gpu_weight.mean() == pytest.approx(1.0, abs=1e-12) and gpu_weight.max() > 1.05


def test_the_graph_prices_skewed_dispatch_above_balanced():
    """The busiest link of a skewed dispatch carries more than the mean: slower than balanced, on the graph too."""
    comm = Comm(Pattern.EP_DISPATCH, "ep", 0.0, tokens=8192, hidden=2048, top_k=6, element_bytes=1.03125)
    for fidelity in ("analytic", "flow"):
        zipf = ScenarioNetwork(skewed(), fidelity).comm_time_s(comm)
        balanced = ScenarioNetwork(skewed("routing.name=balanced"), fidelity).comm_time_s(comm)
        assert zipf > 1.05 * balanced, fidelity


def test_a_fault_never_speeds_an_op_and_none_leaves_it_alone():
    dispatch = Comm(Pattern.EP_DISPATCH, "ep", 0.0, tokens=8192, hidden=2048, top_k=6, element_bytes=1.03125)
    send = Comm(Pattern.SEND_RECV, "pp", 4e6)  # GPU 0 sends to pipeline rank 1 over n0.nic0
    for comm in (dispatch, send):
        assert make_network(skewed(DEGRADED)).comm_time_s(comm) >= AnalyticNetwork(skewed()).comm_time_s(comm)
    no_effect = FaultedNetwork(skewed("faults.links=[{link: [n3.nic0, p0.leaf0], bandwidth_factor: 0.5}]"))
    assert no_effect.fault_s(dispatch) == 0.0  # node 3 holds no GPU of pipeline rank 0's EP groups
    assert no_effect.comm_time_s(dispatch) == AnalyticNetwork(skewed()).comm_time_s(dispatch)
    assert make_network(skewed(HALF)).comm_time_s(send) > AnalyticNetwork(skewed()).comm_time_s(send)


@pytest.mark.parametrize("network", ["analytic", "flow"])
def test_a_degraded_cable_never_makes_the_skewed_step_faster(network):
    run = f"run.network={network}"
    base = simulate(skewed(run)).step_time_s
    degraded = simulate(skewed(run, DEGRADED)).step_time_s
    half = simulate(skewed(run, HALF)).step_time_s
    assert base <= degraded < half
    assert degraded < base * 1.01  # 1 % off one cable of 32 moves the step by well under 1 %
