"""``ibkr-agent``: run the daily pipeline, the demo, and check the decision journal.

    ibkr-agent demo                  # the daily job for the latest session, through the simulated
                                     # IB Gateway (ib_async over a loopback socket)
    ibkr-agent demo --backend sim    # the same on the in-process simulator (no socket)
    ibkr-agent run [--date D]        # the daily job for one NYSE session, with progress
    ibkr-agent journal verify        # authenticate the journal; name a changed, forged, removed,
                                     # reordered or truncated row
    ibkr-agent promote               # allow live trading after N green paper sessions (journalled)
    ibkr-agent backtest --months 6   # replay the daily decisions of the last 6 months, with costs
    ibkr-agent mcp serve             # the MCP tool server (ibkr-agent mcp --help: serve, tools,
                                     # call, health)

Runs are recorded in the Dagster instance under ``<data root>/.dagster``, so ``make dev`` shows
them (lineage, checks, metadata) next to scheduled runs and backfills.

Errors a user fixes (a malformed ``IBKR_*`` variable, a typo in the decide YAML, a damaged state
file, a date that is no NYSE session) are printed as one line on stderr, naming the variable,
key, file or date and what to do, with exit code 2; a run that fails for another reason exits
with 1. After a run, only the files that run wrote are listed as its outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, NoReturn, cast

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # dagster is imported lazily to keep --help fast
    from dagster import DagsterInstance
    from dagster._utils.error import SerializableErrorInfo

    from ibkr_assets.settings import Settings

console = Console()


def _error(message: str) -> None:
    """One line on stderr: what went wrong and what to do, never a traceback."""
    print(f"ibkr-agent: {' '.join(message.split())}", file=sys.stderr)


def _check_settings() -> None:
    """Read every setting a run uses, so that a malformed one is named before anything runs
    (raises :class:`~ibkr_assets.errors.ConfigurationError`); the MCP server's are its own."""
    from ibkr_assets.settings import env_sections, load_settings

    load_settings().checked(*(name for name in [*env_sections(), "decide"] if name != "mcp"))


def _data_dir() -> Path:
    from ibkr_assets.settings import load_settings

    return Path(load_settings().broker.data_dir).resolve()


