"""The README's pictures, taken in headless Chromium as a user would see them (re-run after numbers change).

Run from the repository root: PYTHONPATH=. python docs/screenshots.py   (writes docs/img/*.png; ~1 minute)

Uses Debian's chromium and chromedriver through tests/browser.py (flags: --headless --no-sandbox --disable-gpu
--disable-background-networking --disable-component-update --disable-sync --no-first-run).
"""

from __future__ import annotations

import base64
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moesim.simulator.report import write_report  # noqa: E402
from moesim.simulator.simulate import simulate  # noqa: E402
from tests.browser import free_port, start_chromium  # noqa: E402
from moesim.workloads.loader import load_scenario  # noqa: E402

OUT = ROOT / "docs" / "img"
PRESET = "deepseek-v3-h800"


def shoot(driver, element_id: str, name: str, height: int | None = None) -> None:
    """A PNG of one element (its top ``height`` CSS pixels when given), via the DevTools protocol."""
    box = driver.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]", element_id)
    clip = {"x": box[0], "y": box[1], "width": box[2], "height": min(box[3], height or box[3]), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                             "captureBeyondViewport": True})
    path = OUT / name
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e3:.0f} KB)")


def wait(driver, script: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise TimeoutError(script)
        time.sleep(0.2)


def zoom(driver, div_id: str, start_s: float, end_s: float) -> None:
    driver.set_script_timeout(120)
    driver.execute_async_script(
        "const gd = document.getElementById(arguments[0]), n = gd.moesimRenders, done = arguments[3];"
        "Plotly.relayout(gd, {'xaxis.range': [arguments[1], arguments[2]]});"
        "(function w() { if (gd.moesimRenders > n) done(); else setTimeout(w, 20); })();", div_id, start_s, end_s)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        driver = start_chromium(tmp / "profile")
        driver.set_window_size(1300, 1000)
        try:
            scenario = load_scenario(preset=PRESET)
            result = simulate(scenario, keep_timeline=True)
            page = write_report(result, tmp / "v3.html", scenario)
            driver.get(page.as_uri())
            wait(driver, "const g = document.getElementById('figure-0'); return g && g.moesimRenders > 0")
            shoot(driver, "figure-0", "timeline-v3-overview.png")
            step = result.step_time_s
            zoom(driver, "figure-0", 0.45 * step, 0.45 * step + 0.06)
            shoot(driver, "figure-0", "timeline-v3-zoomed.png")

            compare = tmp / "compare.html"
            subprocess.run([sys.executable, "-m", "moesim.simulator.cli", "compare", PRESET, PRESET, "--set",
                            "2:schedule=1f1b", "-o", str(compare)], check=True, cwd=ROOT, capture_output=True)
            driver.get(compare.as_uri())
            wait(driver, "const g = document.getElementById('figure-2'); return g && g.moesimRenders > 0")
            wait(driver, "return moesim.chartsLeft() === 0")  # the charts below, drawn after the timelines
            driver.execute_script("document.body.id = 'page'")
            shoot(driver, "page", "compare-dualpipe-vs-1f1b.png", height=1900)

            port = free_port()
            app = subprocess.Popen([sys.executable, "-m", "moesim.simulator.cli", "dashboard", "--port", str(port),
                                    "--preset", PRESET], cwd=tmp, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
            try:
                url = f"http://127.0.0.1:{port}/"
                for _ in range(300):
                    try:
                        urllib.request.urlopen(url, timeout=2).read()
                        break
                    except OSError:
                        time.sleep(0.3)
                driver.set_window_size(1400, 1500)
                driver.get(url)
                wait(driver, "return (document.getElementById('step-time') || {}).textContent")
                wait(driver, "return document.querySelectorAll('#timeline .hm image, #timeline .heatmaplayer image')"
                             ".length > 0")
                driver.find_element("id", "pin").click()
                wait(driver, "return document.getElementById('baseline-line').textContent.length > 0")
                first = driver.execute_script("return document.getElementById('step-time').textContent")
                driver.find_element("xpath", "//input[@type='radio' and @value='bf16']").click()
                wait(driver, f"return document.getElementById('step-time').textContent !== {first!r}")
                wait(driver, "return !!document.getElementById('baseline-table')")
                wait(driver, "return ['breakdown', 'memory', 'delta', 'links'].every(id => document.querySelector("
                             "'#' + id + ' .main-svg'))")
                time.sleep(3)  # the timeline's redraw after the new data
                driver.execute_script("document.body.id = 'page'")
                shoot(driver, "page", "dashboard.png")  # the whole page: every chart, at its height
            finally:
                app.terminate()
                app.wait(timeout=10)
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
