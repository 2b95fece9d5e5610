"""The report and the dashboard in real headless Chromium: pages load cleanly, charts render, controls work.

Screenshots land in each test's tmp dir (``report.png``, ``sweep.png``, ``dashboard-*.png``) for a person to
look at; the assertions check what a person would: no console errors, every chart drawn, numbers that move.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from moesim.simulator.report import write_report
from moesim.simulator.report.whatif import preset_knobs, what_if
from moesim.simulator.simulate import simulate
from moesim.workloads.loader import load_scenario
from tests.browser import console_errors, free_port, needs_browser, start_chromium
from tests.report_data import SMALL, sweep_rows

pytestmark = needs_browser
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "profile")
    yield driver
    driver.quit()


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition"):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(None, timeout_s, poll_frequency=0.2).until(lambda _: predicate(), f"timed out: {what}")


def full_page_screenshot(driver, path: Path) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height, 800), 8000))
    driver.save_screenshot(str(path))


def count(driver, selector: str) -> int:
    return driver.execute_script(f"return document.querySelectorAll({selector!r}).length")


def text_of(driver, element_id: str) -> str:
    """An element's text read in the page: Dash re-renders elements, so a held WebElement can go stale."""
    return driver.execute_script(f"const e = document.getElementById({element_id!r}); return e ? e.textContent : '';")


ZOOM = """const gd = document.getElementById(arguments[0]), before = gd.moesimRenders;
const done = arguments[arguments.length - 1];
Plotly.relayout(gd, {'xaxis.range': [arguments[1], arguments[2]]});
(function wait() { if (gd.moesimRenders > before) done(gd.moesimMode); else setTimeout(wait, 10); })();"""
DRAWN_BARS = """return document.getElementById(arguments[0]).data.filter(t => t.type === 'bar').flatMap(t =>
  t.y.map((row, i) => [t.meta, gd_rows(arguments[0])[row], t.base[i], t.base[i] + t.x[i]]));
function gd_rows(id) { return document.getElementById(id).moesimData.rows; }"""


def zoom(driver, div_id: str, start_s: float, end_s: float) -> str:
    driver.set_script_timeout(60)
    return driver.execute_async_script(ZOOM, div_id, start_s, end_s)


def bars_match_records(driver, div_id: str, records, start_s: float, end_s: float) -> int:
    """The task bars drawn in the window are exactly the records overlapping it (row, start, end to 1e-9)."""
    drawn = [b for b in driver.execute_script(DRAWN_BARS, div_id) if b[0] not in ("bubble", "exposed")]
    # Pipeline sends are drawn on their rank's comm row, host-bound waits on its compute row (report/timeline.py).
    row = {"pp": "comm", "host": "compute"}
    expected = sorted((f"rank {r} · {row.get(s, s)}", a, b) for r, s, a, b, *_ in records
                      if b > a and b > start_s and a < end_s)
    got = sorted((row, a, b) for _, row, a, b in drawn)
    assert [g[0] for g in got] == [e[0] for e in expected]
    assert [t for g in got for t in g[1:]] == pytest.approx([t for e in expected for t in e[1:]], abs=1e-9)
    return len(got)


