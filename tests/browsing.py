"""A real headless Chromium for the tests that look at pages (marked `browser`): the `browser` fixture in
conftest.py starts it, `screenshot` saves what it shows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING = "chromium is not installed (Debian: apt install chromium chromium-driver)"

needs_chromium = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING)


def start_chromium(downloads: Path):
    """Headless Chromium in English at 1200x900 that saves downloads into `downloads`, without asking."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1200,900", "--lang=en"):
        options.add_argument(argument)
    downloads.mkdir(parents=True, exist_ok=True)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              "safebrowsing.enabled": False})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, tmp_path: Path, name: str, width: int = 1200) -> Path:
    """A full-page screenshot of the current page at the given width, saved under tmp_path/screens."""
    driver.set_window_size(width, 900)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(height, 600), 4000))
    path = tmp_path / "screens" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path
