"""``moesim report``: a self-contained interactive HTML page from a result JSON or a sweep file."""

from __future__ import annotations

from pathlib import Path

import typer

from moesim.simulator.cli import INPUT_ERRORS, app, console, fail
from moesim.workloads.files import check_target


@app.command()
def report(source: str = typer.Argument(..., help="RESULT.json (moesim simulate --json --timeline), or a "
                                                  "sweep .csv / .parquet / JSON list of rows."),
           output: Path = typer.Option(..., "--output", "-o", help="HTML file to write."),
           force: bool = typer.Option(False, "--force", help="Overwrite OUTPUT if it exists.")) -> None:
    """Write one offline HTML page of interactive charts: timeline, breakdowns, memory, links, experts, sweeps."""
    from moesim.simulator.report import load_report_source, write_report

    if output.suffix.lower() not in (".html", ".htm"):
        fail(f"--output {output}: give an .html file name")
    try:
        check_target(output, force, "--output")
        data = load_report_source(source)
        path = write_report(data, output, force=force, name=Path(source).stem)
    except INPUT_ERRORS as err:
        fail(str(err))
    except OSError as err:
        fail(f"--output {output}: {err.strerror or err}")
    kind = f"sweep of {len(data)} layouts" if isinstance(data, list) else "result"
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {kind}; opens offline)", highlight=False)
