"""Pipeline tools: the daily pipeline's own outputs, read from the data root, and launching a run.

Files under ``IBKR_DATA_DIR`` (see :mod:`ibkr_assets.resources.storage`):
``reports/order_ticket_YYYY-MM-DD.json``, ``reports/risk_report_YYYY-MM-DD.json``,
``decision_log/*.parquet`` (the hash-chained journal), ``features/YYYY-MM-DD.parquet`` (one row
per symbol) and the ``alpha_scores`` table of ``warehouse.duckdb``. A tool whose file does not
exist yet answers with a clear "not produced yet" naming the file it looked for. ``date`` omitted
means the latest file present. While a run holds the warehouse's write lock, ``feature_row`` waits
up to ``IBKR_MCP_WAREHOUSE_WAIT_S`` for it, then says the warehouse is busy.

``run_daily_pipeline`` exists only with ``IBKR_MCP_TRADING=on`` and refuses while the order guard
halts trading (read-only or kill switch). One run at a time per data root: the launched process
inherits an ``flock`` on ``<data>/mcp/pipeline.lock`` and holds it until it exits, so a second
launch, from this server or another, answers "already running" with the first run's pid, start
and log. At most one launch per ``IBKR_MCP_PIPELINE_INTERVAL_MIN`` minutes. The run connects to IB
with its own clientId (``IBKR_MCP_PIPELINE_CLIENT_ID``, default the server's ``IBKR_CLIENT_ID`` +
1000), so it never collides with the server's connection (IB error 326). A thread waits on the
process (no zombie) and records its exit in ``<data>/mcp/pipeline_run.json``, which
``pipeline_run_status`` reads back with the log's last lines.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import pandas as pd
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from mcp_server.app import AppState, IBKRServer
from mcp_server.context import add_tool, state
from mcp_server.reference import Symbol
from mcp_server.trading import Reason

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


#: How far back the client id of a launched run is from the server's, by default.
PIPELINE_CLIENT_ID_OFFSET = 1000
#: Lines of the run's log ``pipeline_run_status`` returns by default.
LOG_TAIL_LINES = 40


class PipelineRun(BaseModel):
    """The last daily run launched through MCP on this data root, and how it ended."""

    state: Literal["running", "succeeded", "failed", "unknown"] = Field(
        description="unknown: the process is gone but no exit code was recorded (the server "
        "that launched it stopped first); read the log"
    )
    date: str = Field(description="the session it runs, or 'latest'")
    pid: int
    client_id: int = Field(description="the IB clientId the run connects with")
    command: list[str]
    started_at: datetime
    finished_at: datetime | None = None
    exit_code: int | None = None
    log_path: str
    log_tail: list[str] = Field(default_factory=list, description="the log's last lines")


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


def _alpha_row(warehouse: Path, symbol: str, stamp: str, wait_s: float) -> dict[str, Any] | None:
    """The symbol's alpha_scores row for the date from the DuckDB warehouse, read-only; None when
    the warehouse or the table does not exist yet. While another process holds the warehouse's
    write lock (a running pipeline), retry for ``wait_s`` seconds, then raise a ToolError."""
    if not warehouse.exists():
        return None
    import duckdb

    deadline = time.monotonic() + wait_s
    while True:
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
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise ToolError(f"cannot read alpha scores from {warehouse}: {exc}") from None
            if time.monotonic() >= deadline:
                raise ToolError(
                    f"the warehouse {warehouse} is busy: another process (a pipeline run) holds "
                    f"its write lock and did not release it within {wait_s:g} s "
                    "(IBKR_MCP_WAREHOUSE_WAIT_S); retry when the run has finished"
                ) from None
            time.sleep(min(0.25, max(deadline - time.monotonic(), 0.0)))
        except duckdb.Error as exc:
            raise ToolError(f"cannot read alpha scores from {warehouse}: {exc}") from None
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
    app = state(ctx)
    root = app.data_dir

    def run() -> FeatureRow:
        path, stamp = _dated(root / "features", "{date}.parquet", date, "feature matrix")
        frame = pd.read_parquet(path)
        sym = symbol.upper()
        if "symbol" in frame.columns:
            rows = frame.loc[frame["symbol"] == sym]
        else:
            rows = frame.loc[frame.index == sym]
        if rows.empty:
            raise ToolError(f"{sym} is not in the feature matrix of {stamp} ({len(frame)} symbols)")
        alpha = _alpha_row(root / "warehouse.duckdb", sym, stamp, app.settings.warehouse_wait_s)
        return FeatureRow(symbol=sym, date=stamp, features=_records(rows.tail(1))[0], alpha=alpha)

    return await anyio.to_thread.run_sync(run)


# -- launching a run -----------------------------------------------------------------------------
#: The reaper thread of each run this process launched, by pid.
_REAPERS: dict[int, threading.Thread] = {}


def _run_paths(root: Path) -> tuple[Path, Path]:
    """The launch record and the lock file of ``run_daily_pipeline`` under a data root."""
    folder = root / "mcp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "pipeline_run.json", folder / "pipeline.lock"


def _take_lock(path: Path) -> int | None:
    """An open descriptor holding the exclusive ``flock`` on ``path``, or None if a process
    (a running pipeline) holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _read_record(path: Path) -> PipelineRun | None:
    if not path.exists():
        return None
    return PipelineRun.model_validate_json(path.read_text(encoding="utf-8"))


