"""Parameter counts and FLOPs per token against figures derived here from the published shapes."""

from __future__ import annotations

import pytest

from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages, parameter_counts
from moesim.workloads.ops import Kind, OpClass, Pattern, Phase, Stream


def test_deepseek_v3_parameter_counts():
    counts = parameter_counts(load_scenario().model)
    assert counts.total == pytest.approx(671e9, rel=0.01)
    # "37B activated" is rounded to the billion: the shapes give 36.6B (embedding lookup excluded).
    assert 36.5e9 <= counts.activated < 37.5e9
    assert counts.mtp == pytest.approx(11.5e9, rel=0.02)  # "MTP module adds 11.5B unique"


def test_llama3_405b_parameter_count():
    counts = parameter_counts(load_scenario(preset="llama3-405b-h100").model)
    assert counts.total == pytest.approx(405e9, rel=0.01)
    assert counts.activated == pytest.approx(counts.total - 128256 * 16384, rel=1e-9)


def test_mixtral_counts_match_the_paper():
    counts = parameter_counts(load_scenario(preset="mixtral-8x7b-h100").model)
    assert counts.total == pytest.approx(46.7e9, rel=0.01)
    assert counts.activated == pytest.approx(12.9e9, rel=0.02)


def forward_model_flops(scenario) -> float:
    """Forward model FLOPs of one micro-batch summed over every stage and every GPU of one replica."""
    par = scenario.parallelism
    per_gpu = sum(op.model_flops for st in build_stages(scenario) for op in st.forward.ops())
    return per_gpu * par.tp * par.cp


def test_deepseek_flops_per_token_match_a_derivation():
    s = load_scenario()
    h, s_len, layers = 7168, 4096, 61
    # Matmul FLOPs per token, forward: 2 × the parameters a token multiplies by.
    mla = 7168 * (1536 + 512 + 64) + 1536 * 128 * 192 + 512 * 128 * 256 + 128 * 128 * 7168
    dense_ffn = 3 * h * 18432
    moe = 9 * 3 * h * 2048 + 256 * h  # 8 routed + 1 shared expert, plus the gate
    head = 129280 * h
    mtp = mla + moe + 2 * h * h + head  # one MTP block, its projection, and the shared head again
    matmul = 2 * (layers * mla + 3 * dense_ffn + 58 * moe + head + mtp)
    # Core attention, causal: per layer 2·heads·(d_qk + d_v)·s(s+1)/2 over s tokens.
    attention = 2 * 128 * (192 + 128) * (s_len * (s_len + 1) / 2) / s_len * (layers + 1)
    expected = (matmul + attention) * s_len
    assert forward_model_flops(s) == pytest.approx(expected, rel=1e-6)


def test_llama_flops_per_token_match_6n_plus_attention():
    s = load_scenario(preset="llama3-405b-h100")
    h, seq, layers = 16384, 8192, 126
    per_layer = 2 * (h * (128 + 16) * 128 + 128 * 128 * h + 3 * h * 53248)
    attention = 2 * 128 * 256 * (seq * (seq + 1) / 2) / seq
    expected = (layers * (per_layer + attention) + 2 * 128256 * h) * seq
    assert forward_model_flops(s) == pytest.approx(expected, rel=1e-6)


def test_chunks_have_the_dualpipe_components_in_order():
    stage = build_stages(load_scenario())[1]
    names = [c.name for c in stage.forward.components[:4]]
    assert names == ["ATTN", "DISPATCH", "MLP", "COMBINE"]
    backward = [c.name for c in stage.backward.components[:4]]
    assert backward == ["COMBINE", "MLP", "DISPATCH", "ATTN"]
    notify, dispatch = stage.forward.components[1].ops
    assert notify.op_class is OpClass.EP_NOTIFY  # DeepEP's notify runs before its dispatch
    assert dispatch.kind is Kind.COMM and dispatch.comm.element_bytes == pytest.approx(1 + 4 / 128)
    combine = stage.forward.components[3].ops[-1]
    assert combine.comm.element_bytes == 2
    # Backward: the output gradient is cast and dispatched in FP8 (TR §3.3), dispatch's gradient combined in BF16.
    quant, _, grad_dispatch = stage.backward.components[0].ops
    assert quant.op_class is OpClass.QUANT and quant.stream is Stream.COMM
    assert grad_dispatch.comm.pattern is Pattern.EP_DISPATCH and grad_dispatch.comm.element_bytes == \
        pytest.approx(1 + 4 / 128)
    assert stage.backward.components[2].ops[-1].comm.element_bytes == 2


