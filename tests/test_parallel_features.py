"""Issue 23's parallelism and communication fields, each checked against bytes, FLOPs and kernels worked out by
hand: expert TP / expert DP, the dispatcher kinds, capacity factor, EP overlap in interleaved 1F1B, FSDP/HSDP."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.simulator.network.analytic import AnalyticNetwork
from moesim.simulator.network.groups import ProcessGroups
from moesim.simulator.simulate import simulate
from moesim.workloads.ep_load import EpLoad, ExpertPlacement
from moesim.workloads.errors import ScenarioError
from moesim.workloads.layers import element_bytes
from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages, moe_layer
from moesim.workloads.ops import Kind, OpClass, Pattern, Phase
from moesim.workloads.routing import EpTraffic

# DeepSeek-V3 preset: 4096 tokens per micro-batch on each GPU (tp 1, cp 1), hidden 7168, top-8 of 256 experts,
# EP 64 over 8 nodes of 8, FP8 dispatch (1 byte + one fp32 scale per 128 channels) and BF16 combine.
T, H, K, E, EP = 4096, 7168, 8, 256, 64
FP8 = 1 + 4 / 128


def comms(layer, phase: Phase) -> list:
    chunk = {Phase.F: layer.forward, Phase.B: layer.backward, Phase.W: layer.weight}[phase]
    return [op for c in chunk for op in c.ops if op.comm is not None]


def grouped_flops(layer, phase: Phase) -> float:
    chunk = {Phase.F: layer.forward, Phase.B: layer.backward, Phase.W: layer.weight}[phase]
    return sum(op.flops for c in chunk for op in c.ops if op.kind is Kind.GROUPED_GEMM)


# --- dispatchers ------------------------------------------------------------------------------------------------
def test_alltoall_sends_one_copy_per_pick_and_syncs_the_host_on_the_counts():
    s = load_scenario(overrides=["training.dispatcher=alltoall"])
    ops = comms(moe_layer(s, "test"), Phase.F)
    counts, dispatch = ops[0], ops[1]
    assert counts.host_sync and counts.op_class is OpClass.EP_NOTIFY
    assert counts.comm == counts.comm.__class__(Pattern.ALL_GATHER, "ep", EP * E * 8)  # int64 counts, gathered
    assert dispatch.comm.pattern is Pattern.ALL_TO_ALL
    assert dispatch.comm.bytes_per_rank == T * K * H * FP8  # no per-node deduplication
    # Its kernels: a local permute before the all-to-all and the top-k weighted unpermute after the combine.
    names = [op.name for c in moe_layer(s, "test").forward for op in c.ops]
    assert "dispatch.permute.F" in names and "combine.unpermute.F" in names


def test_alltoall_dispatch_is_slower_than_deepep_by_the_nic_bytes():
    """NCCL's all-to-all puts (EP − 8)/EP of its T·K copies on InfiniBand; DeepEP crosses IB once per remote node
    a token reaches (≤ 4, node-limited) and forwards over NVLink, so the alltoall dispatch moves more IB bytes."""
    deepep = load_scenario()
    alltoall = load_scenario(overrides=["training.dispatcher=alltoall"])
    net = AnalyticNetwork(deepep)
    d_deepep = comms(moe_layer(deepep, "t"), Phase.F)[1]
    d_a2a = comms(moe_layer(alltoall, "t"), Phase.F)[1]
    ib_a2a = T * K * H * FP8 * (EP - 8) / EP  # bytes this GPU sends over its NIC
    expected = ib_a2a / (net.nic_gbps * 1e9) + net.nvlink_latency_s + net.nic_latency_s
    assert net.comm_time_s(d_a2a.comm) == pytest.approx(expected, rel=1e-12)
    ib_deepep = T * net.ep_traffic().ib_nodes * H * FP8
    assert ib_a2a / ib_deepep > 1.5  # ≤ 4 remote nodes of 7 per token vs 7 copies of 8 per token
    assert net.comm_time_s(d_a2a.comm) > net.comm_time_s(d_deepep.comm)
    assert simulate(alltoall).step_time_s > simulate(deepep).step_time_s


def test_allgather_bytes_scale_with_ep():
    """The allgather dispatcher gathers every member's tokens: its buffer is EP × T × H, so EP 64 moves 8× EP 8's."""
    small = load_scenario(overrides=["training.dispatcher=allgather", "parallelism.ep=8"])
    large = load_scenario(overrides=["training.dispatcher=allgather"])
    b_small = comms(moe_layer(small, "t"), Phase.F)[1].comm
    b_large = comms(moe_layer(large, "t"), Phase.F)[1].comm
    assert b_small.pattern is b_large.pattern is Pattern.ALL_GATHER
    assert b_small.bytes_per_rank == 8 * T * H * FP8
    assert b_large.bytes_per_rank == 64 * T * H * FP8
    combine = comms(moe_layer(large, "t"), Phase.F)[-1].comm
    assert combine == combine.__class__(Pattern.REDUCE_SCATTER, "ep", 64 * T * H * 2)


def test_hybridep_is_priced_as_deepep():
    """No HybridEP kernel measurement is published: its node-deduplicated dispatch is priced at DeepEP's rates."""
    assert simulate(load_scenario(overrides=["training.dispatcher=hybridep"])).step_time_s == \
        simulate(load_scenario()).step_time_s


