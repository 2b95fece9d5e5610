"""The timeline's data (what the browser draws), the compare command, and what every page promises."""

from __future__ import annotations

import base64
import json
import os
import re
import stat

import numpy as np
import pytest

from moesim.simulator.cli import app
from moesim.simulator.metrics import uncovered_s
from moesim.simulator.report import result_payload, write_report
from moesim.simulator.report.compare import ENERGY_KEYS, METRICS, headline_rows, metric_values, stage_deltas
from moesim.simulator.report.experts import deviation_pct, expert_figure
from moesim.simulator.report.page import CONFIG
from moesim.simulator.report.timeline import directions, gap_marks, timeline_data, timeline_of
from moesim.simulator.report.traffic import expert_load, link_loads
from moesim.simulator.report.heatmap import heatmap_figure
from moesim.simulator.simulate import simulate
from moesim.workloads.loader import load_scenario
from tests.conftest import tiny_dense
from tests.report_data import SMALL

DUALPIPE = ["schedule=dualpipe", "parallelism.global_batch=64"]  # 2 ranks, 8 micro-batches ≥ 2·pp


@pytest.fixture(scope="module")
def dualpipe():
    scenario = load_scenario(preset=SMALL, overrides=DUALPIPE)
    return scenario, simulate(scenario, keep_timeline=True)


def rows_of(data: dict, kind: str) -> list[tuple]:
    """(row name, start, end, style key, label, micro-batch, stage) of the ops of one kind (task | mark)."""
    o, styles = data["ops"], data["styles"]
    return [(data["rows"][o["row"][i]], o["start"][i], o["end"][i], styles[o["style"][i]]["key"],
             data["labels"][o["label"][i]], o["mb"][i], o["stage"][i])
            for i in range(len(o["start"])) if styles[o["style"][i]]["kind"] == kind]


def test_timeline_ops_are_the_records(small):
    _, result = small
    data = timeline_of(result.timeline)
    tasks = rows_of(data, "task")
    # Pipeline sends are drawn on the comm row, waits for the host thread on the compute row.
    row = {"pp": "comm", "host": "compute"}
    expected = sorted((f"rank {r} · {row.get(s, s)}", a, b, lab, mb, st)
                      for r, s, a, b, lab, _, mb, st in result.timeline.records if b > a)
    assert sorted((row, a, b, lab, mb, st) for row, a, b, _, lab, mb, st in tasks) == expected
    assert data["tasks"] == len(expected)
    assert data["ops"]["start"] == sorted(data["ops"]["start"])
    assert data["max_dur_s"] == max(e - s for _, s, e, *_ in tasks + rows_of(data, "mark"))
    assert json.loads(json.dumps(data)) == data  # JSON-ready


@pytest.mark.parametrize("fixture", ["small", "dualpipe"])
def test_gap_marks_add_up_to_each_stages_bubble_and_exposed_comm(fixture, request):
    _, result = request.getfixturevalue(fixture)
    marks = rows_of(timeline_of(result.timeline), "mark")
    for rank, stage in enumerate(result.stages):
        mine = [m for m in marks if m[0] == f"rank {rank} · compute"]
        assert sum(b - a for _, a, b, key, *_ in mine if key == "bubble") == pytest.approx(stage.bubble_s, abs=1e-9)
        assert sum(b - a for _, a, b, key, *_ in mine if key == "exposed") == pytest.approx(stage.exposed_comm_s,
                                                                                             abs=1e-9)


def test_gap_marks_by_hand():
    compute = [(1.0, 2.0), (4.0, 5.0)]
    comm = [(1.5, 3.0), (3.5, 4.5)]
    assert gap_marks(compute, comm, 6.0) == [(0.0, 1.0, "bubble"), (2.0, 3.0, "exposed"), (3.0, 3.5, "bubble"),
                                             (3.5, 4.0, "exposed"), (5.0, 6.0, "bubble")]
    # The same split as the metrics: exposed is comm time outside compute.
    assert uncovered_s(comm, compute) == 1.0 + 0.5


