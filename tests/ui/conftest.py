"""The browser for the UI tests: Debian's Chromium, headless, driven by Playwright.

Playwright only drives the browser the machine has (``/usr/bin/chromium``, from Debian's
``chromium`` package, which ``.ci/run`` installs when it is missing); it never downloads one
(no ``playwright install``). Each test run starts it on a fresh profile. When a test fails, the
page it was on is saved (screenshot and HTML) next to the test's temporary files, and the
failure report names the files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
#: Headless (``headless=True`` adds ``--headless``), no sandbox (CI runs as root), and nothing
#: that reaches out to Google's services or shows a first-run page.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The window, in CSS pixels, and its pixel density: large enough for the whole lineage graph
#: to fit at a zoom where every asset's name is legible in the saved screenshot (1900 high since
#: the decision stages read the cost model's inputs: the graph's layout grew taller).
VIEWPORT = {"width": 1700, "height": 1900}
PIXEL_RATIO = 1.5
#: Milliseconds an action or a web-first assertion waits for the page before failing.
WAIT_MS = 30_000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    """Keep each phase's report on the test item, so fixtures can tell that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Headless Chromium on a fresh profile (``--user-data-dir``), shared by a module's tests."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the UI tests drive Debian's Chromium; install it with "
            "`apt-get install -y chromium` (.ci/run does this when it is missing)"
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
            device_scale_factor=PIXEL_RATIO,
        )
        context.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        try:
            yield context
        finally:
            context.close()


def new_page(browser: BrowserContext) -> Page:
    """A tab that dismisses Dagster's "Join the Dagster community" prompt whenever it shows
    (a fresh instance shows it once, a second after a page loads)."""
    page = browser.new_page()
    prompt = page.get_by_text("Join the Dagster community")
    page.add_locator_handler(prompt, lambda: page.get_by_role("button", name="Skip").click())
    return page


@pytest.fixture
def page(browser: BrowserContext, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A tab for one test; if the test fails, the page it was on is saved under ``tmp_path``."""
    tab = new_page(browser)
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        tab.screenshot(path=tmp_path / "failed-page.png", full_page=True)
        (tmp_path / "failed-page.html").write_text(tab.content())
        report.sections.append(
            ("UI page at failure", f"{tab.url}\nsaved: {tmp_path}/failed-page.png, .html")
        )
    tab.close()
