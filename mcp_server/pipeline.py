"""Pipeline tools: the daily pipeline's own outputs, read from the data root, and launching a run.

Files under ``IBKR_DATA_DIR`` (see :mod:`ibkr_assets.resources.storage`):
``reports/order_ticket_YYYY-MM-DD.json``, ``reports/risk_report_YYYY-MM-DD.json``,
``decision_log/*.parquet`` (the hash-chained journal), ``features/YYYY-MM-DD.parquet`` (one row
per symbol) and the ``alpha_scores`` table of ``warehouse.duckdb``. A tool whose file does not
exist yet answers with a clear "not produced yet" naming the file it looked for. ``date`` omitted
means the latest file present.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pandas as pd
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from mcp_server.context import add_tool, state
from mcp_server.reference import Symbol

if TYPE_CHECKING:
    from mcp_server.server import IBKRServer

CATEGORY = "pipeline"

Day = Annotated[date | None, Field(description="session date YYYY-MM-DD; omit for the latest")]


class NotProducedYet(ToolError):
    """The pipeline has not written this output yet."""


class Report(BaseModel):
    """A JSON report written by the pipeline."""

    kind: str
    date: str
    path: str
    content: Any


class JournalEntries(BaseModel):
    """The newest rows of the decision journal."""

    path: str
    total_rows: int
    entries: list[dict[str, Any]]


class FeatureRow(BaseModel):
    """One symbol's row of the feature matrix, and its alpha score and drivers when available."""

    symbol: str
    date: str
    features: dict[str, Any]
    alpha: dict[str, Any] | None = Field(None, description="alpha_scores row, if computed")


class RunLaunched(BaseModel):
    """A daily run started in the background."""

    date: str
    pid: int
    command: list[str]
    log_path: str


def _clean(value: Any) -> Any:
    """A JSON-safe value (NaN -> None, timestamps -> ISO text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return _clean(value.item())
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _clean(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _dated(folder: Path, pattern: str, day: date | None, what: str) -> tuple[Path, str]:
    """The file for ``day`` (or the newest) matching ``pattern`` with a {date} placeholder."""
    if day is not None:
        path = folder / pattern.format(date=day.isoformat())
        if not path.exists():
            raise NotProducedYet(f"{what} for {day} not produced yet (no {path})")
        return path, day.isoformat()
    regex = re.compile(re.escape(pattern).replace(r"\{date\}", r"(\d{4}-\d{2}-\d{2})") + "$")
    found = sorted(
        (m.group(1), p) for p in folder.glob("*") if (m := regex.match(p.name)) is not None
    )
    if not found:
        raise NotProducedYet(
            f"{what} not produced yet (no {folder / pattern.format(date='YYYY-MM-DD')}); "
            "run the daily pipeline first"
        )
    stamp, path = found[-1]
    return path, stamp


def _report(ctx: Context, kind: str, day: date | None) -> Report:
    folder = state(ctx).data_dir / "reports"
    path, stamp = _dated(folder, kind + "_{date}.json", day, kind.replace("_", " "))
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ToolError(
            f"{path} is not valid JSON ({exc}); the run may still be writing it"
        ) from None
    return Report(kind=kind, date=stamp, path=str(path), content=content)


async def latest_order_ticket(ctx: Context, date: Day = None) -> Report:
    """The order ticket the pipeline wrote (orders with what-if results), latest or for a date.

    Examples:
        latest_order_ticket() ; latest_order_ticket(date="2026-11-23")
    """
    return _report(ctx, "order_ticket", date)


async def risk_report(ctx: Context, date: Day = None) -> Report:
    """The risk report (CVaR, exposures, compliance-gate outcome), latest or for a date.

    Examples:
        risk_report()
    """
    return _report(ctx, "risk_report", date)


async def journal_entries(
    ctx: Context, limit: Annotated[int, Field(ge=1, le=500, description="newest rows")] = 20
) -> JournalEntries:
    """The newest entries of the hash-chained decision journal.

    Examples:
        journal_entries(limit=10)
    """
    folder = state(ctx).data_dir / "decision_log"
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise NotProducedYet(f"decision journal not produced yet (no {folder}/*.parquet)")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return JournalEntries(
        path=str(folder), total_rows=len(frame), entries=_records(frame.tail(limit).iloc[::-1])
    )


def _alpha_row(warehouse: Path, symbol: str, stamp: str) -> dict[str, Any] | None:
    """The symbol's alpha_scores row for the date from the DuckDB warehouse, read-only."""
    if not warehouse.exists():
        return None
    import duckdb

    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            tables = con.execute(
                "select table_schema from information_schema.tables where table_name = "
                "'alpha_scores'"
            ).fetchall()
            if not tables:
                return None
            frame = con.execute(
                f'select * from "{tables[0][0]}".alpha_scores where symbol = ?', [symbol]
            ).df()
    except duckdb.Error:
        return None  # locked by a running pipeline, or another layout: not available
    for col in ("partition", "session", "date"):
        if col in frame.columns:
            frame = frame.loc[frame[col].astype(str).str.startswith(stamp)]
            break
    return _records(frame.tail(1))[0] if len(frame) else None


async def feature_row(ctx: Context, symbol: Symbol, date: Day = None) -> FeatureRow:
    """A symbol's row of the day's feature matrix, with its alpha score and top drivers.

    Examples:
        feature_row(symbol="AAPL")
    """
    root = state(ctx).data_dir
    path, stamp = _dated(root / "features", "{date}.parquet", date, "feature matrix")
    frame = pd.read_parquet(path)
    sym = symbol.upper()
    rows = frame.loc[frame["symbol"] == sym] if "symbol" in frame.columns else frame.loc[[sym]]
    if rows.empty:
        raise ToolError(f"{sym} is not in the feature matrix of {stamp} ({len(frame)} symbols)")
    return FeatureRow(
        symbol=sym,
        date=stamp,
        features=_records(rows.tail(1))[0],
        alpha=_alpha_row(root / "warehouse.duckdb", sym, stamp),
    )


async def run_daily_pipeline(
    ctx: Context, date: Day = None, reason: Annotated[str, Field(max_length=500)] = ""
) -> RunLaunched:
    """Start the daily pipeline for a session in the background (``ibkr-agent run --date D``).
    Orders are submitted only if the pipeline's own auto-submit setting is on.

    Examples:
        run_daily_pipeline(date="2026-11-23", reason="re-run after data fix")
    """
    app = state(ctx)
    name = app.settings.agent_cli
    cli = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if cli is None:
        raise ToolError(
            f"the pipeline CLI {name!r} is not available; install the package "
            "(pip install -e .) to launch runs"
        )
    command = [cli, "run"] + (["--date", date.isoformat()] if date else [])
    logs = app.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"mcp_run_{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    app.guard.audit("run_daily_pipeline", app.settings.user, reason, {"command": command})
    return RunLaunched(
        date=date.isoformat() if date else "latest",
        pid=proc.pid,
        command=command,
        log_path=str(log_path),
    )


def register(server: IBKRServer) -> None:
    """Add this category's tools to the server."""
    for fn in (latest_order_ticket, risk_report, journal_entries, feature_row):
        add_tool(server, fn, CATEGORY, open_world=False)
    add_tool(server, run_daily_pipeline, CATEGORY, read_only=False, open_world=False)
