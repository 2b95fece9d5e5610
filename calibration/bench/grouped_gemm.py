"""MoE grouped GEMMs: the routed experts' GEMMs in DeepGEMM's contiguous and masked layouts.

Each expert gets an uneven number of tokens (sum preserved). contiguous: all experts' tokens in one
(Σm × k) tensor, each expert's block aligned to 128 rows as DeepGEMM requires, run as one grouped kernel.
masked: a (groups × max_m × k) buffer with a count per expert; each expert multiplies only its valid rows.
With FP8 tensor cores, masked runs each expert as the fine-grained-scaled FP8 GEMM of :mod:`.gemm`, and
contiguous as ``torch._scaled_grouped_mm`` (torch offers only row-wise scales for a grouped FP8 kernel; the
label says so); each checked once against a BF16 reference. Otherwise both run in BF16, labelled.
"""

from __future__ import annotations

from moesim.calibration.bench.gemm import E4M3_MAX, TILE, Fp8Gemm, Measured, fp8_available
from moesim.calibration.timing import Timer, buffer_count, generator, random_nonzero


def uneven_counts(torch, groups: int, tokens: int, seed: int) -> list[int]:
    """Tokens per expert summing to ``tokens``, each expert's share drawn uniformly in [0.5, 1.5) of even."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.rand(groups, generator=gen) + 0.5
    counts = torch.multinomial(weights / weights.sum(), tokens, replacement=True, generator=gen)
    return torch.bincount(counts, minlength=groups).tolist()


class Fp8GroupedGemm:
    """Whether ``torch._scaled_grouped_mm`` runs here with row-wise scales and agrees with a BF16 reference."""

    def __init__(self, torch, device: str):
        self.torch, self.device = torch, device
        self.available = fp8_available(torch, device) and self._probe()

    def operands(self, a, w, offs):
        """(a_fp8, w_fp8 as k×n column-major per expert, per-row scales of a, per-column scales of w, offs)."""
        torch = self.torch
        scale_a = a.float().abs().amax(dim=1).clamp(min=1e-12) / E4M3_MAX
        wt = w.transpose(1, 2)  # (groups, n, k)
        scale_w = wt.float().abs().amax(dim=2).clamp(min=1e-12) / E4M3_MAX
        qa = (a.float() / scale_a[:, None]).to(torch.float8_e4m3fn)
        qw = (wt.float() / scale_w[..., None]).to(torch.float8_e4m3fn).contiguous()
        return qa, qw.transpose(1, 2), scale_a, scale_w, offs

    def run(self, qa, qw, scale_a, scale_w, offs):
        return self.torch._scaled_grouped_mm(qa, qw, scale_a, scale_w, offs=offs, out_dtype=self.torch.bfloat16)

    def _probe(self) -> bool:
        torch = self.torch
        gen = generator(torch, self.device, 0)
        a = random_nonzero(torch, (4 * TILE, 256), torch.bfloat16, self.device, gen)
        w = random_nonzero(torch, (4, 256, 256), torch.bfloat16, self.device, gen)
        offs = torch.arange(1, 5, device=self.device, dtype=torch.int32) * TILE
        reference = torch.cat([a[g * TILE:(g + 1) * TILE].float() @ w[g].float() for g in range(4)])
        try:
            out = self.run(*self.operands(a, w, offs)).float()
        except (RuntimeError, ValueError, TypeError, AttributeError):
            return False
        return ((out - reference).norm() / reference.norm()).item() < 0.1


def grouped_gemm(torch, timer: Timer, device: str, groups: int, m: int, n: int, k: int, layout: str,
                 cache_bytes: float, fp8: Fp8Gemm | None = None, fp8_grouped: Fp8GroupedGemm | None = None,
                 seed: int = 0) -> Measured:
    """``groups`` experts with uneven tokens (mean ``m``), (m × k) by (k × n) each, in ``layout``.

    ``fp8`` / ``fp8_grouped`` (when the case is FP8 and the device has FP8) select the FP8 kernels.
    """
    gen = generator(torch, device, seed)
    counts = uneven_counts(torch, groups, groups * m, seed)
    align = TILE if device == "cuda" else 8
    padded = [max(align, -(-c // align) * align) for c in counts]
    rows = sum(padded) if layout == "contiguous" else groups * max(padded)
    use_fp8 = (fp8 is not None and fp8.form is not None) if layout == "masked" else \
        (fp8_grouped is not None and fp8_grouped.available)
    sets = buffer_count((rows * k + groups * k * n) * (1 if use_fp8 else 2), cache_bytes)
    inputs = []
    for _ in range(sets):
        w = random_nonzero(torch, (groups, k, n), torch.bfloat16, device, gen)
        if layout == "contiguous":
            a = random_nonzero(torch, (rows, k), torch.bfloat16, device, gen)
            offs = torch.tensor(padded, dtype=torch.int32).cumsum(0).to(torch.int32).to(device)
            inputs.append(fp8_grouped.operands(a, w, offs) if use_fp8 else (a, w, offs))
        else:
            a = random_nonzero(torch, (groups, max(padded), k), torch.bfloat16, device, gen)
            if use_fp8:
                inputs.append(([fp8.operands(a[g, :c], w[g].t().contiguous()) for g, c in enumerate(counts)],))
            else:
                inputs.append((a, w))
    if layout == "contiguous" and use_fp8:
        run, kernel = fp8_grouped.run, "grouped_gemm contiguous: torch._scaled_grouped_mm, row-wise FP8 scales"
    elif layout == "contiguous":
        def run(a, w, offs):
            return torch._grouped_mm(a, w, offs=offs)
        kernel = "grouped_gemm contiguous: torch._grouped_mm (bf16)"
        try:
            run(*inputs[0])
        except RuntimeError:
            # Some builds want column-major expert weights; give them that layout (same values).
            inputs = [(a, w.transpose(1, 2).contiguous().transpose(1, 2), offs) for a, w, offs in inputs]
            run(*inputs[0])
    elif use_fp8:
        def run(per_expert):
            return [fp8.run(*operands) for operands in per_expert]
        kernel = f"grouped_gemm masked: per-expert {fp8.label().split(': ', 1)[1]}"
    else:
        def run(a, w):
            return [torch.mm(a[g, :c], w[g]) for g, c in enumerate(counts)]
        kernel = "grouped_gemm masked: per-expert mm over valid rows (bf16)"
    timing = timer.measure(run, inputs)
    tokens = sum(counts)
    in_bytes = 1 if use_fp8 else 2
    nbytes = (tokens * k + groups * k * n) * in_bytes + tokens * n * 2
    return Measured(timing.median_s, 2.0 * tokens * n * k, nbytes, kernel, "fp8" if use_fp8 else "bf16",
                    (m, n, k), groups)
