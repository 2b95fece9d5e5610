"""``moesim calibrate``: run kernel microbenchmarks, fit, show, compare, project and validate profiles.

torch is needed only by ``run`` (the ``calibration`` extra) and is imported there, lazily.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from moesim.simulator.cli import JSON_OPT, app, console, fail
from moesim.simulator.commands.progress import QUIET_OPT, VERBOSE_OPT, check_verbosity

calibrate_app = typer.Typer(no_args_is_help=True, help="Measure kernels into profiles; fit, show, compare, "
                                                       "project and validate them.")
app.add_typer(calibrate_app, name="calibrate")

PROFILE_ARG = typer.Argument(..., help="Profile: built-in name (h800, cpu) or a JSON file.")
FORCE_OPT = typer.Option(False, "--force", help="Overwrite the output file if it exists.")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    from moesim.calibration.profile import load_profile

    from pydantic import ValidationError

    from moesim.workloads.loader import format_validation_error

    try:
        return load_profile(name)
    except ValidationError as err:
        fail(f"profile {name}: {format_validation_error(err)}")
    except (OSError, ValueError) as err:
        fail(f"profile {name}: {str(err).splitlines()[0]} (give a built-in name: h800, cpu, or a profile JSON file)")


def _writable(output: Path, force: bool) -> None:
    """Refuse, before any work, an -o the profile cannot be written to (moesim.workloads.files.check_target's rule)."""
    from moesim.workloads.errors import ScenarioError
    from moesim.workloads.files import check_target
    try:
        check_target(output, force, "-o")
    except ScenarioError as err:
        fail(str(err))


def _split(value: Optional[str]) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@calibrate_app.command("run")
def run(device: Optional[str] = typer.Option(None, "--device", help="cuda or cpu (default: cuda when torch "
                                                                     "sees a GPU, else cpu)."),
        quick: bool = typer.Option(False, "--quick", help="Fewer, smaller cases and repeats."),
        ops: Optional[str] = typer.Option(None, "--ops", help="Comma list of gemm, grouped_gemm, attention, "
                                                              "elementwise, collectives (default all)."),
        presets: Optional[str] = typer.Option(None, "--presets", help="Comma list of presets whose shapes to "
                                                                      "sweep (default all)."),
        threads: Optional[str] = typer.Option(None, "--threads", help="CPU only: torch thread counts, e.g. 1,2 "
                                                                      "(the CPU's SMs; default 1)."),
        output: Path = typer.Option(..., "-o", "--output", help="Profile JSON to write."),
        force: bool = FORCE_OPT, quiet: bool = QUIET_OPT, verbose: bool = VERBOSE_OPT) -> None:
    """Benchmark the kernels the presets run on this device and save a fitted profile with provenance."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from moesim.calibration.run import OPS
    from moesim.workloads.presets import preset_names

    check_verbosity(quiet, verbose)
    if device not in (None, "cpu", "cuda"):
        fail(f"--device {device}: use cuda or cpu")
    op_list, preset_list = _split(ops), _split(presets)
    unknown = [o for o in op_list if o not in OPS]
    if unknown:
        fail(f"--ops {','.join(unknown)}: unknown; choose from {', '.join(OPS)}")
    bad = [p for p in preset_list if p not in preset_names()]
    if bad:
        fail(f"--presets {','.join(bad)}: unknown; choose from {', '.join(preset_names())}")
    try:
        thread_list = [int(t) for t in _split(threads)] or None
    except ValueError:
        fail(f"--threads {threads}: give whole numbers, e.g. 1,2")
    if thread_list and min(thread_list) < 1:
        fail(f"--threads {threads}: thread counts must be at least 1")
    _writable(output, force)
    try:
        import torch
    except ImportError:
        fail("calibrate run needs torch: pip install 'moesim[calibration]'")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        fail(f"--device cuda: this torch ({torch.__version__}) sees no CUDA device; use --device cpu")
    from moesim.calibration.run import run_calibration
    from pydantic import ValidationError

    from moesim.workloads.loader import format_validation_error

    command = "moesim " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(("moesim", "cli.py")) else \
        f"moesim calibrate run --device {device}" + (" --quick" if quick else "") + \
        (f" --ops {ops}" if ops else "") + (f" --threads {threads}" if threads else "") + f" -o {output}"
    with Progress(TextColumn("[bold]calibrate[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=False,
                  disable=quiet or verbose) as progress:
        task = progress.add_task("starting", total=None)
        start = time.monotonic()

        def report(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, description=label)
            if verbose:
                print(f"calibrate {done}/{total}: {label} ({time.monotonic() - start:.1f} s)", file=sys.stderr,
                      flush=True)

        problem = None
        try:
            profile = run_calibration(device, quick, op_list or None, preset_list or None, thread_list, command,
                                      on_progress=report)
        except ValidationError as err:  # a measurement faster than the catalogue's peak (moesim.calibration.profile)
            problem = f"calibrate run: {format_validation_error(err)} (the peaks are topologies/data/gpus.yaml's)"
        except ValueError as err:
            problem = str(err)
    if problem is not None:  # after the progress bar's last line, so the error is the output's last
        fail(problem)
    profile.save(output, force=force)
    console.print(f"wrote {output}: {len(profile.points)} kernel points, {len(profile.collectives)} collective "
                  f"points on {profile.device}")
    _fit_table(profile.fit)


def _num(x: float) -> str:
    """A rate for a table: whole numbers from 100 up, three significant digits below."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _fit_table(fits) -> None:
    table = Table(title="fit: time = overhead + work / rate + bytes / memory rate (errors: relative kernel time)",
                  title_justify="left")
    for col in ("op class", "dtype", "points", "overhead µs", "rate", "memory GB/s", "curve rms", "curve max",
                "LOO rms", "LOO max"):
        table.add_column(col, justify="right" if col not in ("op class", "dtype") else "left",
                         no_wrap=col in ("op class", "rate"))
    for f in fits:
        unit = "TFLOPS" if f.basis == "flops" else "GB/s"
        loo = (f"{f.loo_rms_error:.1%}", f"{f.loo_max_error:.1%}") if f.loo_rms_error is not None else ("–", "–")
        table.add_row(f.op, f.dtype, str(f.points), f"{f.overhead_us:.1f}", f"{_num(f.rate)} {unit}" if f.rate else "–",
                      f"{f.memory_gbps:.4g}" if f.memory_gbps else "–", f"{f.curve_rms_error:.1%}", f"{f.curve_max_error:.1%}", *loo)
    console.print(table)
    console.print("[dim]the model (curve × per-point correction) reproduces every point exactly; LOO: each point "
                  "predicted from the others (classes of 3+ points)[/]", highlight=False)


@calibrate_app.command("fit")
def fit(profile: str = PROFILE_ARG,
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the profile with its fit."),
        force: bool = FORCE_OPT, as_json: bool = JSON_OPT) -> None:
    """Fit the profile's points into cost curves per op class and print the fit error."""
    from moesim.calibration.fit import fit_report

    prof = _load(profile)
    if output is not None:
        _writable(output, force)
    fits = fit_report(prof)
    if output is not None:
        prof.model_copy(update={"fit": fits}).save(output, force=force)
    if as_json:
        print(json.dumps([f.model_dump() for f in fits], indent=1))
        return
    console.print(f"[bold]{prof.device}[/] ({prof.origin}): {len(prof.points)} points")
    _fit_table(fits)
    if output is not None:
        console.print(f"wrote {output}")


@calibrate_app.command("show")
def show(profile: str = PROFILE_ARG, as_json: bool = JSON_OPT) -> None:
    """Print a profile: device, peaks, provenance, kernel points, collectives and fit."""
    from moesim.calibration.fit import fit_report

    prof = _load(profile)
    if as_json:
        print(prof.model_dump_json(indent=1, exclude_none=True))
        return
    peaks = prof.peaks
    console.print(f"[bold]{prof.device}[/] — {prof.origin}", highlight=False)
    console.print(f"peaks: {peaks['bf16_tflops']:.4g} TFLOPS bf16, {peaks['fp8_tflops']:.4g} TFLOPS fp8, "
                  f"{peaks['hbm_tbps'] * 1000:.4g} GB/s memory, {peaks['sms']:g} SMs"
                  + (" (cores)" if prof.provenance.get("cuda") == "none" else ""), highlight=False)
    for key, value in prof.provenance.items():
        console.print(f"  [dim]{key}:[/] {value}", highlight=False)
    table = Table(title=f"{len(prof.points)} kernel points", title_justify="left")
    for col in ("op", "layout", "kernel", "dtype", "shape", "SMs", "time µs", "TFLOPS", "GB/s"):
        table.add_column(col, justify="right" if col in ("SMs", "time µs", "TFLOPS", "GB/s") else "left",
                         no_wrap=col == "kernel", overflow="ellipsis", max_width=26 if col == "kernel" else None)
    for p in prof.points:
        shape = (f"{p.groups}×" if p.groups > 1 else "") + "×".join(map(str, p.shape))
        table.add_row(p.op, p.layout, p.kernel, p.dtype, shape, str(p.sms or int(peaks["sms"])),
                      f"{p.seconds() * 1e6:.1f}", f"{p.tflops:.3g}" if p.tflops else "–",
                      f"{p.memory_gbps:.4g}" if p.memory_gbps else "–")
    console.print(table)
    if prof.collectives:
        coll = Table("pattern", "backend", "ranks", "bytes/rank", "time µs", "bus GB/s",
                     title="collectives", title_justify="left")
        for c in prof.collectives:
            coll.add_row(c.pattern, c.backend, str(c.ranks), f"{c.bytes_per_rank:,.0f}", f"{c.time_us:.1f}",
                         f"{c.bus_gbps:.3g}")
        console.print(coll)
    for name, eff in prof.efficiency.items():
        console.print(f"{name} efficiency for roofline fallbacks {eff.value:.3f}: {eff.source}", highlight=False)
    _fit_table(prof.fit or fit_report(prof))


@calibrate_app.command("compare")
def compare(a: str = typer.Argument(..., help="Profile A (name or file)."),
            b: str = typer.Argument(..., help="Profile B (name or file)."), as_json: bool = JSON_OPT) -> None:
    """Compare two profiles: peaks, fitted rates per op class, and the points both measured (B / A)."""
    from moesim.calibration.fit import fit_report

    pa, pb = _load(a), _load(b)
    fa = {(f.op, f.dtype): f for f in (pa.fit or fit_report(pa))}
    fb = {(f.op, f.dtype): f for f in (pb.fit or fit_report(pb))}

    def key(p):
        return (p.op, p.dtype, p.layout, p.gemm_pass, p.library, tuple(p.shape), p.groups, p.sms)

    points_b = {key(p): p for p in pb.points}
    shared = [(p, points_b[key(p)]) for p in pa.points if key(p) in points_b]
    classes = sorted(set(fa) | set(fb))
    if as_json:
        print(json.dumps({
            "a": pa.device, "b": pb.device, "peaks": {"a": pa.peaks, "b": pb.peaks},
            "classes": [{"op": op, "dtype": dt, "rate_a": fa[(op, dt)].rate if (op, dt) in fa else None,
                         "rate_b": fb[(op, dt)].rate if (op, dt) in fb else None} for op, dt in classes],
            "shared_points": [{"op": x.op, "layout": x.layout, "dtype": x.dtype, "shape": x.shape,
                               "groups": x.groups, "time_ratio_b_over_a": y.seconds() / x.seconds()}
                              for x, y in shared]}, indent=1))
        return
    for label, prof in (("A", pa), ("B", pb)):
        console.print(f"{label}: [bold]{prof.device}[/]\n   [dim]{prof.origin}[/]", highlight=False)
    peaks = Table("peak", "A", "B", "B / A", title="peaks", title_justify="left")
    for name in ("bf16_tflops", "fp8_tflops", "hbm_tbps", "sms"):
        peaks.add_row(name, f"{pa.peaks[name]:.4g}", f"{pb.peaks[name]:.4g}", f"{pb.peaks[name] / pa.peaks[name]:.3g}")
    console.print(peaks)
    table = Table("op class", "dtype", "rate A", "rate B", "B / A", "memory GB/s A", "memory GB/s B",
                  "overhead µs A", "overhead µs B", title="fitted rates (TFLOPS; elementwise GB/s)",
                  title_justify="left")
    for op, dt in classes:
        x, y = fa.get((op, dt)), fb.get((op, dt))
        table.add_row(op, dt, _num(x.rate) if x and x.rate else "–", _num(y.rate) if y and y.rate else "–",
                      f"{y.rate / x.rate:.3g}" if x and y and x.rate and y.rate else "–",
                      _num(x.memory_gbps) if x and x.memory_gbps else "–",
                      _num(y.memory_gbps) if y and y.memory_gbps else "–",
                      f"{x.overhead_us:.1f}" if x else "–", f"{y.overhead_us:.1f}" if y else "–")
    console.print(table)
    if shared:
        both = Table("op", "layout", "dtype", "shape", "time µs A", "time µs B", "B / A",
                     title=f"{len(shared)} points measured in both", title_justify="left")
        for x, y in shared:
            both.add_row(x.op, x.layout, x.dtype, "×".join(map(str, x.shape)), f"{x.seconds() * 1e6:.1f}",
                         f"{y.seconds() * 1e6:.1f}", f"{y.seconds() / x.seconds():.3g}")
        console.print(both)
    else:
        console.print("[dim]no kernel shape was measured in both profiles[/]")


@calibrate_app.command("project")
def project(profile: str = PROFILE_ARG,
            gpu: str = typer.Option(..., "--gpu", help="Target GPU from the catalogue (e.g. h100, b200, gb200)."),
            output: Optional[Path] = typer.Option(None, "-o", "--output", help="Also write the projected profile "
                                                  "JSON here."),
            force: bool = FORCE_OPT, as_json: bool = JSON_OPT) -> None:
    """Project a profile onto another GPU by its specifications: class by class, which scaling carries it (tensor
    peak for compute-bound points, HBM bandwidth for memory-bound ones)."""
    from moesim.calibration.fit import class_label
    from moesim.calibration.projection import project as project_profile, projection_rows
    from moesim.topologies.gpus import gpu_spec

    prof = _load(profile)
    try:
        target = gpu_spec(gpu.lower())
    except KeyError as err:
        fail(f"--gpu {gpu}: {err.args[0]}")
    if output is not None:
        _writable(output, force)
    rows = projection_rows(prof, target)
    projected = project_profile(prof, target, gpu.lower())
    if output is not None:
        projected.save(output, force=force)
    if as_json:
        print(json.dumps({"from": prof.device, "to": target["name"], "classes": rows,
                          "written": str(output) if output else None}, indent=1))
        return
    table = Table("class", "dtype", "points", "compute-bound", "memory-bound",
                  title=f"{prof.label} ({prof.device}) projected onto {target['name']}", title_justify="left")
    for column in table.columns:
        column.no_wrap = True
    for r in rows:
        compute = f"{r['compute_bound']} ×{r['tensor_peak_ratio']:.3f}" if r["compute_bound"] else "-"
        memory = f"{r['memory_bound']} ×{r['hbm_ratio']:.3f}" if r["memory_bound"] else "-"
        if r["dropped"]:
            compute = f"{r['dropped']} dropped (no FP8)"
        table.add_row(class_label(r["op"], r["layout"], r["pass"], r["library"]), r["dtype"], str(r["points"]),
                      compute, memory)
    console.print(table)
    console.print("points per class and the factor on their rate: compute-bound points by the ratio of tensor peaks "
                  "(per dtype), memory-bound ones by the ratio of HBM bandwidths (calibration/projection.py)",
                  highlight=False)
    console.print("collectives are not projected: they depend on the interconnect, not on these specifications",
                  highlight=False)
    if output is not None:
        console.print(f"wrote {output}: {projected.device}", highlight=False)


@calibrate_app.command("from-trace")
def from_trace(trace: str = typer.Argument(..., help="A PyTorch-profiler (Kineto) trace of MoE layers."),
               output: Path = typer.Option(..., "-o", "--output", help="Profile JSON to write."),
               traced_as: str = typer.Option("deepseek-v3-h800", "--traced-as", help="The model and layout the "
                                             "trace ran: a preset name or scenario file."),
               force: bool = FORCE_OPT, as_json: bool = JSON_OPT) -> None:
    """Fit a profile from a real trace's kernels (in-situ), with per-class and leave-one-out errors."""
    from moesim.calibration.from_trace import (TRACE_KERNELS, FromTraceError, check_profile, comm_streams_of,
                                        profile_from_trace)
    from moesim.calibration.host_trace import host_report
    from moesim.simulator.cli import INPUT_ERRORS
    from moesim.workloads.errors import one_line
    from moesim.workloads.loader import load_scenario
    from moesim.workloads.traces import load_trace

    _writable(output, force)
    try:
        scenario = (load_scenario(traced_as) if Path(traced_as).is_file() else load_scenario(preset=traced_as))
        loaded = load_trace(trace)
        if loaded.warning:
            print(f"warning: {one_line(loaded.warning)}", file=sys.stderr)
        gpu = scenario.cluster.gpu
        peaks = {"bf16_tflops": gpu.bf16_tflops, "fp8_tflops": gpu.fp8_tflops, "hbm_tbps": gpu.hbm_tbps,
                 "sms": float(loaded.sms or gpu.sms)}
        command = f"moesim calibrate from-trace {trace} --traced-as {traced_as} -o {output.name}"
        profile, samples, unknown = profile_from_trace(loaded, scenario, peaks, command)
    except (FromTraceError, *INPUT_ERRORS) as err:
        fail(str(err).splitlines()[0])
    if unknown:
        print(f"warning: {len(unknown)} unknown kernel names priced as 'add': {', '.join(unknown)}",
              file=sys.stderr)
    sms = gpu.sms - scenario.training.comm_sms
    checks = check_profile(profile, samples, gpu, TRACE_KERNELS, sms)
    host = host_report(loaded, comm_streams_of(loaded))
    host_note = None if host else (f"{Path(trace).name}: no CUDA runtime launch calls linked to kernels: host costs "
                                   "not measured (profile with ProfilerActivity.CPU as well as CUDA)")
    profile.save(output, force=True)
    if as_json:
        print(json.dumps({"output": str(output), "points": len(profile.points), "unknown_kernels": unknown,
                          "classes": [{"class": c.op_class, "trace_us": c.trace_us, "model_us": c.model_us,
                                       "error": c.error, "loo_errors": c.loo_errors} for c in checks],
                          "host": host.to_dict() if host else None, "host_note": host_note}, indent=1))
        return
    table = Table(title=f"{Path(trace).name}: per op class, one layer pair (µs; model: kernel time on {sms} SMs)",
                  title_justify="left")
    table.add_column("class", no_wrap=True)
    for col in ("trace", "model", "error", "held-out avg", "held-out worst"):
        table.add_column(col, justify="right")
    for c in checks:
        loo = [abs(e) for e in c.loo_errors]
        table.add_row(c.op_class, f"{c.trace_us:,.1f}", f"{c.model_us:,.1f}", f"{c.error:+.1%}",
                      f"{np.mean(loo):.1%}" if loo else "", f"{max(loo):.1%}" if loo else "")
    trace_total, model_total = sum(c.trace_us for c in checks), sum(c.model_us for c in checks)
    table.add_row("total", f"{trace_total:,.1f}", f"{model_total:,.1f}", f"{model_total / trace_total - 1:+.1%}")
    console.print(table)
    if host:
        _host_table(host, Path(trace).name)
    else:
        console.print(f"note: {host_note}", highlight=False)
    console.print(f"wrote {output}: {len(profile.points)} in-situ points, launch gap "
                  f"{profile.launch_gap.value_us:g} µs ({profile.launch_gap.source})"
                  f"{', host costs' if profile.host else ''}", highlight=False)


def _host_table(host, name: str) -> None:
    """The host side of a trace: launch cost per kernel by op class, host syncs, GPU time waiting on the host."""
    console.print(f"{name}, host side: {host.cpu_ops:,} CPU ops, {host.runtime_calls:,} CUDA runtime calls, "
                  f"{host.launches:,} kernel launches ({host.flow_links:,} linked to their kernels by flow events)",
                  highlight=False)
    table = Table(title="launch cost per kernel: host µs from the previous launch's return to its own (syncs "
                        "left out)", title_justify="left")
    for col, justify in (("op class", "left"), ("kernels", "right"), ("median µs", "right"), ("mean µs", "right")):
        table.add_column(col, justify=justify, no_wrap=True)
    for cls, values in sorted(host.launch_us.items()):
        table.add_row(cls, f"{len(values):,}", f"{np.median(values):,.1f}", f"{np.mean(values):,.1f}")
    table.add_row("all kernels (default)", f"{host.measured:,}", f"{np.median(host.all_launch_us):,.1f}",
                  f"{np.mean(host.all_launch_us):,.1f}")
    console.print(table)
    kinds: dict[str, int] = {}
    for s in host.syncs:
        kinds[s.name] = kinds.get(s.name, 0) + 1
    own = [s.own_us for s in host.syncs]
    console.print(f"host syncs: {len(host.syncs)} ({', '.join(f'{n}× {k}' for k, n in kinds.items()) or 'none'})"
                  + (f"; CPU blocked {sum(s.blocked_us for s in host.syncs):,.0f} µs; own cost after the GPU reached "
                     f"them: median {np.median(own):g} µs ({min(own):g}–{max(own):g})" if own else ""),
                  highlight=False)
    console.print(f"GPU waiting on the host: {host.host_wait_us:,.0f} µs ({host.host_wait_us / host.span_us:.2%} of "
                  f"the {host.span_us:,.0f} µs span; compute streams idle {host.compute_idle_us:,.0f} µs), "
                  f"{host.host_wait_in_sync_us:,.0f} µs of it while the host was in a sync", highlight=False)


@calibrate_app.command("validate")
def validate(profile: str = typer.Option("h800", "--profile", help="Profile(s) to validate: a name or file, or a "
                                         "comma list priced in order (h800-trace,h800)."),
             as_json: bool = JSON_OPT) -> None:
    """The cost model against published H800 kernel measurements (DeepGEMM table, DeepSeek's trace), the
    in-situ profile's classes against the trace, each layer pair held out, and extrapolation across shape ranges
    (each class's large shapes priced from its small ones and back, by its curve and by the shape model)."""
    from moesim.calibration.cost_model import CostModel
    from moesim.calibration.extrapolation import range_checks, shape_model_errors
    from moesim.calibration.validate import in_situ_checks, summary, validation_rows
    from moesim.topologies.gpus import gpu_spec
    from moesim.workloads.scenario import GpuSpec

    profiles = [_load(name.strip()) for name in profile.split(",") if name.strip()]
    rows, notes, origin = validation_rows(profiles, GpuSpec(**gpu_spec("h800")), REPO_ROOT)
    stats = summary(rows)
    checks = in_situ_checks(REPO_ROOT) or []
    loo = [abs(e) for c in checks for e in c.loo_errors]
    in_situ = {"classes": [{"class": c.op_class, "trace_us": c.trace_us, "model_us": c.model_us, "error": c.error,
                            "loo_errors": c.loo_errors} for c in checks],
               "loo_mean_abs_error": float(np.mean(loo)) if loo else None,
               "loo_max_abs_error": max(loo) if loo else None}
    memory = {prof.label: CostModel(prof, prof.device_spec()).memory_efficiency() for prof in profiles}
    ranges = [c for prof in profiles for c in range_checks(prof, memory[prof.label])]
    shape_errors = {(prof.label, k): v for prof in profiles
                    for k, v in shape_model_errors(prof, memory[prof.label]).items()}
    if as_json:
        extrapolation = [{"profile": c.profile, "class": c.klass, "direction": c.direction, "fitted_on": c.fitted_on,
                          "curve_errors": c.curve_errors, "shape_model_errors": c.shape_errors} for c in ranges]
        shape_model = [{"profile": p, "class": k, "errors": v} for (p, k), v in shape_errors.items()]
        print(json.dumps({"profile": profile, "trace_kernels_from": origin, "notes": notes, "in_situ": in_situ,
                          "extrapolation": extrapolation, "shape_model": shape_model,
                          "rows": [{"source": r.source, "kernel": r.kernel, "shape": r.shape, "sms": r.sms,
                                    "measured_us": r.measured_us, "model_us": r.model_us, "error": r.error}
                                   for r in rows],
                          "summary": {k: {"points": n, "mean_abs_error": m, "max_abs_error": x}
                                      for k, (n, m, x) in stats.items()}}, indent=1))
        return
    table = Table(title=f"profile {profile} vs published H800 kernel times (a point the profile holds "
                        "is predicted from the others)", title_justify="left")
    for col in ("reference", "kernel", "shape", "SMs", "measured µs", "model µs", "error"):
        table.add_column(col, justify="right" if col in ("SMs", "measured µs", "model µs", "error") else "left")
    for r in rows:
        colour = "red" if abs(r.error) > 0.25 else "default"
        table.add_row(r.source, r.kernel, r.shape, str(r.sms), f"{r.measured_us:.1f}", f"{r.model_us:.1f}",
                      f"[{colour}]{r.error:+.1%}[/]")
    console.print(table)
    for name, (n, mean, worst) in stats.items():
        console.print(f"{name:9s} {n:3d} kernels   average |error| {mean:.1%}   max |error| {worst:.1%}",
                      highlight=False)
    if checks:
        console.print(f"in-situ   {len(checks):3d} classes   held-out layer pairs: average |error| "
                      f"{in_situ['loo_mean_abs_error']:.1%}   max |error| {in_situ['loo_max_abs_error']:.1%}   "
                      f"(per class: moesim calibrate from-trace)", highlight=False)
    print_extrapolation(ranges, shape_errors)
    console.print(f"[dim]trace kernels from {origin}[/]", highlight=False)
    for note in notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)


