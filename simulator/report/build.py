"""From a result or a sweep to a :class:`~moesim.simulator.report.page.Page`, and to a file on disk."""

from __future__ import annotations

from pathlib import Path

from moesim.simulator.report.breakdown import exposed_comm_figure, memory_figure, step_breakdown_figure
from moesim.simulator.report.experts import expert_figure, expert_note
from moesim.simulator.report.heatmap import heatmap_figure
from moesim.simulator.report.page import Page, Section, render
from moesim.simulator.report.samples import samples_figure
from moesim.simulator.report.payload import ResultReport, is_result_dict, report_from_dict, report_from_result
from moesim.simulator.report.sweep import check_rows, fits, layout_text, parallel_figure, read_sweep, scatter_figure
from moesim.simulator.report.timeline import timeline_of
from moesim.simulator.report.traffic import expert_load, link_loads
from moesim.workloads.documents import read_document
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_input, write_atomic
from moesim.workloads.scenario import Scenario

MAX_JSON_BYTES = 512_000_000  # a full-mode timeline is large, but a result file beyond this is not one
TIMELINE_NOTE = ("One row per rank and stream. Drag across the chart to zoom into a time window (double-click "
                 "zooms out): zoomed out, each pixel column shows what fills most of it; zoomed in, every op is "
                 "a bar whose hover gives op, micro-batch, stage, start, duration and end. Numbers on chunks are "
                 "micro-batches. On compute rows, red marks exposed communication (the rank waits on its "
                 "communication stream) and grey the bubble (both streams idle).")


def headline(summary: dict) -> list[tuple[str, str]]:
    """The numbers a reader wants first, formatted as the CLI prints them."""
    peak = max((s["peak_memory_gb"] for s in summary["stages"]), default=0.0)
    fits = "" if summary.get("fits_in_memory", True) else "  (DOES NOT FIT)"
    rows = [("step time", f"{summary['step_time_s']:.3f} s")]
    optional = [
        ("tokens / s", "tokens_per_s", "{:,.0f}"),
        ("TFLOPS / GPU (causal)", "tflops_per_gpu_causal", "{:.1f}"),
        ("MFU vs BF16 peak (causal)", "mfu_causal", "{:.1%}"),
        ("GPU-hours per trillion tokens", "gpu_hours_per_trillion_tokens", "{:,.0f}"),
        ("training days", "training_days", "{:.1f}"),
    ]
    rows += [(name, fmt.format(summary[key])) for name, key, fmt in optional if key in summary]
    rows.append(("peak memory (max over stages)", f"{peak:.1f} of {summary['hbm_gb']:g} GB{fits}"))
    total_bubble = sum(s["bubble_s"] for s in summary["stages"])
    total_exposed = sum(s["exposed_comm_s"] for s in summary["stages"])
    span = summary["step_time_s"] * max(1, len(summary["stages"]))
    rows.append(("bubble | exposed comm (share of all ranks' time)",
                 f"{total_bubble / span:.1%} | {total_exposed / span:.1%}"))
    return rows


def result_sections(report: ResultReport) -> list[Section]:
    s = report.summary
    sections = []
    if report.timeline is not None:
        sections.append(Section("pipeline timeline", note=TIMELINE_NOTE, timeline=timeline_of(report.timeline)))
    else:
        sections.append(Section("pipeline timeline", None, "This result has no timeline: write it with "
                                "moesim simulate --json --timeline, or use moesim simulate --report."))
    sections.append(Section("step-time breakdown per stage", step_breakdown_figure(s["stages"], s["step_time_s"])))
    sections.append(Section("exposed communication vs compute", exposed_comm_figure(s["stages"]),
                            "Communication-stream time per rank, split into what overlapped compute and what "
                            "the rank waited for."))
    sections.append(Section("memory per stage vs HBM", memory_figure(s["stages"], s["hbm_gb"])))
    if s.get("samples"):
        sections.append(Section("step-time uncertainty", samples_figure(s["samples"], s["step_time_s"]),
                                "Each sample jitters every compute component by the kernel-time spread and "
                                "resamples the routing; same seed, same numbers."))
    if report.scenario is not None:
        loads = link_loads(report.scenario)
        sections.append(Section("link utilisation", heatmap_figure(loads.utilisation(s["step_time_s"])),
                                "Analytic network model: per GPU, NVLink and NIC bytes of one step over the "
                                "effective link bandwidth and the step time (per link class; per-link and "
                                "per-plane loads need the graph network model)."))
        experts = expert_load(report.scenario)
        if experts is not None:
            sections.append(Section("expert load", expert_figure(experts), expert_note(experts)))
    else:
        sections.append(Section("link utilisation and expert load", None, "This result carries no scenario: "
                                "write it with moesim simulate --json --timeline to get these charts."))
    return sections


