"""Parallel what-if sweeps: a spec of axes over scenario fields, run locally or on Ray, resumable."""

from moesim.simulator.sweep.executors import EXECUTORS, Executor, get_executor, register
from moesim.simulator.sweep.runner import SweepRun, run_sweep
from moesim.simulator.sweep.spec import Point, SweepSpec, expand, load_spec, parse_spec

__all__ = ["EXECUTORS", "Executor", "Point", "SweepRun", "SweepSpec", "expand", "get_executor", "load_spec",
           "parse_spec", "register", "run_sweep"]
