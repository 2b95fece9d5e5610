"""The GPU catalogue (topologies/data/gpus.yaml) against the figures its sources publish (tests/data table)."""

import csv
from pathlib import Path

import pytest

from moesim.topologies.gpus import FACT_FIELDS, SPEC_FIELDS, catalogue_key, gpu_entry, gpu_kinds, gpu_spec
from moesim.workloads.scenario import GpuSpec

TABLE = Path(__file__).parent / "data" / "gpu_catalogue_sources.csv"
ROWS = list(csv.DictReader(l for l in TABLE.read_text().splitlines() if not l.startswith("#")))
NUMBERS = [f for f in (*SPEC_FIELDS, *FACT_FIELDS) if f not in ("name", "nic", "nvlink_generation")]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['gpu']}.{r['field']}" for r in ROWS])
def test_catalogue_number_is_the_published_figure(row):
    value = gpu_entry(row["gpu"])[row["field"]]
    as_published = value * int(row["gpus"]) * (2 if row["sparse"] == "yes" else 1) / float(row["scale"])
    assert abs(as_published - float(row["published"])) <= float(row["tolerance"]) + 1e-9, row["source"]


def test_every_number_is_sourced_or_marked_unpublished():
    """A number with no row in the table must say in ``unpublished`` why, and each sourced field names a source."""
    tested = {(r["gpu"], r["field"]) for r in ROWS}
    for key in gpu_kinds():
        entry = gpu_entry(key)
        for field in NUMBERS:
            if entry.get(field) is None:
                continue
            assert (key, field) in tested or field in entry["unpublished"], f"{key}.{field} has no source"
        for field in entry["sources"]:
            assert field in entry, f"{key}: a source for {field}, which the entry lacks"


def test_every_catalogue_gpu_is_a_scenario_gpu_spec():
    for key in gpu_kinds():
        spec = GpuSpec(**gpu_spec(key))
        assert spec.bf16_tflops > 0 and spec.sms > 0
        if spec.fp8_tflops is not None:  # FP8 doubles BF16 on every GPU that has it (same tensor cores)
            assert spec.fp8_tflops == pytest.approx(2 * spec.bf16_tflops, rel=1e-3)


@pytest.mark.parametrize("device, key", [("NVIDIA H200", "h200"), ("NVIDIA H20", "h20"), ("NVIDIA GB200", "gb200"),
                                         ("NVIDIA B200", "b200"), ("NVIDIA H100 80GB HBM3", "h100"),
                                         ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA L40S", None)])
def test_device_names_map_to_the_longest_catalogue_key(device, key):
    assert catalogue_key(device) == key


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: a100, b200, b300, gb200, gb300, h100, h20, h200, h800"):
        gpu_spec("b100")
