"""moesim report: data behind the charts, the JSON round trip, the page, the CLI and its errors."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from moesim.simulator.cli import app
from moesim.simulator.network import AnalyticNetwork
from moesim.simulator.report import load_report_source, report_from_dict, result_payload, write_report
from moesim.simulator.report.sweep import pareto_front
from moesim.simulator.report.traffic import comm_link_bytes, expert_load, link_loads
from moesim.simulator.report.whatif import Knobs, even_split, preset_knobs, scenario_for, what_if
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Comm, Pattern
from tests.conftest import tiny_dense
from tests.report_data import SMALL, sweep_rows


class _Resources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if (tag == "script" and attrs.get("src")) or (tag == "link" and attrs.get("href")) or \
                (tag in ("img", "iframe") and attrs.get("src")):
            self.found.append((tag, attrs))


def external_resources(text: str) -> list:
    """Tags that would load something from outside the file (script contents are not parsed as tags)."""
    parser = _Resources()
    parser.feed(text)
    return parser.found


@pytest.fixture(scope="module")
def rows():
    return sweep_rows()


def test_pareto_front_by_hand():
    rows = [{"t": 1.0, "g": 4}, {"t": 2.0, "g": 2}, {"t": 2.0, "g": 4}, {"t": 0.5, "g": 8}, {"t": 3.0, "g": 2},
            {"t": float("nan"), "g": 1}]
    assert pareto_front(rows, ["t", "g"]) == [0, 1, 3]


def test_even_split_keeps_extra_layers_off_the_ends():
    assert even_split(27, 2) == [13, 14] or even_split(27, 2) == [14, 13]
    split = even_split(61, 8)
    assert sum(split) == 61 and max(split) - min(split) == 1
    assert split[0] == split[-1] == 7


def test_pipeline_sends_are_the_only_nic_traffic_of_a_single_replica_pipeline():
    """tiny_dense: pp=4, dp=tp=ep=1, so NIC bytes are activations forward and gradients back."""
    scenario = tiny_dense()
    loads = link_loads(scenario)
    send = 1 * 1024 * 1024 * 2  # micro_batch_size × seq_len × hidden × bf16
    m = scenario.micro_batches
    assert loads.nic_gb == pytest.approx([m * send / 1e9, 2 * m * send / 1e9, 2 * m * send / 1e9, m * send / 1e9])
    assert loads.nvlink_gb == [0.0] * 4
    grid = loads.utilisation(2.0)
    assert grid.rows == ["NVLink", "NIC"] and len(grid.columns) == 4
    assert grid.values[1][0] == pytest.approx(m * send / 1e9 / (loads.nic_gbps * 2.0))


def test_ring_split_across_nodes():
    """A dp group of 16 spread one per node: everything crosses the NIC, (n-1)/n of the bytes."""
    scenario = load_scenario(preset="llama3-405b-h100")  # tp=8 fills a node, so dp strides across nodes
    network = AnalyticNetwork(scenario)
    nvl, nic = comm_link_bytes(network, Comm(Pattern.REDUCE_SCATTER, "dp", 1e9))
    dp = scenario.parallelism.dp
    assert nvl == 0.0 and nic == pytest.approx((dp - 1) / dp * 1e9)
    nvl, nic = comm_link_bytes(network, Comm(Pattern.ALL_REDUCE, "tp", 1e9))
    assert nvl == pytest.approx(2 * 7 / 8 * 1e9) and nic == 0.0


def test_expert_load_counts_every_routed_copy():
    scenario = load_scenario(preset=SMALL)
    load = expert_load(scenario)
    moe = scenario.model.moe
    assert len(load.tokens_per_expert) == moe.routed_experts and len(load.tokens_per_gpu) == 8
    assert sum(load.tokens_per_expert) == pytest.approx(load.routed_tokens * moe.top_k)
    assert sum(load.tokens_per_gpu) == pytest.approx(sum(load.tokens_per_expert))
    assert expert_load(tiny_dense()) is None


def test_payload_round_trip(small):
    scenario, result = small
    data = json.loads(json.dumps(result_payload(result, scenario)))
    back = report_from_dict(data, "x.json")
    assert back.scenario == scenario
    assert back.timeline.records == [tuple(r) for r in result.timeline.records]
    assert back.summary["step_time_s"] == result.step_time_s


def test_page_is_self_contained(small, tmp_path):
    scenario, result = small
    path = write_report(result, tmp_path / "r.html", scenario)
    text = path.read_text()
    assert external_resources(text) == []  # plotly.js inlined, nothing fetched
    assert text.count("<div class='figure'>") == 6  # timeline, breakdown, exposed comm, memory, links, experts
    assert text.count("<div class='downloads'>") == 6 and "moesim.attach('figure-0'" in text
    assert "<title>moesim report: deepseek-v2-lite-h800</title>" in text
    assert f"{result.step_time_s:.3f} s" in text
    with pytest.raises(FileExistsError):
        write_report(result, path, scenario)


def test_pages_carry_the_smallest_plotly_that_draws_them(small, rows, tmp_path):
    """Bars, scatter and heat maps (a result page): the cartesian partial bundle; parallel coordinates: the full."""
    from plotly.offline import get_plotlyjs

    from moesim.simulator.report.page import PARTIAL_BUNDLE

    scenario, result = small
    partial = PARTIAL_BUNDLE.read_text()
    assert partial.lstrip().startswith("/**\n* plotly.js (cartesian - minified) v")
    result_page = write_report(result, tmp_path / "r.html", scenario).read_text()
    assert partial in result_page and get_plotlyjs() not in result_page
    sweep_page = write_report(rows, tmp_path / "s.html").read_text()
    assert get_plotlyjs() in sweep_page and partial not in sweep_page


def test_plain_json_result_still_reports(small, tmp_path):
    """Plain --json output (no timeline, no scenario): the per-stage charts, and a note on what is missing."""
    _, result = small
    path = write_report(json.loads(json.dumps(result.to_dict())), tmp_path / "plain.html")
    text = path.read_text()
    assert text.count("<div class='figure'>") == 3 and "--timeline" in text


def test_cli_simulate_json_timeline_then_report(runner, tmp_path):
    out = runner.invoke(app, ["simulate", "-p", SMALL, "--json", "--timeline"])
    assert out.exit_code == 0, out.output
    source = tmp_path / "result.json"
    source.write_text(out.output)
    assert "timeline" in json.loads(out.output) and "scenario_spec" in json.loads(out.output)
    html = tmp_path / "report.html"
    done = runner.invoke(app, ["report", str(source), "-o", str(html)])
    assert done.exit_code == 0, done.output
    assert "wrote" in done.output and html.stat().st_size > 1_000_000
    again = runner.invoke(app, ["report", str(source), "-o", str(html)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["report", str(source), "-o", str(html), "--force"]).exit_code == 0


def test_cli_simulate_report(runner, tmp_path):
    html = tmp_path / "sim.html"
    out = runner.invoke(app, ["simulate", "-p", SMALL, "--report", str(html)])
    assert out.exit_code == 0, out.output
    assert "step time" in out.output and html.read_text().count("<div class='figure'>") == 6
    refused = runner.invoke(app, ["simulate", "-p", SMALL, "--report", str(html)])
    assert refused.exit_code == 2 and "exists" in refused.output


def test_sweep_csv_and_parquet(runner, rows, tmp_path):
    csv_path = tmp_path / "sweep.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert load_report_source(csv_path) == rows  # numbers come back as numbers (repr round-trips)
    out = runner.invoke(app, ["report", str(csv_path), "-o", str(tmp_path / "s.html")])
    assert out.exit_code == 0, out.output
    text = (tmp_path / "s.html").read_text()
    assert "Pareto front" in text and "parcoords" in text and "sweep of 6 layouts" in out.output
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "sweep.parquet")
    assert load_report_source(tmp_path / "sweep.parquet") == rows


@pytest.mark.parametrize("content,message", [
    ("{not json", "not JSON"),
    ('{"step_time_s": 1.0}', "not a moesim result"),
    ("[]", "no rows"),
    ('[{"gpus": 8}]', "step_time_s"),
    ("[1, 2]", "list of rows"),
])
def test_bad_report_input_is_one_line_exit_2(runner, tmp_path, content, message):
    source = tmp_path / "bad.json"
    source.write_text(content)
    out = runner.invoke(app, ["report", str(source), "-o", str(tmp_path / "o.html")])
    assert out.exit_code == 2 and message in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) <= 2


def test_report_needs_an_html_name(runner, tmp_path, small):
    out = runner.invoke(app, ["report", "missing.json", "-o", str(tmp_path / "o.html")])
    assert out.exit_code == 2 and "not found" in out.output
    out = runner.invoke(app, ["report", "missing.json", "-o", str(tmp_path / "o.png")])
    assert out.exit_code == 2 and ".html" in out.output


def test_what_if_knobs_change_the_scenario_and_the_step():
    base = preset_knobs(SMALL)
    assert base == Knobs(SMALL, "1f1b", 2, 8, 16, "fp8", 50.0, 0.0)
    deeper = scenario_for(replace(base, pp=4, ep=4, micro_batches=8))
    assert (deeper.parallelism.pp, deeper.parallelism.dp, deeper.micro_batches) == (4, 4, 8)
    assert sum(deeper.parallelism.stage_layers) == 27
    _, fp8 = what_if(base)
    _, bf16 = what_if(replace(base, dispatch_dtype="bf16"))
    _, slow_nic = what_if(replace(base, nic_gbps=12.5))
    assert bf16.step_time_s > fp8.step_time_s
    assert slow_nic.step_time_s > fp8.step_time_s
    skewed_sc, skewed = what_if(replace(base, routing_skew=1.0))
    assert (skewed_sc.routing.name, skewed_sc.routing.zipf_alpha) == ("zipf", 1.0)
    assert skewed.step_time_s > fp8.step_time_s  # the busiest GPU's experts set the pace


@pytest.mark.parametrize("change,message", [
    ({"pp": 3}, "pp=3"), ({"ep": 3}, "parallelism.ep=3"), ({"micro_batches": 0}, "micro-batches"),
    ({"schedule": "nope"}, "unknown schedule"), ({"routing_skew": -1}, "routing skew"),
])
def test_what_if_bad_knobs_name_the_knob(change, message):
    from moesim.simulator.schedules import ScheduleError
    with pytest.raises((ScenarioError, ScheduleError), match=re.escape(message)):
        what_if(replace(preset_knobs(SMALL), **change))


def test_dashboard_refuses_a_taken_port_and_an_unknown_preset(runner):
    import socket
    pytest.importorskip("dash")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = runner.invoke(app, ["dashboard", "--port", str(port)])
    assert out.exit_code == 2 and f"--port {port}" in out.output
    out = runner.invoke(app, ["dashboard", "--preset", "nope"])
    assert out.exit_code == 2 and "unknown" in out.output
