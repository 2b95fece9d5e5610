"""`moesim simulate` on the default scenario (DeepSeek-V3 on 2,048 H800) against issue 22's two targets, as a user
meets them: the whole process ≤ 0.5 CPU s, and the engine with its metrics ≤ 0.15 CPU s of it.

Run: python tests/benchmarks/bench_simulate.py [--runs 15] [--command "moesim simulate"]

Whole process: the command run ``--runs`` times, each a process of its own, its CPU seconds (user + sys) and peak
RSS read from the kernel when it exits (os.wait4). Engine + metrics: in ``--runs`` fresh processes, the CPU seconds
of building, compiling, planning the host and running the programs plus the per-rank breakdowns
(``bench_engine.measure``, which times the parts as `simulate` runs them). The machine may be shared: compare
medians taken at the same time, or alternate two versions (``farm-bench --vs``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_engine import run_case  # this folder is on sys.path when run as a script

TARGET_PROCESS_S, TARGET_ENGINE_S = 0.5, 0.15


def default_command() -> list[str]:
    """The installed ``moesim`` script beside this Python, else ``python -m moesim``; then ``simulate``."""
    script = Path(sys.executable).with_name("moesim")
    return [str(script) if script.exists() else sys.executable, *([] if script.exists() else ["-m", "moesim"]),
            "simulate"]


def whole_process(command: list[str]) -> tuple[float, float]:
    """One run of ``command``: (CPU seconds, peak RSS in MiB)."""
    # stderr to a file, not a pipe: nothing reads a pipe while os.wait4 waits, so a chatty command would block on it.
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                env={**os.environ, "PYTHONHASHSEED": "0"})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            stderr.seek(0)
            sys.exit(f"{shlex.join(command)} exited {proc.returncode}: {stderr.read().decode().strip()}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def summary(name: str, values: list[float], target: float | None = None, unit: str = "CPU s") -> str:
    line = f"{name:<26} min {min(values):6.3f}  median {statistics.median(values):6.3f}  max {max(values):6.3f} {unit}"
    if target is not None:
        met = "met" if statistics.median(values) <= target else "NOT met"
        line += f"   target ≤ {target:g}: {met} (median)"
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15, help="processes of each kind (default 15)")
    parser.add_argument("--command", help="the command to time (default: this venv's `moesim simulate`)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs: give at least 1")
    command = shlex.split(args.command) if args.command else default_command()
    whole_process(command)  # warm the file cache: the first run reads every module from disk
    runs = [whole_process(command) for _ in range(args.runs)]
    parts = [run_case([]) for _ in range(args.runs)]
    print(f"{shlex.join(command)}: {args.runs} processes each (CPU seconds: user + sys)")
    print(summary("whole process", [cpu for cpu, _ in runs], TARGET_PROCESS_S))
    print(summary("peak RSS", [rss for _, rss in runs], unit="MiB"))
    print(summary("engine + metrics", [p["engine_cpu_s"] + p["metrics_s"] for p in parts], TARGET_ENGINE_S))
    for key, name in (("build_s", "  building and compiling"), ("host_s", "  host plan"),
                      ("execute_s", "  running the streams"), ("metrics_s", "  breakdowns (metrics)"),
                      ("pricing_s", "pricing and the rest")):
        print(summary(name, [p[key] for p in parts]))


if __name__ == "__main__":
    main()
