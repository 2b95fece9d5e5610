"""Pipeline schedules, registered by name: ``get_schedule("1f1b")(pp, micro_batches, virtual_stages)``."""

from __future__ import annotations

from moesim.simulator.schedules.base import Schedule, ScheduleError, Step
from moesim.topologies.base_registry import Registry

SCHEDULES: Registry = Registry("schedule: unknown schedule {name!r}; known: {known}", ScheduleError)


def register(cls: type[Schedule]) -> type[Schedule]:
    return SCHEDULES.add(cls.name, cls)


def get_schedule(name: str) -> type[Schedule]:
    return SCHEDULES.lookup(name)


def build_schedule(name: str, pp: int, micro_batches: int, virtual_stages: int = 1) -> Schedule:
    """The schedule ``name`` for this pipeline (raises :class:`ScheduleError` for one it cannot run)."""
    return get_schedule(name)(pp, micro_batches, virtual_stages)


def scenario_schedule(scenario) -> Schedule:
    """The schedule a scenario runs: its ``schedule`` on its pp, micro-batches and virtual stages, once the
    step's task count is within :func:`moesim.simulator.limits.check_pipeline`'s guard."""
    from moesim.simulator.limits import check_pipeline

    par = scenario.parallelism
    check_pipeline(par.pp, scenario.micro_batches, par.virtual_stages,
                   "lower parallelism.global_batch or raise dp·micro_batch_size")
    schedule = build_schedule(scenario.schedule, par.pp, scenario.micro_batches, par.virtual_stages)
    if scenario.training.ep_overlap:  # checked by the scenario: the schedule is interleaved
        schedule.overlap_ep = True
    return schedule


from moesim.simulator.schedules import classic, dualpipe, interleaved, zero_bubble  # noqa: E402,F401  (registers them)

__all__ = ["SCHEDULES", "Schedule", "ScheduleError", "Step", "build_schedule", "get_schedule", "register",
           "scenario_schedule"]
