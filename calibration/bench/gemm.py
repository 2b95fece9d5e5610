"""FP8 GEMM with DeepSeek's fine-grained scaling, and BF16 GEMM.

FP8 follows DeepSeek-V3 TR §3.3: activations scaled per 1×128 tile, weights per 128×128 block, E4M3 values,
BF16 output. On a GPU with FP8 tensor cores the GEMM is ``torch._scaled_mm`` with those block scales,
checked once against a dequantised reference; a torch without block scales falls back to row-wise
scales, and a device without FP8 (a CPU) runs a BF16 matrix product of the same shape, labelled as a
stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.calibration.timing import Timer, buffer_count, generator, random_nonzero

TILE = 128  # DeepSeek-V3 TR §3.3: 1×128 activation tiles, 128×128 weight blocks
E4M3_MAX = 448.0  # largest finite float8_e4m3fn value


@dataclass(frozen=True)
class Measured:
    """One benchmark result: median seconds, work done, what ran and in which dtype."""

    seconds: float
    flops: float
    bytes: float
    kernel: str
    dtype: str
    shape: tuple
    groups: int = 1


def quantize_tiles(torch, x, rows: int):
    """E4M3 values and fp32 scales of ``x`` (r × c) per ``rows``×128 block (rows=1: activation tiles)."""
    r, c = x.shape
    pad_r, pad_c = -r % rows, -c % TILE
    xp = torch.nn.functional.pad(x.float(), (0, pad_c, 0, pad_r))
    blocks = xp.view((r + pad_r) // rows, rows, (c + pad_c) // TILE, TILE)
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / E4M3_MAX
    q = (blocks / scale[:, None, :, None]).view_as(xp)[:r, :c].to(torch.float8_e4m3fn)
    return q, scale


def fp8_available(torch, device: str) -> bool:
    """FP8 tensor cores: CUDA compute capability 8.9 (Ada) or 9.0+ (Hopper)."""
    return device == "cuda" and torch.cuda.get_device_capability() >= (8, 9)


class Fp8Gemm:
    """Finds, once, which scaled-mm form this torch supports and checks it against a dequantised product."""

    def __init__(self, torch, device: str):
        self.torch, self.device = torch, device
        self.form = self._probe() if fp8_available(torch, device) else None

    def label(self) -> str:
        if self.form is None:
            return f"fp8_gemm_1d2d stand-in: bf16 mm (no FP8 tensor cores on {self.device})"
        if self.form == "rowwise":
            return "fp8_gemm: torch._scaled_mm, row-wise scales (this torch rejects 1×128/128×128 block scales)"
        return "fp8_gemm_1d2d: torch._scaled_mm, 1×128 activation and 128×128 weight block scales"

    def operands(self, a, w):
        """Quantised operands and scales in this torch's layout: (a, wᵀ, scale_a, scale_b)."""
        torch = self.torch
        if self.form == "rowwise":
            sa = (a.float().abs().amax(dim=1, keepdim=True) / E4M3_MAX)
            sw = (w.float().abs().amax(dim=1, keepdim=True) / E4M3_MAX).t()
            qa = (a.float() / sa).to(torch.float8_e4m3fn)
            qw = (w.float() / sw.t()).to(torch.float8_e4m3fn)
            return qa, qw.t(), sa, sw
        qa, sa = quantize_tiles(torch, a, 1)
        qw, sw = quantize_tiles(torch, w, TILE)
        # scale_a (m, k/128) is M-major; scale_b is given for the (k × n) operand, as a view or a copy.
        sa = sa.t().contiguous().t()
        return qa, qw.t(), sa, (sw.t() if self.form == "block" else sw.t().contiguous())

    def run(self, qa, qwt, sa, sw):
        return self.torch._scaled_mm(qa, qwt, sa, sw, out_dtype=self.torch.bfloat16)

    def _probe(self) -> str | None:
        torch = self.torch
        gen = generator(torch, self.device, 0)
        # Magnitudes differing by up to 2^±4 between tiles and blocks, so a scale applied to the wrong tile
        # shows up as a large error (FP8 rounding alone stays within a few per cent).
        a_tiles = 2.0 ** (8 * torch.rand(256, 4, 1, generator=gen, device=self.device) - 4)
        w_blocks = 2.0 ** (8 * torch.rand(3, 1, 4, 1, generator=gen, device=self.device) - 4)
        a = (random_nonzero(torch, (256, 4, 128), torch.float32, self.device, gen) * a_tiles).view(256, 512)
        w = (random_nonzero(torch, (3, 128, 4, 128), torch.float32, self.device, gen) * w_blocks).view(384, 512)
        a, w = a.to(torch.bfloat16), w.to(torch.bfloat16)
        reference = (a.float() @ w.float().t())
        for form in ("block", "block-contiguous", "rowwise"):
            self.form = form
            try:
                out = self.run(*self.operands(a, w)).float()
            except (RuntimeError, ValueError, TypeError, IndexError):
                continue
            if ((out - reference).norm() / reference.norm()).item() < 0.1:
                return form
        return None


def gemm(torch, timer: Timer, device: str, m: int, n: int, k: int, fp8: Fp8Gemm | None, cache_bytes: float,
         seed: int = 0) -> Measured:
    """(m×k) activations times a (k×n) weight; FP8 with fine-grained scales when ``fp8`` is given."""
    gen = generator(torch, device, seed)
    in_bytes = 1 if fp8 is not None and fp8.form else 2
    sets = buffer_count((m * k + n * k) * in_bytes, cache_bytes)
    inputs = []
    for _ in range(sets):
        a = random_nonzero(torch, (m, k), torch.bfloat16, device, gen)
        w = random_nonzero(torch, (n, k), torch.bfloat16, device, gen)
        inputs.append(fp8.operands(a, w) if fp8 is not None and fp8.form else (a, w.t()))
    if fp8 is not None and fp8.form:
        timing = timer.measure(fp8.run, inputs)
        kernel, dtype = fp8.label(), "fp8"
    else:
        timing = timer.measure(torch.mm, inputs)
        kernel, dtype = (fp8.label() if fp8 is not None else "bf16_gemm: torch.mm"), "bf16"
    nbytes = (m * k + k * n) * in_bytes + m * n * 2
    return Measured(timing.median_s, 2.0 * m * n * k, nbytes, kernel, dtype, (m, n, k))
