"""The Dagster UI as a user meets it, in headless Chromium.

``dagster-webserver`` and ``dagster-daemon`` (which starts queued runs and backfills) serve a
fresh data root whose Dagster instance is the project's own ``dagster.yaml`` (the queued run
coordinator), on a free loopback port, over a 60-stock simulated world with a short
watch-list. The compliance limit on the largest position is 1% (``IBKR_DECIDE_CONFIG``), which
every target portfolio breaches. Then, through the UI:

1. the daily job, launched for the latest session from the job page ("Materialize all…", one
   partition), ends failed at the gate's ``concentration`` check, and the order stages after
   the gate are not executed;
2. the risk report's Checks tab shows that check failed for the session, with its value,
   limit, excess and offending names;
3. the quotes table's Columns panel lists every column with its type and meaning (unit);
4. the global lineage, every group expanded, shows every asset of the pipeline; its screenshot
   is the README's ``docs/img/lineage.png`` (rewritten when ``IBKR_UPDATE_SCREENSHOTS=1``);
5. a backfill of four sessions queues: no more of its runs in progress than ``dagster.yaml``
   allows, the others shown as queued.

About 2 minutes; the servers' logs are in the module's temporary data root.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml
from playwright.sync_api import BrowserContext, Locator, Page, expect

from ibkr_assets.assets.market_data import QUOTES
from ibkr_assets.definitions import defs
from ibkr_assets.jobs import BACKFILL_TAG, DAILY_JOB_NAME
from ibkr_assets.partitions import latest_partition_date, previous_sessions
from tests.small_world import daemon_environment
from tests.ui.conftest import new_page

pytestmark = [pytest.mark.slow, pytest.mark.ui]

REPO = Path(__file__).resolve().parents[2]
SIM_SYMBOLS = 60
WATCHLIST = ["AAPL", "MSFT", "NVDA", "JPM", "XOM"]
#: The compliance limit on the largest |weight|: below the optimiser's own cap, so it fails.
CONCENTRATION_MAX = 0.01
SESSION = latest_partition_date(datetime.now(UTC)).isoformat()
BACKFILL = [day.isoformat() for day in previous_sessions(SESSION, 4)]
SCREENSHOT = REPO / "docs" / "img" / "lineage.png"
UPDATE_SCREENSHOTS = "IBKR_UPDATE_SCREENSHOTS"
#: Seconds for the webserver to serve the code location, and for the daily run to end.
SERVE_S = 150
RUN_S = 180
#: Seconds for a backfill's runs to show up (the daemon looks at backfills every 30 s).
BACKFILL_S = 90
#: Dagster's words for a run that has ended.
ENDED = re.compile(r"^(Success|Failure|Canceled)$")

ASSET_GRAPH = defs.resolve_asset_graph()
DAILY_ASSETS = defs.resolve_job_def(DAILY_JOB_NAME).asset_layer.executable_asset_keys
#: The order stages the gate stops: every daily asset downstream of the risk report.
GATED = DAILY_ASSETS & dg.AssetSelection.assets("risk_report").downstream(
    include_self=False
).resolve(ASSET_GRAPH)


def _backfill_run_limit() -> int:
    """How many runs of backfills the shipped ``dagster.yaml`` lets be in progress at once."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    return next(limit["limit"] for limit in limits if limit["key"] == BACKFILL_TAG)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    """``command`` in its own process group (its code servers and run workers join it)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(processes: list[subprocess.Popen]) -> None:
    """Stop each process group (the instance is thrown away): SIGTERM, then SIGKILL for
    whatever is left 2 s later, the groups' code servers and run workers included."""
    for process in processes:
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 2
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_for_code_location(url: str, webserver: subprocess.Popen, log: Path) -> None:
    """Until the webserver has loaded the code location; fails with its load error or log."""
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    deadline = time.monotonic() + SERVE_S
    while time.monotonic() < deadline:
        if webserver.poll() is not None:
            pytest.fail(f"dagster-webserver exited ({webserver.returncode}); see {log}")
        try:
            reply = httpx.post(f"{url}/graphql", json={"query": query}, timeout=10).json()
        except httpx.HTTPError:
            time.sleep(1)
            continue
        entries = reply["data"]["workspaceOrError"].get("locationEntries") or []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            if errors:
                pytest.fail(f"the code location did not load: {errors[0]['locationOrLoadError']}")
            return
        time.sleep(1)
    pytest.fail(f"the webserver did not serve the code location within {SERVE_S} s; see {log}")


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the Dagster UI on a fresh data root, its daemon running."""
    root = tmp_path_factory.mktemp("ui-data")
    home = root / ".dagster"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    decide = root / "decide.yaml"
    # five names give weak evidence (a composite IC of about 0.005): the CVaR penalty alone would
    # keep the book in cash, so it is off and the best name is bought, over the 1% limit
    limits = {"concentration_max": CONCENTRATION_MAX, "cvar_aversion": 0.0}
    decide.write_text(yaml.safe_dump(limits))
    env = daemon_environment(root, SIM_SYMBOLS, WATCHLIST, IBKR_DECIDE_CONFIG=str(decide))
    # the instance's SQLite storage, created once here: the webserver and the daemon would
    # otherwise both create it at start, and the loser finds two schema versions
    dg.DagsterInstance.from_config(str(home)).dispose()
    port = str(_free_port())
    url = f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    workspace = str(REPO / "workspace.yaml")
    # like `make dev`: run in the instance directory, whose dagster.yaml is the instance's own
    webserver = _start(
        [str(bin_dir / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", port],
        env,
        home,
        root / "webserver.log",
    )
    processes = [webserver]
    try:
        processes.append(
            _start(
                [str(bin_dir / "dagster-daemon"), "run", "-w", workspace],
                env,
                home,
                root / "daemon.log",
            )
        )
        print(f"Dagster UI at {url}; logs in {root}")
        _wait_for_code_location(url, webserver, root / "webserver.log")
        yield url
    finally:
        _stop(processes)


def _reload_until(page: Page, locator: Locator, timeout_s: float, what: str) -> None:
    """Reload ``page`` until ``locator`` is visible: for views that refresh on a timer."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            expect(locator).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {timeout_s:.0f} s the UI does not show {what}"
                ) from None
            page.reload()


