"""``ibkr-agent run``: the daily job for one NYSE session in this process, with a progress bar,
one line per failed step or check, one per asset whose data is incomplete (what could not be
fetched, with IB's error), and the files the run wrote (the demo runs it the same way). One run
per account at a time (:func:`run_daily`). After the run, the runs and staging payloads past their
retention are deleted (:mod:`ibkr_assets.housekeeping`) and the run's metrics are written for
Prometheus (:mod:`ibkr_assets.metrics`)."""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ibkr_assets.cli.instance import (
    check_settings,
    dagster_home,
    dagster_instance,
    data_dir,
    edge_settings,
    file_lock,
)
from ibkr_assets.cli.output import console, print_error

if TYPE_CHECKING:  # dagster is imported lazily to keep --help fast
    from dagster import DagsterInstance
    from dagster._utils.error import SerializableErrorInfo

    from ibkr_assets.settings import Settings


def latest_session(now: datetime | None = None) -> date:
    """The most recent NYSE session whose daily run time (14:00 Bucharest) has passed."""
    from ibkr_assets.partitions import latest_partition_date

    return latest_partition_date(now or datetime.now(UTC))


def run_daily(session: date, quiet: bool = False, settings: Settings | None = None) -> bool:
    """Materialise the daily job for one session, showing progress, on resources built from
    ``settings`` (default: this process's, read now; the demo passes its gateway and
    watch-list). True when every step and every check passed.

    One run per account at a time, as the run queue keeps it for the runs it launches: the run
    holds ``<Dagster home>/account-<account>.lock`` while it runs (an ``ibkr-agent run`` started
    meanwhile is refused, naming it) and is refused while a run of the account the queue
    launched is in progress."""
    import warnings

    import dagster as dg

    # Partitioned asset checks are a Dagster "preview" feature; the warning is for us, not users.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from ibkr_assets.jobs import ACCOUNT_TAG, PROCESS_TAG, account_run_in_progress, in_process_tags

    instance = dagster_instance()
    tags = in_process_tags()
    account = tags[ACCOUNT_TAG]
    lock = dagster_home() / f"account-{re.sub(r'[^A-Za-z0-9_.-]', '_', account)}.lock"
    run_id = str(uuid.uuid4())
    note = {"run_id": run_id, "session": session.isoformat(), "process": tags[PROCESS_TAG]}
    with file_lock(lock, note=json.dumps(note)) as held:
        if not held:
            holder = _lock_holder(lock)
            what = (
                f"run {holder['run_id']} (session {holder['session']}) of account {account} is "
                f"in progress in process {holder['process']}"
                if holder
                else f"another run of account {account} is starting"
            )
            console.print(
                f"[red]not started:[/] {what} (ibkr-agent run; it holds {lock}); one run per "
                "account at a time — wait for it to end, then run again",
                soft_wrap=True,
            )
            return False
        # the run queue's limit, for a run that does not go through the queue: one per account
        busy = account_run_in_progress(instance, account)
        if busy is not None:
            console.print(
                f"[red]not started:[/] run {busy.run_id} ({busy.job_name}, session "
                f"{busy.tags.get('dagster/partition', '-')}) of account {account} is in "
                f"progress on the Dagster instance {instance.root_directory}; one run per account "
                "at a time — wait for it to end (the UI, `make dev`, shows it), then run again",
                soft_wrap=True,
            )
            return False
        passed = _execute(instance, run_id, tags, session, quiet, settings)
        _record_metrics(instance, run_id, quiet, settings)
        _housekeep(instance, quiet, settings)
        return passed


def _record_metrics(
    instance: DagsterInstance, run_id: str, quiet: bool, settings: Settings | None
) -> None:
    """Write the run's metrics to its Prometheus textfile under the data root, and push them to
    ``IBKR_PUSHGATEWAY_URL`` when set (:mod:`ibkr_assets.metrics`); a failure to write or push
    is said in one line and does not change the run's verdict."""
    from ibkr_assets.metrics import record_run
    from ibkr_assets.settings import load_settings

    data_root = Path((settings or load_settings()).broker.data_dir)
    try:
        path = record_run(instance, run_id, data_root)
    except (OSError, ValueError) as exc:
        console.print(f"[yellow]run metrics:[/] {exc}", soft_wrap=True)
        return
    if not quiet:
        console.print(f"  {'metrics':<17} {path}", soft_wrap=True)


