"""What a result report is drawn from, and how it travels as JSON.

``moesim simulate --json`` prints :meth:`Result.to_dict`. With ``--timeline`` the same object also carries
``timeline`` (the engine's records) and ``scenario_spec`` (the validated scenario), which is what the report
needs to draw the Gantt chart, link loads and expert loads. :class:`ResultReport` is that bundle in memory,
built from a live :class:`~moesim.simulator.simulate.Result` or read back from the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from moesim.simulator.engine import Timeline
from moesim.workloads.errors import ScenarioError
from moesim.workloads.scenario import Scenario

TIMELINE_FIELDS = ("rank", "stream", "start_s", "end_s", "label", "phase", "micro_batch", "stage")
RESULT_KEYS = ("step_time_s", "stages", "gpus", "hbm_gb")


@dataclass
class ResultReport:
    """One simulated step: ``summary`` is ``Result.to_dict()``; timeline and scenario are optional extras."""

    summary: dict
    timeline: Timeline | None = None
    scenario: Scenario | None = None


def timeline_to_dict(timeline: Timeline) -> dict:
    """JSON form of a timeline: records as rows in :data:`TIMELINE_FIELDS` order, times in seconds."""
    return {"ranks": timeline.ranks, "makespan_s": timeline.makespan_s, "events": timeline.events,
            "fields": list(TIMELINE_FIELDS), "records": [list(r) for r in timeline.records]}


def timeline_from_dict(data: dict, source: str) -> Timeline:
    try:
        if list(data["fields"]) != list(TIMELINE_FIELDS):
            raise ScenarioError(f"{source}: timeline.fields must be {list(TIMELINE_FIELDS)}")
        records = [tuple(r) for r in data["records"]]
        if any(len(r) != len(TIMELINE_FIELDS) for r in records):
            raise ScenarioError(f"{source}: every timeline record needs {len(TIMELINE_FIELDS)} fields")
        return Timeline(int(data["ranks"]), records, float(data["makespan_s"]), int(data.get("events", 0)))
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, ScenarioError):
            raise
        raise ScenarioError(f"{source}: malformed timeline ({err}); re-run moesim simulate --json --timeline")


def result_payload(result, scenario: Scenario | None = None) -> dict:
    """``result.to_dict()`` plus the timeline (when the result kept one) and the scenario, JSON-ready."""
    data = result.to_dict()
    if result.timeline is not None:
        data["timeline"] = timeline_to_dict(result.timeline)
    if scenario is not None:
        data["scenario_spec"] = scenario.model_dump(mode="json")
    return data


def is_result_dict(data) -> bool:
    return isinstance(data, dict) and all(k in data for k in RESULT_KEYS)


def report_from_dict(data: dict, source: str = "result") -> ResultReport:
    """Rebuild a :class:`ResultReport` from :func:`result_payload` output (or plain ``--json`` output)."""
    if not is_result_dict(data):
        missing = [k for k in RESULT_KEYS if k not in data]
        raise ScenarioError(f"{source}: not a moesim result (missing {', '.join(missing)}); "
                            "write one with moesim simulate --json --timeline")
    summary = {k: v for k, v in data.items() if k not in ("timeline", "scenario_spec")}
    timeline = timeline_from_dict(data["timeline"], source) if data.get("timeline") else None
    scenario = None
    if data.get("scenario_spec"):
        try:
            scenario = Scenario.model_validate(data["scenario_spec"], strict=False)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ScenarioError(f"{source}: scenario_spec.{where}: {first['msg']}") from None
    return ResultReport(summary, timeline, scenario)


def report_from_result(result, scenario: Scenario | None = None) -> ResultReport:
    """From a live Result (simulate with ``keep_timeline=True`` to get the Gantt chart)."""
    return ResultReport(result.to_dict(), result.timeline, scenario)
