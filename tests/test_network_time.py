"""The network in simulated time (issue 14): one scenario → topology mapping, and links shared in time."""

from __future__ import annotations

import pytest

from moesim.simulator.simulate import make_network
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Comm, Pattern

DELTA_US = 10.0
SEND_BYTES = 4e6


def _nets(extra: list[str]) -> dict[str, object]:
    """The network models a user can get for the 16-GPU preset: analytic, flow, analytic with a link fault."""
    return {
        "analytic": make_network(load_scenario(preset="deepseek-v2-lite-h800", overrides=extra)),
        "flow": make_network(load_scenario(preset="deepseek-v2-lite-h800", overrides=["run.network=flow", *extra])),
        "analytic+fault": make_network(load_scenario(
            preset="deepseek-v2-lite-h800",
            overrides=['faults.links=[{"link": ["n0.nic3", "p3.leaf0"], "bandwidth_factor": 0.5}]', *extra])),
    }


@pytest.mark.parametrize("field, comm, steps", [
    # A pipeline send crosses InfiniBand once: the step moves by the change itself.
    ("nic_latency_us", Comm(Pattern.SEND_RECV, "pp", SEND_BYTES), 1),
    # A DP all-gather over the 8 GPUs of a node is a ring of 7 NVLink steps.
    ("nvlink_latency_us", Comm(Pattern.ALL_GATHER, "dp", SEND_BYTES), 7),
])
def test_latency_fields_act_the_same_under_every_network_model(field, comm, steps):
    base = {name: net.comm_time_s(comm) for name, net in _nets([]).items()}
    default = getattr(load_scenario(preset="deepseek-v2-lite-h800").cluster.network, field)
    slower = {name: net.comm_time_s(comm)
              for name, net in _nets([f"cluster.network.{field}={default + DELTA_US}"]).items()}
    for name in base:
        assert slower[name] - base[name] == pytest.approx(steps * DELTA_US * 1e-6, rel=1e-9), name


# --- links shared in simulated time: hand-derived cases on LinkShare ------------------------------------------
import numpy as np  # noqa: E402
import simpy  # noqa: E402

from moesim.simulator.network import collectives as algo  # noqa: E402
from moesim.simulator.network.graph_model import GraphNetwork  # noqa: E402
from moesim.simulator.network.link_share import LinkShare, PlanStep, bundle, plan_of  # noqa: E402
from moesim.simulator.network.shared import plan_steps  # noqa: E402
from moesim.simulator.simulate import simulate  # noqa: E402
from moesim.topologies.registry import build_topology  # noqa: E402

CAP = np.array([10.0, 10.0, 10.0])  # bytes/s per link


def _run(starts: list[tuple[float, object]], capacity=CAP) -> list[float]:
    """End time of each (start time, plan) run on one LinkShare."""
    env = simpy.Environment()
    share = LinkShare(env, capacity)
    ends = [None] * len(starts)

    def go(i, at, plan):
        yield env.timeout(at)
        latency = yield share.start(plan)
        ends[i] = env.now + latency

    for i, (at, plan) in enumerate(starts):
        env.process(go(i, at, plan))
    env.run()
    return ends


def _one(link_bytes: dict[int, float], latency_s: float = 0.0, capacity=CAP):
    return plan_of([PlanStep([bundle(list(link_bytes), list(link_bytes.values()), capacity)], latency_s)])


def test_two_flows_on_one_link_take_twice_as_long():
    assert _run([(0.0, _one({0: 100.0}))]) == [pytest.approx(10.0, rel=1e-12)]
    assert _run([(0.0, _one({0: 100.0})), (0.0, _one({0: 100.0}))]) == [pytest.approx(20.0, rel=1e-12)] * 2


def test_a_third_flow_arriving_midway_reshares():
    # 0–4 s: A and B at 5 B/s (20 B each moved). From 4 s three share 10 B/s: A and B need 80 B at 10/3 B/s,
    # so end at 4 + 24 = 28 s; C has moved 80 B by then and its last 20 B go alone at 10 B/s: 30 s.
    ends = _run([(0.0, _one({0: 100.0})), (0.0, _one({0: 100.0})), (4.0, _one({0: 100.0}))])
    assert ends == [pytest.approx(28.0, rel=1e-12), pytest.approx(28.0, rel=1e-12), pytest.approx(30.0, rel=1e-12)]


