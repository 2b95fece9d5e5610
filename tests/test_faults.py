"""Stragglers slow the step through the rank that holds them; failures cost goodput as Young/Daly predict."""

from __future__ import annotations

import math

import pytest

from moesim.simulator.failures.reliability import expected_goodput
from moesim.simulator.simulate import simulate
from tests.conftest import tiny_dense


def test_straggler_slows_the_step_and_more_slowdown_slows_it_more():
    base = simulate(tiny_dense()).step_time_s
    slow = simulate(tiny_dense(**{"faults.stragglers": [{"gpu": 3, "slowdown": 1.5}]})).step_time_s
    slower = simulate(tiny_dense(**{"faults.stragglers": [{"gpu": 3, "slowdown": 2.0}]})).step_time_s
    assert base < slow < slower


def test_straggler_on_the_bottleneck_stage_stretches_its_compute():
    """The last stage (with the head) is the busiest; its compute busy time scales exactly by the slowdown."""
    base = simulate(tiny_dense())
    slow = simulate(tiny_dense(**{"faults.stragglers": [{"gpu": 3, "slowdown": 2.0}]}))
    busy = lambda r: r.stages[-1].forward_s + r.stages[-1].backward_input_s + r.stages[-1].backward_weight_s
    assert busy(slow) == pytest.approx(2.0 * busy(base))
    assert slow.stages[0].forward_s == pytest.approx(base.stages[0].forward_s)


def test_young_daly_goodput_by_hand():
    # 1000 GPUs at 10,000 h MTBF → system MTBF 10 h; checkpoint 36 s = 0.01 h → τ* = sqrt(2·0.01·10) = 0.447 h.
    g = expected_goodput(10.0, gpus=1000, gpus_per_node=8, gpu_mtbf_h=10_000, node_mtbf_h=None,
                         checkpoint_s=36.0, restart_s=360.0)
    tau = math.sqrt(2 * 0.01 * 10)
    waste = 0.01 / tau + (tau / 2 + 0.1) / 10
    assert g.system_mtbf_h == pytest.approx(10.0)
    assert g.checkpoint_interval_h == pytest.approx(tau)
    assert g.goodput == pytest.approx(1 - waste)
    assert g.days_with_failures == pytest.approx(10.0 / (1 - waste))
    assert g.expected_failures == pytest.approx(g.days_with_failures * 24 / 10.0)


def test_goodput_falls_with_more_gpus_and_longer_restarts():
    kw = dict(gpus_per_node=8, gpu_mtbf_h=50_000, node_mtbf_h=None, checkpoint_s=60.0)
    small = expected_goodput(30, gpus=1024, restart_s=600, **kw).goodput
    big = expected_goodput(30, gpus=16384, restart_s=600, **kw).goodput
    slow_restart = expected_goodput(30, gpus=16384, restart_s=3600, **kw).goodput
    assert 1 > small > big > slow_restart > 0


def test_simulate_reports_days_with_failures():
    r = simulate(tiny_dense(**{"faults.reliability.restart_s": 600.0}))
    assert r.training_days_with_failures > r.training_days
    assert r.reliability["goodput"] == pytest.approx(r.training_days / r.training_days_with_failures)


def ep_across_nodes(*extra):
    """DeepSeek-V2-Lite with its 16 GPUs in one EP group over 2 nodes: dispatch and combine cross the NICs."""
    from moesim.workloads.loader import load_scenario
    return load_scenario(preset="deepseek-v2-lite-h800", overrides=[
        "parallelism.pp=1", "parallelism.dp=16", "parallelism.ep=16", "parallelism.stage_layers=null",
        "parallelism.micro_batch_size=1", "parallelism.global_batch=32", *extra])


def test_a_degraded_nic_cable_slows_the_step_and_a_worse_one_more():
    base = simulate(ep_across_nodes()).step_time_s
    half = simulate(ep_across_nodes("faults.links=[{link: [n0.nic0, p0.leaf0], bandwidth_factor: 0.5}]"))
    quarter = simulate(ep_across_nodes("faults.links=[{link: [n0.nic0, p0.leaf0], bandwidth_factor: 0.25}]"))
    assert base < half.step_time_s < quarter.step_time_s


def test_a_failed_cable_is_routed_around_not_fatal():
    base = simulate(ep_across_nodes()).step_time_s
    failed = simulate(ep_across_nodes("faults.links=[{link: [n0.nic0, p0.leaf0]}]")).step_time_s
    assert failed >= base  # cross-plane traffic now detours over NVLink to another NIC of the node


def test_an_unreachable_group_is_a_clear_error():
    from moesim.workloads.errors import ScenarioError
    leaves = ", ".join(f"{{switch: p{p}.leaf0}}" for p in range(8))
    with pytest.raises(ScenarioError, match=r"faults.links: no route .* cannot communicate"):
        simulate(ep_across_nodes(f"faults.links=[{leaves}]"))
    with pytest.raises(ScenarioError, match=r"no switch 'p9.spine0'"):
        simulate(ep_across_nodes("faults.links=[{switch: p9.spine0}]"))


def test_a_link_fault_needs_exactly_one_target():
    from moesim.workloads.errors import ScenarioError
    with pytest.raises(ScenarioError, match="exactly one of link"):
        ep_across_nodes("faults.links=[{link: [n0.nic0, p0.leaf0], switch: p0.leaf0}]")