def _launch(page: Page, url: str, partitions: list[str], button: str) -> None:
    """The daily job for ``partitions``, from its page: "Materialize all…", the partitions typed
    into the partition selection, then ``button``."""
    page.goto(f"{url}/locations/ibkr_assets/jobs/{DAILY_JOB_NAME}")
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    selection = dialog.get_by_placeholder("No matching partitions")
    selection.fill(", ".join(partitions))
    selection.press("Enter")
    expect(dialog).to_contain_text(f"{len(partitions)} partition")
    dialog.get_by_role("button", name=button).click()
    expect(dialog).to_be_hidden()


def _cell(page: Page, table: Locator, key: str) -> Locator:
    """The row of ``table`` whose first cell is exactly ``key``."""
    return table.get_by_role("row").filter(has=page.get_by_role("cell", name=key, exact=True))


@pytest.fixture(scope="module")
def gate_run(dagster_ui: str, browser: BrowserContext) -> str:
    """The URL of the run page of the daily job for ``SESSION``, launched from the UI, once the
    run has ended."""
    page = new_page(browser)
    try:
        _launch(page, dagster_ui, [SESSION], "Launch 1 run")
        page.goto(f"{dagster_ui}/runs")
        run = page.get_by_role("link", name=re.compile(r"\b[0-9a-f]{8}$"))  # the only run
        _reload_until(page, run, 30, "the launched run in the runs list")
        expect(page.get_by_text(f"partition: {SESSION}")).to_be_visible()
        run.click()
        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
        _reload_until(page, page.get_by_text(ENDED).first, RUN_S, "the end of the run")
        return page.url
    finally:
        page.close()


def test_daily_run_from_the_ui_stops_at_the_failed_gate(page: Page, gate_run: str) -> None:
    page.goto(gate_run)
    expect(page.get_by_text(ENDED).first).to_have_text("Failure")
    expect(page.get_by_text("Errored (1)")).to_be_visible()
    expect(page.get_by_text("risk_report_concentration", exact=True).first).to_be_visible()
    expect(page.get_by_text(f"Not executed ({len(GATED)})")).to_be_visible()


