"""moesim's Python API: a preset, a what-if on it, the per-rank breakdown as a table, and a small sweep.

Run from any folder:  python examples/python/what_if.py [OUTPUT_FOLDER]
(the sweep's results go to OUTPUT_FOLDER/dispatch.csv; default: a temporary folder).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import moesim


def main(folder: Path) -> None:
    base = moesim.load("deepseek-v3-h800")
    result = moesim.simulate(base)
    what_if = moesim.simulate(moesim.load("deepseek-v3-h800", ["training.dispatcher=alltoall"]))
    print(f"{base.name}: step {result.step_time_s:.3f} s with DeepEP, {what_if.step_time_s:.3f} s with "
          f"Megatron's alltoall dispatcher; MFU {result.mfu_causal:.1%}")

    stages = result.stages_frame()  # one row per pipeline rank: seconds, and memory in GB
    print(stages[["forward_s", "exposed_comm_s", "bubble_s", "peak_memory_gb"]].head(4).round(3).to_string())

    spec = {"name": "dispatch", "base": {"preset": "deepseek-v2-lite-h800"},
            "grid": {"training.dispatch_dtype": ["fp8", "bf16"], "parallelism.micro_batch_size": [1, 2]}}
    run = moesim.sweep(spec, folder / "dispatch.csv", force=True)
    rows = run.frame()
    print(rows[["training.dispatch_dtype", "parallelism.micro_batch_size", "status", "step_time_s"]].to_string(
        index=False))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
