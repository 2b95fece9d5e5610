"""Executors run sweep points and yield their rows as they finish, registered by name (``local``, ``ray``).

An executor gets the base scenario (a dict), the profile name and the points; it returns an iterator of rows
in completion order. Points travel in small batches so that per-task overhead (pickling, scheduling) stays
small against a ~0.1 s simulation, while the progress bar still moves smoothly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any

from moesim.topologies.base_registry import Registry
from moesim.workloads.errors import ScenarioError

from moesim.simulator.processes import WorkerPool, stop_workers
from moesim.simulator.sweep.row import error_row, run_point
from moesim.simulator.sweep.spec import Point

EXECUTORS = Registry("--executor {name!r} is unknown; known: {known}", ScenarioError)


def register(cls):
    return EXECUTORS.add(cls.name, cls)


def get_executor(name: str) -> type[Executor]:
    return EXECUTORS.lookup(name)


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

    @abstractmethod
    def session(self, base: dict, profile: str | None) -> Session:
        """A :class:`Session` on this executor's workers."""

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
    """Profiles are parsed once per worker process; ``None``: each point's simulation takes the built-in
    profile of its own GPU."""
    if name is None:
        return None
    if name not in _PROFILES:
        from moesim.calibration.profile import load_profiles
        _PROFILES[name] = load_profiles(name)
    return _PROFILES[name]


def _warm(profile_name: str | None) -> None:
    """Load the profile in a fresh worker (and with it the simulator's imports); returns nothing to ship back."""
    _profile(profile_name)


class Session(ABC):
    """Points submitted one at a time, rows taken as they finish: for searches that choose the next point from
    the rows so far (``moesim plan``). Use as a context manager; leaving it stops the workers."""

    in_flight: int = 0
    slots: int = 1  # points worth keeping in flight (the workers there are)

    @abstractmethod
    def submit(self, point: Point) -> None: ...

    @abstractmethod
    def finished(self) -> list[dict[str, Any]]:
        """Block until at least one submitted point has finished; return the rows of all finished ones."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None: ...


class InProcessSession(Session):
    def __init__(self, base: dict, profile: str | None):
        self.base, self.profile, self.queue = base, profile, []

    def submit(self, point: Point) -> None:
        self.queue.append(point)
        self.in_flight += 1

    def finished(self) -> list[dict[str, Any]]:
        point = self.queue.pop(0)
        self.in_flight -= 1
        return run_batch(self.base, self.profile, [point])


class PoolSession(Session):
    """A process pool kept for the whole search; workers die with the parent (:func:`die_with_parent`)."""

    def __init__(self, base: dict, profile: str | None, workers: int):
        self.base, self.profile, self.slots = base, profile, workers
        self.pool = WorkerPool(workers)
        self.pending: set = set()
        for _ in range(workers):  # start the workers (imports, profile) while the caller computes bounds
            self.pending.add(self.pool.submit(_warm, profile))

    def submit(self, point: Point) -> None:
        self.pending.add(self.pool.submit(run_batch, self.base, self.profile, [point]))
        self.in_flight += 1

    def finished(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while not rows:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                if isinstance(result, list):
                    rows.extend(result)
                    self.in_flight -= 1
        return rows

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


class RaySession(Session):
    def __init__(self, base: dict, profile: str | None, workers: int | None, address: str | None):
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        self.staging = _start_ray(ray, address, workers) if self.started else None
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.remote = ray.remote(num_cpus=1)(run_batch)
        self.base_ref = ray.put(base)
        self.profile = profile
        self.pending: list = []

    def submit(self, point: Point) -> None:
        self.pending.append(self.remote.remote(self.base_ref, self.profile, [point]))
        self.in_flight += 1

    def finished(self) -> list[dict[str, Any]]:
        done, self.pending = self.ray.wait(self.pending, num_returns=1)
        rows = []
        for ref in done:
            try:
                rows.extend(self.ray.get(ref))
            except self.ray.exceptions.RayError as err:
                cause = str(err).strip().splitlines()[-1]
                raise ScenarioError(f"--executor ray: a task failed on the cluster: {cause}") from None
            self.in_flight -= 1
        return rows

    def close(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref)
        if self.started:
            self.ray.shutdown()
        if self.staging is not None:
            self.staging.cleanup()


def _start_ray(ray, address: str | None, workers: int | None) -> tempfile.TemporaryDirectory:
    """Start (or join, with ``address``) a Ray instance whose workers get moesim's packages (``py_modules``), so a
    cluster needs only its dependencies installed; returns the staging folder to clean up after shutdown."""
    staging = tempfile.TemporaryDirectory(prefix="moesim-ray-")
    runtime_env = {"py_modules": _packages(Path(staging.name))}
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    return staging


def _packages(stage_in: Path) -> list:
    """What Ray ships to its workers (``py_modules``): the installed ``moesim`` package, or, from a source
    checkout (whose four folders sit beside ``moesim/``), a copy of it laid out as installed, made in
    ``stage_in``."""
    import moesim
    root = Path(moesim.__file__).parent
    if all((root / part).is_dir() for part in moesim.SUBPACKAGES):
        return [moesim]
    staged = stage_in / "moesim"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root, staged, ignore=skip)
    for part in moesim.SUBPACKAGES:
        shutil.copytree(root.parent / part, staged / part, ignore=skip)
    return [str(staged)]


def _batches(points: list[Point], size: int) -> list[list[Point]]:
    return [points[i:i + size] for i in range(0, len(points), size)]


@register
class LocalExecutor(Executor):
    """Parallel processes on this machine (``--workers``, default: all cores); one worker runs in-process."""

    name = "local"

    def session(self, base, profile):
        workers = self.workers or os.cpu_count() or 1
        return InProcessSession(base, profile) if workers == 1 else PoolSession(base, profile, workers)

    def run(self, base, profile, points):
        workers = self.workers or os.cpu_count() or 1
        if workers == 1 or len(points) <= 1:
            for batch in _batches(points, 1):
                yield from run_batch(base, profile, batch)
            return
        pool = WorkerPool(workers)
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

    def session(self, base, profile):
        return RaySession(base, profile, self.workers, self.address)

    def run(self, base, profile, points):
        import ray

        started = not ray.is_initialized()
        staging = _start_ray(ray, self.address, self.workers) if started else None
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
                staging.cleanup()