def test_backward_executes_more_flops_than_it_counts_when_recomputing():
    stage = build_stages(load_scenario())[1]
    executed = sum(op.flops for op in stage.backward.ops())
    counted = sum(op.model_flops for op in stage.backward.ops())
    assert executed > counted  # MLA up-projections recomputed, attention backward at 2.5× forward
    recomputed = [op for op in stage.backward.ops() if op.recompute]
    assert {op.name.split(".")[0] for op in recomputed} >= {"q_b", "kv_b", "attn_norm"}
    assert all(op.phase is Phase.B for op in recomputed)


def test_full_recompute_keeps_only_layer_inputs_and_reruns_the_forward():
    base = build_stages(load_scenario(preset="llama3-405b-h100"))[1]
    full = build_stages(load_scenario(preset="llama3-405b-h100", overrides=["training.recompute.full=true"]))[1]
    tokens_per_rank = 8192 // 8  # sequence parallel: each TP rank keeps its slice of the layer input
    assert full.forward.activation_bytes == pytest.approx(len(full.layers) * tokens_per_rank * 16384 * 2)
    assert full.forward.activation_bytes < base.forward.activation_bytes / 5
    executed = lambda st, phase: sum(op.flops for op in st.chunk(phase).ops())
    counted = lambda st: sum(op.model_flops for ph in Phase for op in st.chunk(ph).ops())
    assert executed(full, Phase.B) == pytest.approx(executed(base, Phase.B) + executed(base, Phase.F))
    assert counted(full) == pytest.approx(counted(base))  # MFU counts no recomputation


def test_sequence_parallel_keeps_a_slice_of_gathered_inputs():
    """Doubling tp halves the kept attention/FFN inputs that were all-gathered (sequence parallelism)."""
    def saved(tp):
        s = load_scenario(preset="llama3-405b-h100", overrides=[f"parallelism.tp={tp}", f"parallelism.dp={512 // tp}"])
        return build_stages(s)[1].forward.activation_bytes
    assert saved(8) < saved(4) < saved(2)


def test_moe_layer_runs_every_kernel_class_of_a_real_fp8_step():
    """Class for class, one generated DeepSeek-V3 MoE layer has the kernels DeepSeek's profiler trace shows
    (workloads/traces/classify.py names them from kernel names; calibration/from_trace.py matches them)."""
    stage = build_stages(load_scenario())[1]
    classes = {op.op_class for phase in Phase for op in stage.chunk(phase).ops()}
    # TP/DP collectives: DeepSeek-V3 runs tp=1; the casts of the per-tensor and MX FP8 recipes: it runs blockwise.
    assert set(OpClass) - classes == {OpClass.COLLECTIVE, OpClass.AMAX, OpClass.CAST_T, OpClass.MX_QUANT,
                                      OpClass.TRANSPOSE}
    ops = [op for phase in Phase for op in stage.chunk(phase).ops()]
    fp8_gemms = [op for op in ops if op.kind in (Kind.GEMM, Kind.GROUPED_GEMM) and op.dtype == "fp8"]
    wgrads = [op for op in fp8_gemms if op.op_class in (OpClass.GEMM_WGRAD, OpClass.GROUPED_WGRAD)]
    quant_t = [op for op in ops if op.op_class is OpClass.QUANT_T]
    assert len(wgrads) == len(quant_t) > 0  # every FP8 wgrad GEMM quantises its inputs in 128×1 tiles first
    assert all(op.phase is Phase.W for op in quant_t)
    recomputed = [op for op in fp8_gemms if op.recompute]
    assert recomputed and all(op.op_class in (OpClass.GEMM_FPROP, OpClass.GROUPED_FPROP) for op in recomputed)


def test_bf16_layers_have_no_fp8_kernels():
    stage = build_stages(load_scenario(preset="mixtral-8x7b-h100"))[0]
    classes = {op.op_class for phase in Phase for op in stage.chunk(phase).ops()}
    assert not classes & {OpClass.QUANT_T, OpClass.WEIGHT_T, OpClass.DEQUANT}
