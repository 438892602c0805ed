"""Debian's headless Chromium through Selenium, as the ops tests drive it (make ops-prereqs)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def headless_chrome(width: int, height: int) -> Any:
    """A new headless Chromium window of `width` x `height`; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "chromium and chromedriver are needed: make ops-prereqs (Debian: chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    # No calls home: on a closed network each one is a refused connection Chromium retries.
    for arg in ("--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    options.add_argument("--no-first-run")
    options.add_argument("--disable-quic")
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