# --- expert TP / expert DP ----------------------------------------------------------------------------------------
def test_expert_tp_keeps_expert_flops_per_gpu_and_halves_expert_weights():
    """ETP 2: each GPU runs 2× the rows (its peer's gathered too) on half the intermediate: same FLOPs per GPU."""
    one = load_scenario()
    two = load_scenario(overrides=["parallelism.expert_tp=2"])
    a, b = moe_layer(one, "t"), moe_layer(two, "t")
    for phase in Phase:
        assert grouped_flops(b, phase) == grouped_flops(a, phase)
    assert grouped_flops(a, Phase.F) == 3 * 2.0 * (T * K) * H * 2048  # up (2·inter) + down, T·K rows
    gather = [op.comm for op in comms(b, Phase.F) if op.comm.group == "etp"]
    rows_ep = (E // EP) * (T * K * EP // E)  # rows this GPU receives from its EP group
    # The gathered rows after the dispatch (FP8) and the outputs reduce-scattered before the combine (BF16).
    assert gather == [gather[0].__class__(Pattern.ALL_GATHER, "etp", 2 * rows_ep * H * FP8),
                      gather[0].__class__(Pattern.REDUCE_SCATTER, "etp", 2 * rows_ep * H * 2)]
    s1, s2 = build_stages(one), build_stages(two)
    assert s2[1].expert_params == s1[1].expert_params / 2
    assert two.parallelism.expert_dp_size == 128 // (64 * 2) == 1


def test_expert_gradients_sync_over_the_expert_dp_group():
    """Mixtral on 8 GPUs a stage: EP 4 leaves 2 expert replicas to reduce over; EP 4 × ETP 2 leaves none."""
    from moesim.simulator.simulate import cost_model_for, tail_spec
    for extra, edp in (([], 2), (["parallelism.expert_tp=2"], 1)):
        s = load_scenario(preset="mixtral-8x7b-h100", overrides=["parallelism.ep=4", *extra])
        net = AnalyticNetwork(s)
        assert s.parallelism.expert_dp_size == net.group("edp").size == edp
        expert = build_stages(s)[1].expert_params
        tail = tail_spec(s, net, cost_model_for(s), 0.0, expert)
        # ZeRO-1: a ring reduce-scatter of the fp32 expert gradients over edp GPUs of one node.
        ring_s = (edp - 1) / edp * expert * 4 / (net.nvlink_gbps * 1e9) + (edp - 1) * net.nvlink_latency_s
        dense_s = 7 * net.nvlink_latency_s  # the dense reduce-scatter over dp 8 of no bytes: its ring's latency
        assert tail.grad_sync_s == pytest.approx(ring_s + dense_s, rel=1e-12)


def test_expert_groups_are_folded_tp_fastest():
    g = ProcessGroups(tp=1, cp=1, dp=16, ep=4, pp=1, gpus_per_node=8, etp=2)
    assert g.instances("etp")[0] == [0, 1]
    assert g.instances("ep")[0] == [0, 2, 4, 6]  # EP members expert_tp apart
    assert g.size_stride("edp") == (2, 8)
    assert g.instances("edp")[0] == [0, 8]
    folded = ProcessGroups(tp=2, cp=1, dp=8, ep=4, pp=1, gpus_per_node=8, etp=2, fsdp_shard=4)
    for kind in ("tp", "dp", "ep", "etp", "edp", "fsdp", "hsdp"):  # every instance: its size, evenly strided
        size, stride = folded.size_stride(kind)
        for members in folded.instances(kind):
            assert len(members) == size and all(b - a == stride for a, b in zip(members, members[1:])), kind
    assert folded.instances("fsdp")[0] == [0, 2, 4, 6] and folded.instances("hsdp")[0] == [0, 8]


@pytest.mark.parametrize("override, message", [
    ("parallelism.expert_tp=3", "parallelism.expert_tp=3 must divide model.moe.expert_intermediate=2048"),
    ("parallelism.expert_tp=4", "ep·expert_tp = 256 must divide dp·cp·tp = 128"),
    ("parallelism.expert_dp=4", "parallelism.expert_dp=4 but dp·cp·tp / (ep·expert_tp) = 128/(64·1) = 2"),
    ("parallelism.fsdp={shard: 16, replicate: 4}", "parallelism.fsdp: shard·replicate = 16·4 = 64 but "
                                                   "parallelism.dp = 128"),
    ("training.ep_overlap=true", "training.ep_overlap overlaps EP communication across micro-batches of "
                                 "interleaved 1F1B; set schedule: interleaved"),
])
def test_bad_layouts_name_the_field_and_the_fix(override, message):
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(")", r"\)").replace("·", "·")):
        load_scenario(overrides=[override])


