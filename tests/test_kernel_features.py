"""Issue 23's compute-side fields, each checked from first principles (FLOPs, bytes, kernel counts) on real
scenarios: recompute modules (Megatron-Core) and the per-op policy (TorchTitan), FP8 recipes, attention variants."""

from __future__ import annotations

import pytest

from tests.test_robustness import refused
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages, parameter_counts
from moesim.workloads.ops import Kind, OpClass, Phase

LLAMA = "llama3-8b-h100"  # 32 GQA layers (32 heads, 8 KV heads, head_dim 128), hidden 4096, FFN 14336; TP1 PP1 CP2
T = 8192 // 2  # tokens per rank and micro-batch: seq 8192 over cp 2
H, HEADS, KV, HD, FFN = 4096, 32, 8, 128, 14336


def stage(preset: str = LLAMA, *overrides: str, index: int = 0):
    return build_stages(load_scenario(preset=preset, overrides=list(overrides)))[index]


def ops(st, phase: Phase, layer: int | None = None):
    return [op for c in st.chunk(phase).components if layer is None or c.layer == layer for op in c.ops]


def flops(st, phase: Phase, **kw) -> float:
    return sum(op.flops for op in ops(st, phase, **kw))


# --- attention variants --------------------------------------------------------------------------------------
def attention_f(st, layer: int) -> float:
    return next(op.flops for op in ops(st, Phase.F, layer) if op.name == "core_attn.F")


def test_sliding_window_counts_the_causal_band():
    """A 1024-token window over 8192 tokens: the first 1024 queries see 1..1024 keys, the other 7168 see 1024 each:
    524,800 + 7,340,032 = 7,864,832 pairs against the causal 8192·8193/2 = 33,558,528; per pair 2·(128+128) FLOPs
    per head, halved by cp 2 (zig-zag)."""
    full, band = stage(), stage(LLAMA, "model.attention.sliding_window=1024")
    per_pair = 2.0 * HEADS * (HD + HD)
    assert attention_f(full, 0) == per_pair * 33_558_528 / 2
    assert attention_f(band, 0) == per_pair * 7_864_832 / 2
    band_b = next(op for op in ops(band, Phase.B, 0) if op.name == "core_attn.B")
    assert band_b.flops == 2.5 * per_pair * 7_864_832 / 2  # FlashAttention backward: 2.5× its forward
    assert band_b.model_flops_noncausal == 2 * per_pair * 8192 * 1024 / 2  # every query against a full window
    # Backward needs every key and value whatever the window: the activations kept do not change.
    assert band.forward.activation_bytes == full.forward.activation_bytes
    # A window as long as the sequence is no window.
    assert attention_f(stage(LLAMA, "model.attention.sliding_window=8192"), 0) == attention_f(full, 0)


def test_sliding_window_pattern_alternates_and_lists_layers():
    """Pattern 2 (GPT-OSS): layer 0 slides, layer 1 is full, …; a per-layer list picks layers by name."""
    full = attention_f(stage(), 0)
    alt = stage(LLAMA, "model.attention.sliding_window=128", "model.attention.sliding_window_pattern=2")
    band = 2.0 * HEADS * 2 * HD * (128 * 129 / 2 + (8192 - 128) * 128) / 2
    assert [attention_f(alt, layer) for layer in range(4)] == [band, full, band, full]
    gemma = stage(LLAMA, "model.attention.sliding_window=128", "model.attention.sliding_window_pattern=6")
    assert [attention_f(gemma, layer) == full for layer in range(6)] == [False] * 5 + [True]
    listed = stage(LLAMA, "model.attention.sliding_window=128",
                   "model.attention.sliding_window_pattern=[" + ",".join(["full"] + ["sliding"] * 31) + "]")
    assert attention_f(listed, 0) == full and attention_f(listed, 1) == band


