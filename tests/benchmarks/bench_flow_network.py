"""The time-shared flow network (run.network=flow) at DeepSeek-V3 scale: time and peak memory of a whole step.

Run: python tests/benchmarks/bench_flow_network.py [--scaling] [--html /tmp/moesim-flow-scaling.html]
     python tests/benchmarks/bench_flow_network.py --sizes 2048 16384 131072

Every case runs in a fresh subprocess (so its peak RSS is its own) and reports wall and CPU seconds of a whole
`simulate` (graph, routing and planning, pricing, engine, metrics), peak RSS, the engine tasks run and the
events SimPy scheduled (stream waits, rendezvous, every bundle arrival and rate change), the ops started on the
network and how often rates were recomputed over shared links, the step time and its ratio to the analytic
network's. Targets (issue 14, on the 2-core development machine): ≤ 10 s representative, ≤ 60 s full fidelity,
≤ 4 GB. The machine is shared, so CPU seconds are the figure to compare; wall seconds are printed as measured.

``--sizes`` runs only the cluster sizes given (representative, flow; issue 22's targets: ≤ 2 CPU s at 2,048 GPUs,
≤ 10 s at 16,384, ≤ 60 s and ≤ 2 GB at 131,072), each beside the analytic network; beyond 16,384 GPUs the fabric's
switch radix grows to hold them (:func:`sized`).

``--scaling`` adds the cost as GPUs grow (dp, 120 micro-batches per pipeline) and as micro-batches grow (2048
GPUs), written as a plotly page.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRESET = "deepseek-v3-h800"

ROOT = Path(__file__).resolve().parents[2]  # the subprocess imports this file as tests.benchmarks.*


def measure(overrides: list[str]) -> dict:
    """One simulate() of the preset with ``overrides`` (runs in the child process)."""
    import resource

    from moesim.simulator.network.shared import SharedNetwork
    from moesim.simulator.simulate import simulate
    from moesim.workloads.loader import load_scenario

    counters: dict[str, int] = {}
    attach = SharedNetwork.attach

    def counting_attach(self, env):
        share = attach(self, env)
        counters["share"] = share
        return share

    SharedNetwork.attach = counting_attach
    scenario = load_scenario(preset=PRESET, overrides=overrides)
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(scenario, check_memory=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    share = counters.get("share")
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tasks": result.tasks, "simpy_events": result.simpy_events, "units": result.simulated_units,
            "ops": share.started if share else 0, "reshares": share.reshares if share else 0,
            "step_s": result.step_time_s, "gpus": result.gpus, "micro_batches": result.micro_batches}


def run_case(overrides: list[str]) -> dict:
    code = ("import json, sys; from tests.benchmarks.bench_flow_network import measure; "
            "print(json.dumps(measure(json.loads(sys.argv[1]))))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(overrides)], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def header() -> None:
    print(f"{'case':<26} {'GPUs':>5} {'units':>5} {'wall s':>7} {'cpu s':>6} {'RSS MB':>7} {'tasks':>8} "
          f"{'SimPy ev':>9} {'net ops':>8} {'reshares':>8} {'step s':>8} {'/ analytic':>10}")


def print_case(name: str, row: dict, analytic_s: float | None) -> None:
    ratio = f"{row['step_s'] / analytic_s - 1:+.2%}" if analytic_s else ""
    print(f"{name:<26} {row['gpus']:>5} {row['units']:>5} {row['wall_s']:>7.2f} {row['cpu_s']:>6.2f} "
          f"{row['peak_rss_mb']:>7.0f} {row['tasks']:>8,} {row['simpy_events']:>9,} {row['ops']:>8,} "
          f"{row['reshares']:>8,} {row['step_s']:>8.3f} {ratio:>10}", flush=True)


def scaled(gpus: int, micro_batches: int = 120) -> list[str]:
    """The preset on ``gpus`` GPUs (pp 16, dp = gpus / 16, EP up to 64) with ``micro_batches`` per pipeline."""
    dp = gpus // 16
    return [f"cluster.gpus={gpus}", f"parallelism.dp={dp}", f"parallelism.ep={min(64, dp)}",
            f"parallelism.global_batch={micro_batches * dp}"]


def sized(gpus: int) -> list[str]:
    """The preset on ``gpus`` GPUs (see :func:`scaled`) on a multi-plane fat-tree of the smallest power-of-two
    radix ≥ 64 that holds them (8 planes of two layers: radix²/2 NICs a plane)."""
    radix = 64
    while 8 * radix * radix // 2 < gpus:
        radix *= 2
    return [*scaled(gpus), f"cluster.network.switch_radix={radix}"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scaling", action="store_true", help="also how the cost grows with GPUs and micro-batches")
    parser.add_argument("--sizes", type=int, nargs="*", help="only these cluster sizes (GPUs), flow and analytic")
    parser.add_argument("--html", default="/tmp/moesim-flow-scaling.html", help="where --scaling writes its plot")
    args = parser.parse_args()
    header()
    if args.sizes:
        for gpus in args.sizes:
            analytic = run_case(sized(gpus))
            print_case("representative (analytic)", analytic, None)
            print_case("representative (flow)", run_case([*sized(gpus), "run.network=flow"]), analytic["step_s"])
        return
    straggler = 'faults.stragglers=[{"gpu": 200, "slowdown": 1.3}]'
    cases = {
        "representative": [],
        "full": ["run.fidelity=full"],
        "full+straggler": ["run.fidelity=full", straggler],
    }
    for name, overrides in cases.items():
        analytic = run_case(overrides)
        print_case(f"{name} (analytic)", analytic, None)
        print_case(f"{name} (flow)", run_case([*overrides, "run.network=flow"]), analytic["step_s"])
    if not args.scaling:
        return
    gpu_rows, mb_rows = [], []
    print("\nscaling with GPUs (dp grows; 120 micro-batches per pipeline), representative, flow")
    header()
    for gpus in (256, 512, 1024, 2048, 4096):
        row = run_case([*scaled(gpus), "run.network=flow"])
        gpu_rows.append(row)
        print_case("representative (flow)", row, None)
    print("\nscaling with micro-batches (2048 GPUs), representative, flow")
    header()
    for m in (32, 60, 120, 240):
        row = run_case([*scaled(2048, m), "run.network=flow"])
        mb_rows.append(row)
        print_case("representative (flow)", row, None)
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=1, cols=2, subplot_titles=("CPU s vs GPUs (120 micro-batches)",
                                                        "CPU s vs micro-batches (2048 GPUs)"))
    fig.add_trace(go.Scatter(x=[r["gpus"] for r in gpu_rows], y=[r["cpu_s"] for r in gpu_rows],
                             mode="lines+markers", name="GPUs"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[r["micro_batches"] for r in mb_rows], y=[r["cpu_s"] for r in mb_rows],
                             mode="lines+markers", name="micro-batches"), row=1, col=2)
    fig.update_xaxes(type="log", title="GPUs", row=1, col=1)
    fig.update_xaxes(title="micro-batches per pipeline", row=1, col=2)
    fig.update_yaxes(title="CPU s per simulated step")
    fig.update_layout(title="moesim time-shared flow network, DeepSeek-V3 preset", height=480)
    fig.write_html(args.html, include_plotlyjs=True)
    print(f"\nplot: {args.html}")


if __name__ == "__main__":
    main()