def test_dualpipe_directions_are_told_apart(dualpipe, small):
    _, result = dualpipe
    data = timeline_of(result.timeline)
    assert data["two_way"]
    way = directions(result.timeline.records)
    half = result.micro_batches // 2
    # DualPipe: the first half of the micro-batches goes down (stage s on rank s), the second half up.
    assert {way[(mb, 0)] for mb in range(half)} == {1} and {way[(mb, 0)] for mb in range(half, 2 * half)} == {-1}
    keys = {key for *_, key, _, _, _ in [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows_of(data, "task")]}
    assert {"F-down", "F-up", "B-down", "B-up"} <= keys
    assert not timeline_of(small[1].timeline)["two_way"]  # 1F1B: one direction, plain phase names


def test_chunks_carry_micro_batch_numbers(small):
    _, result = small
    data = timeline_of(result.timeline)
    forwards = {(r, mb) for r, s, a, b, lab, ph, mb, st in result.timeline.records if ph == "F" and s == "compute"}
    chunks = data["chunks"]
    got = {(int(data["rows"][row].split()[1]), mb) for row, mb, up in zip(chunks["row"], chunks["mb"], chunks["upper"])
           if up}
    assert got == forwards


def test_full_fidelity_rows_are_the_recorded_gpus():
    scenario = tiny_dense(**{"run.fidelity": "full"})
    result = simulate(scenario, keep_timeline=True)
    data = timeline_of(result.timeline)
    recorded = sorted({r[0] for r in result.timeline.records})
    assert data["rows"] == [f"rank {r} · {s}" for r in recorded for s in ("compute", "comm")]


def test_pages_have_no_send_to_cloud_and_respect_the_umask(small, tmp_path):
    scenario, result = small
    assert CONFIG["showSendToCloud"] is False and "sendDataToCloud" in CONFIG["modeBarButtonsToRemove"]
    old = os.umask(0o022)
    try:
        page = write_report(result, tmp_path / "a.html", scenario)
        assert stat.S_IMODE(page.stat().st_mode) == 0o644  # readable by others
        os.umask(0o077)
        private = write_report(result, tmp_path / "b.html", scenario)
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    text = page.read_text()
    config = re.search(r"var CONFIG = (\{.*?\});", text, re.S).group(1)  # moesim.js draws every chart with it
    assert "showSendToCloud: false" in config and '"sendDataToCloud"' in config
    assert re.search(r"<title>[^<]+</title>", text)


def test_expert_load_is_deviation_from_the_mean_sorted(small):
    scenario, _ = small
    load = expert_load(scenario)
    fig = expert_figure(load)
    per_expert = fig.data[0]
    mean = sum(load.tokens_per_expert) / len(load.tokens_per_expert)
    expected = sorted(((v / mean - 1) * 100 for v in load.tokens_per_expert), reverse=True)
    assert list(per_expert.y) == pytest.approx(expected, abs=1e-9)
    assert fig.layout.xaxis.title.text and fig.layout.yaxis.title.text and fig.layout.xaxis2.title.text
    assert deviation_pct([1.0, 3.0]) == [-50.0, 50.0]


def test_link_heat_map_has_axis_titles(small):
    scenario, result = small
    fig = heatmap_figure(link_loads(scenario).utilisation(result.step_time_s))
    assert fig.layout.xaxis.title.text == "pipeline rank" and fig.layout.yaxis.title.text == "link class"


def test_compare_metrics_and_stage_deltas(small, dualpipe):
    a, b = small[1].to_dict(), dualpipe[1].to_dict()
    rows = dict((m.key, v) for m, v in headline_rows([a, b]))
    assert rows["step_time_s"] == [a["step_time_s"], b["step_time_s"]]
    assert rows["peak_memory_gb"][1] == max(s["peak_memory_gb"] for s in b["stages"])
    deltas = stage_deltas(a, b)
    assert deltas[1]["bubble_s"] == b["stages"][1]["bubble_s"] - a["stages"][1]["bubble_s"]
    assert stage_deltas(a, {**b, "stages": b["stages"][:1]}) is None
    assert set(metric_values(a)) == {m.key for m in METRICS} - set(ENERGY_KEYS)  # no energy section: no run energy
    energy = {"run_gpu_hours": 10.0, "run_mwh": 2.0, "run_usd": None}  # no price: no cost row
    assert set(metric_values({**a, "energy": energy})) == {m.key for m in METRICS} - {"run_usd"}


