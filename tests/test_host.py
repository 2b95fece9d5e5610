"""The host thread (simulator/engine/host.py): kernels issued in program order at a launch cost, host syncs,
CUDA graphs."""

from __future__ import annotations

import pytest

from moesim.calibration.host import HostCosts, HostModel
from moesim.calibration.profile import load_profiles
from moesim.simulator.engine import PipelineEngine, TailSpec
from moesim.simulator.engine.host import HostPricer, SegmentHost
from moesim.simulator.metrics import rank_breakdowns
from moesim.simulator.pricing import Segment, StagePrice
from moesim.simulator.schedules import get_schedule
from moesim.simulator.simulate import simulate
from tests.conftest import tiny_dense
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Phase, Stream


def with_host(gpu: str, launch_us: float, sync_us: float) -> list:
    """The GPU's default profile stack, its first profile carrying hand-made host costs."""
    profiles = [p.model_copy(update={"host": None}) for p in load_profiles(None, gpu)]
    host = HostCosts(launch_us={"default": launch_us}, sync_us=sync_us, source="hand-made for tests")
    profiles[0] = profiles[0].model_copy(update={"host": host})
    return profiles


def test_a_host_bound_step_is_the_host_time_and_its_breakdown_says_so():
    """One rank, one micro-batch: F, B and W are each 10 kernels of 0.2 ms on the GPU and 1 ms each to launch;
    then the tail: a 2 ms gradient reduce-scatter, a 0.5 ms optimizer step after a 0.5 ms host sync, a 1 ms
    parameter all-gather, one launch each. The host issues F, B, W and the reduce-scatter by 31 ms; the
    reduce-scatter ends at 33 ms, when the sync starts; the optimizer is issued at 34.5 ms and the all-gather at
    35.5 ms: the step ends at 36.5 ms. The GPU waited for the host 33 L − 3·2 ms + sync − opt = 27 ms."""
    launch, kernel_s, sync = 1e-3, 2e-3, 0.5e-3
    segment = {phase: (Segment(phase.value, Stream.COMPUTE, kernel_s, phase, host=SegmentHost(10, 10 * launch)),)
               for phase in Phase}
    prices = [StagePrice(segment, 0.0, 0.0, 1.0)]
    host = HostPricer(HostModel({"default": launch}, sync, "hand-made"), [])
    timeline = PipelineEngine(get_schedule("gpipe")(1, 1), prices, 0.0, TailSpec(2e-3, 0.5e-3, 1e-3),
                              host=host).run()
    assert timeline.makespan_s == pytest.approx(36.5e-3, abs=1e-12)
    (rank,) = rank_breakdowns(timeline, [1.0])
    assert rank.host_bound_s == pytest.approx(33 * launch - 3 * kernel_s + sync - 0.5e-3, abs=1e-12)
    assert rank.exposed_comm_s == pytest.approx(3e-3, abs=1e-12)
    assert rank.forward_s == pytest.approx(kernel_s, abs=1e-12)
    assert rank.bubble_s == pytest.approx(0.0, abs=1e-12)
    assert any(r[1] == "host" and r[4] == "host-bound" for r in timeline.records)


def test_a_gpu_bound_step_hides_the_host():
    """The same rank with 1 µs launches: the host runs ahead and only the first launch shows (1 µs), then the
    tail's launches and the sync, which waits for the GPU."""
    segment = {phase: (Segment(phase.value, Stream.COMPUTE, 2e-3, phase, host=SegmentHost(10, 10e-6)),)
               for phase in Phase}
    host = HostPricer(HostModel({"default": 1e-6}, 0.5e-3, "hand-made"), [])
    timeline = PipelineEngine(get_schedule("gpipe")(1, 1), [StagePrice(segment, 0.0, 0.0, 1.0)], 0.0,
                              TailSpec(2e-3, 0.5e-3, 1e-3), host=host).run()
    # 1 µs to the first kernel, 3 × 2 ms of F, B, W, 2 ms reduce-scatter, 0.5 ms sync, 1 µs optimizer launch,
    # 0.5 ms optimizer, 1 ms all-gather (issued long before its turn).
    assert timeline.makespan_s == pytest.approx(1e-6 + 6e-3 + 2e-3 + 0.5e-3 + 1e-6 + 0.5e-3 + 1e-3, abs=1e-12)


def tiny_step(launch_us: float, sync_us: float, **overrides):
    scenario = tiny_dense(**{"parallelism.pp": 1, "cluster.gpus": 1, **overrides})
    return scenario, simulate(scenario, with_host("h100", launch_us, sync_us), keep_timeline=True)


def test_a_tiny_scenario_with_a_large_launch_cost_takes_its_host_time():
    """pp = 1, 1 ms per kernel launch (far longer than any of the tiny model's kernels): the step is the host's
    time to issue every kernel of every micro-batch and the reduce-scatter, then the optimizer's sync, its
    launch, and the longer of the optimizer step and the all-gather's launch (the collectives take no time on one
    GPU)."""
    launch, sync = 1e-3, 0.25e-3
    scenario, result = tiny_step(launch * 1e6, sync * 1e6)
    from moesim.simulator.network import AnalyticNetwork
    from moesim.simulator.pricing import Pricer
    from moesim.simulator.simulate import cost_model_for
    from moesim.workloads.model import build_stages

    (stage,) = build_stages(scenario)
    kernels = sum(len(c.ops) for phase in Phase for c in stage.chunk(phase).components)
    optimizer_s = result.stages[0].optimizer_s
    host_s = launch * (scenario.micro_batches * kernels + 1)
    assert result.step_time_s == pytest.approx(host_s + sync + launch + max(optimizer_s, launch), rel=1e-12)
    # The kernels are far shorter than their launches: the GPU waits for the host most of the step.
    assert result.stages[0].host_bound_s > 0.9 * result.step_time_s
    pricer = Pricer(scenario, cost_model_for(scenario), AnalyticNetwork(scenario))
    assert max(op_s for phase in Phase for c in stage.chunk(phase).components for op_s in
               map(pricer.op_time_s, c.ops)) < launch