def test_attention_sinks_add_a_sink_gradient_kernel_and_one_logit_per_head():
    base, sinks = stage(), stage(LLAMA, "model.attention.sinks=true")
    extra = [op for op in ops(sinks, Phase.B, 0) if op.name == "core_attn.sink_grad.B"]
    assert len(extra) == 1 and extra[0].bytes == T * HEADS * 2 * 4  # log-sum-exp and dO·O row sums, fp32
    assert attention_f(sinks, 0) == attention_f(base, 0)
    p0 = parameter_counts(load_scenario(preset=LLAMA).model).total
    p1 = parameter_counts(load_scenario(preset=LLAMA, overrides=["model.attention.sinks=true"]).model).total
    assert p1 - p0 == 32 * HEADS


def test_qk_norm_adds_two_head_norms_and_keeps_their_inputs():
    """Qwen3's q_norm and k_norm: RMSNorm over 128 channels of 32 q and 8 k heads per token: read and write bf16,
    4 FLOPs per element; backward keeps their inputs (the qkv GEMM's q and k outputs, bf16)."""
    base, qk = stage(), stage(LLAMA, "model.attention.qk_norm=true")
    norms = {op.name: op for op in ops(qk, Phase.F, 0) if op.name in ("q_norm.F", "k_norm.F")}
    assert norms["q_norm.F"].bytes == T * HEADS * HD * 2 * 2 and norms["k_norm.F"].bytes == T * KV * HD * 2 * 2
    assert norms["q_norm.F"].flops == 4.0 * T * HEADS * HD and norms["q_norm.F"].op_class is OpClass.NORM
    assert qk.forward.activation_bytes - base.forward.activation_bytes == pytest.approx(
        32 * T * (HEADS + KV) * HD * 2, rel=1e-12)
    p0 = parameter_counts(load_scenario(preset=LLAMA).model).total
    p1 = parameter_counts(load_scenario(preset=LLAMA, overrides=["model.attention.qk_norm=true"]).model).total
    assert p1 - p0 == 32 * 2 * HD


# --- recomputation -------------------------------------------------------------------------------------------
def test_core_attn_recompute_reruns_the_attention_forward_and_frees_its_output():
    """core_attn (normal checkpointing): backward gains each layer's attention forward, FLOPs for FLOPs; the layer
    keeps q, k, v but no longer the attention output (bf16 t·heads·head_dim per layer)."""
    base, core = stage(), stage(LLAMA, "training.recompute.modules=[core_attn]")
    assert flops(core, Phase.B) - flops(base, Phase.B) == pytest.approx(32 * attention_f(base, 0), rel=1e-12)
    rerun = [op for op in ops(core, Phase.B, 0) if op.recompute]
    assert [(op.kind, op.op_class) for op in rerun] == [(Kind.ATTENTION, OpClass.ATTN_FWD)]
    assert base.forward.activation_bytes - core.forward.activation_bytes == pytest.approx(
        32 * T * HEADS * HD * 2, rel=1e-12)
    # MFU counts no recomputation.
    counted = lambda st: sum(op.model_flops for ph in Phase for op in ops(st, ph))
    assert counted(core) == counted(base)


def test_core_attn_costs_far_less_than_full_recompute():
    """full reruns the whole forward (every GEMM, 2·t·h·(q+k+v+o) + 3·t·h·FFN per layer) and keeps only the
    layer input; core_attn reruns the attention kernel alone."""
    base = stage()
    core = stage(LLAMA, "training.recompute.modules=[core_attn]")
    full = stage(LLAMA, "training.recompute.modules=[full]")
    layers = lambda st, ph: sum(flops(st, ph, layer=layer) for layer in range(32))  # not the embedding and head
    assert layers(full, Phase.B) - layers(base, Phase.B) == pytest.approx(layers(base, Phase.F), rel=1e-12)
    gemms = 2.0 * T * H * (HEADS * HD + 2 * KV * HD + HEADS * HD + 3 * FFN)
    assert flops(full, Phase.B) - flops(core, Phase.B) > 32 * gemms
    # Only the 32 layer inputs, and the head GEMM's bf16 input (the head is not a transformer layer).
    assert full.forward.activation_bytes == pytest.approx(33 * T * H * 2, rel=1e-12)
    assert stage(LLAMA, "training.recompute.full=true").forward.activation_bytes == full.forward.activation_bytes


