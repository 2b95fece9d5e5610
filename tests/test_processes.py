"""Real processes: killing a running `moesim sweep` or `moesim plan` parent leaves no worker behind, and SIGTERM
ends a sweep as Ctrl-C does (finished rows saved, one line, exit 143)."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from moesim.simulator.sweep.store import journal_path
from tests.procs import alive, children

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")

ROOT = Path(__file__).resolve().parents[1]
SPEC = """name: long
base: {preset: mixtral-8x7b-h100}
grid:
  run.seed: [%s]
  training.dispatch_dtype: [fp8, bf16]
""" % ", ".join(str(i) for i in range(400))


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "moesim.simulator.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_workers(proc: subprocess.Popen, count: int, timeout_s: float = 120.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = children(proc.pid)
        if len(workers) >= count:
            return workers
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError(f"no {count} workers under {proc.pid} after {timeout_s} s")


def wait_gone(pids: list[int], timeout_s: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def test_sigkill_of_a_sweep_parent_kills_its_workers(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    proc = start(["sweep", "spec.yaml", "-o", "out.csv", "--workers", "2"], tmp_path)
    workers = wait_for_workers(proc, 2)
    time.sleep(1.0)  # let them compute
    proc.kill()
    proc.wait(timeout=30)
    assert wait_gone(workers) == [], "workers outlived their SIGKILLed parent"


def test_sigterm_ends_a_sweep_like_ctrl_c(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    proc = start(["sweep", "spec.yaml", "-o", "out.csv", "--workers", "2"], tmp_path)
    workers = wait_for_workers(proc, 2)
    deadline = time.monotonic() + 120
    while not journal_path(tmp_path / "out.csv").exists() and time.monotonic() < deadline:  # rows finished
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in out.splitlines() if "terminated" in line]
    assert len(lines) == 1 and "saved in out.csv; rerun to resume" in lines[0], out
    assert wait_gone(workers) == []
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) > 1  # a header and the finished points


def test_sigkill_of_a_plan_parent_kills_its_workers(tmp_path):
    proc = start(["plan", "-m", "mixtral-8x7b", "-t", "1T", "--gpu", "h100", "--gpus", "8,16,32,64,128",
                  "--workers", "2"], tmp_path)
    workers = wait_for_workers(proc, 2)
    time.sleep(1.0)
    proc.kill()
    proc.wait(timeout=30)
    assert wait_gone(workers) == [], "workers outlived their SIGKILLed parent"


def test_stop_workers_ends_running_workers_now():
    """A worker busy for a minute is ended at once; the pool names its workers without CPython's internals, and
    the pool's own threads have ended when the stop returns (left running, CPython 3.11's exit races them)."""
    from moesim.simulator.processes import WorkerPool, stop_workers

    threads = set(threading.enumerate())
    pool = WorkerPool(2)
    busy = [pool.submit(time.sleep, 60) for _ in range(2)]
    deadline = time.monotonic() + 30
    while len(workers := pool.worker_processes()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(workers) == 2 and all(p.is_alive() for p in workers)
    pids = [p.pid for p in workers]
    start = time.monotonic()
    stop_workers(pool)
    assert set(threading.enumerate()) - threads == set(), "the pool's threads outlived stop_workers"
    # Gone as /proc sees it (is_alive() may not tell: the executor's thread can reap a worker before ours), within
    # seconds of the stop, not after the minute of sleep: a worker whose exit is still under way is no longer
    # running, but /proc shows it until the kernel has finished it.
    assert wait_gone(pids, timeout_s=5.0) == []
    assert time.monotonic() - start < 10
    # The executor fails the two running futures once it sees their workers gone (in its own thread).
    concurrent.futures.wait(busy, timeout=30)
    assert all(f.cancelled() or f.done() for f in busy)
