"""Debian's Chromium, headless, driven by Playwright: the browser that the tests of
pages a person sees use (never Playwright's own download). Without it those tests
skip — and fail when ``CI=true``. A test module makes its fixture of it::

    @pytest.fixture(scope="module")
    def browser() -> Iterator[Any]:
        with headless_chromium() as launched:
            yield launched
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conftest import service_unavailable

CHROMIUM = os.environ.get("OUTREACH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A launched Playwright ``Browser``, closed on leaving."""
    if not os.access(CHROMIUM, os.X_OK):
        service_unavailable("Chromium", f"{CHROMIUM} not found (apt-get install chromium, or make install-test)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_unavailable("Playwright", f"{exc} (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
