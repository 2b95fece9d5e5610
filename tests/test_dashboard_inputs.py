"""The dashboard's callbacks against crafted requests (issue 25): POSTs to the real server's
``/_dash-update-component`` with values no control of the page produces — a preset that is a path, a bandwidth
that is text, a forged baseline — get the one-line error in the page and HTTP 200, never a 500; a request no page
sends is a 400 with one line. The server runs as users run it (``moesim dashboard``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.browser import free_port
from tests.report_data import SMALL

ROOT = Path(__file__).resolve().parents[1]
UPDATE = ("..error.children...summary.children...headline.children...timeline-data.data...breakdown.figure..."
          "memory.figure...links.figure...current.data...delta.figure...delta-box.style...results.style...links.style..")
PIN = "..baseline.data...baseline-line.children.."
GOOD = {"schedule": "1f1b", "pp": 2, "ep": 8, "micro_batches": 16, "dispatch_dtype": "fp8", "nic_gbps": 50.0,
        "routing_skew": 0.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("dash")
    folder = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    log = (folder / "dashboard.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moesim.simulator.cli", "dashboard", "--port", str(port), "--preset",
                             SMALL], cwd=folder, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"dashboard did not start: {(folder / 'dashboard.log').read_text()}")
            time.sleep(0.3)
    yield url, folder / "dashboard.log"
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def post(url: str, body) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + "_dash-update-component", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def callback(output: str, inputs: dict, state: dict | None = None) -> dict:
    """The body Dash's renderer sends for a callback whose outputs are ``output`` (its callback-map key)."""
    def prop(pairs):
        return [{"id": k.split(".")[0], "property": k.split(".", 1)[1] if "." in k else "value", "value": v}
                for k, v in pairs.items()]
    outputs = [dict(zip(("id", "property"), part.split(".", 1))) for part in output.strip(".").split("...")]
    return {"output": output, "outputs": outputs, "inputs": prop(inputs), "state": prop(state or {}),
            "changedPropIds": [f"{next(iter(inputs))}" + ("" if "." in next(iter(inputs)) else ".value")]}


def update(url: str, preset=SMALL, baseline=None, **knobs) -> tuple[int, dict]:
    code, text = post(url, callback(UPDATE, {**{k: v for k, v in {**GOOD, **knobs}.items()}, "baseline.data": baseline},
                                    {"preset": preset}))
    return code, (json.loads(text)["response"] if code == 200 else {"text": text})


def error_line(response: dict) -> str:
    return response["error"]["children"]


def test_a_valid_request_draws_and_its_result_can_be_pinned(server):
    url, _ = server
    code, response = update(url)
    assert code == 200 and error_line(response) == "" and response["results"]["style"] == {}
    current = response["current"]["data"]
    assert current["summary"]["step_time_s"] > 0
    code, response = update(url, baseline=current, dispatch_dtype="bf16")
    assert code == 200 and error_line(response) == "" and "display" not in response["delta-box"]["style"]


@pytest.mark.parametrize("knobs, words", [
    ({"preset": "/etc/passwd"}, "preset '/etc/passwd': unknown; choose one of"),
    ({"preset": "../../workloads/presets/deepseek-v3-h800"}, "preset '../../workloads/presets/deepseek-v3-h800'"),
    ({"preset": {"$ref": 1}}, "preset {'$ref': 1}: unknown"),
    ({"nic_gbps": "fifty"}, "NIC bandwidth: give a number of GB/s, not 'fifty'"),
    ({"nic_gbps": 1e400}, "NIC bandwidth: must be a finite number"),
    ({"nic_gbps": -5}, "NIC bandwidth: must be above 0 GB/s"),
    ({"nic_gbps": True}, "NIC bandwidth: give a number of GB/s, not True"),
    ({"pp": "2; rm -rf /"}, "pp: give a number, not '2; rm -rf /'"),
    ({"pp": 2.5}, "pp: give a whole number of at least 1, not 2.5"),
    ({"pp": 10 ** 30}, "pp="),
    ({"ep": [8]}, "ep: give a number, not [8]"),
    ({"micro_batches": 0}, "micro-batches: give a whole number of at least 1, not 0"),
    ({"micro_batches": 10 ** 9}, "over the limit"),
    ({"schedule": "__import__('os')"}, "schedule \"__import__('os')\": unknown; choose one of"),
    ({"dispatch_dtype": "int4"}, "dispatch dtype 'int4': choose fp8 or bf16"),
    ({"routing_skew": "x" * 10_000}, "routing skew: give a number, not 'xxxxxxxx"),
    ({"routing_skew": -1}, "routing skew: must be 0 or more"),
    ({"baseline": {"summary": {}, "line": "x"}}, "baseline: step_time_s: give a number, not None"),
    ({"baseline": "forged"}, "baseline: not a result of this page"),
    ({"baseline": {"summary": {"step_time_s": 1.0, "stages": [{"forward_s": "1"}]}, "line": ""}},
     "baseline: stages.0.forward_s: give a number, not '1'"),
    ({"baseline": {"summary": {"step_time_s": 0, "stages": []}, "line": ""}}, "baseline: step_time_s must be above 0"),
])
def test_a_crafted_input_is_one_line_in_the_page_not_a_500(server, knobs, words):
    url, log = server
    code, response = update(url, **knobs)
    assert code == 200, response
    line = error_line(response)
    assert line.startswith("error: ") and "\n" not in line and len(line) < 400, line
    assert words in line, line
    assert response["results"]["style"]["opacity"] < 1  # the last good results stay, greyed
    assert set(response) == {"error", "results"}  # nothing else changes
    assert "Traceback" not in log.read_text()


def test_pinning_a_forged_result_and_a_bad_preset_pick(server):
    url, log = server
    code, text = post(url, callback(PIN, {"pin.n_clicks": 1, "unpin.n_clicks": 0},
                                    {"current.data": {"summary": {"step_time_s": "NaN"}, "line": "x"}}))
    assert code == 200
    pinned = json.loads(text)["response"]
    assert pinned["baseline"]["data"] is None
    assert pinned["baseline-line"]["children"] == "error: baseline: step_time_s: give a number, not 'NaN'"
    reset = next(k for k in json.loads(urllib.request.urlopen(url + "_dash-dependencies").read())
                 if k["output"].startswith("..schedule.value"))
    code, text = post(url, callback(reset["output"], {"preset.value": "/etc/passwd"}))
    assert code == 200
    assert json.loads(text)["response"]["error"]["children"].startswith("error: preset '/etc/passwd': unknown")
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("body", [b"not json", {}, {"output": "nonsense.children", "inputs": []},
                                  {"output": PIN, "inputs": 5}])
def test_a_request_no_page_sends_is_a_400_with_one_line(server, body):
    url, log = server
    code, text = post(url, body)
    assert code == 400
    assert "Traceback" not in log.read_text() and "500" not in text
