"""Run a sweep: expand the spec, keep the points an earlier run finished, run the rest, store every row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moesim.workloads.errors import ScenarioError

from moesim.simulator.sweep.executors import get_executor
from moesim.simulator.sweep.row import INVALID, METRIC_COLUMNS, OK, column_types, refused_unsimulated
from moesim.simulator.sweep.spec import Point, SweepSpec, expand
from moesim.simulator.sweep.store import ResultStore, check_output, journal_path


@dataclass
class SweepRun:
    """What a sweep did: how many points in all, kept from an earlier run, computed now, and by status."""

    points: int
    kept: int
    axes: list[str] = field(default_factory=list)
    computed: int = 0
    unsimulated: int = 0  # of those computed, refused for memory before simulating (their memory floor)
    status: dict[str, int] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def frame(self):
        """The rows as a pandas DataFrame, one per point in the spec's order, as the results file holds them."""
        from moesim.simulator.simulate import require_pandas
        return require_pandas().DataFrame(self.rows)


def run_sweep(spec: SweepSpec, base: dict, output: str | Path, executor: str = "local", workers: int | None = None,
              address: str | None = None, force: bool = False,
              on_start: Callable[[int, int], None] | None = None,
              on_row: Callable[[dict[str, Any]], None] | None = None) -> SweepRun:
    """Run every point of ``spec`` not already in ``output`` and write all rows there.

    ``on_start(total, kept)`` is called once the points to run are known and ``on_row(row)`` after each point
    is stored (the CLI drives its progress bar with them). With ``force`` earlier rows are discarded.
    """
    output = Path(output)
    check_output(output)
    runner = get_executor(executor)(workers=workers, address=address)
    points = expand(spec, base)
    columns = ["key", "status", "reason", *_axes(spec), *METRIC_COLUMNS]
    store = ResultStore(output, columns, column_types())
    store.lock()
    try:
        return _run(spec, base, points, store, runner, force, on_start, on_row)
    finally:
        store.unlock()


def _run(spec: SweepSpec, base: dict, points: list[Point], store: ResultStore, runner, force: bool,
         on_start, on_row) -> SweepRun:
    output = store.path
    if force:
        output.unlink(missing_ok=True)
        journal_path(output).unlink(missing_ok=True)
    earlier = store.load()
    wanted = {p.key for p in points}
    foreign = [k for k in earlier if k not in wanted]
    if foreign:
        raise ScenarioError(f"-o {output} holds {len(foreign)} point(s) that are not in this spec (another sweep, "
                            "or the spec changed); pass --force to overwrite it or choose another -o")
    todo: list[Point] = [p for p in points if p.key not in earlier]
    # Rows come out in the spec's order, whatever order the workers finish them in.
    order = {p.key: i for i, p in enumerate(points)}
    run = SweepRun(points=len(points), kept=len(points) - len(todo), axes=_axes(spec))
    if on_start:
        on_start(len(points), run.kept)
    try:
        for row in runner.run(base, spec.profile, todo):
            store.add(row)
            run.computed += 1
            run.unsimulated += refused_unsimulated(row)
            if on_row:
                on_row(row)
    finally:
        store.rows = dict(sorted(store.rows.items(), key=lambda kv: order[kv[0]]))
        if run.computed + run.kept == len(points):
            store.finish()
        else:  # interrupted: the results file gets what is done, the journal stays for the resume
            store.flush()
            store.close()
    run.rows = list(store.rows.values())
    for row in run.rows:
        run.status[row["status"]] = run.status.get(row["status"], 0) + 1
    return run


def _axes(spec: SweepSpec) -> list[str]:
    return list(dict.fromkeys([*(k for p in spec.points for k in p), *spec.grid]))


__all__ = ["INVALID", "OK", "SweepRun", "run_sweep"]
