"""What a planner asks: a model (preset or scenario file plus overrides), a token budget, GPU kinds, a deadline
and/or a budget, a price, and the search space (every knob defaults to all the values the planner knows).

Units: tokens are tokens, ``deadline_days`` days, ``budget_usd`` US dollars, ``price_per_gpu_hour`` USD per
GPU-hour, global batch in sequences of the scenario's ``seq_len``.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from moesim.topologies.bundled import bundled_yaml
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import apply_override, read_scenario_file
from moesim.workloads.presets import preset_data, preset_names

TOKEN_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
DAY_UNITS = {"h": 1 / 24, "d": 1.0, "w": 7.0}
RECOMPUTE = {  # the recomputation policies searched, as training.recompute sections
    "none": {"norm": False, "mla_up_proj": False, "swiglu": False, "full": False},
    # DeepSeek-V3 TR §3.4: recompute RMSNorm and the MLA up-projections (and SwiGLU) in backward.
    "selective": {"norm": True, "mla_up_proj": True, "swiglu": True, "full": False},
    "full": {"norm": False, "mla_up_proj": False, "swiglu": False, "full": True},
}
# (schedule, virtual stages) pairs searched by default: each registered schedule with the stages it runs.
SCHEDULE_VARIANTS = (("gpipe", 1), ("1f1b", 1), ("zb-h1", 1), ("interleaved", 2), ("dualpipe", 1),
                     ("dualpipev", 2))


def parse_tokens(text: str) -> float:
    """``14.8T`` → 1.48e13; suffixes K, M, B (or G), T, P; a plain number (``1.5e12``) also works."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGTP]?)\s*", text, flags=re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise ScenarioError(f"--tokens {text!r}: expected a positive number with an optional K/M/B/T suffix, "
                            "e.g. 14.8T")
    tokens = float(match[1]) * TOKEN_SUFFIXES[match[2].upper()]
    if not math.isfinite(tokens):
        raise ScenarioError(f"--tokens {text!r}: must be a finite number of tokens, e.g. 14.8T")
    return tokens


def parse_days(text: str, option: str = "--deadline") -> float:
    """``60d`` → 60.0 days; units h (hours), d (days), w (weeks); a plain number is days."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([hdw]?)\s*", text, flags=re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise ScenarioError(f"{option} {text!r}: expected a positive duration such as 60d, 8w or 720h")
    return float(match[1]) * DAY_UNITS[(match[2] or "d").lower()]


def parse_batch(text: str) -> tuple[int, int]:
    """``--global-batch 15360`` fixes the batch; ``3072..15360`` is a range (sequences)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?", text)
    if not match or int(match[1]) < 1 or (match[2] and int(match[2]) < int(match[1])):
        raise ScenarioError(f"--global-batch {text!r}: expected sequences per step, N or LOW..HIGH "
                            "(e.g. 15360 or 3072..15360)")
    return int(match[1]), int(match[2] or match[1])


def parse_ints(text: str | None, option: str) -> list[int] | None:
    """``1,2,4`` → [1, 2, 4]; one-line error for anything else."""
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ScenarioError(f"{option} {text!r}: expected comma-separated whole numbers, e.g. 1,2,4") from None
    if not values or min(values) < 1:
        raise ScenarioError(f"{option} {text!r}: give at least one positive whole number")
    return sorted(set(values))


def model_presets() -> dict[str, str]:
    """Names --model accepts → preset: each preset's name, its name without the GPU suffix, its model's name."""
    names: dict[str, str] = {}
    # The published runs' presets (Hopper GPUs) first, so that a bare model name means the original run.
    for preset in sorted(preset_names(), key=lambda p: re.search(r"-(h800|h100|h200)(-|$)", p) is None):
        data = preset_data(preset)
        names[preset] = preset
        names.setdefault(re.sub(r"-(h800|h100|h200)$", "", preset), preset)
        names.setdefault(data["model"]["name"].lower(), preset)
        names.setdefault(data["model"]["name"].lower().replace("-3-", "3-"), preset)
    return names


def resolve_model(name: str) -> str:
    names = model_presets()
    key = name.lower()
    if key not in names:
        known = sorted({n for n in names if n not in preset_names()})
        raise ScenarioError(f"--model {name!r} is unknown; known: {', '.join(known)} (or a preset name)")
    return names[key]