def result_page(report: ResultReport) -> Page:
    s = report.summary
    sc = report.scenario
    subtitle = f"{s['scenario']} — {s['gpus']} GPUs, schedule {s['schedule']}, {s['micro_batches']} micro-batches"
    if sc is not None:
        par = sc.parallelism
        subtitle = (f"{sc.name}: {sc.model.name} on {s['gpus']} × {sc.cluster.gpu.name} — schedule {s['schedule']}, "
                    f"dp{par.dp} tp{par.tp} pp{par.pp} ep{par.ep} cp{par.cp}, {s['micro_batches']} micro-batches "
                    f"of {par.micro_batch_size}×{par.seq_len} tokens")
    notes = list(s.get("cost_model_notes", []))
    return Page(f"moesim report: {s['scenario']}", subtitle, headline(s), result_sections(report), notes)


def sweep_page(rows: list[dict], source: str = "sweep") -> Page:
    """The sweep page: the headline over the layouts that fit in memory only; the rest shown apart and marked."""
    check_rows(rows, source)
    fitting = [r for r in rows if fits(r)]
    head = [("layouts", f"{len(rows)}"), ("fit in memory", f"{len(fitting)}")]
    if fitting:
        best = min(fitting, key=lambda r: r["step_time_s"])
        head.append(("fastest step time that fits", f"{best['step_time_s']:.3f} s"))
        if "gpus" in best:
            head.append(("its GPUs", f"{best['gpus']}"))
        head.append(("its layout", layout_text(best).split("<br>")[0]))
    return Page(f"moesim sweep report: {source}", f"{len(rows)} simulated layouts", head, [
        Section("step time vs GPUs, Pareto front", scatter_figure(rows),
                "Hover a point for its layout; larger outlined points are Pareto-optimal."),
        Section("parallel coordinates", parallel_figure(rows)),
    ])


def load_report_source(path: str | Path) -> ResultReport | list[dict]:
    """Read a result JSON (``moesim simulate --json [--timeline]``) or a sweep (CSV, Parquet, JSON rows)."""
    path = Path(path)
    if path.suffix in (".csv", ".parquet"):
        return read_sweep(check_input(path, float("inf"), "report input"))
    try:
        data = read_document(path, "report input", MAX_JSON_BYTES, "json")
    except ScenarioError as err:  # not JSON at all: say what the report takes
        prefix = f"{path}: malformed JSON "
        if not str(err).startswith(prefix):
            raise
        raise ScenarioError(f"{path}: not JSON ({str(err).removeprefix(prefix)}); give a result JSON, a sweep .csv "
                            "or .parquet") from None
    if isinstance(data, list):
        check_rows(data, str(path))
        return data
    return report_from_dict(data, str(path))


def build_page(source, scenario: Scenario | None = None, name: str = "sweep") -> Page:
    """A page for any report source (see :func:`write_report`)."""
    if isinstance(source, ResultReport):
        return result_page(source)
    if isinstance(source, list):
        return sweep_page(source, name)
    if isinstance(source, dict) and is_result_dict(source):
        return result_page(report_from_dict(source))
    if hasattr(source, "to_dict") and hasattr(source, "stages"):
        return result_page(report_from_result(source, scenario))
    raise TypeError(f"cannot build a report from {type(source).__name__}")


def write_report(source, path: str | Path, scenario: Scenario | None = None, force: bool = False,
                 name: str | None = None) -> Path:
    """Write the self-contained HTML report of ``source`` to ``path``; refuses to overwrite unless ``force``.

    ``source``: a Result (pass its ``scenario`` for link and expert charts; simulate with
    ``keep_timeline=True`` for the Gantt chart), a :class:`ResultReport`, a result JSON dict, or sweep rows
    (list of flat dicts with at least ``step_time_s``; ``gpus`` and a cost column are used when present).
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    text = render(build_page(source, scenario, name or path.stem))
    return write_atomic(path, text, force=True)