# --- capacity factor ----------------------------------------------------------------------------------------------
def test_capacity_drops_the_picks_over_each_experts_share():
    """4 experts with shares .4 .3 .2 .1 at capacity factor 1 (capacity .25 each): .15 + .05 dropped."""
    share = np.array([0.4, 0.3, 0.2, 0.1])
    load = EpLoad("zipf", share, np.ones(2), np.ones(2), np.ones(1), np.zeros((2, 2)), EpTraffic(0, 1, 1),
                  ExpertPlacement(((0,), (0,), (1,), (1,))))
    kept, factor = load.capped(1.0)
    assert kept == pytest.approx(0.8, rel=1e-12)
    assert factor == pytest.approx(0.5 / 0.4, rel=1e-12)  # GPU 0 keeps .25 + .25, GPU 1 .2 + .1; mean .4
    assert load.capped(2.0)[0] == pytest.approx(1.0, rel=1e-12)


def test_capacity_factor_on_balanced_routing_drops_nothing():
    assert simulate(load_scenario(overrides=["training.capacity_factor=1.0"])).step_time_s == \
        simulate(load_scenario()).step_time_s


def test_capacity_factor_caps_expert_rows_and_bytes_under_zipf_routing():
    zipf = ["routing.name=zipf", "routing.zipf_alpha=0.5"]
    s = load_scenario(overrides=zipf + ["training.capacity_factor=1.0"])
    from moesim.workloads.dispatchers import kept_fraction
    kept = kept_fraction(s)
    assert 0.5 < kept < 0.99
    capped, free = moe_layer(s, "t"), moe_layer(load_scenario(overrides=zipf), "t")
    assert grouped_flops(capped, Phase.F) / grouped_flops(free, Phase.F) == pytest.approx(kept, rel=2e-3)
    d_capped, d_free = comms(capped, Phase.F)[1].comm, comms(free, Phase.F)[1].comm
    assert d_capped.bytes_per_rank / d_free.bytes_per_rank == pytest.approx(kept, rel=1e-3)
    result = simulate(s)
    assert any(f"drops {1 - kept:.2%} of routed tokens" in n for n in result.cost_model_notes)