def test_cli_compare_presets_with_per_source_overrides(runner, small, dualpipe, tmp_path):
    page = tmp_path / "cmp.html"
    out = runner.invoke(app, ["compare", SMALL, SMALL, "--set", "2:schedule=dualpipe",
                              "--set", "2:parallelism.global_batch=64", "--json", "-o", str(page)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["names"] == [SMALL, f"{SMALL} schedule=dualpipe parallelism.global_batch=64"]
    assert [r["step_time_s"] for r in data["results"]] == [small[1].step_time_s, dualpipe[1].step_time_s]
    text = page.read_text()
    assert text.count("moesim.attach('figure-") == 2 and "id='compare-table'" in text
    assert "<title>moesim compare: " in text


def test_cli_compare_mixes_saved_results_and_files(runner, small, tmp_path):
    scenario, result = small
    saved = tmp_path / "base.json"
    saved.write_text(json.dumps(result_payload(result, scenario)))
    spec = tmp_path / "fast.yaml"
    spec.write_text(runner.invoke(app, ["presets", "show", SMALL]).output)
    out = runner.invoke(app, ["compare", str(saved), str(spec), "--set", "2:cluster.network.nic_gbytes_per_s=100"])
    assert out.exit_code == 0, out.output
    assert "headline metrics" in out.output and "per stage: fast cluster.network.nic_gbytes_per_s=100 − base" in out.output


@pytest.mark.parametrize("args, message", [
    ([SMALL], "at least two sources"),
    ([SMALL, "no-such-thing"], "no-such-thing: neither a file nor a preset"),
    ([SMALL, SMALL, "--set", "3:schedule=1f1b"], "source 3 does not exist"),
    ([SMALL, SMALL, "--set", "2:parallelism.pp=3"], "parallelism"),
])
def test_cli_compare_bad_input_is_one_line(runner, args, message):
    out = runner.invoke(app, ["compare", *args])
    assert out.exit_code == 2 and message in out.output and len(out.output.strip().splitlines()) == 1, out.output


def test_cli_compare_refuses_set_on_a_saved_result(runner, small, tmp_path):
    saved = tmp_path / "r.json"
    saved.write_text(json.dumps(small[1].to_dict()))
    out = runner.invoke(app, ["compare", str(saved), SMALL, "--set", "1:schedule=1f1b"])
    assert out.exit_code == 2 and "a saved result cannot take --set" in out.output


def decoded(page_data: dict) -> dict:
    """The page's timeline data with its typed-array columns read back (numpy, not the page's own code)."""
    dtypes = {"Int8Array": "<i1", "Int16Array": "<i2", "Int32Array": "<i4", "Float64Array": "<f8"}
    out = dict(page_data)
    for table in ("ops", "chunks"):
        out[table] = {name: np.frombuffer(base64.b64decode(col["base64"]), dtypes[col["array"]]).tolist()
                      for name, col in page_data[table].items()}
    return out


def test_page_carries_timeline_columns_exactly_in_typed_arrays(small):
    """Every op time comes back bit for bit; integer columns take the smallest integer array that holds them."""
    from moesim.simulator.report.page import compact, typed_column

    data = timeline_of(small[1].timeline)
    page = compact(data)
    assert decoded(json.loads(json.dumps(page))) == data
    assert page["ops"]["start"]["array"] == "Float64Array" and page["ops"]["style"]["array"] == "Int8Array"
    assert [typed_column(v)["array"] for v in ([-128, 127], [-129], [1 << 15], [1 << 31], [0.5], [True, False])] == \
        ["Int8Array", "Int16Array", "Int32Array", "Float64Array", "Float64Array", "Int8Array"]
    assert len(json.dumps(page)) < 0.7 * len(json.dumps(data))


def test_page_data_cannot_break_out_of_its_script_element():
    from moesim.simulator.report.page import Page, Section, render

    records = [(0, "compute", 0.0, 1.0, "</script><!--x", "F", 0, 0), (0, "comm", 0.5, 1.5, "a2a", "F", 0, 0)]
    data = timeline_data(records, 1, 2.0)
    text = render(Page("t", sections=[Section("timeline", timeline=data)]))
    payload = re.search(r"<script type='application/json' id='figure-0-data'>(.*?)</script>", text, re.S).group(1)
    assert decoded(json.loads(payload)) == data and "</script><!--x" in data["labels"]
    # By hand: compute 0–1 s; comm busy 0.5–1.5 s leaves 1–1.5 exposed, then 1.5–2 bubble.
    marks = rows_of(data, "mark")
    assert [(a, b, key) for _, a, b, key, *_ in marks] == [(1.0, 1.5, "exposed"), (1.5, 2.0, "bubble")]