def test_result_report_renders_every_chart(browser, tmp_path):
    scenario = load_scenario(preset=SMALL)
    result = simulate(scenario, keep_timeline=True)
    page = write_report(result, tmp_path / "report.html", scenario)
    browser.get(page.as_uri())
    wait_for(lambda: count(browser, ".plot-container") == 6, what="six plotly charts")
    assert browser.title == f"moesim report: {SMALL}"
    # Each chart drew its marks, not just an empty frame.
    marks = browser.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).map("
        "p => p.querySelectorAll('.bars path, .heatmaplayer image, .hm image, .scatterlayer .point').length)")
    assert all(n > 0 for n in marks), marks
    # Zoomed out, 3,400 records are more than the page draws as bars: the overview image. Zoomed into a
    # window, every record in it is a bar at its exact place.
    assert browser.execute_script("return document.getElementById('figure-0').moesimMode") == "overview"
    step = result.timeline.makespan_s
    assert zoom(browser, "figure-0", 0.4 * step, 0.45 * step) == "ops"
    assert bars_match_records(browser, "figure-0", result.timeline.records, 0.4 * step, 0.45 * step) > 50
    hover = browser.execute_script("const t = document.getElementById('figure-0').data.find(t => t.type === 'bar'"
                                   " && t.hovertext.length); return t.hovertext[0]")
    for field in ("micro-batch", "stage", "start", "duration", "end", "rank"):
        assert field in hover, hover
    # Downloads: the timeline's table has a row per record and gap mark; a chart's CSV has its points.
    rows = browser.execute_script("return moesim.tableOfTimeline(document.getElementById('figure-0')).length")
    data = browser.execute_script("return document.getElementById('figure-0').moesimData.ops.start.length")
    assert rows == data and data > len(result.timeline.records) // 2
    csv_text = browser.execute_script("return moesim.csv(moesim.tableOfFigure(document.getElementById('figure-1')))")
    # The breakdown's seven parts (forward, B, W, exposed comm, host-bound, bubble, optimizer) for both ranks.
    assert csv_text.splitlines()[0].startswith("trace,x,y") and len(csv_text.splitlines()) == 1 + 7 * 2
    assert browser.find_element("id", "headline").text.startswith(f"step time {result.step_time_s:.3f} s")
    assert count(browser, "[data-title='Edit in Chart Studio'], [data-title*='Cloud']") == 0
    # The page carries plotly's cartesian partial bundle: exactly the trace types page.py counts on.
    from moesim.simulator.report.page import PARTIAL_TRACES
    registered = browser.execute_script("return Object.keys(Plotly.PlotSchema.get().traces)")
    assert sorted(registered) == sorted(PARTIAL_TRACES)
    full_page_screenshot(browser, tmp_path / "report.png")
    assert console_errors(browser) == []


def test_compare_page_aligns_timelines(browser, tmp_path):
    from moesim.simulator.cli import app
    from typer.testing import CliRunner

    page = tmp_path / "compare.html"
    out = CliRunner().invoke(app, ["compare", SMALL, SMALL, "--set", "2:schedule=dualpipe",
                                   "--set", "2:parallelism.global_batch=64", "-o", str(page)])
    assert out.exit_code == 0, out.output
    browser.get(page.as_uri())
    wait_for(lambda: count(browser, ".plot-container") >= 6, what="compare charts")
    assert browser.title.startswith("moesim compare: ")
    ranges = "return [1, 2].map(i => document.getElementById('figure-' + i).layout.xaxis.range)"
    first, second = browser.execute_script(ranges)
    assert first == second  # one time axis for both
    zoom(browser, "figure-1", 0.3, 0.4)
    wait_for(lambda: browser.execute_script(ranges)[1] == [0.3, 0.4], what="the second timeline follows the zoom")
    scenario = load_scenario(preset=SMALL, overrides=["schedule=dualpipe", "parallelism.global_batch=64"])
    dual = simulate(scenario, keep_timeline=True)
    wait_for(lambda: browser.execute_script("return document.getElementById('figure-2').moesimMode") == "ops",
             what="the dualpipe timeline drawn as ops")
    assert bars_match_records(browser, "figure-2", dual.timeline.records, 0.3, 0.4) > 10
    legend = browser.execute_script("return document.getElementById('figure-2').data.map(t => t.name)")
    assert any("↑ up" in n for n in legend) and any("↓ down" in n for n in legend)
    assert "step time" in browser.find_element("id", "compare-table").text
    full_page_screenshot(browser, tmp_path / "compare.png")
    assert console_errors(browser) == []


def test_schedule_and_topology_pages_draw(browser, tmp_path):
    """The one-figure pages (``schedule --html``, ``topology describe --draw``) draw with the bundle they carry."""
    from moesim.simulator.cli import app
    from typer.testing import CliRunner

    for args, marks in ((["schedule", "dualpipe", "--pp", "4", "-m", "8", "--html"], ".bars path"),
                        (["topology", "describe", "ft2", "--gpus", "32", "--radix", "8", "--draw"],
                         ".scatterlayer .point")):
        page = tmp_path / f"{args[0]}.html"
        out = CliRunner().invoke(app, args + [str(page)])
        assert out.exit_code == 0, out.output
        browser.get(page.as_uri())
        wait_for(lambda: count(browser, marks) > 0, what=f"{args[0]} page drawn")
        assert browser.title and console_errors(browser) == []


