"""Sweeps: spec validation, expansion and keys, rows for valid and invalid points, resume, local vs Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from moesim.simulator.cli import app
from moesim.simulator.sweep import expand, load_spec, parse_spec, run_sweep
from moesim.simulator.sweep.row import METRIC_COLUMNS, VOLATILE_COLUMNS
from moesim.simulator.sweep.store import journal_path, read_rows
from moesim.workloads.errors import ScenarioError
from tests.conftest import tiny_dense

LAYOUTS = [{"parallelism.pp": 1, "parallelism.dp": 4}, {"parallelism.pp": 2, "parallelism.dp": 2},
           {"parallelism.pp": 4, "parallelism.dp": 1},
           {"parallelism.pp": 3, "parallelism.dp": 1}]  # 3 GPUs of 4: invalid, kept with its reason


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_dense().model_dump()))
    return tmp_path


def write_spec(folder: Path, **fields) -> Path:
    spec = {"name": "tiny", "base": {"scenario": "tiny.yaml"}, "points": LAYOUTS,
            "grid": {"schedule": ["gpipe", "1f1b"], "parallelism.micro_batch_size": [1, 2]}}
    spec.update(fields)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def stable(rows):
    return [{k: v for k, v in r.items() if k not in VOLATILE_COLUMNS} for r in rows]


@pytest.mark.parametrize("spec,message", [
    ({"base": {"preset": "deepseek-v2-lite-h800"}, "grid": {"parallelism.ppp": [1]}},
     "grid.parallelism.ppp: unknown scenario field 'ppp'"),
    ({"base": {"preset": "deepseek-v2-lite-h800"}, "points": [{"cluster.gpus.count": 8}]},
     "points[0].cluster.gpus.count: cluster.gpus is not a section"),
    ({"base": {"preset": "deepseek-v2-lite-h800"}, "grid": {"schedule": []}},
     "grid: axis 'schedule' has no values"),
    ({"base": {"preset": "x", "scenario": "y.yaml"}}, "base: give exactly one of base.preset or base.scenario"),
    ({"base": {"preset": "deepseek-v2-lite-h800"}, "grids": {}}, "grids: unknown field"),
    ({"grid": {"schedule": ["1f1b"]}}, "base: required field is missing"),
    ({"base": {"preset": "deepseek-v2-lite-h800"}, "grid": {f"training.seed{i}": [1] for i in range(1)}},
     "grid.training.seed0: unknown scenario field"),
    ({"base": {"preset": "deepseek-v2-lite-h800"}, "grid": {"run.seed": list(range(1001)),
                                                           "training.comm_sms": list(range(1000))}},
     "the sweep has 1,001,000 points; the limit is 1,000,000"),
])
def test_spec_errors_name_the_field(spec, message):
    with pytest.raises(ScenarioError) as err:
        parse_spec(spec, source="s.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_spec_file_errors(tmp_path, runner):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {preset: [\n")
    with pytest.raises(ScenarioError, match="malformed YAML"):
        load_spec(bad)
    with pytest.raises(ScenarioError, match="not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match="profile file '.*nope.json' not found"):
        bad.write_text("base: {preset: deepseek-v2-lite-h800}\nprofile: nope.json\n")
        load_spec(bad)
    spec = tmp_path / "unknown-preset.yaml"
    spec.write_text("base: {preset: no-such-preset}\n")
    result = runner.invoke(app, ["sweep", str(spec), "-o", str(tmp_path / "r.csv")])
    assert result.exit_code == 2
    assert "unknown preset 'no-such-preset'" in result.output
    assert "Traceback" not in result.output


def test_grid_times_points_with_stable_keys(spec_dir):
    spec, base = load_spec(write_spec(spec_dir))
    points = expand(spec, base)
    assert len(points) == 4 * 2 * 2 == spec.size
    assert len({p.key for p in points}) == len(points)
    assert points[0].overrides == {"parallelism.pp": 1, "parallelism.dp": 4, "schedule": "gpipe",
                                   "parallelism.micro_batch_size": 1}
    # The same point written with its keys in another order, in another spec, has the same key.
    swapped = [{"parallelism.dp": 4, "parallelism.pp": 1}]
    spec2, base2 = load_spec(write_spec(spec_dir, points=swapped))
    assert expand(spec2, base2)[0].key == points[0].key
    # A different base gives different keys: rows of another sweep are never mistaken for this one's.
    spec3, base3 = load_spec(write_spec(spec_dir, set={"training.tokens": "3.3e12"}))
    assert base3["training"]["tokens"] == 3.3e12
    assert expand(spec3, base3)[0].key != points[0].key


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_sweep_rows_valid_and_invalid(spec_dir, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    spec, base = load_spec(write_spec(spec_dir))
    out = spec_dir / f"results{suffix}"
    run = run_sweep(spec, base, out, workers=1)
    assert (run.points, run.kept, run.computed) == (16, 0, 16)
    assert run.status == {"ok": 12, "invalid": 4}
    assert not journal_path(out).exists()
    rows = read_rows(out)
    assert [r["key"] for r in rows] == [p.key for p in expand(spec, base)]  # spec order
    invalid = [r for r in rows if r["status"] == "invalid"]
    assert {r["parallelism.pp"] for r in invalid} == {3}
    assert all("cluster.gpus = 4" in r["reason"] for r in invalid)
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(set(METRIC_COLUMNS) <= set(r) for r in ok)
    # A row holds what simulate() reports for that scenario (the sweep adds nothing and loses nothing).
    from moesim.simulator.simulate import simulate
    first = ok[0]
    direct = simulate(tiny_dense(**{"parallelism.pp": 1, "parallelism.dp": 4, "schedule": "gpipe",
                                    "parallelism.micro_batch_size": 1}))
    assert first["step_time_s"] == pytest.approx(direct.step_time_s, rel=1e-12)
    assert first["max_peak_memory_gb"] == pytest.approx(max(s.peak_memory_gb for s in direct.stages), rel=1e-12)
    assert first["fits_in_memory"] is direct.fits_in_memory
    assert stable(rows) == stable(run.rows)  # what was written reads back exactly


def test_resume_after_interrupt_keeps_finished_points(spec_dir):
    spec, base = load_spec(write_spec(spec_dir))
    out = spec_dir / "results.csv"
    seen = []

    def stop_after_five(row):
        seen.append(row)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, base, out, workers=1, on_row=stop_after_five)
    assert journal_path(out).exists()
    assert len(read_rows(out)) == 5
    run = run_sweep(spec, base, out, workers=1)
    assert (run.kept, run.computed) == (5, 11)
    by_key = {r["key"]: r for r in run.rows}
    for row in seen:  # kept, not recomputed: even the wall-clock column is the first run's
        assert by_key[row["key"]]["sim_wall_s"] == row["sim_wall_s"]
    again = run_sweep(spec, base, out, workers=1)
    assert (again.kept, again.computed) == (16, 0)


def test_resume_after_kill(spec_dir):
    """A sweep process killed with SIGKILL mid-run loses no finished point; the rerun computes only the rest."""
    spec_path = write_spec(spec_dir, points=[LAYOUTS[1]], grid={"training.tokens": [1e12 + i for i in range(400)]})
    out = spec_dir / "killed.csv"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", "from moesim.simulator.cli import main; main()", "sweep",
                             str(spec_path), "-o", str(out), "--workers", "1", "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = journal_path(out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:  # its mark line, 3 rows
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {json.loads(line)["key"]: json.loads(line) for line in journal.read_text().splitlines()
                if line.endswith("}")}
    assert 3 <= len(finished) < 400
    spec, base = load_spec(spec_path)
    run = run_sweep(spec, base, out, workers=1)
    assert run.kept >= len(finished) and run.kept + run.computed == 400
    by_key = {r["key"]: r for r in run.rows}
    assert all(by_key[k]["sim_wall_s"] == row["sim_wall_s"] for k, row in finished.items())
    assert run.status == {"ok": 400}


def test_foreign_results_need_force(spec_dir, runner):
    spec_path = write_spec(spec_dir)
    out = spec_dir / "results.csv"
    assert runner.invoke(app, ["sweep", str(spec_path), "-o", str(out), "-w", "1", "-q"]).exit_code == 0
    other = write_spec(spec_dir, set={"training.tokens": "2e12"})
    result = runner.invoke(app, ["sweep", str(other), "-o", str(out), "-w", "1", "-q"])
    assert result.exit_code == 2
    assert "not in this spec" in result.output and "--force" in result.output
    result = runner.invoke(app, ["sweep", str(other), "-o", str(out), "-w", "1", "-q", "--force"])
    assert result.exit_code == 0
    assert {r["training_days"] for r in read_rows(out) if r["status"] == "ok"} != set()
    not_results = spec_dir / "notes.csv"
    not_results.write_text("a,b\n1,2\n")
    result = runner.invoke(app, ["sweep", str(other), "-o", str(not_results), "-q"])
    assert result.exit_code == 2 and "not a moesim sweep results file" in result.output


def test_two_sweeps_cannot_write_one_output(spec_dir):
    from moesim.simulator.sweep.store import ResultStore
    spec, base = load_spec(write_spec(spec_dir))
    out = spec_dir / "results.csv"
    other = ResultStore(out, [])
    other.lock()
    with pytest.raises(ScenarioError, match="another moesim sweep is writing it"):
        run_sweep(spec, base, out, workers=1)
    other.unlock()
    assert run_sweep(spec, base, out, workers=1).computed == 16


def test_cli_output_and_bad_options(spec_dir, runner):
    spec_path = write_spec(spec_dir)
    out = spec_dir / "r.csv"
    result = runner.invoke(app, ["sweep", str(spec_path), "-o", str(out), "-w", "2"])
    assert result.exit_code == 0, result.output
    assert "16 points (4 invalid, 12 ok); 0 kept from an earlier run, 16 simulated" in result.output
    assert "invalid: pp=3 dp=1" in result.output
    result = runner.invoke(app, ["sweep", str(spec_path), "-o", str(out), "-w", "2"])
    assert "16 kept from an earlier run, 0 simulated" in result.output
    summary = json.loads(runner.invoke(app, ["sweep", str(spec_path), "-o", str(out), "--json"]).output)
    assert summary == {"output": str(out), "points": 16, "kept": 16, "computed": 0, "refused_unsimulated": 0,
                       "status": {"ok": 12, "invalid": 4}, "axes": ["parallelism.pp", "parallelism.dp", "schedule",
                                                                   "parallelism.micro_batch_size"]}
    for args, message in [(["-o", str(spec_dir / "r.txt")], "must end in .parquet or .csv"),
                          (["-o", str(spec_dir / "no" / "r.csv")], "does not exist"),
                          (["-o", str(out), "--executor", "slurm"], "--executor 'slurm' is unknown"),
                          (["-o", str(out), "--workers", "0"], "--workers 0: give at least 1"),
                          (["-o", str(out), "--address", "auto"], "only the ray executor joins a cluster")]:
        result = runner.invoke(app, ["sweep", str(spec_path), *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_local_and_ray_executors_agree(spec_dir):
    ray = pytest.importorskip("ray")
    spec, base = load_spec(write_spec(spec_dir))
    local = run_sweep(spec, base, spec_dir / "local.csv", executor="local", workers=2)
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_sweep(spec, base, spec_dir / "ray.csv", executor="ray")
        assert ray.is_initialized()  # the executor leaves a Ray instance it did not start running
        # Another process joins the running instance by its address, as `--address auto` joins a cluster.
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
        joined = subprocess.run([sys.executable, "-c", "from moesim.simulator.cli import main; main()", "sweep",
                                 str(spec_dir / "spec.yaml"), "-o", str(spec_dir / "joined.csv"), "--executor", "ray",
                                 "--address", context.address_info["address"], "-q"],
                                env=env, capture_output=True, text=True, timeout=300)
        assert joined.returncode == 0, joined.stderr[-2000:]
    finally:
        ray.shutdown()
    assert remote.computed == 16
    assert stable(remote.rows) == stable(local.rows)
    assert stable(read_rows(spec_dir / "ray.csv")) == stable(read_rows(spec_dir / "local.csv"))
    assert stable(read_rows(spec_dir / "joined.csv")) == stable(read_rows(spec_dir / "local.csv"))


def test_parallel_processes_match_one_process(spec_dir):
    spec, base = load_spec(write_spec(spec_dir))
    serial = run_sweep(spec, base, spec_dir / "serial.csv", workers=1)
    parallel = run_sweep(spec, base, spec_dir / "parallel.csv", workers=2)
    assert stable(parallel.rows) == stable(serial.rows)