def test_cuda_graphs_remove_the_launch_cost():
    """Captured whole (full_iteration), each component costs the host one graph launch: a 20 µs launch cost
    that binds the eager step hides behind the GPU."""
    _, eager = tiny_step(20.0, 20.0)
    _, graphs = tiny_step(20.0, 20.0, **{"training.cuda_graphs": ["full_iteration"]})
    _, no_host = tiny_step(0.0, 0.0)
    assert eager.step_time_s > 1.4 * no_host.step_time_s
    assert eager.stages[0].host_bound_s > 0.25 * eager.step_time_s
    assert graphs.stages[0].host_bound_s < 0.01 * graphs.step_time_s
    assert graphs.step_time_s < 1.01 * no_host.step_time_s
    assert "CUDA graphs: full_iteration" in graphs.cost_model_notes[-1]


def test_capture_scopes_take_their_modules_kernels():
    """Megatron's module names: attn takes the attention block, moe_router the gate and router kernels, moe the
    dispatch, experts and combine; a captured run of kernels is one graph launch; a sync inside a graph goes."""
    from moesim.workloads.model import build_stages

    scenario = load_scenario(preset="deepseek-v2-lite-h800")
    stage = next(s for s in build_stages(scenario) if s.layers and any(
        c.name == "DISPATCH" for c in s.forward.components))
    attn = next(c for c in stage.forward.components if c.name == "ATTN" and any(
        op.name.startswith("router.") for op in c.ops))
    dispatch = next(c for c in stage.forward.components if c.name == "DISPATCH")
    model = HostModel({"default": 1e-5}, 1e-5, "hand-made")
    eager = HostPricer(model, [])
    host = eager.component(attn)
    assert (host.kernels, host.sync) == (len(attn.ops), False)
    assert host.launch_s == pytest.approx(1e-5 * len(attn.ops), rel=1e-12)
    assert eager.component(dispatch).sync
    router = sum(1 for op in attn.ops if op.name.startswith(("gate", "router.")))
    # attn captured: its non-router kernels become graph launches (one per captured run), the router stays eager.
    runs = HostPricer(model, ["attn"]).component(attn).launch_s / 1e-5 - router
    assert 1 <= runs < len(attn.ops) - router
    # With the router captured too, the component is one graph but for the FP8 cast before the dispatch (moe's).
    assert HostPricer(model, ["attn", "moe_router"]).component(attn).launch_s == pytest.approx(2e-5, rel=1e-12)
    both = HostPricer(model, ["attn", "moe_router", "moe"]).component(attn)
    assert both.launch_s == pytest.approx(1e-5, rel=1e-12)  # one graph for the whole component
    moe = HostPricer(model, ["moe"]).component(dispatch)
    assert (moe.kernels, moe.sync) == (len(dispatch.ops), False) and moe.launch_s == pytest.approx(1e-5, rel=1e-12)


def test_no_host_costs_leave_the_step_exactly_as_without_a_host():
    """All-zero host costs, and none at all (no profile carries them), give the same step to 1e-9."""
    scenario = load_scenario(preset="deepseek-v2-lite-h800")
    profiles = load_profiles(None, "h800")
    plain = simulate(scenario, [p.model_copy(update={"host": None}) for p in profiles])
    zero = simulate(scenario, with_host("h800", 0.0, 0.0))
    assert zero.step_time_s == pytest.approx(plain.step_time_s, rel=1e-9)
    for a, b in zip(zero.stages, plain.stages):
        assert (a.exposed_comm_s, a.bubble_s, a.host_bound_s) == pytest.approx((b.exposed_comm_s, b.bubble_s, 0.0),
                                                                               rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("units", ["classes", "gpus"])
def test_representative_and_full_fidelity_agree_with_the_host_on(units):
    """Balanced routing, 5 µs launches, 20 µs syncs (the forward dispatch and the optimizer): every GPU's own
    host thread gives the same step and breakdown as one per pipeline rank."""
    scenario = load_scenario(preset="deepseek-v2-lite-h800")
    profiles = with_host("h800", 5.0, 20.0)
    rep = simulate(scenario, profiles)
    full = simulate(scenario.model_copy(update={"run": scenario.run.model_copy(update={"fidelity": "full"})}),
                    profiles, full_units=units)
    assert rep.step_time_s > simulate(scenario, with_host("h800", 0.0, 0.0)).step_time_s
    assert full.step_time_s == pytest.approx(rep.step_time_s, rel=1e-9)
    for a, b in zip(full.stages, rep.stages):
        assert (a.host_bound_s, a.exposed_comm_s, a.bubble_s) == pytest.approx(
            (b.host_bound_s, b.exposed_comm_s, b.bubble_s), rel=1e-9, abs=1e-12)
