"""Validated numbers: one rule per kind of input, shared by scenario fields, CLI options and sweep/plan specs.

A :class:`Rule` accepts a value only if it is a finite number in the rule's range; for a quantity with a unit
it also accepts a string with a unit and converts it to the field's unit. The units a field holds are in its
name: bandwidths in GB/s (gigaBYTES per second, ``_gbytes_per_s``), sizes in bytes, times in seconds (``_s``)
or microseconds (``_us``). Case matters where it must: ``Gb/s``, ``Gbps`` and ``Gbit/s`` are gigaBITS per second
(a "400 Gb/s" NIC moves 50 GB/s), ``GB/s`` and ``GBps`` gigabytes; a lower-case ``gbps`` is refused as ambiguous.

The same rule object gives a pydantic field type (:meth:`Rule.field`) and a typer option parser
(:meth:`Rule.parser`), so a limit is written once and every entry point refuses the same values with the
same words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

# Each table maps a unit (as typed) to the factor that converts it to the field's unit.
BANDWIDTH_UNITS = {  # → GB/s
    "GB/s": 1.0, "GBps": 1.0, "MB/s": 1e-3, "MBps": 1e-3, "TB/s": 1e3, "TBps": 1e3,
    "Gb/s": 1 / 8, "Gbps": 1 / 8, "Gbit/s": 1 / 8, "Mb/s": 1e-3 / 8, "Mbps": 1e-3 / 8, "Mbit/s": 1e-3 / 8,
    "Tb/s": 1e3 / 8, "Tbps": 1e3 / 8, "Tbit/s": 1e3 / 8,
}
SIZE_UNITS = {  # → bytes; case-insensitive (nobody sizes a buffer in bits)
    "": 1.0, "b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
    "kib": 2.0 ** 10, "mib": 2.0 ** 20, "gib": 2.0 ** 30, "tib": 2.0 ** 40,
}
TIME_UNITS = {  # → seconds
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
    "w": 7 * 86400.0,
}
FAMILIES = {"GB/s": BANDWIDTH_UNITS, "B": SIZE_UNITS, "s": TIME_UNITS, "us": TIME_UNITS}
_TO_FIELD = {"GB/s": 1.0, "B": 1.0, "s": 1.0, "us": 1e6}  # from the table's base unit to the field's unit
_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|infinity|nan))\s*(\S*)\s*",
                     re.IGNORECASE)


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Rule:
    """A finite number with optional bounds (``ge``/``gt``/``le``/``lt``), an integer or not, and a unit.

    ``unit`` is the unit the field holds: ``GB/s``, ``B`` (bytes), ``s`` or ``us``; None for a plain number.
    """

    unit: str | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    integer: bool = False

    def __call__(self, value):
        """The value as the field's number, or a ValueError with a one-line reason (no field name: the caller
        adds it). The error is pydantic's custom kind, so pydantic and typer print the reason as it is."""
        try:
            return self._check(value)
        except ValueError as err:
            raise PydanticCustomError("quantity", str(err)) from None

    def _check(self, value):
        number = self._number(value)
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {value!r}")
        if self.integer:
            if number != int(number):
                raise ValueError(f"must be a whole number, got {value!r}")
            number = int(number)
        unit = f" {self.unit}" if self.unit and self.unit != "B" else (" bytes" if self.unit == "B" else "")
        for bound, ok, word in ((self.ge, lambda b: number >= b, "≥"), (self.gt, lambda b: number > b, ">"),
                                (self.le, lambda b: number <= b, "≤"), (self.lt, lambda b: number < b, "<")):
            if bound is not None and not ok(bound):
                raise ValueError(f"must be {word} {_fmt(bound)}{unit}, got {_fmt(number)}{unit}")
        return number

    def _number(self, value) -> float:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        if isinstance(value, int) and self.integer:
            return value
        if isinstance(value, (int, float)):
            try:
                return float(value)
            except OverflowError:
                raise ValueError(f"must be a finite number, got {value}") from None
        if not isinstance(value, str):
            raise ValueError(f"must be a number, got {type(value).__name__}")
        match = _NUMBER.fullmatch(value)
        if not match:
            raise ValueError(f"must be a number{self._unit_hint(' (', ')')}, got {value!r}")
        number, unit = float(match.group(1)), match.group(2)
        if not unit:
            return number
        if self.unit is None:
            raise ValueError(f"must be a plain number (no unit), got {value!r}")
        return number * self._factor(unit, value)

    def _factor(self, unit: str, value: str) -> float:
        table = FAMILIES[self.unit]
        if table is SIZE_UNITS:
            factor = table.get(unit.lower())
        else:
            factor = table.get(unit)
            if factor is None and unit.lower() in {u.lower() for u in table}:
                raise ValueError(f"unit {unit!r} in {value!r} is ambiguous: write Gb/s for gigabits or GB/s "
                                 "for gigabytes per second")
        if factor is None:
            raise ValueError(f"unknown unit {unit!r} in {value!r}{self._unit_hint('; write a number in ', '')}")
        return factor * _TO_FIELD[self.unit]

    def _unit_hint(self, before: str, after: str) -> str:
        hint = {"GB/s": "GB/s or with a unit such as 50GB/s or 400Gb/s",
                "B": "bytes or with a unit such as 256MB or 64MiB",
                "s": "seconds or with a unit such as 500ms or 2h",
                "us": "µs or with a unit such as 3.7us or 1ms"}.get(self.unit or "")
        return f"{before}{hint}{after}" if hint else ""

    def field(self):
        """This rule as a pydantic field type (the value is checked and converted before pydantic sees it)."""
        return Annotated[int if self.integer else float, BeforeValidator(self)]

    def parser(self):
        """This rule as a typer ``parser=``: its ValueError becomes click's one-line 'Invalid value for --flag'."""
        def parse(text):
            return self(text)
        parse.__name__ = self.unit or ("integer" if self.integer else "number")
        return parse