def test_sweep_report_renders_scatter_and_parallel_coordinates(browser, tmp_path):
    page = write_report(sweep_rows(), tmp_path / "sweep.html")
    browser.get(page.as_uri())
    wait_for(lambda: count(browser, ".plot-container") == 2, what="two plotly charts")
    wait_for(lambda: count(browser, ".scatterlayer .point") == 6, what="six layout points")
    assert count(browser, ".parcoords .axis") >= 5  # gpus, dp, pp, step time, mfu, cost
    full_page_screenshot(browser, tmp_path / "sweep.png")
    assert console_errors(browser) == []


@pytest.fixture
def dashboard_url(tmp_path):
    pytest.importorskip("dash")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "moesim.simulator.cli", "dashboard", "--port", str(port),
                             "--preset", SMALL], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"dashboard did not start: {(tmp_path / 'dashboard.log').read_text()}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def test_dashboard_control_changes_step_time(browser, dashboard_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(dashboard_url)
    step = lambda: text_of(browser, "step-time")  # noqa: E731
    wait_for(step, what="first simulation")
    first = step()
    assert first.endswith(" s")
    wait_for(lambda: count(browser, "#timeline .hm image, #timeline .heatmaplayer image, #timeline .bars path") > 0,
             what="timeline drawn")
    browser.save_screenshot(str(tmp_path / "dashboard-fp8.png"))
    # Zooming redraws the window in the browser (a clientside callback): the ops there, as in the report.
    _, result = what_if(preset_knobs(SMALL))
    assert float(first.split()[0]) == round(result.step_time_s, 3)
    mode = "const g = document.querySelector('#timeline .js-plotly-plot'); return g.layout.meta && g.layout.meta.mode"
    assert browser.execute_script(mode) == "overview"
    window = (0.4 * result.step_time_s, 0.45 * result.step_time_s)
    browser.execute_script("Plotly.relayout(document.querySelector('#timeline .js-plotly-plot'), "
                           "{'xaxis.range': [arguments[0], arguments[1]]})", *window)
    wait_for(lambda: browser.execute_script(mode) == "ops", what="dashboard timeline zoomed into ops")
    drawn = browser.execute_script("const g = document.querySelector('#timeline .js-plotly-plot');"
                                   "return g.data.filter(t => t.type === 'bar' && !['bubble', 'exposed'].includes("
                                   "t.meta)).reduce((n, t) => n + t.y.length, 0)")
    assert drawn == sum(1 for r in result.timeline.records if r[3] > r[2] and r[3] > window[0] and r[2] < window[1])
    browser.execute_script("document.getElementById('breakdown-csv').click()")  # a download, built in the page

    browser.find_element(By.ID, "pin").click()
    wait_for(lambda: "baseline:" in text_of(browser, "baseline-line"), what="baseline pinned")
    browser.find_element(By.XPATH, "//input[@type='radio' and @value='bf16']").click()
    wait_for(lambda: step() != first, what="step time after dispatch fp8 -> bf16")
    bf16 = step()
    assert float(bf16.split()[0]) > float(first.split()[0])  # BF16 dispatch moves twice the bytes
    wait_for(lambda: "+" in text_of(browser, "baseline-table"), what="change against the baseline")
    change = float(bf16.split()[0]) / float(first.split()[0]) - 1
    assert f"{change:+.1%}" in text_of(browser, "baseline-table")
    assert count(browser, "#delta .bars path") > 0
    browser.save_screenshot(str(tmp_path / "dashboard-bf16.png"))

    pp = browser.find_element(By.ID, "pp")
    pp.send_keys(Keys.CONTROL, "a")
    pp.send_keys("1", Keys.ENTER)
    wait_for(lambda: step() != bf16, what="step time after pp 2 -> 1")
    assert "pp1" in text_of(browser, "summary")

    pp.send_keys(Keys.CONTROL, "a")
    pp.send_keys("3", Keys.ENTER)  # 3 does not divide 16 GPUs: one-line error, charts stay
    wait_for(lambda: "pp=3" in text_of(browser, "error"), what="error line for pp=3")
    assert text_of(browser, "error").startswith("error: pp=3")
    opacity = "return Number(getComputedStyle(document.getElementById('results')).opacity)"
    wait_for(lambda: browser.execute_script(opacity) < 0.5, what="the last good results greyed")
    browser.save_screenshot(str(tmp_path / "dashboard-error.png"))
    pp.send_keys(Keys.CONTROL, "a")
    pp.send_keys("2", Keys.ENTER)
    wait_for(lambda: text_of(browser, "error") == "" and browser.execute_script(opacity) == 1,
             what="results current again after a valid pp")
    assert console_errors(browser) == []


