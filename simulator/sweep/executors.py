"""Executors run sweep points and yield their rows as they finish, registered by name (``local``, ``ray``).

An executor gets the base scenario (a dict), the profile name and the points; it returns an iterator of rows
in completion order. Points travel in small batches so that per-task overhead (pickling, scheduling) stays
small against a ~0.1 s simulation, while the progress bar still moves smoothly.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from workloads.errors import ScenarioError

from simulator.processes import die_with_parent, stop_workers
from simulator.sweep.row import error_row, run_point
from simulator.sweep.spec import Point

EXECUTORS: dict[str, type[Executor]] = {}


def register(cls):
    EXECUTORS[cls.name] = cls
    return cls


def get_executor(name: str) -> type[Executor]:
    if name not in EXECUTORS:
        raise ScenarioError(f"--executor {name!r} is unknown; known: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[name]


class Executor(ABC):
    name: str

    def __init__(self, workers: int | None = None, address: str | None = None):
        if workers is not None and workers < 1:
            raise ScenarioError(f"--workers {workers}: give at least 1")
        self.workers = workers
        self.address = address

    @abstractmethod
    def run(self, base: dict, profile: str | None, points: list[Point]) -> Iterator[dict[str, Any]]:
        """Yield one row per point, in completion order."""

    def batch_size(self, points: int, workers: int) -> int:
        """Enough batches for ~8 per worker (load balance), at most 16 points per batch."""
        return max(1, min(16, points // (workers * 8)))


def run_batch(base: dict, profile_name: str | None, points: list[Point]) -> list[dict[str, Any]]:
    """Run a batch of points in this process (the unit of work an executor ships to a worker)."""
    profile = _profile(profile_name)
    rows = []
    for point in points:
        try:
            rows.append(run_point(base, point, profile))
        except Exception as err:  # a simulator bug on one point must not lose the rest of the sweep
            rows.append(error_row(point, err))
    return rows


_PROFILES: dict = {}


def _profile(name: str | None):
    """Profiles are parsed once per worker process."""
    if name not in _PROFILES:
        from calibration.profile import load_profile
        _PROFILES[name] = load_profile(name)
    return _PROFILES[name]


def _packages() -> list:
    import calibration
    import simulator
    import topologies
    import workloads
    return [calibration, simulator, topologies, workloads]


def _batches(points: list[Point], size: int) -> list[list[Point]]:
    return [points[i:i + size] for i in range(0, len(points), size)]


@register
class LocalExecutor(Executor):
    """Parallel processes on this machine (``--workers``, default: all cores); one worker runs in-process."""

    name = "local"

    def run(self, base, profile, points):
        workers = self.workers or os.cpu_count() or 1
        if workers == 1 or len(points) <= 1:
            for batch in _batches(points, 1):
                yield from run_batch(base, profile, batch)
            return
        pool = ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),))
        finished = False
        try:
            batches = _batches(points, self.batch_size(len(points), workers))
            pending = {pool.submit(run_batch, base, profile, batch) for batch in batches}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
            finished = True
        finally:  # interrupted (Ctrl-C, SIGTERM, a dead worker): stop the workers now, do not wait for them
            if finished:
                pool.shutdown(wait=True)
            else:
                stop_workers(pool)


@register
class RayExecutor(Executor):
    """Ray tasks: ``--address auto`` (or ray://host:10001) joins a running cluster; no address starts a local
    Ray instance with ``--workers`` CPUs. moesim's packages travel with the job (Ray ``py_modules``); its
    dependencies (simpy, numpy, pydantic, pyyaml, networkx) must be installed on the cluster."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None):
        super().__init__(workers, address)
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ScenarioError("--executor ray needs Ray: pip install 'moesim[ray]'") from None

    def run(self, base, profile, points):
        import ray

        started = not ray.is_initialized()
        if started:
            # Ship moesim's own packages to the workers, so a cluster needs only its dependencies installed.
            runtime_env = {"py_modules": _packages()}
            if self.address:
                ray.init(address=self.address, log_to_driver=False, runtime_env=runtime_env)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                         runtime_env=runtime_env)
        try:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
            remote = ray.remote(num_cpus=1)(run_batch)
            base_ref = ray.put(base)
            pending = [remote.remote(base_ref, profile, b)
                       for b in _batches(points, self.batch_size(len(points), workers))]
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        try:
                            rows = ray.get(ref)
                        except ray.exceptions.RayError as err:  # the cluster cannot run moesim at all
                            cause = str(err).strip().splitlines()[-1]
                            raise ScenarioError(f"--executor ray: a task failed on the cluster: {cause}") from None
                        yield from rows
            finally:
                for ref in pending:
                    ray.cancel(ref)
        finally:
            if started:
                ray.shutdown()