def _errors(errors) -> str:
    values = np.abs(errors)
    return f"{values.mean():.1%} | {values.max():.1%}"


def print_extrapolation(ranges, shape_errors: dict) -> None:
    """Extrapolation across shape ranges per class, and the shape model's error on every measured point."""
    table = Table(title="extrapolation across shape ranges: a class's curve fitted on its small shapes prices its "
                        "large ones, and back; the shape model beside it (efficiency from the kept points)",
                  title_justify="left")
    for col in ("profile", "class", "priced", "from", "curve |error| mean | max", "shape model mean | max"):
        table.add_column(col, justify="left" if col in ("profile", "class", "priced") else "right")
    for c in ranges:
        table.add_row(c.profile, c.klass, f"{c.direction} ({len(c.curve_errors)})", str(c.fitted_on),
                      _errors(c.curve_errors), _errors(c.shape_errors))
    console.print(table)
    table = Table(title="the shape model on every measured point (efficiency from the class's fastest point)",
                  title_justify="left")
    for col in ("profile", "class", "points", "|error| mean | max"):
        table.add_column(col, justify="left" if col in ("profile", "class") else "right")
    for (prof, klass), errors in shape_errors.items():
        table.add_row(prof, klass, str(len(errors)), _errors(errors))
    console.print(table)


