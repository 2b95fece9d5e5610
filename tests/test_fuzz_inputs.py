"""Fuzzing the scenario loader and --set: any input gives a Scenario or a one-line ScenarioError, never a crash."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import MAX_SCENARIO_BYTES, apply_override, load_scenario, validate
from moesim.workloads.presets import preset_data

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)
FIELDS = ["cluster.gpus", "cluster.gpu", "cluster.network.nic_gbytes_per_s", "model.layers", "model.moe",
          "model.attention.kind", "parallelism.pp", "parallelism.ep", "parallelism.stage_layers",
          "training.tokens", "training.precision.expert", "run.seed", "schedule", "faults.stragglers"]


def one_line(err: Exception) -> bool:
    text = str(err)
    return bool(text) and len(text.splitlines()) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=values)
def test_any_override_value_is_accepted_or_refused_in_one_line(field, value):
    data = preset_data("mixtral-8x7b-h100")
    try:
        apply_override(data, f"{field}={yaml.safe_dump(value, default_flow_style=True).strip()}")
        validate(data)
    except ScenarioError as err:
        assert one_line(err)


@settings(max_examples=100, deadline=None)
@given(key=st.text(max_size=30), value=st.text(max_size=30))
def test_any_override_string_is_accepted_or_refused_in_one_line(key, value):
    try:
        load_scenario(preset="mixtral-8x7b-h100", overrides=[f"{key}={value}"])
    except ScenarioError as err:
        assert one_line(err)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_file_text_is_accepted_or_refused_in_one_line(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        load_scenario(path)
    except ScenarioError as err:
        assert one_line(err)


@settings(max_examples=60, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["cluster", "model", "parallelism", "training", "run", "x"]),
                            values, max_size=5))
def test_any_structure_is_accepted_or_refused_in_one_line(data):
    try:
        validate(data)
    except ScenarioError as err:
        assert one_line(err)


def test_oversized_file_is_refused_with_the_limit(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("#" * (MAX_SCENARIO_BYTES + 1))
    try:
        load_scenario(path)
    except ScenarioError as err:
        assert f"the limit is {MAX_SCENARIO_BYTES:,}" in str(err)
    else:
        raise AssertionError("an oversized scenario was accepted")


@settings(max_examples=40, deadline=None)
@given(item=st.text(max_size=40))
def test_cli_set_never_tracebacks(item):
    from typer.testing import CliRunner

    from moesim.simulator.cli import app
    result = CliRunner().invoke(app, ["simulate", "--preset", "mixtral-8x7b-h100", "--set", item, "--json"])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if result.exit_code == 2:
        assert "Traceback" not in result.output


def test_write_atomic_refuses_to_overwrite_and_leaves_no_temp_files(tmp_path):
    import pytest

    from moesim.workloads.files import write_atomic
    target = tmp_path / "out.json"
    write_atomic(target, "first")
    with pytest.raises(ScenarioError, match="exists; pass --force"):
        write_atomic(target, "second")
    assert target.read_text() == "first"
    write_atomic(target, "second", force=True)
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with pytest.raises(ScenarioError, match="does not exist"):
        write_atomic(tmp_path / "missing" / "x.json", "x")


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    import os

    import pytest

    from moesim.workloads import files
    target = tmp_path / "profile.json"
    target.write_text("old")

    def crash(*_):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, "new", force=True)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]


events = st.dictionaries(st.sampled_from(["ph", "cat", "name", "ts", "dur", "pid", "tid", "args", "id"]),
                         st.one_of(scalars, st.sampled_from(["kernel", "X", "user_annotation", "ac2g", "s", "f"]),
                                   st.dictionaries(st.sampled_from(["stream", "grid", "correlation"]), scalars,
                                                   max_size=3)),
                         max_size=9)


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(values, st.fixed_dictionaries({"traceEvents": st.lists(events, max_size=8)})))
def test_any_trace_is_read_or_refused_in_one_line(data):
    """The Kineto importer and the summary on arbitrary JSON: a summary or a one-line error, nothing else."""
    from moesim.workloads.traces.kineto import parse_trace
    from moesim.workloads.traces.summary import summarize
    try:
        summarize(parse_trace(data, "fuzz.json"))
    except ScenarioError as err:
        assert one_line(err)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_trace_file_text_is_read_or_refused_in_one_line(tmp_path, text):
    from moesim.workloads.traces.kineto import load_trace
    path = tmp_path / "fuzz.json"
    path.write_text(text)
    try:
        load_trace(path)
    except ScenarioError as err:
        assert one_line(err)


spec_keys = st.sampled_from(["base", "set", "grid", "points", "profile", "name", "extra"])
spec_values = st.one_of(values, st.fixed_dictionaries({"preset": st.sampled_from(["mixtral-8x7b-h100", "nope"])}),
                        st.dictionaries(st.sampled_from(["parallelism.pp", "schedule", "bogus.key", "model"]),
                                        st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=3))


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(spec_keys, spec_values, max_size=5))
def test_any_sweep_spec_is_accepted_or_refused_in_one_line(data):
    """A sweep spec is checked as a whole before any point runs: valid, or one line naming the field."""
    from moesim.simulator.sweep.spec import base_data, expand, parse_spec
    try:
        spec = parse_spec(data)
        expand(spec, base_data(spec))
    except ScenarioError as err:
        assert one_line(err)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_sweep_spec_file_is_accepted_or_refused_in_one_line(tmp_path, text):
    from moesim.simulator.sweep.spec import load_spec
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    try:
        load_spec(path)
    except ScenarioError as err:
        assert one_line(err)
