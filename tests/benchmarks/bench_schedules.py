"""Speed of the engine per schedule on the DeepSeek-V3 preset (representative mode), against raw SimPy.

Run: python tests/benchmarks/bench_schedules.py [--repeat 3]
Prints, per schedule: best wall and CPU seconds of a whole `simulate` (pricing + engine + metrics), the
engine's events, and events per CPU second; then raw SimPy's events per second for two processes trading
timeouts, the floor any SimPy engine pays per event on this machine.
"""

from __future__ import annotations

import argparse
import time

from bench_engine import raw_simpy_events_per_s  # this folder is on sys.path when run as a script
from moesim.simulator.simulate import simulate
from moesim.workloads.loader import load_scenario

# DualPipeV and interleaved need 2·pp stages: 61 layers as 32 stages, the embedding's stage and the
# head's (with MTP) lighter. The split is ours; DeepSeek publishes no DualPipeV layout.
V_LAYERS = "[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,1,0]"
CASES = {
    "dualpipe": [],
    "1f1b": ["schedule=1f1b"],
    "zb-h1": ["schedule=zb-h1"],
    "dualpipev": ["schedule=dualpipev", "parallelism.virtual_stages=2", f"parallelism.stage_layers={V_LAYERS}"],
    "interleaved": ["schedule=interleaved", "parallelism.virtual_stages=2", f"parallelism.stage_layers={V_LAYERS}",
                    "parallelism.global_batch=16384"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'schedule':<12} {'wall s':>8} {'cpu s':>8} {'events':>9} {'events/cpu s':>13} {'step s':>8}")
    for name, overrides in CASES.items():
        scenario = load_scenario(preset="deepseek-v3-h800", overrides=overrides)
        best_wall = best_cpu = float("inf")
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            result = simulate(scenario, check_memory=False)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        print(f"{name:<12} {best_wall:>8.2f} {best_cpu:>8.2f} {result.events:>9,} "
              f"{result.events / best_cpu:>13,.0f} {result.step_time_s:>8.3f}")
    print(f"raw SimPy: {raw_simpy_events_per_s():,.0f} events per CPU second")


if __name__ == "__main__":
    main()