def load_base(model: str | None, scenario_file: str | None, overrides: list[str]) -> tuple[str, dict]:
    """(name, scenario dict) from ``--model`` (a preset) or a scenario file, with ``--set`` overrides applied."""
    if (model is None) == (scenario_file is None):
        raise ScenarioError("give --model NAME or a scenario file (one of them)")
    if scenario_file is not None:
        data = read_scenario_file(scenario_file)
        name = str(data.get("name") or scenario_file)
    else:
        name = resolve_model(model)
        data = preset_data(name)
    for item in overrides:
        apply_override(data, item)
    return name, data


@lru_cache(maxsize=1)
def batch_ramps() -> dict:
    return bundled_yaml(resources.files("moesim.simulator.planner").joinpath("batch_ramps.yaml").read_text())


def default_batch_range(data: dict) -> tuple[int, int, str]:
    """(low, high, where from): the model's published batch and ramp when known, else the scenario's batch."""
    par = data["parallelism"]
    ramp = batch_ramps().get(data["model"]["name"])
    if ramp and ramp["seq_len"] == par["seq_len"]:
        return ramp["min_sequences"], ramp["max_sequences"], "the published batch and its ramp"
    return par["global_batch"], par["global_batch"], "the scenario's global batch (no published ramp known)"


class PlanRequest(BaseModel):
    """What to plan for and the search space. ``None`` means every value the planner knows for that knob."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: PositiveFloat
    gpus_kinds: list[str] = Field(min_length=1)
    deadline_days: PositiveFloat | None = None
    budget_usd: PositiveFloat | None = None
    price_per_gpu_hour: PositiveFloat = 2.0
    max_gpus: PositiveInt = 65_536
    gpu_counts: list[PositiveInt] | None = None
    tp: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 4, 8])
    pp: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 4, 8, 16])
    cp: list[PositiveInt] = Field(default_factory=lambda: [1, 2])
    micro_batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1, 2])
    schedules: list[tuple[str, PositiveInt]] = Field(default_factory=lambda: list(SCHEDULE_VARIANTS))
    # ZeRO-3's per-layer parameter gathers are not simulated (simulator/simulate.py prices ZeRO ≥ 1 alike), so
    # it would look free; it is searched only when asked for.
    zero_stages: list[Literal[0, 1, 2, 3]] = Field(default_factory=lambda: [1, 2])
    recompute: list[Literal["none", "selective", "full"]] = Field(default_factory=lambda: ["none", "selective",
                                                                                          "full"])
    batch_range: tuple[PositiveInt, PositiveInt]
    objective: Literal["time", "cost", "gpu-hours", "energy"] = "time"
    # USD per GPU-hour by GPU kind (--price-per-gpu-hour h800=2,b200=3.5); kinds not named pay price_per_gpu_hour.
    prices: dict[str, PositiveFloat] = Field(default_factory=dict)
    top: PositiveInt = 5
    max_simulations: PositiveInt = 10_000
    # Wall seconds after which no new simulation starts; the answer then says how far its bounds are from proving
    # the first plan.
    time_limit_s: PositiveFloat = 30.0  # issue 22: the DeepSeek-V3 question proves in ~11 s idle, ~20 s loaded

    @model_validator(mode="after")
    def _ranges(self):
        if self.batch_range[0] > self.batch_range[1]:
            raise ValueError("the global batch range must run from low to high")
        return self

    def meets(self, days: float, cost_usd: float) -> bool:
        """Whether a plan of ``days`` and ``cost_usd`` meets the deadline and the budget."""
        return ((self.deadline_days is None or days <= self.deadline_days)
                and (self.budget_usd is None or cost_usd <= self.budget_usd))

    def cost_usd(self, gpus: int, days: float, gpu: str = "") -> float:
        return gpus * days * 24.0 * self.prices.get(gpu, self.price_per_gpu_hour)

    def rank(self, gpus: int, days: float, gpu: str) -> tuple[float, float]:
        """(objective, days): what plans are ranked by, smaller first; ties broken by days."""
        if self.objective == "time":
            return days, self.cost_usd(gpus, days, gpu)
        if self.objective == "cost":
            return self.cost_usd(gpus, days, gpu), days
        if self.objective == "gpu-hours":
            return gpus * days * 24.0, days
        return energy_mwh(gpus, days, gpu), days


def energy_mwh(gpus: int, days: float, gpu: str) -> float:
    """MWh the GPUs draw over ``days`` at their catalogue TDP (an upper bound under load; node and network power
    are not counted). A GPU with no published power has none (0)."""
    from moesim.topologies.gpus import gpu_spec

    return gpus * days * 24.0 * float(gpu_spec(gpu).get("tdp_w") or 0.0) / 1e6