def test_capacity_caps_every_gpu_alike_in_both_fidelities():
    """Capped rows are what each GPU runs: full fidelity (each GPU at its own kept rows) and representative
    fidelity (the pace of the GPU with the most rows) agree. Not to 1e-9 here: two GPUs with 1.2% fewer kept rows
    price 1.1e-6 slower (the grouped GEMM's time is not monotone in its rows: tile rounding), and full fidelity
    runs them so."""
    over = ["routing.name=zipf", "routing.zipf_alpha=0.5", "training.capacity_factor=1.0"]
    rep = simulate(load_scenario(preset="deepseek-v2-lite-h800", overrides=over))
    full = simulate(load_scenario(preset="deepseek-v2-lite-h800", overrides=over + ["run.fidelity=full"]))
    assert full.step_time_s == pytest.approx(rep.step_time_s, rel=2e-6)
    assert full.step_time_s >= rep.step_time_s


# --- EP overlap -------------------------------------------------------------------------------------------------
def test_ep_overlap_pairs_steady_state_chunks_and_hides_ep_communication():
    base = load_scenario(preset="qwen3-235b-a22b-h100")
    over = load_scenario(preset="qwen3-235b-a22b-h100", overrides=["training.ep_overlap=true"])
    from moesim.simulator.schedules import scenario_schedule
    schedule = scenario_schedule(over)
    programs = schedule.validate()
    pp, v, mb = 8, over.parallelism.virtual_stages, over.micro_batches
    for rank, steps in enumerate(programs):
        warmup = min((pp - rank - 1) * 2 + (v - 1) * pp + 1, mb * v)
        pairs = [s for s in steps if s.overlap is not None]
        assert len(pairs) == mb * v - warmup
        assert all((p.micro_batch, p.stage) != (p.overlap.micro_batch, p.overlap.stage) for p in pairs)
    r_base, r_over = simulate(base), simulate(over)
    # What can hide is at most the EP communication a rank runs: its DISPATCH and COMBINE segments per step.
    saved = r_base.step_time_s - r_over.step_time_s
    ep_comm = max(st.comm_s for st in r_base.stages)
    assert 0 < saved <= ep_comm
    assert max(st.exposed_comm_s for st in r_over.stages) < max(st.exposed_comm_s for st in r_base.stages)


# --- FSDP / HSDP --------------------------------------------------------------------------------------------------
TITAN = "llama3.1-8b-torchtitan-h100"
# Llama 3.1 8B, one layer: q, k, v (32 + 2·8 heads of 128) and o projections, SwiGLU of 14336, two RMSNorms.
LLAMA_LAYER = 4096 * 48 * 128 + 4096 * 4096 + 4096 + 3 * 4096 * 14336 + 4096


def fsdp_ops(stage, phase):
    return [op for c in stage.chunk(phase).components if c.name == "FSDP" for op in c.ops]


def test_fsdp_gathers_each_layer_twice_and_reduce_scatters_it_once():
    s = load_scenario(preset=TITAN, overrides=["parallelism.fsdp={shard: 4, replicate: 2}"])
    stage = build_stages(s)[0]
    units = 1 + 32 + 1  # embedding, 32 layers, head
    gathers_f, gathers_b, weight = (fsdp_ops(stage, p) for p in Phase)
    assert len(gathers_f) == len(gathers_b) == units
    layer = gathers_f[1].comm
    assert layer == layer.__class__(Pattern.ALL_GATHER, "fsdp", LLAMA_LAYER * 2)  # bf16 weights, whole layer
    scatter, reduce = [op.comm for op in weight if op.name.startswith(("fsdp_scatter", "hsdp"))][2:4]
    assert scatter == scatter.__class__(Pattern.REDUCE_SCATTER, "fsdp", LLAMA_LAYER * 4)  # fp32 gradients
    assert reduce == reduce.__class__(Pattern.ALL_REDUCE, "hsdp", LLAMA_LAYER * 4 / 4)  # the shard, over replicas
    g = ProcessGroups.of(s)
    assert g.instances("fsdp")[0] == [0, 1, 2, 3] and g.instances("hsdp")[0] == [0, 4]