def test_recompute_layers_recomputes_the_first_layers_of_each_stage():
    """Megatron's block method: 16 of the stage's 32 layers recomputed fully rerun exactly half of full
    recomputation's forward FLOPs; those 16 keep only their input, the others all they kept before."""
    base, full = stage(), stage(LLAMA, "training.recompute.full=true")
    half = stage(LLAMA, "training.recompute.full=true", "training.recompute.layers=16")
    assert flops(half, Phase.B) - flops(base, Phase.B) == pytest.approx(
        (flops(full, Phase.B) - flops(base, Phase.B)) / 2, rel=1e-12)
    per_layer = lambda st: (st.forward.activation_bytes - T * H * 2) / 32  # the head keeps its bf16 input
    assert half.forward.activation_bytes - T * H * 2 == pytest.approx(16 * T * H * 2 + 16 * per_layer(base), rel=1e-12)
    assert [op.recompute for op in ops(half, Phase.B, 15)].count(True) > 0
    assert [op.recompute for op in ops(half, Phase.B, 16)].count(True) == 0
    assert per_layer(full) == T * H * 2


def test_selective_reruns_every_second_matmul_as_torchtitan_counts_them():
    """TorchTitan's op SAC saves every odd mm of wq, wk, wv, wo, w1, w3, w2 and reruns wk, wo and w3:
    2·t·(h·kv·hd + heads·hd·h + h·FFN) FLOPs of GEMMs per layer, and every norm, RoPE, SwiGLU and cast."""
    sel = stage(LLAMA, "training.recompute.modules=[selective]")
    rerun = [op for op in ops(sel, Phase.B, 0) if op.recompute]
    gemm = sum(op.flops for op in rerun if op.kind is Kind.GEMM)
    assert gemm == 2.0 * T * (H * KV * HD + HEADS * HD * H + H * FFN)
    assert sorted(op.shape[1] for op in rerun if op.kind is Kind.GEMM) == sorted([KV * HD, H, FFN])
    assert not any(op.kind is Kind.ATTENTION for op in rerun)
    classes = {op.op_class for op in rerun}
    assert {OpClass.NORM, OpClass.ROPE, OpClass.SWIGLU, OpClass.QUANT} <= classes


