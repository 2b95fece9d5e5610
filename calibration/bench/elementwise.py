"""The memory-bound kernels around the GEMMs: FP8 cast (1×128 tiles), SwiGLU, RMSNorm, RoPE, residual add.

Each is timed as one torch call where torch has a fused kernel (RMSNorm) and as the short sequence of
kernels torch runs otherwise; bytes are the minimum HBM traffic (each input read once, each output written
once), so the fitted bandwidth is what the kernel achieves against that minimum.
"""

from __future__ import annotations

from moesim.calibration.bench.gemm import TILE, Measured, quantize_tiles
from moesim.calibration.timing import Timer, buffer_count, generator, random_nonzero

KERNELS = ("fp8_cast", "swiglu", "rmsnorm", "rope", "add")


def kernel_bytes(kernel: str, rows: int, width: int) -> float:
    """Minimum HBM bytes of ``kernel`` on (rows × width) BF16 activations (SwiGLU: width per half)."""
    elements = rows * width
    return {
        "fp8_cast": elements * (2 + 1) + elements / TILE * 4,  # bf16 in, e4m3 out + one fp32 scale per tile
        "swiglu": elements * (2 * 2 + 2),  # gate and up in, product out
        "rmsnorm": elements * 2 * 2 + width * 2,  # x in, y out, weight
        "rope": elements * 2 * 2 + rows * width * 4,  # x in and out, cos and sin (width/2 each, fp32)
        "add": elements * 2 * 3,  # residual add: two in, one out
    }[kernel]


def elementwise(torch, timer: Timer, device: str, kernel: str, rows: int, width: int, cache_bytes: float,
                seed: int = 0) -> Measured:
    """Time ``kernel`` on (rows × width) activations; RoPE rotates ``width`` channels of each row."""
    gen = generator(torch, device, seed)
    nbytes = kernel_bytes(kernel, rows, width)
    bf16 = torch.bfloat16

    def tensor(*shape, dtype=bf16):
        return random_nonzero(torch, shape, dtype, device, gen)

    inputs = []
    for _ in range(buffer_count(nbytes, cache_bytes)):
        if kernel == "fp8_cast":
            inputs.append((tensor(rows, width),))
        elif kernel == "swiglu":
            inputs.append((tensor(rows, 2 * width),))
        elif kernel == "rmsnorm":
            inputs.append((tensor(rows, width), tensor(width)))
        elif kernel == "rope":
            inputs.append((tensor(rows, width), tensor(rows, width // 2, dtype=torch.float32),
                           tensor(rows, width // 2, dtype=torch.float32)))
        else:
            inputs.append((tensor(rows, width), tensor(rows, width)))
    run = {
        "fp8_cast": lambda x: quantize_tiles(torch, x, 1),
        "swiglu": lambda x: torch.nn.functional.silu(x[:, :width]) * x[:, width:],
        "rmsnorm": lambda x, w: torch.nn.functional.rms_norm(x, (width,), w, 1e-6),
        "rope": lambda x, cos, sin: _rope(torch, x, cos, sin),
        "add": torch.add,
    }[kernel]
    timing = timer.measure(run, inputs)
    return Measured(timing.median_s, 0.0, nbytes, kernel, "bf16", (rows, width))


def _rope(torch, x, cos, sin):
    """Rotate interleaved channel pairs (x0, x1) by the position's angle, as DeepSeek-V3's RoPE does."""
    pairs = x.float().unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2).to(x.dtype)
