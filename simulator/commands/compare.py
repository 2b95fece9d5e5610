"""``moesim compare A B [C…]``: two or more scenarios or saved results side by side, the first as baseline.

Each source is a scenario file (YAML/JSON), a preset name, or a saved result (``moesim simulate --json``;
with ``--timeline`` its timeline joins the page). ``--set key=value`` changes every simulated source;
``--set 2:key=value`` only the second. Prints headline metrics with deltas and per-stage deltas; ``--report``
writes a page with the timelines on one time axis and breakdown, memory and network charts overlaid.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from moesim.simulator.cli import INPUT_ERRORS, JSON_OPT, PROFILE_OPT, app, console, fail
from moesim.simulator.commands.progress import QUIET_OPT, VERBOSE_OPT, ItemProgress, check_verbosity

INDEXED = re.compile(r"^(\d+):(.+)$")


def split_overrides(items: list[str], sources: int) -> list[list[str]]:
    """``--set`` items per source: ``key=value`` goes to all, ``N:key=value`` to source N (1-based)."""
    per = [[] for _ in range(sources)]
    for item in items:
        match = INDEXED.match(item)
        if match is None:
            for overrides in per:
                overrides.append(item)
            continue
        index = int(match.group(1))
        if not 1 <= index <= sources:
            fail(f"--set {item}: source {index} does not exist (there are {sources}); number them from 1")
        per[index - 1].append(match.group(2))
    return per


def load_source(source: str, overrides: list[str], profile, timeline: bool):
    """(name, ResultReport) of one compare source; raises ScenarioError on bad input."""
    from moesim.simulator.report.build import MAX_JSON_BYTES
    from moesim.simulator.report.payload import is_result_dict, report_from_dict, report_from_result
    from moesim.simulator.simulate import simulate
    from moesim.workloads.documents import read_document
    from moesim.workloads.errors import ScenarioError
    from moesim.workloads.loader import load_scenario
    from moesim.workloads.presets import preset_names

    path = Path(source)
    suffix = "".join(f" {o}" for o in overrides)
    if path.suffix == ".json" and path.exists():
        data = read_document(path, "compare source", MAX_JSON_BYTES, "json")
        if is_result_dict(data):
            if overrides:
                raise ScenarioError(f"{source}: a saved result cannot take --set ({overrides[0]}); give its "
                                    "scenario file or preset instead")
            return path.stem, report_from_dict(data, source)
        scenario = load_scenario(path, None, overrides)
    elif path.exists():
        scenario = load_scenario(path, None, overrides)
    elif source in preset_names():
        scenario = load_scenario(None, source, overrides)
    else:
        raise ScenarioError(f"{source}: neither a file nor a preset (presets: {', '.join(preset_names())})")
    result = simulate(scenario, profile, keep_timeline=timeline)
    return (path.stem if path.exists() else source) + suffix, report_from_result(result, scenario)


def unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def signed(value: float, digits: int) -> str:
    text = f"{value:+.{digits}f}"
    return "0" if float(text) == 0 else text


def print_comparison(names: list[str], summaries: list[dict]) -> None:
    from moesim.simulator.report.compare import STAGE_FIELDS, delta_text, headline_rows, stage_deltas, verdict

    table = Table(title="headline metrics (in brackets: change against the first)", title_justify="left")
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right")
    for metric, values in headline_rows(summaries):
        cells = [metric.fmt.format(values[0]) + metric.unit]
        for v in values[1:]:
            colour = {"better": "green", "worse": "red"}.get(verdict(metric, values[0], v), "default")
            cells.append(f"{metric.fmt.format(v)}{metric.unit} [{colour}]({delta_text(metric, values[0], v)})[/]")
        table.add_row(metric.name, *cells)
    console.print(table)
    for name, summary in zip(names[1:], summaries[1:]):
        deltas = stage_deltas(summaries[0], summary)
        if deltas is None:
            console.print(f"per-stage deltas of {name}: not comparable, {len(summary['stages'])} pipeline ranks "
                          f"against {len(summaries[0]['stages'])}", highlight=False)
            continue
        stages = Table(title=f"per stage: {name} − {names[0]} (seconds per step; memory in GB)",
                       title_justify="left")
        stages.add_column("stage", justify="right")
        for _, label in STAGE_FIELDS:
            stages.add_column(label, justify="right")
        for i, d in enumerate(deltas):
            stages.add_row(str(i), *(signed(d[f], 3 if f.endswith("_s") else 1) for f, _ in STAGE_FIELDS))
        console.print(stages)


def source_notes(rep) -> str:
    """Where a source's EP traffic runs (inside one NVLink domain or across domains) and which compute classes were
    projected from another GPU's measurements rather than measured on its own."""
    parts = []
    if rep.scenario is not None and rep.scenario.model.moe is not None:
        ep, gpn = rep.scenario.parallelism.ep, rep.scenario.cluster.node.gpus_per_node
        domains = -(-ep // gpn)
        parts.append(f"EP{ep} inside one NVLink domain (no NIC bytes)" if domains == 1 else
                     f"EP{ep} across {domains} NVLink domains of {gpn} (dispatch and combine cross the NICs once "
                     "per remote domain, then NVLink)")
    projected = sorted(k for k, v in rep.summary.get("cost_model_sources", {}).items() if "; projected ×" in v)
    parts.append(f"{len(projected)} compute classes projected, not measured: {', '.join(projected)}" if projected
                 else "every compute class measured on this GPU design")
    return "; ".join(parts)


@app.command()
def compare(sources: list[str] = typer.Argument(..., help="Two or more: scenario files, preset names, or saved "
                                                          "results (moesim simulate --json [--timeline])."),
            set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Override a field of every "
                                                     "simulated source (key=value) or of source N (N:key=value)."),
            as_json: bool = JSON_OPT, profile: Optional[str] = PROFILE_OPT,
            report: Optional[str] = typer.Option(None, "--report", "-o", help="Also write the compare page "
                                                 "(HTML) to this file."),
            force: bool = typer.Option(False, "--force", help="Overwrite an existing --report file."),
            quiet: bool = QUIET_OPT, verbose: bool = VERBOSE_OPT) -> None:
    """Compare scenarios or results: headline metrics and per-stage deltas against the first; --report draws them."""
    from moesim.calibration.profile import load_profiles
    from moesim.simulator.report.compare import compare_page, metric_values, stage_deltas
    from moesim.simulator.report.page import render
    from moesim.workloads.files import check_target, write_atomic

    check_verbosity(quiet, verbose)
    if len(sources) < 2:
        fail("compare needs at least two sources (scenario files, presets or saved results)")
    if report:
        if Path(report).suffix.lower() not in (".html", ".htm"):
            fail(f"--report {report}: give an .html file name")
        try:
            check_target(report, force, "--report")
        except INPUT_ERRORS as err:
            fail(str(err))
    per_source = split_overrides(set_ or [], len(sources))
    try:
        prof = load_profiles(profile) if profile else None  # None: each source's GPU picks its profiles
    except (OSError, ValueError, KeyError) as err:
        fail(f"--profile {profile}: {err}".splitlines()[0])
    loaded = []
    try:
        with ItemProgress("sources", len(sources), quiet or as_json, verbose) as bar:
            for source, overrides in zip(sources, per_source):
                loaded.append(load_source(source, overrides, prof, timeline=bool(report)))
                bar.advance(source)
    except INPUT_ERRORS as err:
        fail(str(err))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        fail(f"{source}: not JSON ({str(err).splitlines()[0]})")
    names = unique([name for name, _ in loaded])
    reports = [rep for _, rep in loaded]
    summaries = [r.summary for r in reports]
    if report:
        try:
            write_atomic(report, render(compare_page(names, reports)), force=True, flag="--report")
        except INPUT_ERRORS as err:
            fail(str(err))
    if as_json:
        print(json.dumps({"names": names, "metrics": [metric_values(s) for s in summaries],
                          "stage_deltas": [stage_deltas(summaries[0], s) for s in summaries[1:]],
                          "results": summaries}, indent=1))
        return
    print_comparison(names, summaries)
    for name, rep in zip(names, reports):
        console.print(f"[bold]{name}[/]: {source_notes(rep)}", highlight=False)
    if report and not quiet:
        console.print(f"wrote {report}", highlight=False)
