"""The ``moesim`` command line. Sub-commands register on the typer app; input errors print one line, exit 2."""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Optional

# numpy's OpenBLAS starts one thread per core when numpy loads, and they spin: ~90 ms of CPU on every command
# on 2 cores (`moesim simulate` 0.899 → 0.805 CPU s, medians of 15 alternated runs), for a tool that does no large
# linear algebra (sweeps and plans run in parallel as processes). Set before anything imports numpy; a value
# the user set wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import moesim
from moesim.simulator.commands.progress import QUIET_OPT, VERBOSE_OPT, ItemProgress, check_verbosity
from moesim.simulator.commands.tables import FittingConsole
from moesim.simulator.schedules import ScheduleError
from moesim.workloads.errors import ScenarioError, one_line
from moesim.workloads.files import check_target
from moesim.workloads.loader import load_scenario
from moesim.workloads.presets import preset_names, preset_text

# Sub-command → the module of moesim.simulator.commands that registers it. A command's module is imported when the
# command runs (each pulls in what it needs: the planner, plotly, networkx), so `moesim simulate` pays for none of
# them; help, and a name no command has, import them all (tests/test_cli_lazy.py checks this map is complete).
COMMAND_MODULES = {"calibrate": "calibrate", "collective": "collective", "compare": "compare",
                   "dashboard": "dashboard", "import": "import_config", "plan": "plan", "replay": "trace",
                   "report": "report", "routing": "routing", "schedule": "schedule", "schema": "schema",
                   "sweep": "sweep", "topology": "topology",
                   "trace": "trace", "validate": "validate"}


class LazyCommands(typer.core.TyperGroup):
    """The top-level command group: imports a sub-command's module the first time the command is looked up."""

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands:
            module = COMMAND_MODULES.get(cmd_name)
            self._register([module] if module else sorted(set(COMMAND_MODULES.values())))
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx) -> list[str]:
        self._register(sorted(set(COMMAND_MODULES.values())))
        return super().list_commands(ctx)

    def _register(self, modules: list[str]) -> None:
        """Import ``modules`` of moesim.simulator.commands (they register on ``app``) and take up their commands, in
        the order every command was registered."""
        import importlib

        for module in modules:
            importlib.import_module(f"moesim.simulator.commands.{module}")
        self.commands = typer.main.get_group(app).commands


app = typer.Typer(cls=LazyCommands, add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="moesim: a discrete-event simulator of large mixture-of-experts training clusters.")
presets_app = typer.Typer(no_args_is_help=True, help="List and show the built-in scenario presets.")
app.add_typer(presets_app, name="presets")

console = FittingConsole()  # wide tables drop borders and padding before cutting numbers (80 columns)
INPUT_ERRORS = (ScenarioError, ScheduleError)

SCENARIO_ARG = typer.Argument(None, help="Scenario file (YAML or JSON). Default: the preset.")
PRESET_OPT = typer.Option(None, "--preset", "-p", help="Built-in preset name (default deepseek-v3-h800).")
SET_OPT = typer.Option(None, "--set", "-s", help="Override a field: --set parallelism.pp=8 (repeatable).")
JSON_OPT = typer.Option(False, "--json", help="Print the result as JSON.")
SAMPLES_OPT = typer.Option(None, "--samples", min=1, max=10_000,
                           help="Also simulate N jittered samples (kernel times, routing) for p50/p95 step time.")
PROFILE_OPT = typer.Option(None, "--profile", help="Calibration profile(s): a built-in name (h800, h800-trace, h100) or a JSON file, "
                           "or a comma list priced in order. Default: the scenario GPU's own (H800: h800-trace,h800).")
OP_CLASSES_OPT = typer.Option(False, "--op-classes", help="Also print what one transformer layer (F, B and W of the "
                              "first MoE layer) costs per kernel class, and what priced each class.")
TIMELINE_OPT = typer.Option(False, "--timeline", help="With --json: include the timeline and the scenario "
                                                     "(input for moesim report).")
REPORT_OPT = typer.Option(None, "--report", help="Also write an interactive HTML report to this file.")
TRACE_OUT_OPT = typer.Option(None, "--trace", help="Write the simulated timeline as Chrome-trace JSON (Perfetto); "
                             "to a folder (ranks/): one file per rank (HolisticTraceAnalysis).")
