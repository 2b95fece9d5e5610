"""The scenario's self-description: every field says what it is, in which unit, with an example; `moesim schema`
writes a JSON Schema that accepts every preset (units and GPU names included) and refuses what the loader refuses;
docs/scenario-reference.md is the models' reference as generated now."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.test_fuzz_cli import run_cli
from moesim.workloads.presets import preset_names, preset_text
from moesim.workloads.schema import _submodels as section_of
from moesim.workloads.schema import every_field_path, reference_markdown, scenario_json_schema

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "scenario-reference.md"


@pytest.fixture(scope="module")
def validator():
    schema = scenario_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_every_field_has_a_description_with_its_unit_and_an_example():
    fields = every_field_path()
    assert len(fields) >= 100
    missing = [path for path, info in fields if not info.description]
    assert not missing, f"fields without a description: {missing}"
    leaves = [(path, info.description) for path, info in fields if not section_of(info.annotation)]
    no_unit = [p for p, d in leaves if not re.search(r"\([^)]+\)", d)]
    no_example = [p for p, d in leaves if "e.g. " not in d]
    assert not no_unit and not no_example, (no_unit, no_example)


@pytest.mark.parametrize("preset", preset_names())
def test_the_schema_accepts_every_preset(validator, preset):
    data = yaml.safe_load(preset_text(preset))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
    assert not errors


def test_the_schema_takes_units_and_gpu_names_and_refuses_bad_values(validator):
    data = yaml.safe_load(preset_text("deepseek-v3-h800"))
    data["cluster"]["network"] = {"nic_gbytes_per_s": "400Gb/s", "nic_latency_us": "3.7us"}
    data["cluster"]["gpu"] = "h800"
    assert not list(validator.iter_errors(data))
    for path, value in ((("parallelism", "zero_stage"), 4), (("model", "layers"), 0),
                        (("cluster", "network", "nic_efficiency"), 1.5), (("run", "fidelity"), "every"),
                        (("parallelism", "ppp"), 2), (("cluster", "gpu"), "h900")):
        bad = json.loads(json.dumps(data))
        where = bad
        for key in path[:-1]:
            where = where[key]
        where[path[-1]] = value
        assert list(validator.iter_errors(bad)), path


def test_schema_command_prints_and_writes_it(tmp_path):
    code, out, err = run_cli(["schema"])
    assert code == 0 and json.loads(out) == scenario_json_schema()
    target = tmp_path / "scenario.schema.json"
    code, out, err = run_cli(["schema", "-o", str(target)])
    assert code == 0 and json.loads(target.read_text())["$schema"].endswith("2020-12/schema")
    code, _, err = run_cli(["schema", "-o", str(target)])
    assert code == 2 and "--force" in err


def test_the_field_reference_in_docs_matches_the_models():
    assert REFERENCE.read_text() == reference_markdown(), (
        "docs/scenario-reference.md is stale; regenerate it: moesim schema --reference -o "
        "docs/scenario-reference.md --force")
    for path, _ in every_field_path():
        assert f"| `{path}` |" in REFERENCE.read_text()
