"""Scenario schema, presets, --set overrides and the one-line errors (exit code 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moesim.simulator.cli import app
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.presets import preset_names


def test_every_preset_validates():
    names = preset_names()
    assert {"deepseek-v3-h800", "llama3-405b-h100", "deepseek-v2-lite-h800", "mixtral-8x7b-h100"} <= set(names)
    for name in names:
        scenario = load_scenario(preset=name)
        par = scenario.parallelism
        assert par.dp * par.tp * par.pp * par.cp == scenario.cluster.gpus


def test_deepseek_preset_matches_the_published_layout():
    s = load_scenario()  # the default
    assert s.name == "deepseek-v3-h800"
    assert (s.cluster.gpus, s.parallelism.pp, s.parallelism.ep, s.parallelism.tp) == (2048, 16, 64, 1)
    assert s.model.moe.routed_experts // s.parallelism.ep == 4  # 4 experts per GPU (reference)
    assert s.training.comm_sms == 20 and s.cluster.gpu.sms == 132
    assert s.training.dispatch_dtype == "fp8" and s.training.combine_dtype == "bf16"
    assert s.micro_batches == 15360 // 128


def test_llama_preset_layout():
    s = load_scenario(preset="llama3-405b-h100")
    par = s.parallelism
    assert (par.tp, par.cp, par.pp, par.dp) == (8, 1, 16, 64)
    assert s.tokens_per_step == 16 * 1024 * 1024


def test_set_overrides_nested_fields_and_parses_numbers():
    s = load_scenario(overrides=["parallelism.pp=8", "parallelism.dp=256", "parallelism.stage_layers=null",
                                 "model.layers=64", "training.tokens=1e12", "cluster.gpu=h200"])
    assert s.parallelism.pp == 8 and s.training.tokens == 1e12 and s.cluster.gpu.hbm_gb == 141


def test_json_scenario_file(tmp_path):
    import json

    from moesim.workloads.presets import preset_data
    path = tmp_path / "s.json"
    path.write_text(json.dumps(preset_data("mixtral-8x7b-h100")))
    assert load_scenario(path).model.name == "Mixtral-8x7B"


ERROR_CASES = [
    (["--set", "parallelism.stage_layers=null"], "model.layers=61 does not split evenly"),
    (["--set", "parallelism.ep=512"], "parallelism.ep=512 exceeds model.moe.routed_experts=256"),
    (["--set", "parallelism.dp=64"], "dp·tp·pp·cp"),
    (["--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
    (["--set", "cluster.network.nic_gbytes_per_s=-50"], "cluster.network.nic_gbytes_per_s: must be ≥ 0.001 GB/s"),
    (["--set", "parallelism.bogus=1"], "unknown key 'bogus'"),
    (["--set", "schedule=nonesuch"], "unknown schedule 'nonesuch'"),
    (["--set", "parallelism.global_batch=100"], "global_batch=100 must be a multiple"),
]


@pytest.mark.parametrize("args,message", ERROR_CASES)
def test_bad_input_gives_one_line_and_exit_2(runner, args, message):
    result = runner.invoke(app, ["simulate", *args])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich may wrap; the message itself is one line
    assert message in text
    assert "Traceback" not in result.output


def test_malformed_yaml(runner, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("cluster: {gpus: 8\nmodel: [")
    result = runner.invoke(app, ["simulate", str(path)])
    assert result.exit_code == 2
    assert "malformed YAML" in result.output


def test_missing_section_names_the_field(runner, tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("cluster: {gpus: 8, gpu: h800}\n")
    result = runner.invoke(app, ["simulate", str(path)])
    assert result.exit_code == 2
    assert "model: required field is missing" in result.output


def test_console_script_prints_no_traceback(tmp_path):
    """The installed entry point, in a real process: one stderr line, exit code 2."""
    proc = subprocess.run([sys.executable, "-m", "moesim.simulator.cli", "simulate", "--set", "parallelism.ep=3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: parallelism.ep=3 must divide")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_scenario_error_is_a_value_error():
    with pytest.raises(ScenarioError):
        load_scenario(overrides=["parallelism.tp=3"])