CHART_BOXES = """return ['timeline', 'breakdown', 'memory', 'delta', 'links'].map(id => {
  const graph = document.getElementById(id), svg = graph.querySelector('.main-svg');
  const box = graph.getBoundingClientRect(), drawn = svg ? svg.getBoundingClientRect() : {height: 0, width: 0};
  const column = graph.closest('#results').getBoundingClientRect();
  return {id: id, top: box.top, bottom: box.bottom, height: box.height, width: box.width, drawn: drawn.height,
          drawnWidth: drawn.width, room: column.width}; });"""


@pytest.mark.parametrize("width", [1400, 720])
def test_dashboard_charts_keep_their_height_at_any_width(browser, dashboard_url, tmp_path, width):
    """Every chart's box is as tall as the chart drawn in it (never 37 px: dash 4 sizes a graph by its parent)
    and no wider than the column; the breakdown and memory charts sit side by side, or stack when narrow."""
    browser.set_window_size(width, 1000)
    browser.get(dashboard_url)
    wait_for(lambda: text_of(browser, "step-time"), what="first simulation")
    browser.execute_script("document.getElementById('pin').click()")
    wait_for(lambda: "baseline:" in text_of(browser, "baseline-line"), what="baseline pinned")
    browser.execute_script("document.querySelector(\"input[type=radio][value=bf16]\").click()")
    wait_for(lambda: count(browser, "#delta .bars path") > 0, what="the change chart drawn")
    boxes = {}

    def settled():
        boxes.update({b["id"]: b for b in browser.execute_script(CHART_BOXES)})
        return all(b["drawn"] > 0 and abs(b["height"] - b["drawn"]) < 1 for b in boxes.values())
    try:
        wait_for(settled, what=f"every chart drawn at {width} px")
    except Exception:
        raise AssertionError(boxes) from None
    for box in boxes.values():
        assert box["height"] >= 250, box
        assert box["width"] <= box["room"] + 1 and box["drawnWidth"] <= box["room"] + 1, box
    assert boxes["breakdown"]["height"] == boxes["memory"]["height"] == 480
    side_by_side = boxes["memory"]["top"] == boxes["breakdown"]["top"]
    assert side_by_side == (width >= 1000), (boxes["breakdown"], boxes["memory"])
    full_page_screenshot(browser, tmp_path / f"dashboard-{width}.png")
    assert console_errors(browser) == []


def test_sweep_report_keeps_layouts_that_do_not_fit_apart(browser, tmp_path):
    """A layout over HBM (the fastest here) is drawn as a grey cross, off the front and out of the headline."""
    rows = sweep_rows()
    over = dict(min(rows, key=lambda r: r["step_time_s"]), status="invalid", fits_in_memory=False,
                step_time_s=min(r["step_time_s"] for r in rows) / 2)
    page = write_report(rows + [over], tmp_path / "sweep.html")
    browser.get(page.as_uri())
    wait_for(lambda: count(browser, ".scatterlayer .point") == 7, what="seven layout points")
    fastest_fitting = min(r["step_time_s"] for r in rows)
    assert f"fastest step time that fits {fastest_fitting:.3f} s" in browser.find_element("id", "headline").text
    assert "does not fit" in browser.page_source and count(browser, ".parcoords .axis") >= 6
    assert console_errors(browser) == []


def test_plan_report_draws_the_front(browser, tmp_path):
    from typer.testing import CliRunner
    from moesim.simulator.cli import app

    html = tmp_path / "plan.html"
    result = CliRunner().invoke(app, ["plan", "--model", "deepseek-v2-lite", "--tokens", "5.7T", "--gpus",
                                      "16,32", "--pp", "1", "--schedules", "1f1b,dualpipev", "--recompute", "none",
                                      "-w", "1", "--deadline", "200d", "--report", str(html), "--json"])
    assert result.exit_code == 0, result.output
    import json
    answer = json.loads(result.stdout)
    browser.get(html.as_uri())
    points = len(answer["simulated"]) + len(answer["pareto"])
    wait_for(lambda: count(browser, ".scatterlayer .point") == points, what=f"{points} plan points")
    assert "best plan" in browser.find_element("id", "headline").text
    full_page_screenshot(browser, tmp_path / "plan.png")
    assert console_errors(browser) == []