def test_fsdp_memory_is_the_shard_plus_two_gathered_layers():
    s = load_scenario(preset=TITAN, overrides=["parallelism.fsdp={shard: 8}"])
    from moesim.simulator.memory import state_bytes
    from moesim.workloads.model import parameter_counts
    total = parameter_counts(s.model).total
    weights, grads, optimizer = state_bytes(s, total, 0.0)
    head = 128256 * 4096 + 4096  # the largest unit: the output projection and the final norm
    assert weights == pytest.approx(total / 8 * 2 + 2 * head * 2, rel=1e-12)
    assert grads == pytest.approx(total / 8 * 4 + head * 4, rel=1e-12)
    assert optimizer == pytest.approx(total / 8 * 12, rel=1e-12)


def test_fsdp_prefetch_hides_most_gathers_behind_compute():
    """Each gather is issued one unit ahead, beside the compute of the unit before: the step grows by much less
    than the FSDP collectives take back to back."""
    # ZeRO-1 steps the same optimizer shard (1/8) and synchronises gradients and parameters after the last chunk.
    plain = load_scenario(preset=TITAN, overrides=["parallelism.fsdp=null", "parallelism.zero_stage=1",
                                                   "run.check_memory=false"])
    fsdp = load_scenario(preset=TITAN, overrides=["parallelism.fsdp={shard: 8}"])
    net = AnalyticNetwork(fsdp)
    stage = build_stages(fsdp)[0]
    serial_s = fsdp.micro_batches * sum(net.comm_time_s(op.comm) for p in Phase for op in fsdp_ops(stage, p))
    r_plain, r_fsdp = simulate(plain), simulate(fsdp)
    grad_s = r_plain.stages[0].comm_s  # the plain step's DP sync at the end, which FSDP does per layer
    added = r_fsdp.step_time_s - (r_plain.step_time_s - grad_s)
    assert serial_s > 0.1 * r_fsdp.step_time_s  # enough to matter if it were exposed
    assert 0 < added < 0.5 * serial_s


@pytest.mark.parametrize("args, message", [
    (["--set", "parallelism.expert_tp=3"], "parallelism.expert_tp=3 must divide model.moe.expert_intermediate=2048; "
                                           "pick a divisor of it"),
    (["-p", TITAN, "--set", "parallelism.fsdp.shard=3"], "parallelism.fsdp: shard·replicate = 3·1 = 3 but "
                                                         "parallelism.dp = 8; make them equal"),
    (["--set", "training.dispatcher=nccl"], "training.dispatcher"),
])
def test_cli_refuses_bad_parallel_fields_in_one_line(runner, args, message):
    from moesim.simulator.cli import app
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_fsdp_with_pipeline_parallelism_syncs_once_per_step():
    """With PP the gathered parameters stay for the step and gradients sync after the last backward: shard = dp
    moves what ZeRO-1 moves (a reduce-scatter and an all-gather over dp) and holds what it holds; HSDP 1 × 2 holds
    every optimizer state and all-reduces the gradients over the two replicas instead."""
    from moesim.simulator.simulate import fsdp_tail_comms
    zero1 = simulate(load_scenario(preset="llama3-70b-h100", overrides=["parallelism.zero_stage=1"]))
    fsdp = simulate(load_scenario(preset="llama3-70b-h100", overrides=["parallelism.fsdp={shard: 2}"]))
    assert fsdp.step_time_s == zero1.step_time_s
    assert [s.peak_memory_gb for s in fsdp.stages] == [s.peak_memory_gb for s in zero1.stages]
    hsdp = load_scenario(preset="llama3-70b-h100", overrides=["parallelism.fsdp={shard: 1, replicate: 2}"])
    assert not any(c.name == "FSDP" for st in build_stages(hsdp) for p in Phase for c in st.chunk(p).components)
    grads, params = fsdp_tail_comms(hsdp, 1e9, 0.0)
    assert grads[-1] == grads[-1].__class__(Pattern.ALL_REDUCE, "hsdp", 1e9 * 4 / 1)
    assert params[0] == params[0].__class__(Pattern.ALL_GATHER, "fsdp", 1e9 * 2)
