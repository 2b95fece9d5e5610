"""Validation against published end-to-end runs: simulate each run a preset models and compare one result field
with the published figure (as Calculon's ``llm-validation`` does: per-run error, then average and worst).

The table of runs is data (``workloads/data/published_runs.yaml``, or a file of the same form). It is a report,
never a target: no constant in moesim is fitted to these figures; only kernel- and link-level measurements move
the numbers (DESIGN.md, Calibration).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from moesim.workloads.documents import parse_document, read_document
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import format_validation_error, load_scenario

MAX_RUNS_BYTES = 1_000_000
# Result fields a published figure can be compared with: label and display format.
METRICS = {
    "step_time_s": ("step time (s)", "{:,.3f}"),
    "tokens_per_s": ("tokens / s", "{:,.0f}"),
    "tokens_per_s_per_gpu": ("tokens / s / GPU", "{:,.0f}"),
    "tflops_per_gpu_causal": ("TFLOPS / GPU (causal)", "{:,.1f}"),
    "tflops_per_gpu_noncausal": ("TFLOPS / GPU (non-causal)", "{:,.1f}"),
    "mfu_causal": ("MFU (causal)", "{:.1%}"),
    "mfu_noncausal": ("MFU (non-causal)", "{:.1%}"),
    "gpu_hours_per_trillion_tokens": ("GPU-hours / 10¹² tokens", "{:,.0f}"),
    "training_days": ("training days", "{:,.1f}"),
}
# Metrics derived from result fields (the frameworks' tables publish per-GPU throughput).
DERIVED = {"tokens_per_s_per_gpu": lambda result: result.tokens_per_s / result.gpus}
# A run whose |error| exceeds this is listed under the table with what is known to explain it.
OFF_ABS_ERROR = 0.10


def metric_value(result, metric: str) -> float:
    """The value of ``metric`` (a result field or a :data:`DERIVED` one) in a simulate result."""
    return float(DERIVED[metric](result) if metric in DERIVED else getattr(result, metric))


class PublishedRun(BaseModel):
    """One published figure: the run (a preset plus ``--set`` overrides), the result field, value and source."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    preset: str
    set: list[str] = []
    metric: str
    published: float = Field(gt=0)
    source: str = Field(min_length=1)
    stack: str = ""  # the software that ran it (HAI-LLM, Meta's, NeMo/Megatron-Core, TorchTitan)
    note: str = ""
    # What moesim is known to miss for this run (a model feature or an assumption), said where it is known.
    known_gap: str = ""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"{value!r} is not a validate metric; use one of {', '.join(METRICS)}")
        return value


class PublishedRuns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: list[PublishedRun] = Field(min_length=1)


def default_runs_text() -> str:
    return resources.files("moesim.workloads").joinpath("data", "published_runs.yaml").read_text()


def load_runs(path: str | Path | None = None) -> list[PublishedRun]:
    """The runs of ``path`` (YAML), by default the bundled table; one-line :class:`ScenarioError` on bad input."""
    where = str(path) if path is not None else "published_runs.yaml"
    data = (parse_document(default_runs_text(), where, "yaml") if path is None
            else read_document(path, "runs file", MAX_RUNS_BYTES, "yaml"))
    try:
        runs = PublishedRuns.model_validate(data).runs
    except ValidationError as err:
        raise ScenarioError(f"{where}: {format_validation_error(err)}") from None
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ScenarioError(f"{where}: run names must be unique; {', '.join(twice)} appears more than once")
    return runs


@dataclass
class Comparison:
    """A run's simulated value beside the published one; ``error`` = simulated / published − 1 (signed)."""

    name: str
    description: str
    preset: str
    set: list[str]
    metric: str
    published: float
    simulated: float
    error: float
    fits_in_memory: bool
    step_time_s: float
    gpus: int
    source: str
    note: str
    stack: str = ""
    known_gap: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def compare(run: PublishedRun, profile=None) -> Comparison:
    """Simulate ``run`` (with ``profile``, by default the built-in one of its GPU) and compare its metric. A run
    whose layout moesim finds over HBM is still simulated, and says so."""
    from moesim.simulator.schedules import ScheduleError
    from moesim.simulator.simulate import simulate

    try:
        scenario = load_scenario(preset=run.preset, overrides=run.set)
        result = simulate(scenario, profile, check_memory=False)
    except (ScenarioError, ScheduleError) as err:
        raise ScenarioError(f"run {run.name}: {err}") from None
    value = metric_value(result, run.metric)
    return Comparison(run.name, run.description, run.preset, list(run.set), run.metric, run.published, value,
                      value / run.published - 1.0, result.fits_in_memory, result.step_time_s, result.gpus,
                      run.source, run.note, run.stack, run.known_gap)


def validate_runs(runs: list[PublishedRun], profile=None,
                  progress: Callable[[str], None] | None = None) -> list[Comparison]:
    """Every run compared, in order (``progress(name)`` after each)."""
    out = []
    for run in runs:
        out.append(compare(run, profile))
        if progress:
            progress(run.name)
    return out


def off(comparisons: list[Comparison], limit: float = OFF_ABS_ERROR) -> list[Comparison]:
    """The runs still off: |error| above ``limit``, in table order."""
    return [c for c in comparisons if abs(c.error) > limit]


def summary(comparisons: list[Comparison]) -> dict:
    """Mean and worst absolute relative error over the runs (the worst with its run's name and signed error),
    and how many runs are off by more than :data:`OFF_ABS_ERROR`."""
    worst = max(comparisons, key=lambda c: abs(c.error))
    return {"runs": len(comparisons), "off": len(off(comparisons)), "off_abs_error": OFF_ABS_ERROR,
            "mean_abs_error": sum(abs(c.error) for c in comparisons) / len(comparisons),
            "worst_abs_error": abs(worst.error), "worst_run": worst.name, "worst_error": worst.error}
