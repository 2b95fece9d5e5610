"""Sweep result columns: invalid rows carry no metric at all, every row fills every axis (also those its point
leaves to the base scenario), and a column has one type in CSV and in Parquet."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moesim.simulator.sweep import expand, load_spec, run_sweep
from moesim.simulator.sweep.row import METRIC_COLUMNS, NO_NOTES, column_types, result_columns
from moesim.simulator.sweep.store import read_rows
from tests.conftest import tiny_dense

# cluster.gpus is set by the last point only: the others take the base scenario's 4.
POINTS = [{"parallelism.pp": 1, "parallelism.dp": 4}, {"parallelism.pp": 3, "parallelism.dp": 1},
          {"parallelism.pp": 2, "parallelism.dp": 4, "cluster.gpus": 8}]


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_dense().model_dump()))
    spec = {"name": "columns", "base": {"scenario": "tiny.yaml"}, "points": POINTS, "grid": {"schedule": ["1f1b"]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def both(spec_path, tmp_path) -> dict[str, list[dict]]:
    pytest.importorskip("pyarrow")
    spec, base = load_spec(spec_path)
    return {suffix: run_sweep(spec, base, tmp_path / f"out{suffix}", workers=1).rows for suffix in (".csv", ".parquet")}


def test_invalid_rows_carry_no_metrics_and_every_axis_is_filled(both):
    rows = both[".csv"]
    assert [r["status"] for r in rows] == ["ok", "invalid", "ok"]
    invalid = rows[1]
    assert "3 GPUs" in invalid["reason"] or "cluster.gpus = 4" in invalid["reason"]
    assert not (set(METRIC_COLUMNS) - {"schedule"}) & set(invalid)  # (schedule is an axis here) nor wall-clock s
    assert [r["cluster.gpus"] for r in rows] == [4, 4, 8]  # the base scenario's where a point leaves it
    assert all(r["schedule"] == "1f1b" and "parallelism.pp" in r for r in rows)
    assert all(set(METRIC_COLUMNS) <= set(r) for r in rows if r["status"] == "ok")


def test_a_column_has_one_type_in_csv_and_parquet(both, tmp_path):
    import pyarrow.csv
    import pyarrow.parquet

    csv_schema = pyarrow.csv.read_csv(tmp_path / "out.csv").schema
    parquet_schema = pyarrow.parquet.read_table(tmp_path / "out.parquet").schema
    assert csv_schema.names == parquet_schema.names
    differ = [(n, str(csv_schema.field(n).type), str(parquet_schema.field(n).type)) for n in csv_schema.names
              if csv_schema.field(n).type != parquet_schema.field(n).type]
    assert not differ
    kinds = {"text": "string", "int": "int64", "float": "double", "bool": "bool"}
    for name, kind in column_types().items():
        assert str(parquet_schema.field(name).type) == kinds[kind], name
    assert len(read_rows(tmp_path / "out.parquet")) == len(read_rows(tmp_path / "out.csv")) == 3
    stable = [{k: v for k, v in r.items() if k != "sim_wall_s"} for r in both[".csv"]]
    assert stable == [{k: v for k, v in r.items() if k != "sim_wall_s"} for r in both[".parquet"]]


def test_an_all_invalid_column_keeps_its_type_in_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet

    from moesim.simulator.sweep.store import write_rows

    rows = [{"key": "a", "status": "invalid", "reason": "memory: too big", "parallelism.pp": 3}]
    write_rows(tmp_path / "x.parquet", rows, ["key", "status", "reason", "parallelism.pp", *METRIC_COLUMNS],
               column_types())
    schema = pyarrow.parquet.read_table(tmp_path / "x.parquet").schema
    assert schema.field("cost_model_notes").type == pa.string()
    assert schema.field("step_time_s").type == pa.float64()
    assert schema.field("gpus").type == pa.int64()
    assert schema.field("fits_in_memory").type == pa.bool_()


def test_notes_are_text_even_when_there_are_none(small):
    from dataclasses import replace

    assert result_columns(replace(small[1], cost_model_notes=[]))["cost_model_notes"] == NO_NOTES


def test_expand_names_the_axes_a_point_leaves_to_the_base(spec_path):
    spec, base = load_spec(spec_path)
    assert [p.also for p in expand(spec, base)] == [("cluster.gpus",), ("cluster.gpus",), ()]