def test_failed_gate_check_shows_its_session_and_metadata(
    page: Page, dagster_ui: str, gate_run: str
) -> None:
    page.goto(f"{dagster_ui}/assets/risk_report?view=checks&checkDetail=concentration")
    breach = re.compile(r"^concentration: [\d.]+ BREACH by [\d.]+ over limit 0\.01$")
    expect(page.get_by_text(breach).first).to_be_visible()
    expect(page.get_by_text("Failed", exact=True).first).to_be_visible()
    expect(page.get_by_text(SESSION, exact=True).first).to_be_visible()  # the partition
    table = page.get_by_role("table").filter(has=page.get_by_role("cell", name="offenders"))
    values = {
        key: _cell(page, table, key).get_by_role("cell").nth(1).inner_text()
        for key in ("value", "limit", "excess", "offenders")
    }
    assert float(values["limit"]) == CONCENTRATION_MAX
    assert float(values["value"]) > CONCENTRATION_MAX
    assert float(values["excess"]) == pytest.approx(
        float(values["value"]) - CONCENTRATION_MAX, abs=1e-4
    )
    assert re.fullmatch(r"[A-Z.]+(, [A-Z.]+)*", values["offenders"]), values  # the names


def test_columns_panel_lists_each_column_with_type_and_meaning(page: Page, dagster_ui: str) -> None:
    page.goto(f"{dagster_ui}/assets/quotes")
    table = page.get_by_role("table").filter(has_text="Column name")
    columns = QUOTES.schema().columns
    expect(table.get_by_role("row")).to_have_count(len(columns) + 1)  # and the header
    for column in columns:
        assert column.description, f"{column.name} has no description"
        row = _cell(page, table, column.name)
        expect(row).to_contain_text(column.type)
        expect(row).to_contain_text(column.description)


def test_lineage_shows_every_asset(
    page: Page, dagster_ui: str, gate_run: str, tmp_path: Path
) -> None:
    page.goto(f"{dagster_ui}/asset-groups")
    page.get_by_role("button", name="Hide navigation").click()
    page.locator("button:has([aria-label=panel_show_right])").click()  # the groups sidebar
    page.locator("[aria-label=settings]").last.click()  # the graph's settings menu
    page.get_by_role("menuitem", name="Expand all groups").click()
    graph = page.locator("svg").filter(has=page.get_by_text("risk_report", exact=True))
    for key in ASSET_GRAPH.get_all_asset_keys():
        expect(graph.get_by_text(key.to_user_string(), exact=True)).to_be_visible()
    page.keyboard.press("Escape")  # close the settings menu
    graph.dispatch_event("dblclick")  # on the background: zoom to fit
    page.wait_for_load_state("networkidle")  # every node's status loaded and drawn
    shot = tmp_path / "lineage.png"
    page.screenshot(path=shot)
    if os.environ.get(UPDATE_SCREENSHOTS) == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOT)


def test_backfill_queues_its_runs(page: Page, dagster_ui: str, gate_run: str) -> None:
    limit = _backfill_run_limit()
    assert len(BACKFILL) > limit
    _launch(page, dagster_ui, BACKFILL, "Launch backfill")
    page.goto(f"{dagster_ui}/runs?view=backfills")
    backfill = page.locator('a[href^="/runs/b/"]').first.get_attribute("href")  # the only one
    # its runs, once the daemon has created them all and started some
    statuses = {
        status: page.get_by_text(status, exact=True)
        for status in ("Queued", "Starting", "Started", "Canceling")
    }
    deadline = time.monotonic() + BACKFILL_S
    while True:
        page.goto(f"{dagster_ui}{backfill}?tab=runs")
        page.wait_for_load_state("networkidle")
        counts = {status: shown.count() for status, shown in statuses.items()}
        queued = counts.pop("Queued")
        running = sum(counts.values())
        if running and queued + running == len(BACKFILL):
            break
        assert time.monotonic() < deadline, (
            f"after {BACKFILL_S} s the backfill shows {queued} runs queued and {running} in "
            f"progress, not its {len(BACKFILL)} runs with some started"
        )
        page.wait_for_timeout(2_000)
    assert running <= limit < len(BACKFILL)
    shown = page.get_by_text(re.compile(r"^partition: \d{4}-\d{2}-\d{2}$")).all_inner_texts()
    assert sorted(text.removeprefix("partition: ") for text in shown) == BACKFILL
    # why a run waits: the limit on backfill runs, as dagster.yaml sets it
    page.get_by_role("button", name="View queue criteria").first.click()
    criteria = page.get_by_role("dialog")
    expect(criteria.get_by_role("row", name=f"Tag key {BACKFILL_TAG}", exact=True)).to_be_visible()
    expect(criteria.get_by_role("row", name=f"Limit {limit}", exact=True)).to_be_visible()
