"""The DeepSeek-V3 report's timeline in headless Chromium: time to first render and to each zoom.

Run: python tests/benchmarks/bench_timeline_browser.py [PRESET | PAGE.html]   (prints a table; no
assertions). A PAGE.html written by ``moesim report`` is measured as it is instead of simulating PRESET.

An open is measured from navigation start (the browser begins reading the file) to the timeline being on
screen: drawn, and the frame showing it painted; before navigation start the browser takes a moment to be asked
(selenium) and to start the page's process, printed apart. The other charts are drawn after that, while the reader looks
at the timeline; "every chart drawn" says when they are done. A zoom is measured from the relayout (what a drag
does) to the redraw being done. Beside each wall time, the CPU time of the page's main thread, which is what the
wall time would be on an idle machine: on a shared machine the wall time also counts waiting for a CPU. For the
first open it comes from a Chromium trace of a second fresh browser (tracing slows a page, so the wall times are
measured untraced), split into what it went to: plotly.js (compiling and running the bundle), the timeline
(parsing its data and drawing it) and the rest (reading the HTML, style, layout, paint). Needs Debian's chromium
and chromedriver (tests/browser.py).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from moesim.simulator.report import write_report  # noqa: E402
from moesim.simulator.simulate import simulate  # noqa: E402
from tests.browser import have_browser, start_chromium  # noqa: E402
from moesim.workloads.loader import load_scenario  # noqa: E402

ZOOM = """const gd = document.getElementById('figure-0'), before = gd.moesimRenders, t0 = performance.now();
const done = arguments[arguments.length - 1];
Plotly.relayout(gd, %s);
(function wait() { if (gd.moesimRenders > before) done([performance.now() - t0, gd.moesimMode, gd.moesimDrawn, gd.moesimFigureMs]);
                   else setTimeout(wait, 5); })();"""
SHOWN = "const g = document.getElementById('figure-0'); return !!(g && g.moesimShownAt)"
TIMES = """const g = document.getElementById('figure-0'), nav = performance.getEntriesByType('navigation')[0];
return [g.moesimShownAt, g.moesimDrawnAt, nav.domContentLoadedEventEnd, performance.timeOrigin]"""
ALL_DRAWN = "return moesim.chartsLeft() === 0 ? moesim.chartsDrawnAt || performance.now() : null"
TRACE = "devtools.timeline,blink.user_timing"


def thread_s(driver) -> float:
    """CPU seconds the page's renderer main thread has used (DevTools Performance metrics)."""
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "ThreadTime")


