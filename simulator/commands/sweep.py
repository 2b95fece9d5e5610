"""``moesim sweep SPEC``: run a what-if sweep over scenario fields, locally or on Ray, with resume."""

from __future__ import annotations

import json
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from moesim.simulator.cli import INPUT_ERRORS, app, console, fail
from moesim.simulator.commands.progress import VERBOSE_OPT, check_verbosity
from moesim.simulator.limits import MAX_LOCAL_WORKERS
from moesim.simulator.processes import Terminated, interrupt_exit_code, sigterm_as_interrupt


@app.command()
def sweep(spec_file: str = typer.Argument(..., metavar="SPEC", help="Sweep spec (YAML): base, grid and/or points."),
          output: str = typer.Option(..., "--output", "-o", help="Results file: results.parquet or results.csv."),
          executor: str = typer.Option("local", "--executor", "-e", help="Where points run: local or ray."),
          workers: Optional[int] = typer.Option(None, "--workers", "-w", max=MAX_LOCAL_WORKERS,
                                                help="Parallel workers (local processes / CPUs of a local Ray)."),
          address: Optional[str] = typer.Option(None, "--address",
                                                help="Ray cluster to join (auto, or ray://host:10001)."),
          force: bool = typer.Option(False, "--force", help="Discard the rows already in the output file."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
          verbose: bool = VERBOSE_OPT,
          as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of tables.")) -> None:
    """Run every point of a sweep spec and write one row per point; rerunning resumes where it stopped."""
    from moesim.simulator.sweep import load_spec, run_sweep

    check_verbosity(quiet, verbose)
    if address is not None and executor != "ray":
        fail(f"--address {address}: only the ray executor joins a cluster; add --executor ray")
    try:
        spec, base = load_spec(spec_file)
    except INPUT_ERRORS as err:
        fail(str(err))
    spec_axes = {*(k for p in spec.points for k in p), *spec.grid}  # the swept fields, named in -v lines
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=quiet or verbose or as_json, transient=False)
    task = None
    counts = {"kept from an earlier run": 0, "invalid": 0, "error": 0}

    def note() -> str:
        return ", ".join(f"{n} {what}" for what, n in counts.items() if n)

    def on_start(total: int, kept: int) -> None:
        nonlocal task
        counts["kept from an earlier run"] = kept
        task = progress.add_task(spec.name, total=total, completed=kept, note=note())

    def on_row(row: dict) -> None:
        if row["status"] in counts:
            counts[row["status"]] += 1
        progress.update(task, advance=1, note=note())
        if verbose:
            where = " ".join(f"{k.split('.')[-1]}={v}" for k, v in row.items() if k in spec_axes)
            step = f", step {row['step_time_s']:.3f} s" if row.get("step_time_s") is not None else ""
            print(f"{spec.name}: {row['status']} {where}{step}", file=sys.stderr, flush=True)

    try:
        with sigterm_as_interrupt(), progress:
            run = run_sweep(spec, base, output, executor, workers, address, force, on_start, on_row)
    except INPUT_ERRORS as err:
        fail(str(err))
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM
        what = "terminated" if isinstance(err, Terminated) else "interrupted"
        console.print(f"[yellow]{what}[/]: finished points are saved in {output}; rerun to resume", highlight=False)
        raise typer.Exit(interrupt_exit_code(err)) from None
    except BrokenProcessPool:
        console.print(f"[red]a worker process died[/] (out of memory?); finished points are saved in {output}; "
                      "rerun to resume, with fewer --workers if memory is short", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"output": output, "points": run.points, "kept": run.kept, "computed": run.computed,
                          "refused_unsimulated": run.unsimulated, "status": run.status, "axes": run.axes}, indent=1))
    elif not quiet:
        status = ", ".join(f"{n} {s}" for s, n in sorted(run.status.items()))
        refused = f", {run.unsimulated} over HBM by their memory floor (not simulated)" if run.unsimulated else ""
        console.print(f"{run.points} points ({status}); {run.kept} kept from an earlier run, "
                      f"{run.computed - run.unsimulated} simulated{refused} → {output}", highlight=False)
        print_best(run.rows, run.axes)
    if run.points and not run.status.get("ok"):  # a sweep that answered nothing did not succeed
        counts = ", ".join(f"{n} {s}" for s, n in sorted(run.status.items()))
        Console(stderr=True).print(f"[bold red]error:[/] no valid point: 0 of {run.points} ok ({counts}); each "
                                   f"row's reason is in {escape(output)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def print_best(rows: list[dict], axes: list[str], top: int = 5) -> None:
    """The fastest points that fit in memory, and the reasons of the first invalid ones."""
    fit = sorted((r for r in rows if r["status"] == "ok" and r.get("fits_in_memory")), key=lambda r: r["step_time_s"])
    if fit:
        table = Table(title=f"fastest of {len(fit)} points that fit in memory", title_justify="left")
        for col in [*(a.split(".")[-1] for a in axes), "step s", "tokens/s", "MFU", "peak GB", "days"]:
            table.add_column(col, justify="right")
        for r in fit[:top]:
            table.add_row(*(str(r.get(a, "")) for a in axes), f"{r['step_time_s']:.3f}", f"{r['tokens_per_s']:,.0f}",
                          f"{r['mfu_causal']:.1%}", f"{r['max_peak_memory_gb']:.1f}", f"{r['training_days']:.1f}")
        console.print(table)
    for r in [r for r in rows if r["status"] != "ok"][:3]:
        where = " ".join(f"{a.split('.')[-1]}={r[a]}" for a in axes if a in r)
        console.print(f"[dim]{r['status']}: {where}: {r['reason']}[/]", highlight=False)
