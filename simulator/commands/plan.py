"""``moesim plan``: how many GPUs, of which kind, in which layout, for how long and at what cost to train a model on
a token budget by a deadline and/or within a budget."""

from __future__ import annotations

import json
import sys
import time
from typing import Optional

import typer
from rich.console import Console

from moesim.simulator.cli import INPUT_ERRORS, SET_OPT, app, console, fail
from moesim.simulator.commands.progress import QUIET_OPT, VERBOSE_OPT, check_verbosity
from moesim.simulator.limits import MAX_LOCAL_WORKERS
from moesim.simulator.processes import Terminated, interrupt_exit_code, sigterm_as_interrupt
from moesim.workloads import quantities as q


def _schedules(text: Optional[str]):
    """``1f1b,interleaved:4,dualpipev`` → (name, virtual stages) pairs; the default stages per schedule."""
    from moesim.simulator.planner.request import SCHEDULE_VARIANTS
    from moesim.simulator.schedules import get_schedule
    from moesim.workloads.errors import ScenarioError

    if text is None:
        return list(SCHEDULE_VARIANTS)
    default = dict(SCHEDULE_VARIANTS)
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, _, stages = item.partition(":")
        get_schedule(name)
        if stages and (not stages.isdigit() or int(stages) < 1):
            raise ScenarioError(f"--schedules {item!r}: virtual stages after ':' must be a positive whole number")
        out.append((name, int(stages) if stages else default.get(name, 1)))
    if not out:
        raise ScenarioError("--schedules: name at least one schedule, e.g. 1f1b,dualpipe")
    return out


