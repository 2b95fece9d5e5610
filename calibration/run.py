"""``moesim calibrate run``: benchmark the presets' kernels on one device and return a fitted Profile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from moesim.calibration.device import cpu_peaks, gpu_peaks, provenance
from moesim.calibration.fit import class_models, fit_report
from moesim.calibration.profile import CollectivePoint, Efficiency, KernelPoint, Profile
from moesim.calibration.sweep import Case, plan, preset_cases
from moesim.calibration.timing import Timer, generator, random_nonzero

OPS = ("gemm", "grouped_gemm", "attention", "elementwise", "collectives")


@dataclass(frozen=True)
class Budget:
    """Largest work per op class (FLOPs; elementwise: 6 × elements), cases per class, repeats, collective sizes."""

    max_work: dict[str, float] | None
    per_class: int | None
    warmup: int
    repeats: int
    collective_bytes: tuple[int, ...]


BUDGETS = {
    ("cuda", False): Budget(None, None, 5, 30, (1 << 16, 1 << 20, 1 << 24, 1 << 28)),
    ("cuda", True): Budget(None, 8, 3, 15, (1 << 20, 1 << 26)),
    ("cpu", False): Budget({"gemm": 2e10, "grouped_gemm": 2e10, "attention": 1e10, "elementwise": 3e8},
                           12, 2, 7, (1 << 12, 1 << 16, 1 << 20, 1 << 22)),
    ("cpu", True): Budget({"gemm": 2e9, "grouped_gemm": 2e9, "attention": 1e9, "elementwise": 3e7},
                          6, 2, 5, (1 << 12, 1 << 20)),
}


# A VM may report its host's whole L3 (480 MB seen), which would size the copy's buffers and their random fill
# (16× the cache in all) at 18 GB. One core reaches at most one CCD's L3 on AMD (96 MB with 3D V-Cache, EPYC
# 9684X datasheet), so 96 MB bounds what must be overflowed and keeps the copy within ~1.5 GB.
MAX_CPU_CACHE_BYTES = 96 << 20


def cache_bytes(torch, device: str) -> float:
    """The last-level cache to overflow with rotating buffers (GPU L2; CPU L3 up to 96 MB, 32 MB if
    unreadable)."""
    if device == "cuda":
        return float(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20))
    for index in (3, 2):
        try:
            text = Path(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size").read_text().strip()
            return min(float(text[:-1]) * {"K": 1 << 10, "M": 1 << 20}[text[-1]], float(MAX_CPU_CACHE_BYTES))
        except (OSError, ValueError, KeyError):
            continue
    return float(32 << 20)


def streaming_copy_tbps(torch, timer: Timer, device: str, nbytes: int) -> float:
    """Measured bandwidth of a large copy (bytes read + written per second, in TB/s)."""
    gen = generator(torch, device, 1)
    pairs = [(torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device),
              random_nonzero(torch, (nbytes // 2,), torch.bfloat16, device, gen)) for _ in range(2)]
    timing = timer.measure(lambda out, x: out.copy_(x), pairs)
    return 2 * nbytes / timing.median_s / 1e12


def measure_case(torch, timer, device, case: Case, fp8, fp8_grouped, cache: float):
    from moesim.calibration.bench.attention import attention
    from moesim.calibration.bench.elementwise import elementwise
    from moesim.calibration.bench.gemm import gemm
    from moesim.calibration.bench.grouped_gemm import grouped_gemm

    wants_fp8 = case.dtype == "fp8"
    if case.op == "gemm":
        return gemm(torch, timer, device, *case.shape, fp8 if wants_fp8 else None, cache)
    if case.op == "grouped_gemm":
        return grouped_gemm(torch, timer, device, case.groups, *case.shape, case.layout, cache,
                            fp8 if wants_fp8 else None, fp8_grouped if wants_fp8 else None)
    if case.op == "attention":
        return attention(torch, timer, device, *case.shape, case.layout == "causal_bwd", cache)
    return elementwise(torch, timer, device, case.layout, *case.shape, cache)


def run_calibration(device: str = "cpu", quick: bool = False, ops: list[str] | None = None,
                    presets: list[str] | None = None, threads: list[int] | None = None, command: str = "",
                    budget: Budget | None = None,
                    on_progress: Callable[[int, int, str], None] | None = None) -> Profile:
    """Benchmark every planned case and the collectives; returns a measured, fitted Profile.

    ``threads`` (CPU only, default [1]): torch threads to measure on, the CPU's stand-in for SMs (the peak
    counts all cores). One thread is the default because on a shared host other load deschedules worker
    threads and multi-threaded timings wait for them; the GEMM cases are re-measured at the other counts.
    ``on_progress(done, total, label)`` is called before each case.
    """
    import torch

    from moesim.calibration.bench.gemm import Fp8Gemm
    from moesim.calibration.bench.grouped_gemm import Fp8GroupedGemm

    ops = list(ops or OPS)
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device cuda: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    budget = budget or BUDGETS[(device, quick)]
    timer = Timer(torch, device, budget.warmup, budget.repeats)
    peaks, peaks_source = gpu_peaks(torch) if device == "cuda" else cpu_peaks(torch)
    cache = cache_bytes(torch, device)
    cases = plan(preset_cases(presets), budget.max_work, budget.per_class, ops)
    runs: list[tuple[Case, int | None]] = [(case, None) for case in cases]
    if device == "cpu":
        # A CPU's "SMs" are torch threads: every case runs on the first count, GEMMs again on the others.
        threads = threads or [1]
        runs = [(case, threads[0]) for case in cases]
        runs += [(c, t) for t in threads[1:] for c in cases if c.op == "gemm"]
        torch.set_num_threads(threads[0])
    try:
        copy_tbps = streaming_copy_tbps(torch, timer, device, int(max(4 * cache, 64 << 20)))
    except RuntimeError as err:  # out of memory (a capped container): a one-line error, not a traceback
        raise ValueError(f"the streaming-copy benchmark ({2 * max(4 * cache, 64 << 20) / 1e9:.1f} GB of buffers) "
                         f"failed: {str(err).splitlines()[0][:160]}") from None
    if device == "cpu":
        peaks["hbm_tbps"] = copy_tbps  # a VM exposes no memory specification: the measured copy is the peak
    fp8, fp8_grouped = Fp8Gemm(torch, device), Fp8GroupedGemm(torch, device)
    source = f"measured: moesim calibrate run on {device}"
    points: dict[tuple, KernelPoint] = {}
    skipped: list[str] = []
    total = len(runs) + ("collectives" in ops)
    for i, (case, t) in enumerate(runs):
        if on_progress:
            on_progress(i, total, f"{case.op} {case.layout} {'×'.join(map(str, case.shape))}"
                        + (f" g{case.groups}" if case.groups > 1 else "") + (f" on {t} threads" if t else ""))
        if t:
            torch.set_num_threads(t)
        try:
            got = measure_case(torch, timer, device, case, fp8, fp8_grouped, cache)
        except RuntimeError as err:  # a shape this torch build cannot run, or out of memory: say so, go on
            skipped.append(f"{case.op} {case.layout} {case.shape}: {str(err).splitlines()[0][:120]}")
            if device == "cuda":
                torch.cuda.empty_cache()
            continue
        key = (case.op, got.dtype, got.shape, got.groups, case.layout, t)
        seconds = got.seconds
        points.setdefault(key, KernelPoint(
            op=case.op, dtype=got.dtype, shape=list(got.shape), groups=got.groups, layout=case.layout,
            kernel=got.kernel, tflops=got.flops / seconds / 1e12, memory_gbps=got.bytes / seconds / 1e9,
            time_us=seconds * 1e6, flops=got.flops or None, bytes=got.bytes, sms=t,
            source=f"{source}; shape from {case.origin}"))
    collectives = []
    if "collectives" in ops:
        if on_progress:
            on_progress(total - 1, total, "collectives")
        collectives = measure_collectives(torch, device, budget)
    if on_progress:
        on_progress(total, total, "done")
    profile = Profile(device=provenance(torch, device, "", "")["device_name"], origin="measured", peaks=peaks,
                      points=list(points.values()), collectives=collectives,
                      provenance=provenance(torch, device, command, peaks_source))
    profile.provenance["streaming_copy_tbps"] = f"{copy_tbps:.4f} (bytes read + written per second)"
    profile.provenance["fp8_gemm"] = fp8.label()
    profile.provenance["fp8_grouped_gemm"] = (
        "contiguous: torch._scaled_grouped_mm, row-wise scales; masked: per-expert FP8 GEMM as fp8_gemm"
        if fp8_grouped.available else f"bf16 stand-in (no FP8 grouped kernel that passes the check on {device})")
    if skipped:
        profile.provenance["skipped"] = "; ".join(skipped)
    add = class_models(profile).get(("elementwise", "bf16", "add", "fprop"))
    if add is not None:
        profile.efficiency["memory"] = Efficiency(
            value=min(1.0, add.rate_fraction),
            source=f"this run: residual-add kernel's fitted bandwidth over the {device} memory peak")
    else:
        profile.efficiency["memory"] = Efficiency(
            value=min(1.0, copy_tbps / peaks["hbm_tbps"]),
            source=f"this run: streaming copy over the {device} memory peak (no elementwise points measured)")
    profile.fit = fit_report(profile)
    return profile


def measure_collectives(torch, device: str, budget: Budget) -> list[CollectivePoint]:
    """gloo between 2 CPU processes, or NCCL across the visible GPUs (none with fewer than 2)."""
    from moesim.calibration.bench.collectives import bus_gbps, run_collectives

    if device == "cuda":
        world, backend = torch.cuda.device_count(), "nccl"
        if world < 2:
            return []
    else:
        world, backend = 2, "gloo"
    rows = run_collectives(backend, world, list(budget.collective_bytes), warmup=budget.warmup,
                           repeats=budget.repeats)
    return [CollectivePoint(pattern=p, backend=backend, ranks=world, bytes_per_rank=b, time_us=s * 1e6,
                            bus_gbps=bus_gbps(p, world, b, s),
                            source=f"measured: torch.distributed {backend}, {world} processes")
            for p, b, s, _ in rows if s is not None]
