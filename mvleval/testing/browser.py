"""A real headless Chromium for tests and benchmarks of the HTML pages: Debian's chromium + chromedriver via selenium.

No browser is downloaded: selenium is pointed at the system's chromedriver, so this works offline. `missing()` says
what is absent (tests skip with that reason; CI sets MVLEVAL_REQUIRE_BROWSER=1 to fail instead).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

INSTALL_HINT = (
    "apt-get install -y chromium chromium-driver (Debian/Ubuntu) and pip install selenium (in mvleval's [dev] extra)"
)

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser_binary() -> str | None:
    """Path of a Chromium/Chrome binary ($MVLEVAL_CHROMIUM first), or None."""
    env = os.environ.get("MVLEVAL_CHROMIUM")
    if env:
        return env
    return next((path for name in _BROWSERS if (path := shutil.which(name))), None)


def driver_binary() -> str | None:
    """Path of chromedriver ($MVLEVAL_CHROMEDRIVER first), or None."""
    return os.environ.get("MVLEVAL_CHROMEDRIVER") or shutil.which("chromedriver")


def missing() -> str | None:
    """Why no browser can be driven here (None when one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed ({INSTALL_HINT})"
    if browser_binary() is None:
        return f"no chromium binary on PATH ({INSTALL_HINT})"
    if driver_binary() is None:
        return f"no chromedriver on PATH ({INSTALL_HINT})"
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A selenium WebDriver for headless Chromium that records the console (driver.get_log('browser'))."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    why = missing()
    if why:
        raise RuntimeError(why)
    options = webdriver.ChromeOptions()
    options.binary_location = browser_binary()  # type: ignore[assignment]
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start; the pages are our own local files
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_binary()), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """The console messages of level SEVERE (errors, CSP violations, uncaught exceptions) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
