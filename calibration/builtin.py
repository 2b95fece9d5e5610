"""The built-in H800 profile (``profiles/h800.json``), assembled from the published references it cites.

Every point comes from a committed reference table (``../shared/reference``): DeepGEMM's FP8 GEMM and
grouped-GEMM table (forward kernels), DeepGEMM PR #95's weight-gradient table, and DeepGEMM's speedup over the
internal CUTLASS-based kernels that preceded it, which gives those kernels' rates (DeepGEMM rate / speedup).
``python -m moesim.calibration.builtin ../shared/reference`` rewrites the JSON; a test checks the committed file
equals what this builds.
"""

from __future__ import annotations

import sys
from pathlib import Path

from moesim.calibration.profile import (Efficiency, KernelPoint, LaunchGap, Profile, csv_rows,
                                 points_from_deepgemm_csv)

DEEPGEMM = "deepseek-ai/DeepGEMM README at commit a9967bc (2025-04-09), H800 SXM5, all 132 SMs"
CUTLASS = ("DeepGEMM README a9967bc rate / its 'Speedup' over the internal CUTLASS 3.6-based kernels "
           "(reference/h800-kernels-cutlass-speedup.csv)")
WGRAD = "deepseek-ai/DeepGEMM PR #95 weight-gradient tables (2025-05), H800 (reference/h800-wgrad-kernels.csv)"
# PR #95: "~20% speedup compared to the internal CUTLASS implementation" for the weight-gradient kernels.
WGRAD_CUTLASS_SPEEDUP = 1.2
WGRAD_CUTLASS = f"{WGRAD} rate / 1.2 (the PR's '~20% speedup compared to the internal CUTLASS implementation')"

EFFICIENCY = {
    "gemm": Efficiency(value=0.6671, source="FlashMLA README: 660 TFLOPS BF16 compute-bound on H800 (of 989.4 "
                       "peak); the only published BF16 tensor-core kernel rate on H800 in reference/hardware.md"),
    "grouped_gemm": Efficiency(value=0.6671, source="as gemm: FlashMLA README, 660 of 989.4 TFLOPS BF16 on H800"),
    "attention": Efficiency(value=0.6671, source="FlashMLA README: 660 TFLOPS BF16 compute-bound on H800 (of "
                            "989.4 peak)"),
    # FlashAttention-3 paper (arXiv 2407.08608) Fig. "Attention backward speed, head dim 128 (H100 80GB SXM5)":
    # 542 TFLOPS at sequence 4k (backward FLOPs counted as 2.5× forward, as our ops count them), of 989.4.
    "attention_bwd": Efficiency(value=0.5478, source="FlashAttention-3 paper (arXiv 2407.08608), backward, head "
                                "dim 128, seq 4k: 542 of 989.4 TFLOPS on H100 SXM5 (same SMs and clocks as H800)"),
    "memory": Efficiency(value=0.8955, source="FlashMLA README: 3000 GB/s memory-bound on H800 (of 3350 GB/s HBM3)"),
}
# Median idle time between back-to-back queued kernels on the compute stream of DeepSeek's profiler trace
# (stream 7 of profile-data train.json: the gaps where the next kernel was launched before the previous ended;
# `moesim calibrate from-trace` measures the same: 917 gaps, median 2 µs).
LAUNCH_GAP = LaunchGap(value_us=2.0, source="DeepSeek profiler trace (profile-data train.json), compute stream 7: "
                       "median of 917 gaps between kernels queued back to back")


def _key(row: dict) -> tuple:
    return row["kernel"], row["layout"], row["groups"], row["m"], row["n"], row["k"]


def build_h800(reference: Path) -> Profile:
    """The H800 profile from the reference tables in ``reference`` (the shared/reference folder)."""
    deepgemm_text = (reference / "h800-kernels.csv").read_text()
    points = points_from_deepgemm_csv(deepgemm_text, DEEPGEMM)
    speedup = {_key(r): float(r["speedup_vs_internal_cutlass"])
               for r in csv_rows((reference / "h800-kernels-cutlass-speedup.csv").read_text())}
    for row, p in zip(csv_rows(deepgemm_text), list(points)):
        s = speedup[_key(row)]
        points.append(p.model_copy(update={
            "kernel": f"{p.kernel} (internal CUTLASS)", "tflops": round(p.tflops / s, 3),
            "memory_gbps": round(p.memory_gbps / s, 3) if p.memory_gbps else None, "library": "cutlass",
            "source": CUTLASS}))
    for row in csv_rows((reference / "h800-wgrad-kernels.csv").read_text()):
        grouped = row["kernel"] == "fp8_grouped_wgrad"
        base = dict(op="grouped_gemm" if grouped else "gemm", dtype="fp8", gemm_pass="wgrad",
                    shape=[int(row["m"]), int(row["n"]), int(row["k"])], groups=int(row["groups"]),
                    layout="contiguous" if grouped else "normal")
        tflops, gbps = float(row["tflops"]), float(row["memory_gbps"])
        points.append(KernelPoint(**base, kernel=row["kernel"], tflops=tflops, memory_gbps=gbps, library="deepgemm",
                                  source=WGRAD))
        points.append(KernelPoint(**base, kernel=f"{row['kernel']} (internal CUTLASS)",
                                  tflops=round(tflops / WGRAD_CUTLASS_SPEEDUP, 3),
                                  memory_gbps=round(gbps / WGRAD_CUTLASS_SPEEDUP, 3), library="cutlass",
                                  source=WGRAD_CUTLASS))
    return Profile(device="H800-SXM5", origin="published", name="H800 published microbenchmarks",
                   peaks={"bf16_tflops": 989.4, "fp8_tflops": 1978.9, "hbm_tbps": 3.35, "sms": 132.0},
                   points=points, efficiency=EFFICIENCY, launch_gap=LAUNCH_GAP,
                   provenance={"built_from": "../shared/reference/h800-kernels.csv, h800-kernels-cutlass-speedup.csv,"
                               " h800-wgrad-kernels.csv and hardware.md",
                               "command": "python -m moesim.calibration.builtin ../shared/reference"})


def main(argv: list[str]) -> None:
    reference = Path(argv[0] if argv else "../shared/reference")
    out = Path(__file__).parent / "profiles" / "h800.json"
    build_h800(reference).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
