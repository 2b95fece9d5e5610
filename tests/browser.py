"""Headless Chromium for browser tests: Debian's ``chromium`` and ``chromedriver`` driven by selenium.

Never downloads a browser: the binaries must be installed (``.ci/run`` installs them with apt). Tests that
need one are skipped, with the reason, when they are missing.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MOESIM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MOESIM_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


def have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


needs_browser = pytest.mark.skipif(not have_browser(), reason=f"needs {CHROMIUM} and {CHROMEDRIVER} "
                                                              "(apt-get install chromium chromium-driver)")


def start_chromium(profile_dir: Path, trace_categories: str = ""):
    """A selenium WebDriver on a fresh headless Chromium profile, with the browser console captured.

    ``trace_categories`` (Chromium trace categories, comma-separated) also records a trace of them, read back
    as the ``performance`` log (the benchmarks' CPU accounting).
    """
    selenium = pytest.importorskip("selenium")  # noqa: F841  (the test extra installs it)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    logs = {"browser": "ALL", "performance": "ALL"} if trace_categories else {"browser": "ALL"}
    options.set_capability("goog:loggingPrefs", logs)
    if trace_categories:
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": False, "enablePage": False,
                                                             "traceCategories": trace_categories})
    service = Service(executable_path=shutil.which(CHROMEDRIVER) or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    return driver


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
