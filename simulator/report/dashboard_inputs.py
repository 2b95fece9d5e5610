"""The dashboard's callback inputs, checked: what a browser sends is input like a command line's options.

Dash callbacks take whatever JSON a POST to ``/_dash-update-component`` carries, not only what the page's
controls can produce: a preset name that is a path, a bandwidth that is text, a baseline forged with missing or
non-finite numbers. Each check here either returns the value in the type the simulator expects or raises a
ScenarioError of one line naming the control and the fix, which the page shows in its error line (never an
HTTP 500).
"""

from __future__ import annotations

import math
from typing import Any

from moesim.simulator.report.breakdown import STEP_PARTS
from moesim.simulator.report.compare import METRICS, STAGE_FIELDS
from moesim.simulator.report.whatif import Knobs
from moesim.simulator.schedules import SCHEDULES
from moesim.workloads.errors import ScenarioError
from moesim.workloads.presets import preset_names

INTERNAL = "internal error (a bug in moesim, please report it)"
DISPATCH_DTYPES = ("fp8", "bf16")
MAX_STAGES = 4096  # far above any pipeline depth (ranks of a pinned result)
MAX_LINE_CHARS = 1000  # a pinned result's description line
OPTIONAL_STAGE_FIELDS = ("host_bound_s",)  # absent from results saved before the host was modelled


def _shown(value: Any) -> str:
    """A value as the error line names it: its repr, cut short (a crafted one may be megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checked_preset(value: Any) -> str:
    """A built-in preset's name (never a path: the dashboard loads presets only)."""
    if not isinstance(value, str) or value not in preset_names():
        raise ScenarioError(f"preset {_shown(value)}: unknown; choose one of the {len(preset_names())} "
                            f"in the preset menu (moesim presets list describes them)")
    return value


def _number(name: str, value: Any, unit: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{name}: give a number{unit}, not {_shown(value)}")
    if not math.isfinite(value):
        raise ScenarioError(f"{name}: must be a finite number, got {_shown(value)}")
    return float(value)


def _whole(name: str, value: Any) -> int:
    number = _number(name, value)
    if number != int(number) or number < 1:
        raise ScenarioError(f"{name}: give a whole number of at least 1, not {_shown(value)}")
    return int(number)


def checked_knobs(preset: Any, schedule: Any, pp: Any, ep: Any, micro_batches: Any, dispatch_dtype: Any,
                  nic_gbps: Any, routing_skew: Any) -> Knobs:
    """The knobs of one update, each checked (ranges the scenario checks itself: the same message as --set)."""
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ScenarioError(f"schedule {_shown(schedule)}: unknown; choose one of {', '.join(sorted(SCHEDULES))}")
    if dispatch_dtype not in DISPATCH_DTYPES:
        raise ScenarioError(f"dispatch dtype {_shown(dispatch_dtype)}: choose fp8 or bf16")
    nic = _number("NIC bandwidth", nic_gbps, " of GB/s")
    if nic <= 0:
        raise ScenarioError(f"NIC bandwidth: must be above 0 GB/s, got {nic:g}")
    skew = _number("routing skew", routing_skew)
    if skew < 0:
        raise ScenarioError(f"routing skew: must be 0 or more, not {skew:g}")
    return Knobs(checked_preset(preset), schedule, _whole("pp", pp), _whole("ep", ep),
                 _whole("micro-batches", micro_batches), dispatch_dtype, nic, skew)


def checked_current(value: Any) -> dict:
    """A result this page computed (``{"summary", "line"}``), as it comes back from the browser to be pinned
    or compared against: every number the comparison reads is there and finite."""
    problem = "not a result of this page; pin a result again"
    if not isinstance(value, dict) or not isinstance(value.get("summary"), dict) \
            or not isinstance(value.get("line"), str) or len(value["line"]) > MAX_LINE_CHARS:
        raise ScenarioError(f"baseline: {problem}")
    summary = value["summary"]
    for metric in METRICS:
        if metric.key in summary:
            _number(f"baseline: {metric.key}", summary[metric.key])
    if _number("baseline: step_time_s", summary.get("step_time_s")) <= 0:
        raise ScenarioError("baseline: step_time_s must be above 0 s; pin a result again")
    stages = summary.get("stages")
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES \
            or not all(isinstance(s, dict) for s in stages):
        raise ScenarioError(f"baseline: stages: {problem}")
    fields = dict.fromkeys([*(f for f, _ in STAGE_FIELDS), *(f for f, _, _ in STEP_PARTS)])
    for i, stage in enumerate(stages):
        for field in fields:
            if field in stage or field not in OPTIONAL_STAGE_FIELDS:
                _number(f"baseline: stages.{i}.{field}", stage.get(field))
    return value


def checked_baseline(value: Any) -> dict | None:
    """The pinned baseline, or None when none is pinned."""
    return None if value is None else checked_current(value)