DEFAULT_TRACE = REPO_ROOT.parent / "shared" / "data" / "deepseek-profile-data" / "train.json"


@calibrate_app.command("deepep")
def deepep_rates(trace: Optional[Path] = typer.Argument(None, help="A profiler trace with DeepEP kernels "
                                                        "(default: DeepSeek's, ../shared/data, if present)."),
                 traced_as: str = typer.Option("deepseek-v3-h800", "--traced-as", help="The model and layout the "
                                               "trace ran: a preset name or scenario file."),
                 as_json: bool = JSON_OPT) -> None:
    """Link rates DeepEP's kernels reach: alone (its published table) and in training (a trace's kernels)."""
    from moesim.calibration.deepep import report
    from moesim.simulator.cli import INPUT_ERRORS

    if trace is None and DEFAULT_TRACE.is_file():
        trace = DEFAULT_TRACE
    try:
        out = report(trace, traced_as)
    except INPUT_ERRORS as err:
        fail(str(err).splitlines()[0])
    if as_json:
        print(json.dumps(out, indent=1))
        return
    table = Table(title="DeepEP's published table (docs/legacy.md, H800 + CX7) on the wires")
    for col in ("EP", "kernel", "published GB/s", "time µs", "IB GB/s", "NVLink GB/s", "role"):
        table.add_column(col, justify="left" if col in ("kernel", "role") else "right")
    for r in out["rows"]:
        table.add_row(str(r["ep"]), r["kind"], f"{r['published_gbps']:.0f}", f"{r['time_us']:,.0f}",
                      f"{r['ib_gbps']:.1f}", f"{r['nvlink_gbps']:.1f}",
                      "calibrates" if r["calibrates"] else "held out")
    console.print(table)
    iso = out["isolated"]
    console.print(f"alone (`moesim collective ep-*`): NIC {iso['nic_gbps']:.1f} GB/s = {iso['nic_efficiency']:.3f} "
                  f"of nominal (EP32, EP64 rows); NVLink {iso['nvlink_gbps']:.1f} GB/s = "
                  f"{iso['nvlink_efficiency']:.3f} (EP8 rows)", highlight=False)
    if "in_situ" in out:
        s = out["in_situ"]
        console.print(f"in training ({Path(s['trace']).name} as {s['traced_as']}): {s['kernels']} dispatch/combine "
                      f"kernels moved {s['ib_gb']:.2f} GB over IB in {s['time_ms']:.2f} ms = {s['nic_gbps']:.1f} "
                      f"GB/s = {s['nic_efficiency']:.3f} of nominal", highlight=False)
    d = out["defaults"]
    console.print(f"scenario defaults (cluster.network): ep_nic_efficiency {d['ep_nic_efficiency']} (in training), "
                  f"ep_nvlink_efficiency {d['ep_nvlink_efficiency']} (alone)", highlight=False)