class Progress:
    """A transient bar on a terminal; otherwise a line on stderr every few seconds (logs, CI, pipes); every
    update as a line with ``verbose``; nothing with ``quiet``."""

    def __init__(self, quiet: bool, verbose: bool = False):
        self.quiet, self.verbose = quiet, verbose
        self.tty = sys.stderr.isatty() and not verbose
        self.start = time.monotonic()
        self.last = self.start - 60.0  # the first call prints
        self.bar = None
        if not quiet and self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar
            self.bar = Bar(TextColumn("[bold]plan {task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("bounding", total=None)
            self.bar.start()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=phase, completed=done, total=total)
            return
        now = time.monotonic()
        if not self.quiet and (self.verbose or now - self.last >= 3.0):
            self.last = now
            print(f"plan: {phase} {done}/{total} ({now - self.start:.0f} s)", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def plan(scenario: Optional[str] = typer.Argument(None, help="Scenario file (YAML or JSON) instead of --model."),
         model: Optional[str] = typer.Option(None, "--model", "-m", help="Model: deepseek-v3, llama3-405b, "
                                             "mixtral-8x7b, deepseek-v2-lite, or a preset name."),
         set_: Optional[list[str]] = SET_OPT,
         tokens: str = typer.Option(..., "--tokens", "-t", help="Token budget, e.g. 14.8T."),
         gpu: Optional[str] = typer.Option(None, "--gpu", "-g", help="GPU kind(s), e.g. h800 or h100,h200 "
                                           "(default: the scenario's)."),
         deadline: Optional[str] = typer.Option(None, "--deadline", help="Finish within, e.g. 60d, 8w, 720h."),
         budget_usd: Optional[float] = typer.Option(None, "--budget-usd", parser=q.USD.parser(),
                                                    help="Most to spend on GPU-hours (USD)."),
         price: str = typer.Option("2", "--price-per-gpu-hour", help="USD per GPU-hour: one price, or by GPU "
                                   "kind, e.g. h800=2,b200=3.5,gb200=4 (kinds not named pay 2)."),
         max_gpus: int = typer.Option(65_536, "--max-gpus", parser=q.GPU_COUNT.parser(),
                                      help="Largest cluster to consider."),
         gpus: Optional[str] = typer.Option(None, "--gpus", help="Only these GPU counts, e.g. 1024,2048."),
         tp: Optional[str] = typer.Option(None, "--tp", help="Tensor-parallel sizes (default 1,2,4,8)."),
         pp: Optional[str] = typer.Option(None, "--pp", help="Pipeline sizes (default 1,2,4,8,16)."),
         cp: Optional[str] = typer.Option(None, "--cp", help="Context-parallel sizes (default 1, and 2 for "
                                          "sequences of 8K or more)."),
         mbs: Optional[str] = typer.Option(None, "--micro-batch-sizes", help="Micro-batch sizes (default 1,2)."),
         schedules: Optional[str] = typer.Option(None, "--schedules", help="Schedules, NAME or NAME:VIRTUAL_STAGES "
                                                 "(default: every registered one)."),
         zero: Optional[str] = typer.Option(None, "--zero-stages", help="ZeRO stages allowed (default 1,2; ZeRO-3's "
                                           "per-layer gathers are not simulated)."),
         recompute: Optional[str] = typer.Option(None, "--recompute", help="Recomputation policies: none, "
                                                 "selective, full (default all)."),
         global_batch: Optional[str] = typer.Option(None, "--global-batch", help="Sequences per step: N fixes it, "
                                                    "LOW..HIGH is a range (default: the published batch and ramp)."),
         objective: Optional[str] = typer.Option(None, "--objective", help="Rank by time, cost, gpu-hours or "
                                                 "energy (GPU MWh at TDP; default: cost with a deadline, else time)."),
         top: int = typer.Option(5, "--top", help="How many plans to show."),
         max_sims: int = typer.Option(10_000, "--max-simulations", help="Most layouts to simulate in full."),
         time_limit: float = typer.Option(30.0, "--time-limit", help="Seconds after which no new simulation "
                                          "starts (the answer then says how far it is from proven)."),
         workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, max=MAX_LOCAL_WORKERS,
                                               help="Parallel simulations (default: cores)."),
         executor_name: str = typer.Option("local", "--executor", help="local (processes) or ray."),
         address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (with --executor ray)."),
         report: Optional[str] = typer.Option(None, "--report", help="Also write the time/cost front as HTML."),
         force: bool = typer.Option(False, "--force", help="Overwrite an existing --report file."),
         as_json: bool = typer.Option(False, "--json", help="Print everything as JSON."),
         quiet: bool = QUIET_OPT, verbose: bool = VERBOSE_OPT) -> None:
    """Search GPU counts, kinds and layouts; bound, then simulate the promising few; rank by time or cost."""
    from moesim.simulator.planner.answer import plan_json
    from moesim.simulator.planner.request import (PlanRequest, default_batch_range, load_base, parse_batch, parse_days,
                                           parse_ints, parse_tokens)
    from moesim.simulator.planner.search import search
    from moesim.simulator.sweep.executors import get_executor
    from moesim.topologies.gpus import gpu_catalog

    if report:
        from moesim.workloads.files import check_target
        try:
            check_target(report, force, "--report")
        except INPUT_ERRORS as err:
            fail(str(err))
    for value, option in ((top, "--top"), (max_sims, "--max-simulations"), (time_limit, "--time-limit")):
        if value is not None and value <= 0:
            fail(f"{option} {value:g}: must be positive")
    if objective not in (None, "time", "cost", "gpu-hours", "energy"):
        fail(f"--objective {objective!r}: choose time, cost, gpu-hours or energy")
    try:
        name, base = load_base(model, scenario, set_ or [])
        scenario_gpu = base["cluster"]["gpu"]
        kinds = [g.strip().lower() for g in (gpu or (scenario_gpu if isinstance(scenario_gpu, str)
                                                      else scenario_gpu.get("name", ""))).split(",") if g.strip()]
        if not kinds:
            fail(f"--gpu {gpu!r}: name a GPU kind ({', '.join(sorted(gpu_catalog()))}), or several separated by commas")
        for kind in kinds:
            if kind not in gpu_catalog():
                fail(f"--gpu {kind!r} is unknown; known: {', '.join(sorted(gpu_catalog()))}")
        default_price, prices = _prices(price, kinds)
        low, high, batch_source = default_batch_range(base)
        if global_batch is not None:
            (low, high), batch_source = parse_batch(global_batch), "--global-batch"
        seq = base["parallelism"]["seq_len"]
        deadline_days = parse_days(deadline) if deadline else None
        request = PlanRequest(
            tokens=parse_tokens(tokens), gpus_kinds=kinds, deadline_days=deadline_days, budget_usd=budget_usd,
            price_per_gpu_hour=default_price, prices=prices, max_gpus=max_gpus,
            gpu_counts=parse_ints(gpus, "--gpus"),
            tp=parse_ints(tp, "--tp") or [1, 2, 4, 8], pp=parse_ints(pp, "--pp") or [1, 2, 4, 8, 16],
            cp=parse_ints(cp, "--cp") or ([1, 2] if seq >= 8192 else [1]),
            micro_batch_sizes=parse_ints(mbs, "--micro-batch-sizes") or [1, 2], schedules=_schedules(schedules),
            zero_stages=_zero(zero), recompute=_recompute(recompute), batch_range=(low, high),
            objective=objective or ("cost" if deadline_days is not None else "time"), top=top,
            max_simulations=max_sims, time_limit_s=time_limit)
        executor = get_executor(executor_name)(workers=workers, address=address)
    except INPUT_ERRORS as err:
        fail(str(err))
    check_verbosity(quiet, verbose)
    progress = Progress(quiet=quiet or (as_json and sys.stderr.isatty()), verbose=verbose)
    try:
        with sigterm_as_interrupt():
            outcome = search(base, request, executor, progress=progress)
    except INPUT_ERRORS as err:
        progress.stop()
        fail(str(err))
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the workers are stopped; a partial plan is no plan
        progress.stop()
        what = "terminated" if isinstance(err, Terminated) else "interrupted"
        console.print(f"[yellow]{what}[/]: no plan (the search did not finish)", highlight=False)
        raise typer.Exit(interrupt_exit_code(err)) from None
    progress.stop()
    answer = plan_json(name, request, outcome, f"{batch_source}: {low}..{high} sequences")
    if report:
        from moesim.simulator.report.plan import write_plan_report
        try:
            write_plan_report(answer, report, force=force)
        except INPUT_ERRORS as err:
            fail(str(err))
    if as_json:
        print(json.dumps(answer, indent=1))
    else:
        from moesim.simulator.commands.plan_output import print_plan
        print_plan(answer, outcome)
        if report and not quiet:
            print(f"wrote {report}")
    if not answer["plans"]:
        raise typer.Exit(1)


def _prices(text: str, kinds: list[str]) -> tuple[float, dict[str, float]]:
    """``2`` → (2, {}); ``h800=2,b200=3.5`` → (2, {h800: 2, b200: 3.5}): the default stays 2 USD per GPU-hour."""
    from moesim.workloads.errors import ScenarioError

    default, prices = 2.0, {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        kind, sep, value = item.rpartition("=")
        try:
            usd = q.USD_PER_HOUR(value)
        except ValueError as err:
            raise ScenarioError(f"--price-per-gpu-hour {item!r}: {err}") from None
        if not sep:
            default = usd
        elif kind.strip().lower() not in kinds:
            raise ScenarioError(f"--price-per-gpu-hour {item!r}: {kind.strip()} is not one of --gpu "
                                f"{','.join(kinds)}")
        else:
            prices[kind.strip().lower()] = usd
    return default, prices


def _zero(text: Optional[str]) -> list[int]:
    from moesim.workloads.errors import ScenarioError

    if text is None:
        return [1, 2]
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or any(v not in (0, 1, 2, 3) for v in values):
        raise ScenarioError(f"--zero-stages {text!r}: give ZeRO stages from 0, 1, 2, 3, e.g. 1,2,3")
    return values


def _recompute(text: Optional[str]) -> list[str]:
    from moesim.simulator.planner.request import RECOMPUTE
    from moesim.workloads.errors import ScenarioError

    if text is None:
        return list(RECOMPUTE)
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in RECOMPUTE]
    if bad or not values:
        raise ScenarioError(f"--recompute {text!r}: choose from {', '.join(RECOMPUTE)}")
    return values
