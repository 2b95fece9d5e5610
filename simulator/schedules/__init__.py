"""Pipeline schedules, registered by name: ``get_schedule("1f1b")(pp, micro_batches, virtual_stages)``."""

from __future__ import annotations

from simulator.schedules.base import Schedule, ScheduleError, Step

SCHEDULES: dict[str, type[Schedule]] = {}


def register(cls: type[Schedule]) -> type[Schedule]:
    SCHEDULES[cls.name] = cls
    return cls


def get_schedule(name: str) -> type[Schedule]:
    if name not in SCHEDULES:
        raise ScheduleError(f"schedule: unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}")
    return SCHEDULES[name]


from simulator.schedules import classic, dualpipe, interleaved, zero_bubble  # noqa: E402,F401  (registers them)

__all__ = ["SCHEDULES", "Schedule", "ScheduleError", "Step", "get_schedule", "register"]