def _housekeep(instance: DagsterInstance, quiet: bool, settings: Settings | None) -> None:
    """Delete the runs and staging payloads past their retention (``IBKR_RETENTION_DAYS``,
    ``IBKR_STAGING_RETENTION_DAYS``; :mod:`ibkr_assets.housekeeping`), saying what was freed; a
    file that cannot be deleted is named and left for the next run."""
    from ibkr_assets.housekeeping import housekeep_as_configured
    from ibkr_assets.settings import load_settings

    try:
        done = housekeep_as_configured(instance, settings or load_settings())
    except OSError as exc:
        console.print(f"[yellow]housekeeping skipped:[/] {exc}; the next run tries again")
        return
    if done.summary() and not quiet:
        console.print(done.summary())


def _lock_holder(lock: Path) -> dict[str, str]:
    """What the run holding ``lock`` noted there (run_id, session, process as ``host:pid``);
    empty while it has not noted it yet."""
    try:
        return json.loads(lock.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


@dataclass
class _Summary:
    """What a run's events said beyond its steps' success: the failed checks and the data
    that could not be fetched (each one line)."""

    failed_steps: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    missing_data: list[str] = field(default_factory=list)


def _execute(
    instance: DagsterInstance,
    run_id: str,
    tags: dict[str, str],
    session: date,
    quiet: bool,
    settings: Settings | None,
) -> bool:
    """Execute the daily job for ``session`` as run ``run_id`` with progress, then print what
    failed and what data is missing; True when every step and every check passed."""
    import dagster as dg

    from ibkr_assets.assets.market_data import MISSING_DATA
    from ibkr_assets.definitions import defs
    from ibkr_assets.jobs import DAILY_JOB_NAME
    from ibkr_assets.resources import build_resources

    job = defs.resolve_job_def(DAILY_JOB_NAME)
    outcome: dict[str, object] = {}

    def execute() -> None:
        try:
            outcome["result"] = job.execute_in_process(
                instance=instance,
                partition_key=session.isoformat(),
                run_id=run_id,
                tags=tags,
                # always this process's settings as they are now, not the code location's
                # resources as they were when definitions was first imported
                resources=build_resources(settings=settings),
                raise_on_error=False,
                # step failures are printed below, one line each, instead of Dagster's tracebacks
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            )
        except Exception as exc:  # reported below; the thread must not die silently
            outcome["error"] = exc

    steps = len(job.graph.node_dict)  # one step per asset op and per separate check op
    worker = threading.Thread(target=execute, name=f"daily-{session}")
    worker.start()
    done_types = {
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.STEP_SKIPPED,
    }
    seen = 0
    summary = _Summary()
    with Progress(
        TextColumn(f"[bold]daily {session}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("starting", total=steps)
        while worker.is_alive() or seen == 0:
            worker.join(0.3)
            records = instance.all_logs(run_id)
            for rec in records[seen:]:
                event = rec.dagster_event
                if event is None:
                    continue
                if event.event_type in done_types:
                    mark = {"STEP_SUCCESS": "ok", "STEP_FAILURE": "FAILED"}.get(
                        event.event_type_value, "skipped"
                    )
                    progress.console.print(f"  {event.step_key:<28} {mark}")
                    if event.event_type == dg.DagsterEventType.STEP_FAILURE:
                        progress.console.print(f"    [red]{_root_cause(event)}[/]")
                        summary.failed_steps.append(str(event.step_key))
                    progress.update(task, advance=1, description=event.step_key)
                elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                    data = event.asset_check_evaluation_data
                    if not data.passed:
                        name = f"{data.asset_key.to_user_string()}:{data.check_name}"
                        summary.failed_checks.append(f"{name}: {data.description or '-'}")
                elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    missing = event.materialization.metadata.get(MISSING_DATA)
                    if missing is not None:
                        summary.missing_data.append(str(missing.value))
            seen = len(records)
            if not worker.is_alive():
                break
    if "error" in outcome:
        console.print(f"[red]the run could not start:[/] {outcome['error']}")
        return False
    result = outcome["result"]
    if not result.success and _failed_at_start(instance, run_id, session):  # type: ignore[attr-defined]
        return False
    return _print_summary(run_id, session, bool(result.success), summary)  # type: ignore[attr-defined]


def _print_summary(run_id: str, session: date, success: bool, summary: _Summary) -> bool:
    """Print the failed checks, the data that is missing and the run's verdict; True when the
    run is clean (every step and check passed)."""
    for line in summary.failed_checks:
        console.print(f"[yellow]check failed:[/] {line}", soft_wrap=True)
    for line in summary.missing_data:
        console.print(f"[yellow]data missing:[/] {line}", soft_wrap=True)
    ok = success and not summary.failed_checks
    if ok:
        gaps = len(summary.missing_data)
        verdict = "[green]success[/]" + (
            f" (with {gaps} data gap(s), named above: the checks found coverage enough)"
            if gaps
            else ""
        )
    else:
        problems = []
        if summary.failed_steps:
            problems.append(f"step(s) failed: {', '.join(summary.failed_steps)}")
        if summary.failed_checks:
            problems.append(f"{len(summary.failed_checks)} check(s) failed")
        verdict = "[red]not clean[/]" + (f" ({'; '.join(problems)})" if problems else "")
    console.print(f"run {run_id} for {session}: {verdict}", soft_wrap=True)
    return ok


def _error_text(error: SerializableErrorInfo) -> str:
    """The error's message without its module-qualified class name."""
    text = error.message.strip()
    head, sep, rest = text.partition(": ")
    return rest if sep and head.endswith(error.cls_name) else text


def _failed_at_start(instance: DagsterInstance, run_id: str, session: date) -> bool:
    """When the run failed before any step (a resource could not start: IB unreachable, a
    setting or state file to fix), say why in one line and return True. A
    :class:`~ibkr_assets.errors.ConfigurationError` is raised again for the command's ``main``."""
    import dagster as dg

    from ibkr_assets.errors import ConfigurationError

    records = instance.all_logs(run_id)
    events = [r.dagster_event for r in records if r.dagster_event is not None]
    if any(e.event_type == dg.DagsterEventType.STEP_START for e in events):
        return False
    failures = [e for e in events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    error = getattr(failures[-1].event_specific_data, "error", None) if failures else None
    if error is None:
        return False
    from ibkr_assets.sensors import innermost

    cause = innermost(error)
    message = (
        f"run {run_id} for {session} failed at start, nothing was materialised: "
        f"{_error_text(cause)}"
    )
    if cause.cls_name == ConfigurationError.__name__:
        raise ConfigurationError(message)
    print_error(message)
    return True


def _root_cause(event: object) -> str:
    """The innermost error of a failed step: the exception our code raised, not Dagster's
    wrapper around it."""
    from ibkr_assets.sensors import root_cause

    return root_cause(event.step_failure_data.error)  # type: ignore[attr-defined]


def _written_since(path: Path, since: float) -> bool:
    """True when ``path`` (a file, or any file under a directory) was modified at or after
    ``since`` (epoch seconds)."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return any(f.stat().st_mtime >= since for f in files)


def print_outputs(session: date, since: float) -> None:
    """List the files written for ``session`` by the run that started at ``since`` (epoch
    seconds). A session's file left by an earlier run is said to be that, never listed as
    this run's output."""
    root = data_dir()
    day = session.isoformat()
    for label, path in (
        ("order ticket", root / "reports" / f"order_ticket_{day}.json"),
        ("recommendation", root / "reports" / f"recommendation_{day}.md"),
        ("risk report", root / "reports" / f"risk_report_{day}.json"),
        ("features", root / "features" / f"{day}.parquet"),
        ("positions", root / "positions" / f"{day}.json"),
        ("decision journal", root / "decision_log"),
    ):
        if not path.exists():
            continue
        if _written_since(path, since):
            console.print(f"  {label:<17} {path}", soft_wrap=True)
        elif path.is_file():
            written = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            console.print(
                f"  [dim]{label:<17} not written by this run; {path} is from an earlier run "
                f"({written})[/]",
                soft_wrap=True,
            )


def cmd_run(args: argparse.Namespace) -> int:
    """``ibkr-agent run [--date D] [--edge default|none]``: the daily job for ``D`` (default the
    latest session); exit code 0 when every step and check passed, else 1."""
    from ibkr_assets.partitions import check_session

    if args.date is not None:
        check_session(args.date)
    check_settings()
    session = args.date or latest_session()
    started = time.time()
    ok = run_daily(session, settings=edge_settings(args.edge))
    print_outputs(session, started)
    return 0 if ok else 1