def test_groups_apart_share_their_own_links_and_a_recurring_group_shares_them_again():
    # Link 0: two copies of one plan A (100 B, 10 s alone) at half speed end at 20 s. Link 1 at the same time:
    # B (100 B) and C (300 B) at half speed: B ends at 20 s, C has 200 B left. At 20 s the same plans start
    # again beside C: A's pair ends at 40 s; B and C share link 1 until B's 100 B arrive at 40 s, C's last
    # 100 B go alone: 50 s. (Rates are solved per group of flights sharing links and looked up when a group
    # recurs, here with another group in flight.)
    a, b, c = _one({0: 100.0}), _one({1: 100.0}), _one({1: 300.0})
    ends = _run([(0.0, a), (0.0, a), (0.0, b), (0.0, c), (20.0, a), (20.0, a), (20.0, b)])
    assert ends == [pytest.approx(x, rel=1e-12) for x in (20.0, 20.0, 20.0, 50.0, 40.0, 40.0, 40.0)]


def test_flows_on_different_links_do_not_meet_and_latency_comes_after_the_bytes():
    ends = _run([(0.0, _one({0: 100.0}, latency_s=0.5)), (1.0, _one({1: 50.0, 2: 20.0}))])
    assert ends == [pytest.approx(10.5, rel=1e-12), pytest.approx(6.0, rel=1e-12)]


def test_a_send_overlapping_a_dispatch_on_one_nic_slows_both():
    # Link 0 is the receiving NIC, link 1 NVLink. The send fills the NIC alone (S = 40/10 = 4 s); the dispatch's
    # InfiniBand bundle too (D = 100/10 = 10 s); its NVLink bundle takes 7 s. Together on the NIC each gets
    # half: the send ends at 2·S = 8 s; the dispatch's IB bundle has moved 40 B by then and its last 60 B take
    # 6 s alone: 14 s = S + D. The NVLink bundle never meets the send: the dispatch ends at max(7, 14) s.
    send = _one({0: 40.0})
    dispatch = plan_of([PlanStep([bundle([0], [100.0], CAP), bundle([1], [70.0], CAP)], 0.0)])
    assert _run([(0.0, dispatch)]) == [pytest.approx(10.0, rel=1e-12)]
    assert _run([(0.0, send), (0.0, dispatch)]) == [pytest.approx(8.0, rel=1e-12), pytest.approx(14.0, rel=1e-12)]


def test_a_bundle_that_uses_a_link_lightly_is_slowed_by_the_same_factor():
    # A fills link 0 (10 s alone). B's busiest link is link 1 (200 B: 20 s alone), so at full speed it puts
    # 2.5 B/s on link 0. Progressive filling: both at u with 10u + 2.5u = 10, u = 0.8, until A ends at 12.5 s;
    # B has done 0.8 × 12.5 = 10 of its 20 solo seconds, the rest alone: 22.5 s.
    a, b = _one({0: 100.0}), _one({0: 50.0, 1: 200.0})
    assert _run([(0.0, a), (0.0, b)]) == [pytest.approx(12.5, rel=1e-12), pytest.approx(22.5, rel=1e-12)]


def test_two_to_one_spine_halves_cross_leaf_bandwidth_only_for_traffic_that_crosses_it():
    # ft2 of 24-port leaves at 2:1: 16 NICs (two 8-GPU nodes) down, 8 up per leaf. Every GPU of nodes 0 and 1
    # sends B bytes to its peer on nodes 2 and 3: 16 NICs' worth of traffic leaves through 8 uplinks, half the
    # NIC rate. Node 0 to node 1 stays inside the leaf: the NIC rate. At 1:1 (12 down, 12 up) no leaf's uplinks
    # carry more than its NICs: the NIC rate both ways.
    nbytes, nic_s = 1e9, 1e9 / (50e9 * 0.8)

    def sends(oversubscription, pairs):
        net = GraphNetwork(build_topology("ft2", gpus=32, radix=24, oversubscription=oversubscription), "analytic")
        gpu, is_nic = net.gpus, np.asarray(net.router.link_class == "nic")
        program = net.program("send-recv", algo.send_recv([(gpu[a], gpu[b]) for a, b in pairs], nbytes))
        plan = plan_of(plan_steps([program], net.capacity_bps, is_nic))
        (end,) = _run([(0.0, plan)], net.capacity_bps)  # moved in simulated time, alone
        return end - plan.steps[0].latency_s

    across = [(i, 16 + i) for i in range(16)]
    within = [(i, 8 + i) for i in range(8)]
    assert sends(2.0, across) == pytest.approx(2 * nic_s, rel=1e-9)
    assert sends(2.0, within) == pytest.approx(nic_s, rel=1e-9)
    assert sends(1.0, across) == pytest.approx(nic_s, rel=1e-9)


# --- the time-shared network in the engine --------------------------------------------------------------------
def test_flow_agrees_exactly_with_analytic_where_nothing_contends():
    # 16 GPUs on 2-port switches: every inter-node path crosses a spine, as the analytic latency assumes; EP
    # and DP stay inside a node and the pipeline sends use NICs nothing else uses.
    extra = ["cluster.network.switch_radix=2"]
    analytic = simulate(load_scenario(preset="deepseek-v2-lite-h800", overrides=extra))
    for fidelity in ("representative", "full"):
        flow = simulate(load_scenario(preset="deepseek-v2-lite-h800",
                                      overrides=[*extra, "run.network=flow", f"run.fidelity={fidelity}"]))
        assert flow.step_time_s == pytest.approx(analytic.step_time_s, rel=1e-9)
        assert flow.simpy_events > analytic.simpy_events  # the transfers really ran on SimPy's clock


