"""``moesim validate``: the presets against published end-to-end runs — predicted, published, signed error, then
average and worst. A report, never a target: it exits 0 whatever the error (2 only for bad input)."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.table import Table

from moesim.simulator.cli import INPUT_ERRORS, JSON_OPT, PROFILE_OPT, app, console, fail
from moesim.simulator.commands.progress import QUIET_OPT, VERBOSE_OPT, ItemProgress, check_verbosity


@app.command()
def validate(runs_file: Optional[str] = typer.Argument(None, help="A YAML table of published runs (the form of "
                                                                  "workloads/data/published_runs.yaml). Default: "
                                                                  "the bundled table."),
             only: Optional[list[str]] = typer.Option(None, "--only", help="Validate only this run (repeatable)."),
             profile: Optional[str] = PROFILE_OPT, as_json: bool = JSON_OPT, quiet: bool = QUIET_OPT,
             verbose: bool = VERBOSE_OPT) -> None:
    """Compare the presets with published end-to-end runs: simulated vs published, signed error, average and worst."""
    from moesim.calibration.profile import load_profiles
    from moesim.simulator.validation import load_runs, summary, validate_runs

    check_verbosity(quiet, verbose)
    try:
        runs = load_runs(runs_file)
        if only:
            unknown = sorted(set(only) - {r.name for r in runs})
            if unknown:
                fail(f"--only {', '.join(unknown)}: no such run; known: {', '.join(r.name for r in runs)}")
            runs = [r for r in runs if r.name in only]
        prof = load_profiles(profile) if profile else None  # None: each run takes its GPU's built-in profiles
        with ItemProgress("published runs", len(runs), quiet or as_json, verbose) as bar:
            comparisons = validate_runs(runs, prof, progress=bar.advance)
    except INPUT_ERRORS as err:
        fail(str(err))
    except (OSError, ValueError, KeyError) as err:  # an unreadable or invalid --profile file
        fail(f"--profile {profile}: {err}".splitlines()[0])
    totals = summary(comparisons)
    if as_json:
        print(json.dumps({"runs": [c.to_dict() for c in comparisons], "summary": totals,
                          "profile": profile or "built-in profile of each run's GPU"}, indent=1))
        return
    print_comparisons(comparisons, totals, runs_file)


def print_comparisons(comparisons, totals: dict, runs_file: Optional[str]) -> None:
    from moesim.simulator.validation import METRICS, OFF_ABS_ERROR, off

    console.print(f"[bold]moesim validate[/]: {totals['runs']} published runs "
                  f"({runs_file or 'workloads/data/published_runs.yaml'}); a report, not a target: nothing is "
                  f"fitted to these figures", highlight=False)
    table = Table()
    for col, justify in (("run", "left"), ("stack", "left"), ("GPUs", "right"), ("metric", "left"),
                         ("published", "right"), ("moesim", "right"), ("error", "right")):
        table.add_column(col, justify=justify)
    for c in comparisons:
        label, fmt = METRICS[c.metric]
        table.add_row(c.name, c.stack, f"{c.gpus:,}", label, fmt.format(c.published),
                      fmt.format(c.simulated) + ("" if c.fits_in_memory else " [red](over HBM)[/]"),
                      f"{c.error:+.1%}")
    console.print(table)
    console.print(f"average |error| {totals['mean_abs_error']:.1%}, worst {totals['worst_abs_error']:.1%} "
                  f"({totals['worst_run']}); {totals['off']} of {totals['runs']} off by more than "
                  f"{OFF_ABS_ERROR:.0%}", highlight=False)
    for c in off(comparisons):
        # A known gap says why; otherwise the cause is not known and the run's assumptions are what remain.
        why = c.known_gap or "cause not known" + (f"; assumed: {c.note}" if c.note else "")
        console.print(f"[yellow]off[/] {c.name} {c.error:+.1%}: {why}", highlight=False)
    for c in comparisons:
        console.print(f"[dim]{c.name}: {c.source}" + (f" — {c.note}" if c.note else "") + "[/]", highlight=False)
