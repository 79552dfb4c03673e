"""What the page tests in real headless Chromium share: the browser (Debian's Chromium at
/usr/bin/chromium, driven by the playwright package, no browser download), skipped with a reason
where either is missing, and the folder their screenshots are kept in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the "
                    "browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def launch_chromium(playwright) -> Callable:
    """Chromium with the shared arguments and any more given."""
    return lambda *more: playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(more))


@pytest.fixture(scope="module")
def browser(launch_chromium):
    chromium = launch_chromium()
    yield chromium
    chromium.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (artifacts/, made on first use)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
