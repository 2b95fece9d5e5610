"""``import moesim``: one import name whatever the working folder holds, the Python API (load, simulate, sweep,
results as DataFrames) against the CLI, the example script run from another folder, and the wheel's layout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

import moesim
from moesim.simulator.simulate import STAGE_COLUMNS, TIMELINE_COLUMNS

REPO = Path(__file__).resolve().parents[1]
SMALL = "mixtral-8x7b-h100"


@pytest.fixture
def decoy(tmp_path) -> Path:
    """A working folder such as an ML repository has: folders named like moesim's parts, one with an
    ``__init__.py`` that would break anything importing it."""
    for name in moesim.SUBPACKAGES:
        (tmp_path / name).mkdir()
    (tmp_path / "calibration" / "__init__.py").write_text("raise ImportError('the user\\'s calibration package')\n")
    (tmp_path / "workloads" / "presets").mkdir()
    return tmp_path


def run_python(code_or_args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def test_the_parts_are_subpackages_of_moesim_from_any_folder(decoy):
    done = run_python(["-c", "import moesim, moesim.calibration.profile as p, moesim.workloads.presets as w; "
                             "print(p.__file__); print(w.preset_names()[0])"], decoy)
    assert done.returncode == 0, done.stderr
    profile_file, first_preset = done.stdout.split()
    assert Path(profile_file).is_relative_to(REPO) and first_preset == "deepseek-v2-h800"


def test_the_cli_runs_in_a_folder_with_a_calibration_directory(decoy):
    """The bug of issue 26: a `calibration/` folder in the working directory broke `simulate`."""
    done = run_python(["-m", "moesim", "simulate", "-p", SMALL, "--json"], decoy)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["step_time_s"] == moesim.simulate(SMALL).step_time_s


def test_simulate_is_what_the_cli_prints(tmp_path):
    scenario = moesim.load(SMALL, ["schedule=interleaved", "parallelism.virtual_stages=2"])
    cli = json.loads(run_python(["-m", "moesim", "simulate", "-p", SMALL, "--set", "schedule=interleaved",
                                 "--set", "parallelism.virtual_stages=2", "--json"], tmp_path).stdout)
    api = moesim.simulate(scenario).to_dict()
    for key in ("step_time_s", "tokens_per_s", "mfu_causal", "gpu_hours_per_trillion_tokens", "micro_batches"):
        assert api[key] == pytest.approx(cli[key], rel=1e-12), key
    assert [s["bubble_s"] for s in api["stages"]] == pytest.approx([s["bubble_s"] for s in cli["stages"]],
                                                                   rel=1e-12)


def test_load_takes_a_preset_a_file_or_a_dict_and_refuses_anything_else(tmp_path):
    by_name = moesim.load(SMALL, ["parallelism.micro_batch_size=2"])
    data = yaml.safe_load(moesim.workloads.presets.preset_text(SMALL))
    given = data["parallelism"]["micro_batch_size"]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    by_file = moesim.load(tmp_path / "s.yaml", ["parallelism.micro_batch_size=2"])
    by_dict = moesim.load(data, ["parallelism.micro_batch_size=2"])
    assert by_name == by_file == by_dict and by_name.parallelism.micro_batch_size == 2
    assert data["parallelism"]["micro_batch_size"] == given != 2  # the caller's dict is not edited
    with pytest.raises(moesim.ScenarioError, match="'no-such' is neither a preset .* nor a scenario file"):
        moesim.load("no-such")
    with pytest.raises(moesim.ScenarioError, match="give a preset name, a scenario file's path or a dict of "
                                                    "sections, not int 42"):
        moesim.simulate(42)
    with pytest.raises(moesim.ScenarioError, match="parallelism.ep=512 exceeds"):
        moesim.load("deepseek-v3-h800", ["parallelism.ep=512"])


def test_results_as_dataframes():
    result = moesim.simulate(SMALL, timeline=True)
    stages = result.stages_frame()
    assert list(stages.columns) == list(STAGE_COLUMNS) and stages.index.name == "stage"
    assert stages.to_dict("records") == [s.to_dict() for s in result.stages]
    timeline = result.timeline_frame()
    assert list(timeline.columns) == list(TIMELINE_COLUMNS) and len(timeline) == len(result.timeline.records)
    busy = timeline[(timeline["rank"] == 0) & (timeline["stream"] == "compute")]
    assert (busy["end_s"] - busy["start_s"]).sum() == pytest.approx(
        result.stages[0].forward_s + result.stages[0].backward_input_s + result.stages[0].backward_weight_s
        + result.stages[0].optimizer_s, rel=1e-9)
    assert timeline["end_s"].max() == pytest.approx(result.timeline.makespan_s, rel=1e-12)
    with pytest.raises(ValueError, match="timeline=True"):
        moesim.simulate(SMALL).timeline_frame()


def test_sweep_writes_its_rows_and_returns_them(tmp_path):
    spec = {"base": {"preset": "deepseek-v2-lite-h800"}, "grid": {"training.dispatch_dtype": ["fp8", "bf16"]}}
    run = moesim.sweep(spec, tmp_path / "r.csv")
    frame = run.frame()
    assert run.points == 2 and run.status == {"ok": 2}
    assert list(frame["training.dispatch_dtype"]) == ["fp8", "bf16"]
    on_disk = pd.read_csv(tmp_path / "r.csv")
    assert list(on_disk["step_time_s"]) == pytest.approx(list(frame["step_time_s"]), rel=1e-12)
    again = moesim.sweep(spec, tmp_path / "r.csv")  # resumed: nothing to run
    assert (again.kept, again.computed) == (2, 0)


def test_the_example_script_runs_from_another_folder(decoy):
    done = run_python([str(REPO / "examples" / "python" / "what_if.py"), str(decoy)], decoy)
    assert done.returncode == 0, done.stderr
    steps = (moesim.simulate("deepseek-v3-h800").step_time_s,
             moesim.simulate(moesim.load("deepseek-v3-h800", ["training.dispatcher=alltoall"])).step_time_s)
    assert done.stdout.startswith(f"deepseek-v3-h800: step {steps[0]:.3f} s with DeepEP, {steps[1]:.3f} s with")
    assert len(pd.read_csv(decoy / "dispatch.csv")) == 4


def test_the_wheel_installs_the_four_folders_under_moesim(tmp_path):
    """Built as pip builds it, the wheel holds moesim/simulator/... with every data file; imported from it (not
    from this checkout), it simulates."""
    source = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info beside the sources
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in ("moesim", *moesim.SUBPACKAGES):
        shutil.copytree(REPO / folder, source / folder, ignore=skip)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "No module named" in built.stderr:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("moesim-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("moesim/__init__.py", "moesim/__main__.py", "moesim/simulator/cli.py",
                   "moesim/workloads/presets/deepseek-v3-h800.yaml", "moesim/calibration/profiles/h800.json",
                   "moesim/topologies/data/gpus.yaml", "moesim/simulator/report/vendor/plotly-cartesian.min.js"):
        assert needed in names, needed
    assert not any(n.split("/")[0] in moesim.SUBPACKAGES for n in names)  # no generic top-level names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site))
    done = run_python(["-c", "import moesim, moesim.simulator.simulate as s; print(moesim.__file__); "
                             f"print(moesim.simulate('{SMALL}').step_time_s)"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    where, step = done.stdout.split()
    assert Path(where).is_relative_to(site) and float(step) == moesim.simulate(SMALL).step_time_s
