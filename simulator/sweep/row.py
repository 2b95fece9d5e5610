"""One sweep point: build its scenario, simulate it (representative-rank mode) and flatten the Result into a row.

A row is a flat dict of plain values (empty cells are left out): the point's key and status, its value of every
axis of the sweep (those it does not set: the base scenario's, as validated, so a derived ``cluster.gpus`` is
filled too), and every metric of :class:`moesim.simulator.simulate.Result`. Per-stage figures are reduced to their maximum over pipeline ranks (the
rank that bounds the step or the memory), named ``max_<field>``. An invalid point (a layout that does not
divide, a schedule that cannot run it, a layout over HBM) is a row with ``status = "invalid"``, the one-line
``reason`` (for memory: by how much it missed) and no metrics (not even ``sim_wall_s``), so a column's minimum is
always a layout that ran. Layouts whose memory floor is over HBM are refused
without simulating them; ``run.check_memory=false`` simulates them and keeps their metrics (``fits_in_memory``).
"""

from __future__ import annotations

import copy
from typing import Any

from moesim.calibration.profile import Profile
from moesim.simulator.memory import AT_LEAST, MemoryBreakdown, MemoryLayoutError, check_fits, memory_floor
from moesim.simulator.schedules import ScheduleError
from moesim.simulator.simulate import STAGE_COLUMNS, Result, simulate
from moesim.simulator.sweep.spec import Point, apply_value
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import validate

OK, INVALID, ERROR = "ok", "invalid", "error"
MEMORY_REASON = "memory: "  # how check_fits's message begins
RESULT_METRICS = (
    "scenario", "schedule", "gpus", "step_time_s", "tokens_per_s", "tflops_per_gpu_causal",
    "tflops_per_gpu_noncausal", "mfu_causal", "mfu_noncausal", "gpu_hours_per_trillion_tokens", "training_days",
    "training_days_with_failures",
    "micro_batches", "tokens_per_step", "hbm_gb", "fits_in_memory",
)
# Every column a finished point has, in the order files list them (axis columns go between key and metrics).
METRIC_COLUMNS = (
    RESULT_METRICS + ("pipeline_ranks",) + tuple(f"max_{name}" for name in STAGE_COLUMNS)
    + ("gpu_hours", "parameters_total", "parameters_activated", "parameters_mtp", "cost_model_notes", "events",
       "sim_wall_s")
)
VOLATILE_COLUMNS = ("sim_wall_s",)  # differs run to run; everything else is deterministic
# The type of each metric column, so that a file gives a column one type even where every cell is empty
# (Parquet declares it; CSV readers infer it from the cells that are filled).
TEXT_COLUMNS = ("key", "status", "reason", "scenario", "schedule", "cost_model_notes")
INT_COLUMNS = ("gpus", "micro_batches", "tokens_per_step", "pipeline_ranks", "max_peak_inflight", "max_gpu", "events")
BOOL_COLUMNS = ("fits_in_memory",)
NO_NOTES = "none"  # cost_model_notes of a run priced without caveats: text, never an empty cell


def column_types() -> dict[str, str]:
    """Every fixed column's type: "text", "int", "bool" or "float" (axis columns take their values' type)."""
    kinds = {**{c: "int" for c in INT_COLUMNS}, **{c: "bool" for c in BOOL_COLUMNS},
             **{c: "text" for c in TEXT_COLUMNS}}
    return {c: kinds.get(c, "float") for c in ("key", "status", "reason", *METRIC_COLUMNS)}


def run_point(base: dict, point: Point, profile: Profile) -> dict[str, Any]:
    """Simulate one point; never raises for bad input (the row says why), only for bugs in the simulator.

    With ``run.check_memory`` (the default) a point whose memory floor (:func:`memory_floor`) is over HBM is
    refused before it is simulated; one that passes the floor but is over HBM once simulated is refused after.
    Invalid rows carry no metrics, only their reason."""
    row: dict[str, Any] = {"key": point.key, "status": OK}
    row.update({axis: column_value(value) for axis, value in point.overrides.items()})
    data = copy.deepcopy(base)
    scenario = None
    try:
        for key, value in point.overrides.items():
            apply_value(data, key, value)
        scenario = validate(data)
        if scenario.run.check_memory:
            check_fits(memory_floor(scenario), scenario.cluster.gpu.hbm_gb, at_least=True)
        result = simulate(scenario, profile, check_memory=False)
        if scenario.run.check_memory and not result.fits_in_memory:
            raise MemoryLayoutError(memory_reason(result))
    except (ScenarioError, ScheduleError) as err:
        row.update(status=INVALID, reason=str(err))
        row.update(other_axes(point.also, scenario, data))
        return compact(row)
    row.update(other_axes(point.also, scenario, data))
    row.update(result_columns(result))
    return compact(row)


def other_axes(axes: tuple[str, ...], scenario, data: dict) -> dict[str, Any]:
    """The values of the sweep's axes this point does not set: the validated scenario's where it validated (derived
    fields included), else the scenario file's as given (a field it leaves to be derived stays empty)."""
    found = {}
    source = scenario.model_dump(mode="json") if scenario is not None and axes else data
    for axis in axes:
        value = source
        for part in axis.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        found[axis] = column_value(value)
    return found


def over_memory(row: dict[str, Any]) -> bool:
    """Whether a row was refused because the layout does not fit in HBM (before or after simulating it)."""
    return row["status"] == INVALID and row.get("reason", "").startswith(MEMORY_REASON)


def refused_unsimulated(row: dict[str, Any]) -> bool:
    """Whether a row was refused from its memory floor, without simulating it."""
    return over_memory(row) and AT_LEAST in row["reason"]


def memory_reason(result: Result) -> str:
    """The one-line memory error ``moesim simulate`` would have given for this result."""
    try:
        check_fits([MemoryBreakdown(s.weights_gb, s.gradients_gb, s.optimizer_states_gb, s.activations_gb)
                    for s in result.stages], result.hbm_gb)
    except MemoryLayoutError as err:
        return str(err)
    return ""


def error_row(point: Point, err: BaseException) -> dict[str, Any]:
    """The row of a point whose simulation crashed: kept, with the exception as its reason."""
    row = {"key": point.key, "status": ERROR, "reason": f"{type(err).__name__}: {err}".splitlines()[0]}
    row.update({axis: column_value(value) for axis, value in point.overrides.items()})
    return compact(row)


def compact(row: dict[str, Any]) -> dict[str, Any]:
    """Drop empty cells (None, ""): files cannot tell them from absent ones, so rows never hold them."""
    return {k: v for k, v in row.items() if v is not None and v != ""}


def result_columns(result: Result) -> dict[str, Any]:
    out = {name: getattr(result, name) for name in RESULT_METRICS}
    out["pipeline_ranks"] = len(result.stages)
    for name in STAGE_COLUMNS:
        out[f"max_{name}"] = max(getattr(s, name) for s in result.stages)
    out["gpu_hours"] = result.gpus * result.training_days * 24.0
    out["parameters_total"] = result.parameters["total"]
    out["parameters_activated"] = result.parameters["activated"]
    out["parameters_mtp"] = result.parameters["mtp"]
    out["cost_model_notes"] = "; ".join(result.cost_model_notes) or NO_NOTES
    out["events"] = result.events
    out["sim_wall_s"] = result.sim_wall_s
    return out


def column_value(value: Any) -> Any:
    """An axis value as a table cell: scalars as they are, lists and mappings as compact JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    import json
    return json.dumps(value, separators=(",", ":"))
