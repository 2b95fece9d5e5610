"""Sweep throughput: 2,000 points (1,000 on each of the two small presets), representative-rank mode.

Run: ``python tests/benchmarks/bench_sweep.py [--workers N] [--executor local|ray]``.
Prints points per second for each preset and overall, then the time a rerun takes to resume (nothing left to
simulate). ``--spec examples/sweeps/v3-layouts.yaml`` times that spec instead (DeepSeek-V3: 108 points, 72 of
them over HBM), wall and CPU seconds (this process and its workers). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from moesim.simulator.sweep import parse_spec, run_sweep
from moesim.simulator.sweep.spec import base_data

# 5 layouts × 2 schedules × 2 micro-batch sizes × 2 dispatch dtypes × 5 NIC speeds × 5 NVLink efficiencies.
AXES = {
    "schedule": ["gpipe", "1f1b"],
    "parallelism.micro_batch_size": [1, 2],
    "training.dispatch_dtype": ["fp8", "bf16"],
    "cluster.network.nic_gbytes_per_s": [12.5, 25.0, 50.0, 100.0, 200.0],
    "cluster.network.nvlink_efficiency": [0.5, 0.6, 0.7, 0.8, 0.9],
}
SPECS = {
    "deepseek-v2-lite-h800": [  # 16 GPUs; 27 layers (the preset's own 13/14 split for pp 2)
        {"parallelism.pp": 1, "parallelism.dp": 16, "parallelism.ep": 16, "parallelism.stage_layers": None},
        {"parallelism.pp": 1, "parallelism.dp": 16, "parallelism.ep": 8, "parallelism.stage_layers": None},
        {"parallelism.pp": 2, "parallelism.dp": 8, "parallelism.ep": 8},
        {"parallelism.pp": 2, "parallelism.dp": 8, "parallelism.ep": 4},
        {"parallelism.pp": 3, "parallelism.dp": 8, "parallelism.ep": 8, "cluster.gpus": 24,
         "parallelism.stage_layers": None},
    ],
    "mixtral-8x7b-h100": [  # 32 GPUs, 8 experts
        {"parallelism.pp": 4, "parallelism.dp": 8, "parallelism.ep": 8},
        {"parallelism.pp": 4, "parallelism.dp": 8, "parallelism.ep": 4},
        {"parallelism.pp": 2, "parallelism.dp": 16, "parallelism.ep": 8},
        {"parallelism.pp": 8, "parallelism.dp": 4, "parallelism.ep": 4},
        {"parallelism.pp": 4, "parallelism.dp": 4, "parallelism.tp": 2, "parallelism.ep": 8},
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--executor", default="local")
    parser.add_argument("--spec", help="time this spec file instead")
    args = parser.parse_args()
    if args.spec:
        time_spec(args.spec, args.executor, args.workers)
        return
    total_points, total_s = 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for preset, layouts in SPECS.items():
            spec = parse_spec({"name": preset, "base": {"preset": preset}, "points": layouts, "grid": AXES})
            out = Path(tmp) / f"{preset}.csv"
            start = time.perf_counter()
            run = run_sweep(spec, base_data(spec), out, executor=args.executor, workers=args.workers)
            wall = time.perf_counter() - start
            total_points += run.points
            total_s += wall
            print(f"{preset}: {run.points} points ({', '.join(f'{n} {s}' for s, n in sorted(run.status.items()))}) "
                  f"in {wall:.1f} s = {run.points / wall:.1f} points/s")
            start = time.perf_counter()
            again = run_sweep(spec, base_data(spec), out, executor=args.executor, workers=args.workers)
            assert again.computed == 0
            print(f"  rerun (resume, nothing to simulate): {time.perf_counter() - start:.2f} s")
    print(f"overall: {total_points} points in {total_s:.1f} s = {total_points / total_s:.1f} points/s "
          f"({args.executor}, {args.workers} workers, {os.cpu_count()} cores)")


def time_spec(path: str, executor: str, workers: int) -> None:
    from moesim.simulator.sweep import load_spec

    spec, base = load_spec(path)
    with tempfile.TemporaryDirectory() as tmp:
        cpu, start = _cpu_s(), time.perf_counter()
        run = run_sweep(spec, base, Path(tmp) / "out.csv", executor=executor, workers=workers)
        wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
    print(f"{spec.name}: {run.points} points ({', '.join(f'{n} {s}' for s, n in sorted(run.status.items()))}), "
          f"{run.computed - run.unsimulated} simulated, {run.unsimulated} refused from their memory floor; "
          f"{wall:.1f} s wall = {run.points / wall:.1f} points/s, {cpu:.1f} CPU s "
          f"({executor}, {workers} workers, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":
    main()
