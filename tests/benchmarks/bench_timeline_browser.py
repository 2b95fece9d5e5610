"""The DeepSeek-V3 report's timeline in headless Chromium: time to first render and to each zoom.

Run: PYTHONPATH=. python tests/benchmarks/bench_timeline_browser.py [PRESET | PAGE.html]   (prints a table; no
assertions). A PAGE.html written by ``moesim report`` is measured as it is instead of simulating PRESET.

First render is measured from navigation start (the browser begins reading the file) to the timeline's first
draw being done; a zoom from the relayout (what a drag does) to the redraw being done. Beside each wall time,
the CPU time of the page's main thread (Chromium's ThreadTime metric), which is what the wall time would be on
an idle machine: on a shared machine the wall time also counts waiting for a CPU. The first open's main-thread
time is then split by what it went to (Chromium's metrics): compiling JavaScript, running it, style and layout,
and the rest (mostly reading the HTML). Needs Debian's chromium and chromedriver (tests/browser.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from simulator.report import write_report  # noqa: E402
from simulator.simulate import simulate  # noqa: E402
from tests.browser import have_browser, start_chromium  # noqa: E402
from workloads.loader import load_scenario  # noqa: E402

ZOOM = """const gd = document.getElementById('figure-0'), before = gd.moesimRenders, t0 = performance.now();
const done = arguments[arguments.length - 1];
Plotly.relayout(gd, %s);
(function wait() { if (gd.moesimRenders > before) done([performance.now() - t0, gd.moesimMode, gd.moesimDrawn, gd.moesimFigureMs]);
                   else setTimeout(wait, 5); })();"""


SPLIT = (("compiling JavaScript", "V8CompileDuration"), ("running JavaScript", "ScriptDuration"),
         ("style and layout", ("RecalcStyleDuration", "LayoutDuration")), ("other (reading the HTML…)", None))


def metrics(driver) -> dict[str, float]:
    """The page renderer's DevTools Performance metrics (durations and ThreadTime in seconds)."""
    return {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}


def thread_s(driver) -> float:
    """CPU seconds the page's renderer main thread has used (DevTools Performance metrics)."""
    return metrics(driver)["ThreadTime"]


def split(m: dict[str, float]) -> str:
    """The first open's main-thread time by what it went to (a fresh renderer counts from zero)."""
    parts, rest = [], m["TaskDuration"]
    for name, keys in SPLIT:
        if keys is None:
            parts.append(f"{name} {rest:.2f} s")
            continue
        value = sum(m[k] for k in ((keys,) if isinstance(keys, str) else keys))
        rest -= value
        parts.append(f"{name} {value:.2f} s")
    return "; ".join(parts)


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
                driver.execute_cdp_cmd("Performance.enable", {})
                cpu = thread_s(driver)
                wall = time.perf_counter()
                driver.get(page.as_uri())
                while not driver.execute_script("const g = document.getElementById('figure-0');"
                                                "return g && g.moesimRenders > 0"):
                    time.sleep(0.02)
                first = driver.execute_script(
                    "const g = document.getElementById('figure-0'); return [performance.now(), g.moesimLastRenderMs,"
                    " performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd]")
                driver.execute_cdp_cmd("Performance.enable", {})
                now = metrics(driver)
                after = now["ThreadTime"]
                cpu = after - cpu if after >= cpu else after  # a new renderer process starts from zero
                print(visit)
                print(f"{'  navigation start -> timeline drawn':52} {first[0] / 1e3:7.2f} s  "
                      f"(main-thread CPU {cpu:.2f} s)")
                if visit.startswith("first"):
                    print(f"    main thread: {split(now)}")
                print(f"{'  of which drawing the timeline':52} {first[1] / 1e3:7.2f} s")
                print(f"{'  page parsed (DOMContentLoaded)':52} {first[2] / 1e3:7.2f} s")
                print(f"{'  wall clock seen by selenium':52} {time.perf_counter() - wall:7.2f} s")
            if step is None:
                step = driver.execute_script("return document.getElementById('figure-0').moesimData.makespan_s")
            steps = [("zoom to the middle half", f"{{'xaxis.range': [{step / 4}, {3 * step / 4}]}}"),
                     ("zoom to 1/16 of the step", f"{{'xaxis.range': [{step / 2}, {step / 2 + step / 16}]}}"),
                     ("zoom to 1/64", f"{{'xaxis.range': [{step / 2}, {step / 2 + step / 64}]}}"),
                     ("zoom to 1/256", f"{{'xaxis.range': [{step / 2}, {step / 2 + step / 256}]}}"),
                     ("pan by half a window", f"{{'xaxis.range': [{step / 2 + step / 512}, "
                                              f"{step / 2 + 3 * step / 512}]}}"),
                     ("zoom out (double-click)", "{'xaxis.autorange': true}")]
            for name, change in steps:
                cpu = thread_s(driver)
                ms, mode, drawn, figure_ms = driver.execute_async_script(ZOOM % change)
                cpu = thread_s(driver) - cpu
                what = f"{drawn} op bars" if mode == "ops" else "overview"
                print(f"{name:28} {ms / 1e3:6.2f} s  (main-thread CPU {cpu:.2f} s; {what}; "
                      f"{figure_ms / 1e3:.2f} s building the traces)")
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            print(f"console errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        finally:
            driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:])
