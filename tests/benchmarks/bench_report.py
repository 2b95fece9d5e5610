"""Report and dashboard speed: one what-if update (simulate + link loads) and one report write, per preset.

Run: python tests/benchmarks/bench_report.py   (prints a table; no assertions)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from moesim.simulator.report import write_report
from moesim.simulator.report.traffic import link_loads
from moesim.simulator.report.whatif import preset_knobs, what_if
from moesim.workloads.presets import preset_names


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    print(f"{'preset':24} {'what-if update':>15} {'report write':>13} {'report size':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in preset_names():
            knobs = preset_knobs(name)

            def update():
                scenario, result = what_if(knobs)
                link_loads(scenario).utilisation(result.step_time_s)

            update_s = best_of(update)
            scenario, result = what_if(knobs)
            path = Path(tmp) / f"{name}.html"
            write_s = best_of(lambda: write_report(result, path, scenario, force=True), repeat=1)
            print(f"{name:24} {update_s * 1e3:12.0f} ms {write_s:11.2f} s {path.stat().st_size / 1e6:9.1f} MB")


if __name__ == "__main__":
    main()
