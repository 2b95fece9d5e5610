"""MLA core attention, forward and backward, with causal masking, at the shapes the presets run.

MLA (DeepSeek-V3 TR §2.1.1) attends with 192-wide queries and keys (128 no-RoPE + 64 RoPE channels) and
128-wide values per head; training materialises per-head K and V, so the kernel is causal attention with
d_qk = 192 and d_v = 128 (FlashAttention-3 in DeepSeek's trace). torch picks its fused kernel for
``scaled_dot_product_attention``. FLOPs follow moesim.workloads.layers: forward 2·heads·(d_qk+d_v) per causal
pair; backward executes 2.5× the forward.
"""

from __future__ import annotations

from moesim.calibration.bench.gemm import Measured
from moesim.calibration.timing import Timer, buffer_count, generator, random_nonzero


def attention(torch, timer: Timer, device: str, batch: int, heads: int, seq: int, dqk: int, dv: int,
              backward: bool, cache_bytes: float, seed: int = 0) -> Measured:
    gen = generator(torch, device, seed)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    io_bytes = batch * heads * seq * (2 * dqk + 2 * dv) * 2
    inputs = []
    for _ in range(buffer_count(io_bytes, cache_bytes)):
        q = random_nonzero(torch, (batch, heads, seq, dqk), torch.bfloat16, device, gen)
        k = random_nonzero(torch, (batch, heads, seq, dqk), torch.bfloat16, device, gen)
        v = random_nonzero(torch, (batch, heads, seq, dv), torch.bfloat16, device, gen)
        grad = random_nonzero(torch, (batch, heads, seq, dv), torch.bfloat16, device, gen) if backward else None
        inputs.append((q, k, v, grad))
    forward_flops = 2.0 * batch * heads * (dqk + dv) * seq * (seq + 1) / 2
    shape = (batch, heads, seq, dqk, dv)
    if not backward:
        timing = timer.measure(lambda q, k, v, _: sdpa(q, k, v, is_causal=True), inputs)
        return Measured(timing.median_s, forward_flops, io_bytes, "mla_fwd: causal sdpa (bf16)", "bf16", shape)

    def prepare(q, k, v, grad):
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]
        return (sdpa(*leaves, is_causal=True), leaves, grad)

    def run(out, leaves, grad):
        return torch.autograd.grad(out, leaves, grad)

    timing = timer.measure(run, inputs, prepare=prepare)
    return Measured(timing.median_s, 2.5 * forward_flops, 2 * io_bytes, "mla_bwd: causal sdpa backward (bf16)",
                    "bf16", shape)