def wait(driver, script: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while not (value := driver.execute_script(script)):
        if time.monotonic() > deadline:
            raise TimeoutError(script)
        time.sleep(0.02)
    return value


def script_kinds(page: Path) -> dict[int, str]:
    """Line (1-based) where each inline script of the page starts -> what it is."""
    text, kinds = page.read_text(), {}
    for match in re.finditer(r"<script type='text/javascript'>", text):
        start = match.end()
        head = text[start:start + 200]
        kind = ("plotly.js" if "* plotly.js" in head else
                "timeline" if head.startswith("moesim.attach(") else "other")
        kinds[text.count("\n", 0, start) + 1] = kind
    return kinds


def traced_open(page: Path, profile: Path) -> dict[str, float]:
    """Main-thread CPU seconds of a cold open up to the timeline on screen, by what it went to."""
    driver = start_chromium(profile, TRACE)
    try:
        driver.get(page.as_uri())
        wait(driver, SHOWN)
        shown_ms = driver.execute_script(TIMES)[0]
        events = [json.loads(e["message"])["message"]["params"] for e in driver.get_log("performance")]
    finally:
        driver.quit()
    events = [e for e in events if "name" in e]
    scripts = [e for e in events if e["name"] == "EvaluateScript" and page.name in e["args"]["data"].get("url", "")]
    pid, tid = scripts[0]["pid"], scripts[0]["tid"]  # the page's renderer main thread
    start_us = max(e["ts"] for e in events if e["pid"] == pid and e["name"] == "navigationStart")
    end_us = start_us + shown_ms * 1e3
    on_main = sorted((e for e in events if (e["pid"], e["tid"]) == (pid, tid) and e.get("ph") == "X"
                      and "tdur" in e and start_us <= e["ts"] <= end_us), key=lambda e: (e["ts"], -e["dur"]))
    total, edge = 0.0, -1.0  # CPU of the outermost events only (an event's children are inside its tdur)
    for e in on_main:
        if e["ts"] >= edge:
            total += e["tdur"]
            edge = e["ts"] + e["dur"]
    kinds, split = script_kinds(page), {"plotly.js": 0.0, "timeline": 0.0}
    for e in scripts:
        kind = kinds.get(e["args"]["data"].get("lineNumber"), "other")
        if kind in split and start_us <= e["ts"] <= end_us:
            split[kind] += e["tdur"] / 1e6
    split["total"] = total / 1e6
    return split


def main(what: str = "deepseek-v3-h800") -> None:
    if not have_browser():
        sys.exit("needs /usr/bin/chromium and /usr/bin/chromedriver")
    with tempfile.TemporaryDirectory() as tmp:
        if what.endswith(".html"):
            page, step = Path(what).resolve(), None
            print(f"{page.name}: page {page.stat().st_size / 1e6:.1f} MB; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        else:
            scenario = load_scenario(preset=what)
            result = simulate(scenario, keep_timeline=True)
            step = result.step_time_s
            page = write_report(result, Path(tmp) / "report.html", scenario)
            print(f"{what}: {len(result.timeline.records):,} timeline records, page "
                  f"{page.stat().st_size / 1e6:.1f} MB; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        driver = start_chromium(Path(tmp) / "profile")
        driver.set_script_timeout(120)
        try:
            for visit in ("first open (fresh browser)", "second open (plotly.js compiled before)"):
                driver.get("about:blank")
                asked_ms = time.time() * 1e3
                driver.get(page.as_uri())
                wait(driver, SHOWN)
                shown, drawn, parsed, origin_ms = driver.execute_script(TIMES)
                charts = wait(driver, ALL_DRAWN)
                print(visit)
                print(f"{'  navigation start -> timeline on screen':46} {shown / 1e3:7.2f} s")
                print(f"{'  timeline drawn':46} {drawn / 1e3:7.2f} s")
                print(f"{'  page parsed (DOMContentLoaded)':46} {parsed / 1e3:7.2f} s")
                print(f"{'  every chart drawn':46} {charts / 1e3:7.2f} s")
                print(f"{'  before it: asked to open -> navigation start':46} {(origin_ms - asked_ms) / 1e3:7.2f} s")
            cpu = traced_open(page, Path(tmp) / "traced")
            print(f"{'first open, main-thread CPU to the timeline on screen':53} {cpu['total']:.2f} s")
            print(f"  plotly.js {cpu['plotly.js']:.2f} s · the timeline's data and drawing {cpu['timeline']:.2f} s · "
                  f"the rest {cpu['total'] - cpu['plotly.js'] - cpu['timeline']:.2f} s")
            if step is None:
                step = driver.execute_script("return document.getElementById('figure-0').moesimData.makespan_s")
            steps = [("zoom to the middle half", f"{{'xaxis.range': [{step / 4}, {3 * step / 4}]}}"),
                     ("zoom to 1/16 of the step", f"{{'xaxis.range': [{step / 2}, {step / 2 + step / 16}]}}"),
                     ("zoom to 1/64", f"{{'xaxis.range': [{step / 2}, {step / 2 + step / 64}]}}"),
                     ("zoom to 1/256", f"{{'xaxis.range': [{step / 2}, {step / 2 + step / 256}]}}"),
                     ("pan by half a window", f"{{'xaxis.range': [{step / 2 + step / 512}, "
                                              f"{step / 2 + 3 * step / 512}]}}"),
                     ("zoom out (double-click)", "{'xaxis.autorange': true}")]
            driver.execute_cdp_cmd("Performance.enable", {})
            for name, change in steps:
                before = thread_s(driver)
                ms, mode, shown_ops, figure_ms = driver.execute_async_script(ZOOM % change)
                used = thread_s(driver) - before
                drew = f"{shown_ops} op bars" if mode == "ops" else "overview"
                print(f"{name:28} {ms / 1e3:6.2f} s  (main-thread CPU {used:.2f} s; {drew}; "
                      f"{figure_ms / 1e3:.2f} s building the traces)")
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            print(f"console errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        finally:
            driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])