def test_an_all_to_all_too_large_to_simulate_is_refused_with_its_size():
    from moesim.simulator.network.collectives import check_flow_state

    # The collective command refuses this many flows on time first (tests/test_robustness.py); the memory their
    # state needs is the network model's own guard, also under simulate with run.network=flow.
    with pytest.raises(ValueError, match=r"all-to-all over 65,536 GPUs: 4,294,901,760 flows, ~1,649 GB to "
                                         r"simulate \(limit 4 GB\)"):
        check_flow_state("all-to-all", 65_536, 8)


def test_every_network_model_implements_the_protocol():
    from moesim.simulator.network import NetworkModel, TimeSharedNetwork

    sc = load_scenario(preset="deepseek-v2-lite-h800")
    faulty = load_scenario(preset="deepseek-v2-lite-h800",
                           overrides=['faults.links=[{"link": ["n0.nic3", "p3.leaf0"], "bandwidth_factor": 0.5}]'])
    flow = load_scenario(preset="deepseek-v2-lite-h800", overrides=["run.network=flow"])
    models = [make_network(s) for s in (sc, faulty, flow)]
    assert [type(m).__name__ for m in models] == ["AnalyticNetwork", "FaultedNetwork", "SharedNetwork"]
    assert all(isinstance(m, NetworkModel) for m in models)
    assert [isinstance(m, TimeSharedNetwork) for m in models] == [False, False, True]


def test_process_groups_instances_match_their_geometry():
    from moesim.simulator.network.groups import KINDS, ProcessGroups

    groups = ProcessGroups(tp=2, cp=2, dp=4, ep=8, pp=2, gpus_per_node=8)
    for kind in KINDS[:-1]:  # pp groups span pipeline ranks
        size, stride = groups.size_stride(kind)
        for rank in (0, 1):
            instances = groups.instances(kind, rank)
            assert len(instances) * size == groups.stage_gpus, kind
            for members in instances:
                assert len(members) == size and all(b - a == stride for a, b in zip(members, members[1:])), kind
                assert all(g // groups.stage_gpus == rank for g in members)
    assert groups.geometry("ep").nodes == 1 and groups.geometry("dp").nodes == 2  # dp strides 4: 2 per node
    # Expert-DP groups (stride 8) lie inside DP groups (stride 4) here: the tail groups are the DP groups.
    assert groups.instances("tail") == groups.instances("dp") == [[0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14],
                                                                  [3, 7, 11, 15]]


def test_dispatch_moves_at_deepeps_kernel_rate_in_both_network_models():
    """16 GPUs, EP over both nodes: NVLink forwarding binds (4.63 copies per token against 0.99 over IB), so
    the dispatch's transfer is NVLink bytes / min(link, kernel): 0.683 × 200 GB/s by default, the link's
    0.8 × 200 once the kernels could do more. Both network models move it alike (the graph charges the
    slower path's latency once, the closed form NVLink's and the NIC's: a constant difference)."""
    base = ["cluster.network.switch_radix=2", "parallelism.pp=1", "parallelism.dp=16", "parallelism.ep=16",
            "parallelism.stage_layers=null"]
    fast = ["cluster.network.ep_nic_efficiency=1.0", "cluster.network.ep_nvlink_efficiency=1.0"]
    comm = Comm(Pattern.EP_DISPATCH, "ep", 4096 * 6 * 2048 * 1.03125, 4096, 2048, 6, 1.03125)
    times = {}
    for name, extra in (("kernel", []), ("link", fast)):
        for model in ("analytic", "flow"):
            net = make_network(load_scenario(preset="deepseek-v2-lite-h800",
                                             overrides=[*base, *extra, f"run.network={model}"]))
            times[name, model] = net.comm_time_s(comm)
    analytic = make_network(load_scenario(preset="deepseek-v2-lite-h800", overrides=base))
    nvl_bytes = 4096 * analytic.ep_traffic().nvl_copies * 2048 * 1.03125
    expected = nvl_bytes / (0.683 * 200e9) - nvl_bytes / (0.8 * 200e9)
    assert times["kernel", "analytic"] - times["link", "analytic"] == pytest.approx(expected, rel=1e-9)
    assert times["kernel", "flow"] - times["link", "flow"] == pytest.approx(expected, rel=1e-9)
    shift = times["kernel", "analytic"] - times["kernel", "flow"]
    assert times["link", "analytic"] - times["link", "flow"] == pytest.approx(shift, rel=1e-9)