FORCE_OPT = typer.Option(False, "--force", help="Overwrite an existing --report or --trace file.")


def _print_version(value: bool) -> None:
    if value:
        print(f"moesim {moesim.version()}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                      help="Print moesim's version and exit.")) -> None:
    """moesim: a discrete-event simulator of large mixture-of-experts training clusters."""


def fail(message: str) -> None:
    """Print one error line and exit 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False,
                               soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def simulate(scenario: Optional[str] = SCENARIO_ARG, preset: Optional[str] = PRESET_OPT,
             set_: Optional[list[str]] = SET_OPT, as_json: bool = JSON_OPT,
             profile: Optional[str] = PROFILE_OPT, timeline: bool = TIMELINE_OPT,
             report: Optional[str] = REPORT_OPT, trace: Optional[str] = TRACE_OUT_OPT,
             force: bool = FORCE_OPT, samples: Optional[int] = SAMPLES_OPT,
             op_classes: bool = OP_CLASSES_OPT, quiet: bool = QUIET_OPT, verbose: bool = VERBOSE_OPT) -> None:
    """Simulate one training step and report step time, throughput, MFU, per-stage breakdown and memory."""
    from moesim.simulator.profile_input import user_profile
    from moesim.simulator.export import check_trace_target, write_chrome_trace
    from moesim.simulator.simulate import simulate as run_simulation

    check_verbosity(quiet, verbose)
    try:
        if report:  # before simulating: a run must not end on a target it cannot write
            check_target(report, force, "--report")
        sc = load_scenario(scenario, preset, (set_ or []) + ([f"run.samples={samples}"] if samples else []))
        if trace:
            check_trace_target(trace, force)
        prof = user_profile(profile)
        result = run_simulation(sc, prof, keep_timeline=timeline or bool(report) or bool(trace))
        sc = result.resolved_scenario or sc  # stage_layers: auto, as the simulation split it
        if sc.run.samples > 1:
            result.samples = sample_with_progress(sc, prof, quiet or as_json, verbose)
        if trace:
            write_chrome_trace(result.timeline, trace, force, sc.name, sc.cluster.gpu)
    except INPUT_ERRORS as err:
        fail(str(err))
    if report:
        from moesim.simulator.report import write_report  # plotly: only when a report is asked for
        try:
            write_report(result, report, sc, force=force)
        except INPUT_ERRORS as err:
            fail(str(err))
    if as_json:
        if timeline:
            from moesim.simulator.report import result_payload
        print(json.dumps(result_payload(result, sc) if timeline else result.to_dict(), indent=1))
        return
    print_result(result, sc)
    if op_classes:
        print_op_classes(result)
    if report and not quiet:
        console.print(f"wrote {report}", highlight=False)


def sample_with_progress(scenario, profile, quiet: bool, verbose: bool = False) -> dict:
    """Run the jittered samples behind a progress bar (on stderr, so --json stays clean)."""
    from moesim.simulator.uncertainty import sample_step_times

    with ItemProgress("samples", scenario.run.samples, quiet, verbose) as bar:
        stats = sample_step_times(scenario, profile, progress=bar.advance)
    return stats.to_dict()


def print_result(result, scenario) -> None:
    par = scenario.parallelism
    console.print(f"[bold]{scenario.model.name}[/] on {result.gpus} × {scenario.cluster.gpu.name} — "
                  f"schedule {result.schedule}, dp{par.dp} tp{par.tp} pp{par.pp} ep{par.ep} cp{par.cp}, "
                  f"{result.micro_batches} micro-batches of {par.micro_batch_size}×{par.seq_len} tokens")
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="bold")
    head.add_column(justify="right")
    rows = [
        ("step time", f"{result.step_time_s:.3f} s"),
        *([(f"step time over {result.samples['samples']} samples (p50 | p95)",
            f"{result.samples['p50_s']:.3f} | {result.samples['p95_s']:.3f} s")] if result.samples else []),
        ("tokens / s", f"{result.tokens_per_s:,.0f}"),
        ("TFLOPS / GPU (causal | non-causal)",
         f"{result.tflops_per_gpu_causal:.1f} | {result.tflops_per_gpu_noncausal:.1f}"),
        ("MFU vs BF16 peak (causal | non-causal)", f"{result.mfu_causal:.1%} | {result.mfu_noncausal:.1%}"),
        ("GPU-hours per trillion tokens", f"{result.gpu_hours_per_trillion_tokens:,.0f}"),
        (f"days for {scenario.training.tokens / 1e12:g}T tokens", f"{result.training_days:.1f}"),
        ("  with failures (expected)",
         f"{result.training_days_with_failures:.1f}  (goodput {result.reliability['goodput']:.1%}, "
         f"~{result.reliability['expected_failures']:.0f} failures, checkpoint every "
         f"{result.reliability['checkpoint_interval_h'] * 60:.0f} min)"),
        ("peak memory (max over stages)",
         f"{max(s.peak_memory_gb for s in result.stages):.1f} of {result.hbm_gb:g} GB"
         + ("" if result.fits_in_memory else "  [red]DOES NOT FIT[/]")),
        *([("energy (per step | run)", f"{result.energy['kwh_per_step']:,.1f} kWh | {result.energy['run_mwh']:,.0f} MWh"
            f" at {result.energy['power_per_gpu_w']:,.0f} W per GPU"
            + (f"; ${result.energy['run_usd']:,.0f}" if result.energy["run_usd"] is not None else ""))]
          if result.energy else []),
        ("simulated in", f"{result.sim_wall_s:.2f} s ({result.tasks:,} engine tasks, {result.simpy_events:,} SimPy "
                         f"events; {result.fidelity} fidelity: {result.simulated_units:,} simulated units for "
                         f"{result.gpus:,} GPUs; {result.network} network)"),
    ]
    for name, value in rows:
        head.add_row(name, value)
    console.print(head)
    table = Table(title="per pipeline stage (seconds per step; memory in GB)", title_justify="left")
    host = any(s.host_bound_s > 0 for s in result.stages)  # the column only where the host is modelled
    for col in ("stage", "forward", "bwd input", "bwd weight", "exposed comm", *(("host bound",) if host else ()),
                "bubble", "optimizer", "in flight", "memory"):
        table.add_column(col, justify="right")
    for i, s in enumerate(result.stages):
        table.add_row(str(i), f"{s.forward_s:.3f}", f"{s.backward_input_s:.3f}", f"{s.backward_weight_s:.3f}",
                      f"{s.exposed_comm_s:.3f}", *((f"{s.host_bound_s:.3f}",) if host else ()), f"{s.bubble_s:.3f}",
                      f"{s.optimizer_s:.4f}", str(s.peak_inflight), f"{s.peak_memory_gb:.1f}")
    console.print(table)
    if result.fidelity == "full":
        console.print(f"[dim]full fidelity: each stage's row is its busiest GPU (GPUs "
                      f"{', '.join(str(s.gpu) for s in result.stages)})[/]", highlight=False)
    for note in result.cost_model_notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def print_op_classes(result) -> None:
    """The per-class cost of one transformer layer (ms), compute stream first."""
    table = Table(title="one layer (F+B+W of the first MoE layer), per kernel class (ms)", title_justify="left")
    table.add_column("class", no_wrap=True)
    for col in ("stream", "ops", "kernels", "launch gaps"):
        table.add_column(col, justify="right")
    table.add_column("priced by", overflow="fold")
    for row in result.op_classes:
        table.add_row(row["class"], row["stream"], str(row["ops"]), f"{row['kernel_s'] * 1e3:.3f}",
                      f"{row['launch_gap_s'] * 1e3:.3f}", row["priced_by"])
    for stream in ("compute", "comm"):
        rows = [r for r in result.op_classes if r["stream"] == stream]
        table.add_row(f"{stream} total", "", str(sum(r["ops"] for r in rows)),
                      f"{sum(r['kernel_s'] for r in rows) * 1e3:.3f}",
                      f"{sum(r['launch_gap_s'] for r in rows) * 1e3:.3f}", "", style="bold")
    console.print(table)
    if result.outside_range:
        outside = Table(title="ops of the whole step priced outside their measured range, by the shape model",
                        title_justify="left")
        for col in ("op", "class", "shape", "outside measured range", "TFLOPS"):
            outside.add_column(col, justify="right" if col == "TFLOPS" else "left",
                               overflow="fold", no_wrap=col in ("op", "TFLOPS"))
        for o in result.outside_range:
            outside.add_row(o["op"], o["label"], o["shape"], o["why"], f"{o['tflops']:.0f} on {o['sms']} SMs")
        console.print(outside)


@presets_app.command("list")
def presets_list(as_json: bool = JSON_OPT) -> None:
    """List the built-in presets with their GPU count and description."""
    rows = []
    for name in preset_names():
        sc = load_scenario(preset=name)
        rows.append({"name": name, "gpus": sc.cluster.gpus, "model": sc.model.name, "description": sc.description})
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("preset", "GPUs", "model", "description")
    for row in rows:
        table.add_row(row["name"], str(row["gpus"]), row["model"], row["description"])
    console.print(table)


@presets_app.command("show")
def presets_show(name: str, as_json: bool = JSON_OPT) -> None:
    """Print a preset's YAML (or the validated scenario as JSON)."""
    try:
        if as_json:
            print(load_scenario(preset=name).model_dump_json(indent=1))
        else:
            print(preset_text(name), end="")
    except INPUT_ERRORS as err:
        fail(str(err))


def entry_point() -> None:
    """The ``moesim`` command's entry point (through :func:`moesim.__main__.main`, which imports this module with
    the collector off): :func:`main` in a process of its own, with the collector on. What the imports made lives as
    long as that process, so it goes out of the collector's generations first: its full collections then do not walk
    it again (one during pricing cost ~25 ms of `moesim simulate`, timed with gc.callbacks). Called in-process,
    :func:`main` leaves the collector as it is."""
    gc.freeze()
    gc.enable()
    main()


def main() -> None:
    """The command line: every usage or input error is one line on stderr with exit code 2."""
    try:  # recent typer vendors its own click
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click

    try:
        rc = app(standalone_mode=False, prog_name="moesim")
    except click.NoArgsIsHelpError:
        rc = 0
    except click.UsageError as err:  # a bad flag or value, as click words it, on one line
        hint = f" (see moesim {err.ctx.command_path.partition(' ')[2]} --help)".replace("  ", " ") if err.ctx else ""
        message = err.format_message().replace("Value error, ", "")  # typer checks values with pydantic
        Console(stderr=True).print(f"[bold red]error:[/] {escape(one_line(message))}{escape(hint)}",
                                   highlight=False, soft_wrap=True)
        rc = 2
    except typer.Abort:
        rc = 130
    except INPUT_ERRORS as err:  # raised outside a command's own handling
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        rc = 2
    except BrokenPipeError:  # `moesim ... | head`: the reader has what it wanted
        rc = os_error_exit(None)
    except OSError as err:  # the machine, not moesim: stdout on a full device (> /dev/full)
        rc = os_error_exit(err)
    except Exception as err:  # a bug, not bad input: one line and EX_SOFTWARE; the traceback on request
        if os.environ.get("MOESIM_TRACEBACK"):
            raise
        Console(stderr=True).print(f"[bold red]internal error[/] (a bug in moesim, please report it): "
                                   f"{escape(one_line(f'{type(err).__name__}: {err}'))[:300]}; rerun with "
                                   "MOESIM_TRACEBACK=1 for the traceback", highlight=False, soft_wrap=True)
        rc = 70
    try:  # what print() buffered meets the device here, not at interpreter exit
        sys.stdout.flush()
    except BrokenPipeError:
        rc = os_error_exit(None)
    except OSError as err:
        rc = os_error_exit(err)
    sys.exit(rc if isinstance(rc, int) else 0)


def os_error_exit(err: OSError | None) -> int:
    """One line for an output the system refused (exit 1; none for a closed pipe), and stdout pointed at
    /dev/null so that Python's own flush at exit cannot print a second message."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    if err is None:
        return 1
    where = f" {err.filename}" if err.filename else " (standard output)"
    Console(stderr=True).print(f"[bold red]error:[/] cannot write{escape(where)}: {escape(err.strerror or str(err))}",
                               highlight=False, soft_wrap=True)
    return 1


if __name__ == "__main__":
    # Run as `python -m moesim.simulator.cli`, this file is `__main__`, while command modules register on the app of
    # `moesim.simulator.cli`; run that one so that every sub-command is there.
    from moesim.simulator.cli import entry_point as _entry_point
    _entry_point()
