"""Capacity-planning speed: the two questions of issue 15, each as a user runs it (``moesim plan`` in a fresh
process, default workers: all cores).

1. ``moesim plan --model deepseek-v3 --tokens 14.8T --gpu h800 --deadline 60d`` (target ≤ 30 s on 2 cores)
2. ``moesim plan --model llama3-405b --tokens 15T --gpu h100 --deadline 30d`` (target ≤ 30 s)

Run: ``python tests/benchmarks/bench_plan.py``. Prints, per question, wall time, CPU time of the
process and its workers (the machine may be shared: CPU time is what the search itself cost), the load average,
how many layouts were searched and simulated, and the winner. Not collected by pytest.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = {
    "DeepSeek-V3 14.8T tokens on H800 within 60 days": ["--model", "deepseek-v3", "--tokens", "14.8T", "--gpu",
                                                         "h800", "--deadline", "60d"],
    "Llama 3 405B 15T tokens on H100 within 30 days": ["--model", "llama3-405b", "--tokens", "15T", "--gpu", "h100",
                                                        "--deadline", "30d"],
}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for title, args in QUESTIONS.items():
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), cpu_s()
        done = subprocess.run([sys.executable, "-m", "moesim.simulator.cli", "plan", *args, "--json"], env=env,
                              capture_output=True, text=True, check=False)
        wall, cpu = time.perf_counter() - wall, cpu_s() - cpu
        answer = json.loads(done.stdout)
        search = answer["search"]
        plans = answer["plans"] or answer["closest"]
        best = plans[0] if plans else None
        print(f"{title}: {wall:.1f} s wall, {cpu:.1f} s CPU (process and workers, {os.cpu_count()} cores, "
              f"load average {load:.1f} at start), exit {done.returncode}")
        print(f"  {search['layouts']:,} layouts, {search['candidates']:,} valid, {search['priced_layer_kinds']} "
              f"layer-kind prices, {search['simulated']} simulated; search {search['wall_s']:.1f} s")
        if best:
            lay = best["layout"]
            print(f"  {'best' if answer['plans'] else 'closest'}: {lay['gpus']} {lay['gpu'].upper()} dp{lay['dp']} "
                  f"tp{lay['tp']} pp{lay['pp']} cp{lay['cp']} ep{lay['ep']} {lay['schedule']} "
                  f"mbs{lay['micro_batch_size']}×{lay['micro_batches']}: {best['training_days']:.1f} days, "
                  f"${best['cost_usd']:,.0f}, MFU {best['mfu_causal']:.1%}")


if __name__ == "__main__":
    main()