def _instance() -> DagsterInstance:
    """The Dagster instance at ``DAGSTER_HOME``, default ``<data root>/.dagster``."""
    import dagster as dg

    from ibkr_assets.settings import load_settings

    home = (load_settings().run.dagster_home or _data_dir() / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    project = Path(__file__).resolve().parents[1] / "dagster.yaml"
    if not config.exists():  # the project's instance settings (telemetry off, run queue), once
        default = "telemetry:\n  enabled: false\n"
        config.write_text(project.read_text() if project.exists() else default)
    elif project.exists() and config.read_text() != project.read_text():
        print(
            f"note: {config} differs from the project's {project} (run queue, limits); "
            "copy it over to use the shipped settings",
            file=sys.stderr,
        )
    return dg.DagsterInstance.from_config(str(home))


def latest_session(now: datetime | None = None) -> date:
    """The most recent NYSE session whose daily run time (14:00 Bucharest) has passed."""
    from ibkr_assets.partitions import latest_partition_date

    return latest_partition_date(now or datetime.now(UTC))


def run_daily(session: date, quiet: bool = False, settings: Settings | None = None) -> bool:
    """Materialise the daily job for one session, showing progress; with ``settings``, on the
    resources built from them instead of the code location's (the demo's gateway and
    watch-list). True when every step and every check passed."""
    import warnings

    import dagster as dg

    # Partitioned asset checks are a Dagster "preview" feature; the warning is for us, not users.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from ibkr_assets.definitions import defs
    from ibkr_assets.jobs import (
        ACCOUNT_TAG,
        DAILY_JOB_NAME,
        account_run_in_progress,
        in_process_tags,
    )
    from ibkr_assets.resources import build_resources

    job = defs.resolve_job_def(DAILY_JOB_NAME)
    instance = _instance()
    tags = in_process_tags()
    # the run queue's limit, for a run that does not go through the queue: one per account
    busy = account_run_in_progress(instance, tags[ACCOUNT_TAG])
    if busy is not None:
        console.print(
            f"[red]not started:[/] run {busy.run_id} ({busy.job_name}, session "
            f"{busy.tags.get('dagster/partition', '-')}) of account {tags[ACCOUNT_TAG]} is in "
            f"progress on the Dagster instance {instance.root_directory}; one run per account "
            "at a time — wait for it to end (the UI, `make dev`, shows it), then run again",
            soft_wrap=True,
        )
        return False
    run_id = str(uuid.uuid4())
    outcome: dict[str, object] = {}

    def execute() -> None:
        try:
            outcome["result"] = job.execute_in_process(
                instance=instance,
                partition_key=session.isoformat(),
                run_id=run_id,
                tags=tags,
                resources=build_resources(settings=settings) if settings else None,
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
    failed_checks: list[str] = []
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
                    progress.update(task, advance=1, description=event.step_key)
                elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                    data = event.asset_check_evaluation_data
                    if not data.passed:
                        failed_checks.append(f"{data.asset_key.to_user_string()}:{data.check_name}")
            seen = len(records)
            if not worker.is_alive():
                break
    if "error" in outcome:
        console.print(f"[red]the run could not start:[/] {outcome['error']}")
        return False
    result = outcome["result"]
    if not result.success and _failed_at_start(instance, run_id, session):  # type: ignore[attr-defined]
        return False
    for name in failed_checks:
        console.print(f"[yellow]check failed:[/] {name}")
    ok = bool(result.success) and not failed_checks  # type: ignore[attr-defined]
    console.print(
        f"run {run_id} for {session}: " + ("[green]success[/]" if ok else "[red]not clean[/]")
    )
    return ok


def _error_text(error: SerializableErrorInfo) -> str:
    """The error's message without its module-qualified class name."""
    text = error.message.strip()
    head, sep, rest = text.partition(": ")
    return rest if sep and head.endswith(error.cls_name) else text


def _failed_at_start(instance: DagsterInstance, run_id: str, session: date) -> bool:
    """When the run failed before any step (a resource could not start: IB unreachable, a
    setting or state file to fix), say why in one line and return True. A
    :class:`~ibkr_assets.errors.ConfigurationError` is raised again for :func:`main`."""
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
    _error(message)
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


def _print_outputs(session: date, since: float) -> None:
    """List the files written for ``session`` by the run that started at ``since`` (epoch
    seconds). A session's file left by an earlier run is said to be that, never listed as
    this run's output."""
    root = _data_dir()
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


def _cmd_run(args: argparse.Namespace) -> int:
    from ibkr_assets.partitions import check_session

    if args.date is not None:
        check_session(args.date)
    _check_settings()
    session = args.date or latest_session()
    started = time.time()
    ok = run_daily(session)
    _print_outputs(session, started)
    return 0 if ok else 1


@contextmanager
def simulated_gateway(data_dir: Path, now: datetime, pacing: str = "ib") -> Iterator[int]:
    """Run ``ibkr-sim gateway`` as a subprocess on a free loopback port and yield the port.

    The gateway's clock starts at ``now`` (so the demo sees the session it runs for), its paper
    account lives under ``data_dir`` like the in-process simulator's, and its log goes to
    ``data_dir/logs/gateway.log``. A separate process keeps the gateway off the pipeline's GIL,
    as a real IB Gateway would be.
    """
    from ibkr_assets.settings import load_settings

    settings = load_settings().broker
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "ibkr_sim.cli", "gateway",
        "--host", "127.0.0.1", "--port", "0",
        "--seed", str(settings.sim_seed), "--symbols", str(settings.sim_symbols),
        "--pacing", pacing, "--data-dir", str(data_dir),
        "--now", now.isoformat(), "--log-level", "WARNING",
    ]  # fmt: skip
    with (logs / "gateway.log").open("ab") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue[str] = queue.Queue()
    banner_source = cast(IO[str], proc.stdout)
    threading.Thread(target=lambda: lines.put(banner_source.readline()), daemon=True).start()
    try:
        try:
            banner = lines.get(timeout=60)
        except queue.Empty:
            banner = ""
        if "listening on" not in banner:
            raise RuntimeError(
                f"the simulated gateway did not start (exit code {proc.poll()}); "
                f"see {logs / 'gateway.log'}"
            )
        yield int(banner.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _simulated_stocks() -> list[str]:
    """The tickers of the stocks the simulated world lists (IBKR_SIM_SEED / IBKR_SIM_SYMBOLS)."""
    from ibkr_assets.broker.sim import simulated_stocks
    from ibkr_assets.settings import load_settings

    settings = load_settings().broker
    return simulated_stocks(settings.sim_seed, settings.sim_symbols)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ibkr_assets.partitions import as_of
    from ibkr_assets.settings import load_settings

    _check_settings()
    session = latest_session()
    root = _data_dir()
    started = time.time()
    settings = load_settings()
    if args.backend == "sim":
        console.print(
            f"[bold]ibkr-agent demo[/]: daily pipeline for NYSE session {session} on the "
            f"in-process simulated IB world (data root {root})"
        )
        ok = run_daily(session, settings=settings.updated(broker={"backend": "sim"}))
    else:
        with simulated_gateway(root, as_of(session.isoformat())) as port:
            gateway = {"broker": {"backend": "tws", "host": "127.0.0.1", "port": port}}
            # Over a socket the pipeline needs a watch-list, as with a real IB account: the
            # demo follows every stock the gateway simulates unless one is configured.
            if not settings.pipeline.watchlist:
                gateway["pipeline"] = {"watchlist": _simulated_stocks()}
            console.print(
                f"[bold]ibkr-agent demo[/]: daily pipeline for NYSE session {session} through "
                f"the simulated IB Gateway on 127.0.0.1:{port} (ib_async, IB pacing; data root "
                f"{root})"
            )
            ok = run_daily(session, settings=settings.updated(**gateway))
    _print_outputs(session, started)
    return 0 if ok else 1


def _cmd_journal_verify(args: argparse.Namespace) -> int:
    """Authenticate the journal's rows and check them against the head file and the heads
    Dagster recorded; print the check that failed."""
    from ibkr_assets.journal_verify import JOURNAL_DIR, dagster_home, verify_decision_log

    directory = Path(args.dir).resolve() if args.dir else _data_dir() / JOURNAL_DIR
    result, recorded = verify_decision_log(directory)
    if not result.ok:
        where = f" at row {result.first_bad_row}" if result.first_bad_row is not None else ""
        console.print(
            f"[red]journal NOT verified{where}[/] ({result.check} check): {result.reason}",
            soft_wrap=True,
        )
        return 1
    console.print(f"[green]journal intact[/]: {directory}: {result.reason}", soft_wrap=True)
    if recorded is None:
        home = dagster_home(directory.parent)
        console.print(f"[yellow]no Dagster instance at {home}[/]: recorded heads not compared")
    else:
        console.print(f"{recorded} journal rows recorded in Dagster, all present")
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    """Check the last N sessions' paper evidence; record the promotion when all of it is green,
    otherwise list each failing session and why, and write nothing."""
    from rich.markup import escape

    from ibkr_assets.promotion import promotion_check, record_promotion

    root = _data_dir()
    try:
        check = promotion_check(root, args.sessions, args.account)
    except ValueError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 2
    for evidence in check.sessions:
        mark = "[green]green[/]" if evidence.green else "[red]NOT green[/]"
        account = escape(evidence.account or "-")
        console.print(
            f"  {evidence.session}  {account:<10} {mark}  {escape(evidence.checks)}", soft_wrap=True
        )
        for problem in evidence.problems:
            console.print(f"      - {escape(problem)}", soft_wrap=True)
    if not check.ok:
        for problem in check.problems:
            console.print(f"[red]{escape(problem)}[/]", soft_wrap=True)
        failing = sum(not s.green for s in check.sessions)
        console.print(
            f"[red]not promoted[/]: {failing} of {len(check.sessions)} sessions not green "
            f"({check.required} green paper sessions needed); nothing was written",
            soft_wrap=True,
        )
        return 1
    row = record_promotion(root, check)
    # the evidence column holds the sessions listed above
    shown = {k: json.loads(v) if k == "sessions" else v for k, v in row.items() if k != "evidence"}
    console.print_json(json.dumps(shown))
    console.print(
        f"[green]promoted[/]: {check.required} green paper sessions on {escape(str(check.account))}"
        f"; recorded as journal row {row['seq']}"
    )
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    """Replay the daily job's decisions over the last ``--months`` (the weekly backtest's
    function), with a progress bar; print the summary table and where the files went."""
    import warnings

    import dagster as dg
    from rich.table import Table

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from ibkr_assets.assets.backtest import last_closed_session, run_backtest_on
    from ibkr_assets.config import watchlist_symbols
    from ibkr_assets.resources import build_resources

    _check_settings()
    resources = build_resources()
    broker = resources["ib"].get_broker()
    symbols = watchlist_symbols(resources["pipeline"], broker)
    if args.symbols is not None:
        if args.symbols < 2:
            console.print(f"[red]--symbols must be at least 2, got {args.symbols}[/]")
            return 2
        symbols = symbols[: args.symbols]
    latest = last_closed_session(datetime.now(UTC))
    if args.end is not None and args.end > latest:
        console.print(f"[red]--end {args.end} is after the latest closed session {latest}[/]")
        return 2
    if args.months < 1:
        console.print(f"[red]--months must be at least 1, got {args.months}[/]")
        return 2
    end = args.end or latest
    with Progress(
        TextColumn("[bold]{task.fields[phase]:<9}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task("", total=total, phase=phase)
            progress.update(tasks[phase], completed=done, total=total)

        run = run_backtest_on(
            resources,
            end=end,
            months=args.months,
            label="cli",
            symbols=symbols,
            calibration=args.calibrate,
            workers=args.workers,
            progress=report,
        )
    row = run.row
    table = Table(title=f"backtest {row['first_session']} to {row['last_session']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    lines = [
        ("sessions", f"{row['sessions']}"),
        ("symbols", f"{row['symbols']}"),
        ("total return", f"{row['total_return']:.2%}"),
        ("CAGR", f"{row['cagr']:.2%}"),
        ("volatility (annual)", f"{row['annual_volatility']:.2%}"),
        ("Sharpe", f"{row['sharpe']:.2f}"),
        ("Sortino", f"{row['sortino']:.2f}"),
        ("max drawdown", f"{row['max_drawdown']:.2%}"),
        ("turnover (per session)", f"{row['avg_turnover']:.2%}"),
        ("hit rate", f"{row['hit_rate']:.1%}"),
        ("costs (of capital)", f"{row['total_cost']:.2%}"),
        ("commissions", f"${row['commission_usd']:,.0f}"),
        ("slippage", f"${row['slippage_usd']:,.0f}"),
        ("names held (mean)", f"{row['avg_names_held']:.1f}"),
        ("sessions the gate blocked", f"{row['gate_blocked_sessions']}"),
        ("calibration", str(row["calibration"])),
    ]
    if run.calibration is not None:
        c = run.calibration
        lines += [
            ("held-out Sharpe, configured", f"{c.held_out_sharpe_configured:.2f}"),
            ("held-out Sharpe, tuned", f"{c.held_out_sharpe_tuned:.2f}"),
        ]
    lines.append(("seconds", ", ".join(f"{k} {v:.1f}" for k, v in run.timings.items())))
    for name, value in lines:
        table.add_row(name, value)
    console.print(table)
    console.print(f"metrics row appended to {run.csv_path}")
    console.print(f"equity curve and drawdown: {run.plot_path}")
    if run.problems:
        console.print(f"[yellow]left out:[/] {', '.join(list(run.problems)[:20])}")
    return 0


def _cmd_mcp(argv: Sequence[str]) -> NoReturn:
    """``ibkr-agent mcp ARGS``: become ``python -m mcp_server.cli ARGS``, the MCP server's CLI.

    The MCP server is a layer above this package (docs/architecture.md), so it is run as a
    program, never imported. Replacing this process keeps stdin and stdout (the stdio MCP
    stream), signals and the exit code the server's own."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "mcp_server.cli", *argv])


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibkr-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the daily job for the latest session, simulated world")
    demo.add_argument(
        "--backend",
        choices=("gateway", "sim"),
        default="gateway",
        help="gateway: through the simulated IB Gateway over ib_async (default); "
        "sim: the in-process simulator",
    )
    run = sub.add_parser("run", help="run the daily job for one NYSE session")
    run.add_argument("--date", type=_date, help="the session (YYYY-MM-DD); default the latest")
    journal = sub.add_parser("journal", help="the tamper-evident decision journal")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    verify = jsub.add_parser(
        "verify",
        help="authenticate every row; report a changed, forged, removed or reordered row, "
        "rows deleted from the end, or a row Dagster recorded that is missing",
    )
    verify.add_argument("--dir", help="journal directory (default <data root>/decision_log)")
    promote = sub.add_parser(
        "promote", help="allow live trading after N green paper sessions (recorded in the journal)"
    )
    promote.add_argument(
        "--sessions",
        type=int,
        help="sessions to check (default IBKR_PROMOTION_SESSIONS, 10; never fewer)",
    )
    promote.add_argument(
        "--account", help="the paper account the sessions ran on (default: the newest session's)"
    )
    # Parsed by the MCP server's own CLI (main hands ``mcp ...`` over before parsing).
    sub.add_parser(
        "mcp",
        add_help=False,
        help="the MCP tool server: serve, tools, call, health (ibkr-agent mcp --help)",
    )
    bt = sub.add_parser("backtest", help="replay the daily decisions of the last months")
    bt.add_argument("--months", type=int, default=6, help="months to replay (default 6)")
    bt.add_argument("--symbols", type=int, help="only the first N symbols of the watch-list")
    bt.add_argument("--end", type=_date, help="last session (default the latest closed one)")
    bt.add_argument(
        "--calibrate", action="store_true", help="tune the signal blend weights (slower)"
    )
    bt.add_argument(
        "--workers", type=int, default=1, help="processes preparing the days (0 = none)"
    )
    return parser


_COMMANDS = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "backtest": _cmd_backtest,
    "promote": _cmd_promote,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["mcp"]:
        _cmd_mcp(argv[1:])
    args = build_parser().parse_args(argv)
    from ibkr_assets.errors import ConfigurationError  # after --help, which needs no dagster

    try:
        if args.command == "journal":
            return _cmd_journal_verify(args)
        return _COMMANDS[args.command](args)
    except ConfigurationError as exc:
        _error(str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