# The rules every entry point shares. Ranges are physical sanity limits, far outside any real machine, so that a
# typo (1e-300 GB/s, a 1000x slowdown) is refused instead of producing 100-digit answers.
BANDWIDTH_GBYTES_PER_S = Rule("GB/s", ge=1e-3, le=1e6)  # 1 MB/s … 1 PB/s per link
LATENCY_US = Rule("us", ge=0, le=1e6)  # up to a second per hop
FRACTION = Rule(gt=0, le=1)  # an efficiency: achievable / nominal
UNIT_INTERVAL = Rule(ge=0, le=1)  # a coefficient of variation, a remaining bandwidth share
OVERSUBSCRIPTION = Rule(gt=0, le=1000)
TFLOPS = Rule(gt=0, le=1e6)
MEMORY_GB = Rule(gt=0, le=1e6)
TOKENS = Rule(gt=0, le=1e18)  # a token budget: 1e18 is ~70,000× DeepSeek-V3's 14.8T
SLOWDOWN = Rule(ge=1, le=1000)  # a straggler's kernels run this many times longer
HOURS = Rule(gt=0, le=1e12)
MINUTES = Rule(gt=0, le=1e9)
SECONDS = Rule("s", ge=0, le=1e9)
ROUTING_SKEW = Rule(ge=0, le=100)  # Zipf exponent: 0 balanced; beyond ~10 every token goes to one expert
CHUNK_SECONDS = Rule("s", ge=0, le=1e9)  # a chunk's time in `moesim schedule`
DAYS = Rule(gt=0, le=1e12)  # a deadline
GPU_COUNT = Rule(ge=1, le=1_000_000, integer=True)
USD = Rule(gt=0, le=1e15)
USD_PER_HOUR = Rule(gt=0, le=1e6)
WATTS = Rule(ge=0, le=1e6)  # one GPU's (or its share of a node's or network's) power
PUE = Rule(ge=1, le=10)  # facility power usage effectiveness
BYTES = Rule("B", ge=0, le=1e18)
# Model sizes: far above any published model (DeepSeek-V3: 61 layers, hidden 7168, 256 experts), low enough that
# building per-layer operations stays instant; a typo such as layers=100000000 is refused, not built.
LAYERS = Rule(ge=1, le=10_000, integer=True)
WIDTH = Rule(ge=1, le=10_000_000, integer=True)  # hidden, FFN, vocabulary, heads, expert counts
SEQUENCE = Rule(ge=1, le=100_000_000, integer=True)
