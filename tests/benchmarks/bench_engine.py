"""Engine speed on the DeepSeek-V3 preset in both fidelities, against raw SimPy, and how it scales.

Run: python tests/benchmarks/bench_engine.py [--html /tmp/moesim-engine-scaling.html]
     [--gpus-max 16384] [--quick] [--cases representative,full/gpus] [--repeat N] [--no-scaling]

Every case runs in a fresh subprocess (so its peak RSS is its own) and reports wall and CPU seconds of a whole
`simulate` (pricing + engine + metrics), the engine's share (building and compiling programs, planning the
host, executing),
simulated events (task starts and ends of the simulated units; with shared units also those of every GPU
they stand for) and events per CPU second, next to raw SimPy's rate measured in the same run (two processes
trading timeouts: the floor any SimPy engine pays per event). The machine is shared, so CPU seconds are the
figure to compare; wall seconds are printed as measured.

Columns: units are the simulated units (pipeline ranks; classes of identical GPUs; or every GPU); events are
task starts and ends the engine computed (every GPU's own under full/gpus), GPU events those of every GPU the
units stand for; events/s is events per CPU second of the engine (building, compiling and executing the
programs, and planning their host) and "/ SimPy" its ratio to raw SimPy's rate; waits are the SimPy events streams
blocked on.

Cases: representative; full (run.fidelity=full: identical GPUs run once while that makes fewer units);
full/gpus, every GPU simulated on its own (what a scenario whose GPUs all differ costs); representative with
the time-shared flow network (more on it in bench_flow_network.py); a straggler in each mode ("classes" forces
one unit per class of identical GPUs); Zipf-skewed routing.
Scaling: GPUs 128 … 16384 by dp (micro-batches per pipeline fixed at the preset's 120), and micro-batches
32 … 240 at 2048 GPUs; written as a plotly page.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import simpy

PRESET = "deepseek-v3-h800"

ROOT = Path(__file__).resolve().parents[2]  # the subprocess imports this file as tests.benchmarks.*


def raw_simpy_events_per_s(events: int = 400_000) -> float:
    env = simpy.Environment()

    def ticker(n):
        for _ in range(n):
            yield env.timeout(1.0)

    env.process(ticker(events // 2))
    env.process(ticker(events // 2))
    start = time.process_time()
    env.run()
    return events / (time.process_time() - start)


def measure(overrides: list[str], units: str) -> dict:
    """One simulate() of the preset with ``overrides``, timed by part (runs in the child process)."""
    import resource

    import moesim.simulator.engine.pipeline as engine
    import moesim.simulator.simulate as sim
    from moesim.simulator.engine import PipelineEngine
    from moesim.simulator.engine.ledger import Ledger
    from moesim.simulator.engine.program import ProgramBuilder
    from moesim.workloads.loader import load_scenario

    parts: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            cpu = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                parts[name] = parts.get(name, 0.0) + time.process_time() - cpu
        return wrapper

    timelines = []
    run = timed("engine", PipelineEngine.run)
    PipelineEngine.run = lambda self: timelines.append(run(self)) or timelines[-1]
    ProgramBuilder.build = timed("build", ProgramBuilder.build)
    engine.plan_host = timed("host", engine.plan_host)
    Ledger.breakdown = timed("metrics", Ledger.breakdown)  # inside the engine's run
    sim.full_layout = timed("layout", sim.full_layout)
    scenario = load_scenario(preset=PRESET, overrides=overrides)
    wall, cpu = time.perf_counter(), time.process_time()
    # As `moesim simulate` runs it: no timeline records kept, breakdowns from the runner's ledgers.
    result = sim.simulate(scenario, check_memory=False, full_units=units)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tl = timelines[-1]
    parts["engine"] -= parts.get("metrics", 0.0)
    execute = parts["engine"] - parts["build"] - parts.get("host", 0.0)
    return {"wall_s": wall, "cpu_s": cpu, "engine_cpu_s": parts["engine"], "build_s": parts["build"],
            "host_s": parts.get("host", 0.0), "execute_s": execute, "metrics_s": parts.get("metrics", 0.0),
            "layout_s": parts.get("layout", 0.0),
            "pricing_s": cpu - parts["engine"] - parts.get("metrics", 0.0) - parts.get("layout", 0.0),
            "events": tl.events, "gpu_events": tl.gpu_events, "waits": tl.waits, "units": tl.units,
            "gpus": result.gpus, "micro_batches": result.micro_batches, "step_s": result.step_time_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_case(overrides: list[str], units: str = "auto") -> dict:
    code = ("import json, sys; from tests.benchmarks.bench_engine import measure; "
            "print(json.dumps(measure(json.loads(sys.argv[1]), sys.argv[2])))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(overrides), units], cwd=ROOT,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scaled(gpus: int, micro_batches: int = 120) -> list[str]:
    """The preset on ``gpus`` GPUs (pp 16, dp = gpus / 16, EP up to 64) with ``micro_batches`` per pipeline."""
    dp = gpus // 16
    return [f"cluster.gpus={gpus}", f"parallelism.dp={dp}", f"parallelism.ep={min(64, dp)}",
            f"parallelism.global_batch={micro_batches * dp}"]


def dominant(row: dict) -> str:
    parts = {"pricing": row["pricing_s"], "program build and compile": row["build_s"], "host plan": row["host_s"],
             "execution (streams, rendezvous)": row["execute_s"], "metrics": row["metrics_s"],
             "layout": row["layout_s"]}
    name = max(parts, key=parts.get)
    return f"{name} {parts[name] / row['cpu_s']:.0%}"


def print_case(name: str, row: dict, raw: float) -> None:
    rate = row["events"] / row["engine_cpu_s"]
    print(f"{name:<20} {row['gpus']:>6} {row['units']:>6} {row['wall_s']:>7.2f} {row['cpu_s']:>6.2f} "
          f"{row['engine_cpu_s']:>6.2f} {row['peak_rss_mb']:>6.0f} {row['events']:>11,} {row['gpu_events']:>11,} "
          f"{rate:>11,.0f} {rate / raw:>7.0%} {row['waits']:>8,} {row['step_s']:>7.3f}  {dominant(row)}")


def header() -> None:
    print(f"{'case':<20} {'GPUs':>6} {'units':>6} {'wall s':>7} {'cpu s':>6} {'eng s':>6} {'RSS MB':>6} "
          f"{'events':>11} {'GPU events':>11} {'events/s':>11} {'/ SimPy':>7} {'waits':>8} {'step s':>7}  "
          "dominant share of CPU")


def write_plot(path: str, gpu_rows: dict, mb_rows: dict) -> None:
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=1, cols=2, subplot_titles=("CPU seconds vs GPUs (120 micro-batches)",
                                                        "CPU seconds vs micro-batches (2048 GPUs)"))
    for name, rows in gpu_rows.items():
        fig.add_trace(go.Scatter(x=[r["gpus"] for r in rows], y=[r["cpu_s"] for r in rows], mode="lines+markers",
                                 name=f"{name} (GPUs)"), row=1, col=1)
    for name, rows in mb_rows.items():
        fig.add_trace(go.Scatter(x=[r["micro_batches"] for r in rows], y=[r["cpu_s"] for r in rows],
                                 mode="lines+markers", name=f"{name} (micro-batches)"), row=1, col=2)
    fig.update_xaxes(type="log", title="GPUs", row=1, col=1)
    fig.update_yaxes(type="log", title="CPU s per simulated step", row=1, col=1)
    fig.update_xaxes(title="micro-batches per pipeline", row=1, col=2)
    fig.update_yaxes(type="log", title="CPU s per simulated step", row=1, col=2)
    fig.update_layout(title="moesim engine scaling, DeepSeek-V3 preset (DualPipe, pp 16)", height=520)
    fig.write_html(path, include_plotlyjs=True)


def slope(rows: list[dict], key: str) -> float:
    """Growth exponent between the first and last point (1.0 = linear)."""
    import math
    a, b = rows[0], rows[-1]
    return math.log(b["cpu_s"] / a["cpu_s"]) / math.log(b[key] / a[key])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--html", default="/tmp/moesim-engine-scaling.html", help="where to write the plot")
    parser.add_argument("--gpus-max", type=int, default=16384,
                        help="largest GPU count run with every GPU simulated on its own")
    parser.add_argument("--quick", action="store_true", help="fewer scaling points")
    parser.add_argument("--cases", help="comma-separated cases to run at 2048 GPUs (default: all), e.g. "
                        "representative,full/gpus")
    parser.add_argument("--repeat", type=int, default=1, help="run each case this many times")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling study and its plot")
    args = parser.parse_args()
    raw = raw_simpy_events_per_s()
    print(f"raw SimPy: {raw:,.0f} events per CPU second (two processes trading timeouts)\n")
    header()
    straggler = 'faults.stragglers=[{"gpu": 200, "slowdown": 1.3}]'
    cases = {
        "representative": ([], "auto"),
        "full": (["run.fidelity=full"], "auto"),
        "full/gpus": (["run.fidelity=full"], "gpus"),
        "representative/flow": (["run.network=flow"], "auto"),  # links shared in time: bench_flow_network.py
        "representative+strag": ([straggler], "auto"),
        "full+straggler": (["run.fidelity=full", straggler], "auto"),
        "full/classes+strag": (["run.fidelity=full", straggler], "classes"),
        "representative+zipf": (["routing.name=zipf"], "auto"),
        "full+zipf": (["run.fidelity=full", "routing.name=zipf"], "auto"),
    }
    chosen = args.cases.split(",") if args.cases else list(cases)
    unknown = [name for name in chosen if name not in cases]
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(cases)}")
    if args.repeat < 1:
        parser.error("--repeat: give at least 1")
    for name in chosen:
        overrides, units = cases[name]
        for _ in range(args.repeat):
            print_case(name, run_case(overrides, units), raw)
    if args.no_scaling:
        return

    gpu_counts = [128, 512, 2048, 16384] if args.quick else [128, 256, 512, 1024, 2048, 4096, 8192, 16384]
    mbs = [32, 120, 240] if args.quick else [32, 60, 120, 180, 240]
    gpu_rows: dict[str, list[dict]] = {"representative": [], "full": [], "full/gpus": []}
    print("\nscaling with GPUs (dp grows; 120 micro-batches per pipeline)")
    header()
    for gpus in gpu_counts:
        for name in gpu_rows:
            if name == "full/gpus" and gpus > args.gpus_max:
                continue
            overrides = scaled(gpus) + ([] if name == "representative" else ["run.fidelity=full"])
            row = run_case(overrides, "gpus" if name == "full/gpus" else "auto")
            gpu_rows[name].append(row)
            print_case(name, row, raw)
    mb_rows: dict[str, list[dict]] = {"representative": [], "full": [], "full/gpus": []}
    print("\nscaling with micro-batches (2048 GPUs)")
    header()
    for m in mbs:
        for name in mb_rows:
            overrides = scaled(2048, m) + ([] if name == "representative" else ["run.fidelity=full"])
            row = run_case(overrides, "gpus" if name == "full/gpus" else "auto")
            mb_rows[name].append(row)
            print_case(name, row, raw)
    print("\ngrowth exponents of CPU time (1.0 = linear):")
    for name, rows in gpu_rows.items():
        print(f"  {name:<15} vs GPUs {rows[0]['gpus']}→{rows[-1]['gpus']}: {slope(rows, 'gpus'):.2f}; "
              f"vs micro-batches: {slope(mb_rows[name], 'micro_batches'):.2f}")
    biggest = gpu_rows["full/gpus"][-1]
    print(f"  at {biggest['gpus']} GPUs, every GPU its own unit: {dominant(biggest)} of CPU; "
          f"{biggest['waits']:,} stream waits on SimPy events for {biggest['events']:,} events")
    write_plot(args.html, gpu_rows, mb_rows)
    print(f"wrote {args.html}")


if __name__ == "__main__":
    main()