def test_output_discarding_modules_drop_their_consumers_copies():
    """layernorm: the two norms rerun; qkv's and the FFN's kept fp8 inputs (1 byte × t·h each) go, and their casts
    rerun. moe_act: the experts' SwiGLU reruns; the down-projection's kept fp8 input goes."""
    base, ln = stage(), stage(LLAMA, "training.recompute.modules=[layernorm]")
    assert base.forward.activation_bytes - ln.forward.activation_bytes == pytest.approx(32 * 2 * T * H, rel=1e-12)
    rerun = [op.name for op in ops(ln, Phase.B, 0) if op.recompute]
    assert {"attn_norm.F", "mlp_norm.F", "qkv.quant_in.F", "ffn.up.quant_in.F"} <= set(rerun)
    flags = ["training.recompute.norm=false", "training.recompute.mla_up_proj=false", "training.recompute.swiglu=false"]
    v3 = load_scenario(overrides=flags)
    moe, par = v3.model.moe, v3.parallelism
    rows = (moe.routed_experts // par.ep) * max(1, round(T_V3 * moe.top_k * par.ep / moe.routed_experts))
    plain = stage("deepseek-v3-h800", *flags, index=1)
    act = stage("deepseek-v3-h800", *flags, "training.recompute.modules=[moe_act]", index=1)
    layers = len(plain.layers)
    assert plain.forward.activation_bytes - act.forward.activation_bytes == pytest.approx(
        layers * rows * moe.expert_intermediate * 1, rel=1e-12)  # fp8 input of experts.down
    assert [op.name for op in ops(act, Phase.B, plain.layers[0]) if op.recompute] == ["experts.swiglu.F"]


T_V3 = 4096  # DeepSeek-V3 preset: micro-batch 1 × 4096 tokens, tp 1, cp 1


def test_moe_recompute_dispatches_and_combines_again():
    """moe (normal checkpointing of the whole MoE block): backward reruns the dispatch and the combine, so it moves
    each layer's forward EP bytes once more."""
    flags = ["training.recompute.norm=false", "training.recompute.mla_up_proj=false", "training.recompute.swiglu=false"]
    plain = stage("deepseek-v3-h800", *flags, index=1)
    moe = stage("deepseek-v3-h800", *flags, "training.recompute.modules=[moe]", index=1)
    ep = lambda st, ph: sum(op.comm.bytes_per_rank for op in ops(st, ph) if op.comm and op.comm.group == "ep"
                            and op.kind is Kind.COMM and op.op_class is not OpClass.EP_NOTIFY)
    assert ep(moe, Phase.B) - ep(plain, Phase.B) == pytest.approx(ep(plain, Phase.F), rel=1e-12)


def test_mla_up_proj_module_is_the_flag():
    a = stage("deepseek-v3-h800", "training.recompute.mla_up_proj=false", "training.recompute.modules=[mla_up_proj]",
              index=1)
    b = stage("deepseek-v3-h800", index=1)
    assert a.forward.activation_bytes == b.forward.activation_bytes
    assert [op for ph in Phase for op in ops(a, ph)] == [op for ph in Phase for op in ops(b, ph)]


# --- FP8 recipes ---------------------------------------------------------------------------------------------
def casts(st, name: str):
    return [op for ph in Phase for op in ops(st, ph, 0) if op.name.startswith(f"{name}.")
            and op.kind is Kind.ELEMENTWISE]


def test_fp8_recipes_cast_kernels_by_bytes():
    """The qkv GEMM (X: t×4096, W: 6144×4096, G: t×6144). tensorwise: per tensor an amax pass (2 B/element + an
    fp32), a scale kernel (2 fp32) and a cast writing row-wise and transposed copies (2 + 1 + 1 B/element): 9
    kernels. delayed: the casts alone, 3 kernels. mxfp8: one cast per tensor writing both copies with a 1-byte
    scale per 32 elements: 2 + 2·(1 + 1/32) B/element."""
    n = (HEADS + 2 * KV) * HD
    elements = T * H + n * H + T * n
    tw = casts(stage(LLAMA, "training.fp8_recipe=tensorwise"), "qkv")
    assert len(tw) == 9
    assert sum(op.bytes for op in tw if op.op_class is OpClass.AMAX) == 2 * elements + 3 * 4 + 3 * 8
    assert sum(op.bytes for op in tw if op.op_class is OpClass.CAST_T) == 4 * elements
    dl = casts(stage(LLAMA, "training.fp8_recipe=delayed"), "qkv")
    assert len(dl) == 3 and sum(op.bytes for op in dl) == 4 * elements
    blackwell = {"name": "B200-test", "sms": 148, "bf16_tflops": 2250.0, "fp8_tflops": 4500.0, "hbm_gb": 180,
                 "hbm_tbps": 7.7, "nvlink_gbps": 900}
    mx = casts(stage_with_gpu(blackwell, "training.fp8_recipe=mxfp8"), "qkv")
    assert len(mx) == 3 and sum(op.bytes for op in mx) == pytest.approx(elements * (2 + 2 * (1 + 1 / 32)), rel=1e-12)
    # Blockwise (the default) keeps DeepSeek's 1×128 casts, scale layouts, weight transposes and wgrad casts.
    bw = casts(stage(), "qkv")
    assert {op.op_class for op in bw} == {OpClass.QUANT, OpClass.WEIGHT_T, OpClass.QUANT_T}


def stage_with_gpu(gpu: dict, *overrides: str):
    """Stage 0 of the Llama preset on a GPU given by its specification (a Blackwell part is in no catalogue yet)."""
    from moesim.workloads.loader import apply_override, validate
    from moesim.workloads.presets import preset_data

    data = preset_data(LLAMA)
    data["cluster"]["gpu"] = gpu
    for item in overrides:
        apply_override(data, item)
    return build_stages(validate(data))[0]


def test_per_tensor_fp8_gemms_are_priced_as_cublas_below_its_measured_rate():
    """tensorwise and delayed GEMMs are cuBLAS per-tensor GEMMs: none runs faster than the fastest one measured on
    H100 (ml-engineering MAMF, torch._scaled_mm 1024×9216×14336 at 1402.6 TFLOPS), grouped ones included; the
    recipes differ in casts only, so delayed is faster than tensorwise by its amax passes."""
    from moesim.simulator.simulate import cost_model_for, simulate

    for preset in (LLAMA, "qwen3-30b-a3b-h100"):
        scenario = load_scenario(preset=preset, overrides=["training.fp8_recipe=tensorwise"])
        model = cost_model_for(scenario)
        st = build_stages(scenario)[0]
        gemms = [op for ph in Phase for op in ops(st, ph) if op.kind in (Kind.GEMM, Kind.GROUPED_GEMM)
                 and op.dtype == "fp8"]
        assert gemms
        assert max(op.flops / model.op_time_s(op) for op in gemms) <= 1402.6e12 * (1 + 1e-9)
    times = {r: simulate(load_scenario(preset=LLAMA, overrides=[f"training.fp8_recipe={r}"])).step_time_s
             for r in ("tensorwise", "delayed")}
    assert times["delayed"] < times["tensorwise"]


# --- bad input -----------------------------------------------------------------------------------------------
def test_bad_inputs_name_the_field_and_the_fix():
    refused(["simulate", "-p", LLAMA, "--set", "training.recompute.modules=[attn]"],
            "training.recompute.modules", "unknown recompute module 'attn'", "core_attn")
    refused(["simulate", "-p", LLAMA, "--set", "training.recompute.modules=[selective,mlp]"],
            "training.recompute.modules", "list it alone")
    refused(["simulate", "-p", LLAMA, "--set", "training.fp8_recipe=mxfp8"], "training.fp8_recipe=mxfp8", "Hopper",
            "blockwise")
    refused(["simulate", "-p", "llama3-405b-h100", "--set", "training.fp8_recipe=tensorwise"],
            "training.fp8_recipe=tensorwise", "no training.precision GEMM field is fp8")
    refused(["simulate", "-p", LLAMA, "--set", "model.attention.sliding_window_pattern=2"],
            "sliding_window_pattern needs sliding_window")
    refused(["simulate", "-p", LLAMA, "--set", "model.attention.sliding_window=64", "--set",
             "model.attention.sliding_window_pattern=[full]"], "sliding_window_pattern has 1 entries", "layers = 32")
    refused(["simulate", "--set", "model.attention.qk_norm=true"], "qk_norm is for gqa/mha attention")
    refused(["simulate", "-p", LLAMA, "--set", "training.recompute.layers=2"], "training.recompute",
            "set full: true")
    with pytest.raises(ScenarioError):
        load_scenario(preset=LLAMA, overrides=["training.fp8_recipe=fp4"])


def test_a_checkpointed_module_keeps_the_input_a_discarding_one_freed():
    """layernorm frees the gate's and the shared expert's copies of pre_mlp_layernorm's output; checkpointing the
    shared experts on top keeps that output itself (bf16 t·h) and frees the shared down-projection's fp8 input
    (t · 2048 bytes, DeepSeek-V3's one shared expert of 2048)."""
    flags = ["training.recompute.norm=false", "training.recompute.mla_up_proj=false", "training.recompute.swiglu=false"]
    ln = stage("deepseek-v3-h800", *flags, "training.recompute.modules=[layernorm]", index=1)
    both = stage("deepseek-v3-h800", *flags, "training.recompute.modules=[layernorm,shared_experts]", index=1)
    per_layer = T_V3 * 7168 * 2 - T_V3 * 2048 * 1
    assert both.forward.activation_bytes - ln.forward.activation_bytes == pytest.approx(
        len(ln.layers) * per_layer, rel=1e-12)