def _write_record(path: Path, run: PipelineRun) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(run.model_dump_json(exclude={"log_tail"}, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def _log_tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a log (reading at most its last 64 KiB)."""
    if not path.exists():
        return []
    with path.open("rb") as fh:
        fh.seek(max(path.stat().st_size - 65_536, 0))
        text = fh.read().decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]


def _reap(proc: subprocess.Popen[bytes], record_path: Path) -> None:
    """Wait for a launched run (so it never lingers as a zombie) and record how it ended."""
    code = proc.wait()
    run = _read_record(record_path)
    if run is not None and run.pid == proc.pid:
        _write_record(
            record_path,
            run.model_copy(
                update={
                    "state": "succeeded" if code == 0 else "failed",
                    "exit_code": code,
                    "finished_at": datetime.now(UTC),
                }
            ),
        )
    _REAPERS.pop(proc.pid, None)


def _pipeline_cli(app: AppState) -> str:
    name = app.settings.agent_cli
    cli = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if cli is None:
        raise ToolError(
            f"the pipeline CLI {name!r} is not available; install the package "
            "(pip install -e .) to launch runs"
        )
    return cli


def _client_id(app: AppState) -> int:
    """The IB clientId of a launched run: distinct from the server's own connection."""
    if app.settings.pipeline_client_id is not None:
        return app.settings.pipeline_client_id
    return app.order_guard.settings.client_id + PIPELINE_CLIENT_ID_OFFSET


def _launch(app: AppState, day: date | None, reason: str) -> PipelineRun:
    """Start ``<agent_cli> run [--date D]`` under the lock, or refuse saying why."""
    halt = app.order_guard.halt_reason()
    if halt is not None:
        raise ToolError(f"run_daily_pipeline refused: {halt}")
    cli = _pipeline_cli(app)
    record_path, lock_path = _run_paths(app.data_dir)
    fd = _take_lock(lock_path)
    if fd is None:
        last = _read_record(record_path)
        detail = (
            f"pid {last.pid}, started at {last.started_at:%Y-%m-%d %H:%M:%S} UTC, log "
            f"{last.log_path}"
            if last is not None
            else f"lock {lock_path} held"
        )
        raise ToolError(f"a daily pipeline run is already running: {detail}")
    try:
        last = _read_record(record_path)
        interval = timedelta(minutes=app.settings.pipeline_interval_min)
        now = datetime.now(UTC)
        if last is not None and now - last.started_at < interval:
            raise ToolError(
                f"run_daily_pipeline was last launched at {last.started_at:%H:%M:%S} UTC; at most "
                f"one launch per {app.settings.pipeline_interval_min:g} minutes "
                f"(IBKR_MCP_PIPELINE_INTERVAL_MIN): next at {last.started_at + interval:%H:%M:%S} "
                "UTC"
            )
        command = [cli, "run"] + (["--date", day.isoformat()] if day else [])
        client_id = _client_id(app)
        env = {
            **os.environ,
            "IBKR_CLIENT_ID": str(client_id),
            "IBKR_DATA_DIR": str(app.data_dir),
            "IBKR_RUN_TRIGGER": "mcp",  # the run's ibkr/trigger tag
        }
        logs = app.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"mcp_run_{now:%Y%m%dT%H%M%S}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                pass_fds=(fd,),  # the run holds the lock until it exits
                start_new_session=True,
            )
        run = PipelineRun(
            state="running",
            date=day.isoformat() if day else "latest",
            pid=proc.pid,
            client_id=client_id,
            command=command,
            started_at=now,
            log_path=str(log_path),
        )
        _write_record(record_path, run)
    finally:
        os.close(fd)
    reaper = threading.Thread(
        target=_reap, args=(proc, record_path), name=f"pipeline-reaper-{proc.pid}", daemon=True
    )
    reaper.start()
    _REAPERS[proc.pid] = reaper
    app.audit(
        "run_daily_pipeline",
        reason,
        {"command": command, "pid": proc.pid, "client_id": client_id, "log": str(log_path)},
    )
    return run


async def run_daily_pipeline(ctx: Context, reason: Reason, date: Day = None) -> PipelineRun:
    """Start the daily pipeline for a session in the background (``ibkr-agent run --date D``),
    one run at a time, with its own IB clientId; follow it with pipeline_run_status. Orders are
    submitted only if the pipeline's own auto-submit setting is on, through the order guard.

    Examples:
        run_daily_pipeline(date="2026-11-23", reason="re-run after data fix")
    """
    app = state(ctx)
    return await anyio.to_thread.run_sync(_launch, app, date, reason)


async def pipeline_run_status(
    ctx: Context,
    lines: Annotated[int, Field(ge=0, le=500, description="log lines to return")] = LOG_TAIL_LINES,
) -> PipelineRun:
    """The last run launched with run_daily_pipeline: running, succeeded or failed, its exit
    code and the end of its log.

    Examples:
        pipeline_run_status() ; pipeline_run_status(lines=100)
    """
    app = state(ctx)
    record_path, lock_path = _run_paths(app.data_dir)

    def run() -> PipelineRun:
        last = _read_record(record_path)
        if last is None:
            raise NotProducedYet(f"no pipeline run launched through MCP yet (no {record_path})")
        if last.exit_code is None:
            fd = _take_lock(lock_path)
            if fd is None:
                last = last.model_copy(update={"state": "running"})
            else:
                os.close(fd)
                reaper = _REAPERS.get(last.pid)
                if reaper is not None:  # ours: it has just ended; let the reaper record it
                    reaper.join(timeout=5)
                # read again: the reaper may have recorded the end since the first read
                last = _read_record(record_path) or last
                if last.exit_code is None:
                    last = last.model_copy(update={"state": "unknown"})
        return last.model_copy(update={"log_tail": _log_tail(Path(last.log_path), lines)})

    return await anyio.to_thread.run_sync(run)


def register(server: IBKRServer, trading: bool) -> None:
    """Add this category's tools to the server; the launcher only when trading is on."""
    for fn in (latest_order_ticket, risk_report, journal_entries, feature_row, pipeline_run_status):
        add_tool(server, fn, CATEGORY, open_world=False)
    if trading:
        add_tool(server, run_daily_pipeline, CATEGORY, read_only=False, open_world=False)
