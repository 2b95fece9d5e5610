"""``moesim plan``: the fastest / cheapest GPU count and parallel layout to train a model on a token budget."""

from __future__ import annotations

import json
from typing import Optional

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.table import Table

from simulator.cli import INPUT_ERRORS, app, console, fail
from simulator.processes import Terminated, interrupt_exit_code, sigterm_as_interrupt
from workloads import quantities as q


def _ints(text: Optional[str], option: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        fail(f"{option} {text!r}: expected comma-separated whole numbers, e.g. 1,2,4")
    if not values or min(values) < 1 or max(values) > 1_000_000:
        fail(f"{option} {text!r}: give whole numbers from 1 to 1,000,000")
    return values


@app.command()
def plan(model: str = typer.Option(..., "--model", "-m", help="Model: deepseek-v3, llama3-405b, mixtral-8x7b, "
                                                                  "deepseek-v2-lite, or a preset name."),
         tokens: str = typer.Option(..., "--tokens", "-t", help="Token budget, e.g. 14.8T."),
         gpu: str = typer.Option("h800", "--gpu", "-g", help="GPU kind: h800, h100 or h200."),
         deadline: Optional[str] = typer.Option(None, "--deadline", help="Finish within, e.g. 60d, 8w, 720h."),
         budget_usd: Optional[float] = typer.Option(None, "--budget-usd", parser=q.USD.parser(),
                                                    help="Most to spend on GPU-hours (USD)."),
         price: float = typer.Option(2.0, "--price-per-gpu-hour", parser=q.USD_PER_HOUR.parser(),
                                     help="USD per GPU-hour."),
         max_gpus: int = typer.Option(4096, "--max-gpus", parser=q.GPU_COUNT.parser(),
                                      help="Largest cluster to consider."),
         gpus: Optional[str] = typer.Option(None, "--gpus", help="Only these GPU counts, e.g. 1024,2048."),
         tp: Optional[str] = typer.Option(None, "--tp", help="Tensor-parallel sizes to try (default 1,2,4,8)."),
         pp: Optional[str] = typer.Option(None, "--pp", help="Pipeline sizes to try (default 1,2,4,8,16)."),
         mbs: Optional[str] = typer.Option(None, "--micro-batch-sizes", help="Micro-batch sizes (default 1,2)."),
         schedules: Optional[str] = typer.Option(None, "--schedules", help="Schedules (default: all registered)."),
         objective: str = typer.Option("time", "--objective", help="Rank by time or cost."),
         top: int = typer.Option(5, "--top", min=1, max=100_000, help="How many plans to show."),
         workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, max=1024,
                                               help="Parallel simulations (default: cores)."),
         as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON.")) -> None:
    """Search GPU counts and layouts that fit in memory; rank by time and cost; show the time/cost Pareto front."""
    from simulator.plan import (PlanRequest, pareto_front, parse_days, parse_tokens, plan_base, ranked,
                                rejection_counts, resolve_model, search)
    from simulator.schedules import get_schedule
    from simulator.sweep.executors import LocalExecutor
    from topologies.gpus import gpu_catalog

    if gpu.lower() not in gpu_catalog():
        fail(f"--gpu {gpu!r} is unknown; known: {', '.join(sorted(gpu_catalog()))}")
    if objective not in ("time", "cost"):
        fail(f"--objective {objective!r}: choose time or cost")
    try:
        names = [s.strip() for s in schedules.split(",") if s.strip()] if schedules else None
        for name in names or []:
            get_schedule(name)
        request = PlanRequest(
            tokens=parse_tokens(tokens), gpu=gpu.lower(), deadline_days=parse_days(deadline) if deadline else None,
            budget_usd=budget_usd, price_per_gpu_hour=price, max_gpus=max_gpus, gpu_counts=_ints(gpus, "--gpus"),
            tp=_ints(tp, "--tp") or [1, 2, 4, 8], pp=_ints(pp, "--pp") or [1, 2, 4, 8, 16],
            micro_batch_sizes=_ints(mbs, "--micro-batch-sizes") or [1, 2], schedules=names, objective=objective)
        preset = resolve_model(model)
        base = plan_base(preset, request)
    except INPUT_ERRORS as err:
        fail(str(err))
    except ValidationError as err:  # a bad combination of options that the parsers above let through
        fail(str(err.errors()[0]["msg"]))

    executor = LocalExecutor(workers=workers)
    progress = Progress(TextColumn("[bold]plan {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=as_json,
                        transient=True)

    def run_points(points):
        task = progress.add_task(preset, total=len(points))
        for row in executor.run(base, None, points):
            progress.advance(task)
            yield row

    try:
        with sigterm_as_interrupt(), progress:
            candidates = search(base, request, run_points)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the workers are stopped; a partial plan is no plan
        what = "terminated" if isinstance(err, Terminated) else "interrupted"
        console.print(f"[yellow]{what}[/]: no plan (the search did not finish)", highlight=False)
        raise typer.Exit(interrupt_exit_code(err)) from None
    best = ranked(candidates, request.objective)
    front = pareto_front(candidates)
    if as_json:
        print(json.dumps(plan_json(preset, request, candidates, best, front, top), indent=1))
    else:
        print_plan(preset, request, candidates, best, front, top, rejection_counts(candidates))
    if not best:
        raise typer.Exit(1)


def plan_row(cand) -> dict:
    row = cand.row
    return {"layout": {k.split(".")[-1]: v for k, v in cand.layout.items()}, "training_days": row["training_days"],
            "training_days_with_failures": row["training_days_with_failures"],
            "cost_usd": cand.cost_usd, "gpu_hours": row["gpu_hours"], "step_time_s": row["step_time_s"],
            "tokens_per_s": row["tokens_per_s"], "mfu_causal": row["mfu_causal"],
            "peak_memory_gb": row["max_peak_memory_gb"], "hbm_gb": row["hbm_gb"]}


def plan_json(preset, request, candidates, best, front, top) -> dict:
    from simulator.plan import reasons, rejection_counts
    return {"preset": preset, "request": request.model_dump(), "layouts": len(candidates),
            "rejected": rejection_counts(candidates),
            "best": [{**plan_row(c), "reasons": reasons(c, request, best)} for c in best[:top]],
            "pareto": [plan_row(c) for c in front]}


def print_plan(preset, request, candidates, best, front, top, rejected) -> None:
    from simulator.plan import reasons
    words = {"invalid": "invalid layouts", "memory": "do not fit in memory", "deadline": "miss the deadline",
             "budget": "over budget"}
    console.print(f"[bold]{preset}[/] with {request.gpu.upper()}: {request.tokens / 1e12:g}T tokens at "
                  f"${request.price_per_gpu_hour:g}/GPU-hour — {len(candidates)} layouts searched; "
                  + (", ".join(f"{n} {words[k]}" for k, n in sorted(rejected.items())) or "none rejected"),
                  highlight=False)
    if not best:
        fitting = [c for c in candidates if c.row and c.rejected not in ("invalid", "memory")]
        hint = (f"; the fastest that fits is {min(fitting, key=lambda c: c.days).summary()} at "
                f"{min(c.days for c in fitting):.1f} days" if fitting else "; raise --max-gpus or try another --gpu")
        console.print(f"[red]no layout meets every constraint[/]{hint}", highlight=False)
        return
    table = Table(title=f"best {min(top, len(best))} by {request.objective}", title_justify="left")
    for col in ("#", "GPUs", "dp", "tp", "pp", "ep", "mbs", "schedule", "days", "with failures", "cost USD", "MFU",
                "peak GB"):
        table.add_column(col, justify="right")
    for i, c in enumerate(best[:top], 1):
        lay = c.layout
        table.add_row(str(i), str(lay["cluster.gpus"]), str(lay["parallelism.dp"]), str(lay["parallelism.tp"]),
                      str(lay["parallelism.pp"]), str(lay["parallelism.ep"]),
                      str(lay["parallelism.micro_batch_size"]), lay["schedule"], f"{c.days:.1f}",
                      f"{c.row['training_days_with_failures']:.1f}", f"{c.cost_usd:,.0f}", f"{c.row['mfu_causal']:.1%}", f"{c.row['max_peak_memory_gb']:.1f}")
    console.print(table)
    for i, c in enumerate(best[:top], 1):
        console.print(f"  {i}. {c.summary()}: {'; '.join(reasons(c, request, best))}", highlight=False)
    front_table = Table(title="time/cost Pareto front (layouts that fit; ✓ meets deadline and budget)",
                        title_justify="left")
    for col in ("GPUs", "layout", "days", "cost USD", ""):
        front_table.add_column(col, justify="right")
    for c in front:
        front_table.add_row(str(c.layout["cluster.gpus"]), c.summary().split(" GPUs ")[1], f"{c.days:.1f}",
                            f"{c.cost_usd:,.0f}", "✓" if not c.rejected else c.rejected)
    console.print(front_table)
