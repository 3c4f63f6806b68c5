"""Paper -> live promotion: a live account is traded only after N green sessions on paper.

``ibkr-agent promote`` looks at the last N NYSE sessions that have runs (N =
``IBKR_PROMOTION_SESSIONS``, default 10; ``--sessions`` may ask for more) and, only when every
one of them ran green on one paper account, appends a promotion row with the evidence of each
session to the decision journal. The submission stage asks :func:`live_trading_promoted` before
sending orders to a live account; without a promotion a live account gets recommendations only.

A session is green when what the pipeline wrote under the data root says so:

* ``positions/<day>.json``: the run's account is a paper account (IB paper ids start with ``D``)
  and the one being promoted;
* ``reports/risk_report_<day>.json``: the compliance gate passed;
* ``reports/submitted_orders_<day>.json``: auto-submit was on, so the ticket really went to the
  paper account, and every order went out: none rejected by IB, ``not_sent`` or of ``unknown``
  fate, and not every one refused by the order guard (the failures that make
  ``every_order_sent`` block the run; the guard's refusal of some orders is a deliberate, green
  outcome);
* the decision journal: a row for the session with the constraints passed, no row for it with
  the gate failed, and the risk report and submission files are the ones that row hashed (a
  report edited after the run does not count);
* the asset checks, from the Dagster instance at ``<data root>/.dagster`` when there is one
  (where ``ibkr-agent run`` and ``make dev`` record runs): every data-quality, compliance and
  submission check planned for the session was evaluated, and none failed at ERROR severity in
  its latest evaluation (a rerun that passes a check replaces the run that failed it; a check
  that failed at WARN severity, such as some orders refused by the order guard, leaves the run
  green and is only counted), and the latest daily run succeeded. Without an instance the
  checks are judged from the files above: the data-quality checks are blocking, so a run that
  failed them wrote no risk report.

The whole journal must also verify (signatures, head file, heads Dagster recorded), since the
promotion is only as trustworthy as the journal it is written to.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from ibkr_assets.jobs import DAILY_JOB_NAME, WEEKLY_JOB_NAME
from ibkr_assets.journal_verify import JOURNAL_DIR, open_instance, verify_decision_log
from ibkr_assets.partitions import is_session
from ibkr_assets.quant.journal import VerifyResult, append_entry, read_journal, sha256_file
from ibkr_assets.settings import load_settings

PROMOTION_KIND = "live_promotion"
#: IB paper account ids start with "D" (DU...), as ``broker.models.Account.is_paper`` says.
PAPER_PREFIX = "D"
#: IB order states of an order IB refused or cancelled itself.
NOT_ACCEPTED = frozenset({"Inactive", "Cancelled"})
#: Submission outcomes of an order that did not go out, as a promotion's evidence names them
#: (each fails ``every_order_sent`` at ERROR severity: ``ibkr_assets.assets.submission``).
NOT_SENT = {"rejected": "rejected", "not_sent": "not sent", "unknown": "of unknown fate"}
#: The run tag Dagster sets to the partition key.
PARTITION_TAG = "dagster/partition"
_RUN_LOOKBACK = 5000  # daily runs scanned for sessions (about 20 years of one run a session)


def sessions_required() -> int:
    """Green paper sessions a live account needs (``IBKR_PROMOTION_SESSIONS``); raises
    :class:`~ibkr_assets.errors.ConfigurationError` when the variable is malformed."""
    return load_settings().checked("promotion").promotion.promotion_sessions


class JournalNotVerified(RuntimeError):
    """The decision journal fails verification, so no promotion recorded in it can be trusted."""


@dataclass(frozen=True)
class SessionEvidence:
    """What the files (and Dagster) say about one session; green when ``problems`` is empty."""

    session: dt.date
    account: str | None
    orders: int  # rows of the submission record
    journal_row: int | None  # seq of the latest journal row with the constraints passed
    checks: str  # where the asset checks were judged from, and how many passed
    problems: tuple[str, ...]

    @property
    def green(self) -> bool:
        return not self.problems

    def record(self) -> dict[str, Any]:
        """The evidence as the promotion row stores it."""
        return {
            "session": self.session.isoformat(),
            "account": self.account,
            "orders": self.orders,
            "journal_row": self.journal_row,
            "checks": self.checks,
            "green": self.green,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class PromotionCheck:
    """The evidence for a promotion: ``ok`` when the journal verifies, ``required`` sessions
    have runs and every one of them is green."""

    required: int
    account: str | None
    sessions: tuple[SessionEvidence, ...]
    journal: VerifyResult
    problems: tuple[str, ...]  # not tied to one session: the journal, too few sessions

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.green for s in self.sessions)


@dataclass(frozen=True)
class Promotion:
    """A promotion recorded in the journal: when, on which paper account's evidence."""

    promoted_at: dt.datetime  # UTC
    paper_account: str
    sessions: tuple[dt.date, ...]
    sessions_required: int
    journal_seq: int
    row_hash: str


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _session(text: str) -> dt.date | None:
    """``text`` as an NYSE session date, or None (a week, a promotion, a backtest label)."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return day if is_session(day) else None


def sessions_with_runs(
    data_root: Path, journal: pd.DataFrame, instance: dg.DagsterInstance | None
) -> list[dt.date]:
    """Sessions a daily run left a trace of, newest first: a feature matrix, positions, a
    report, a journal row, or a daily run in the Dagster instance. A run that failed early
    still counts, so a failed session cannot drop out of the evidence."""
    names = [
        *(p.stem for p in (data_root / "features").glob("*.parquet")),
        *(p.stem for p in (data_root / "positions").glob("*.json")),
        *(p.stem.rsplit("_", 1)[-1] for p in (data_root / "reports").glob("*_*.json")),
        *(journal["partition"].astype(str) if "partition" in journal else []),
    ]
    if instance is not None:
        runs = instance.get_run_records(
            filters=dg.RunsFilter(job_name=DAILY_JOB_NAME), limit=_RUN_LOOKBACK
        )
        names += [r.dagster_run.tags.get(PARTITION_TAG, "") for r in runs]
    return sorted({d for d in map(_session, names) if d is not None}, reverse=True)


def _dagster_checks(instance: dg.DagsterInstance, day: str) -> tuple[str, list[str]]:
    """How the session's asset checks and latest daily run went, from the instance: each check
    is judged by its latest evaluation over the session's runs, and only an ERROR-severity
    failure is a problem (see the module docstring)."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={PARTITION_TAG: day}))
    runs = [r.dagster_run for r in records if r.dagster_run.job_name != WEEKLY_JOB_NAME]
    if not runs:
        return "dagster: no run", ["no run of the session is recorded in the Dagster instance"]
    problems = []
    daily = [r for r in runs if r.job_name == DAILY_JOB_NAME]  # newest first
    if daily and daily[0].status != dg.DagsterRunStatus.SUCCESS:
        problems.append(f"the latest daily run {daily[0].run_id[:8]} ended {daily[0].status.value}")
    planned: set[str] = set()
    latest: dict[str, dg.AssetCheckEvaluation] = {}  # each check's latest evaluation
    kinds = {
        dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    for run in reversed(runs):  # oldest first: a later evaluation replaces an earlier one
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            event = entry.dagster_event
            if event is None:
                continue
            data = event.event_specific_data
            name = f"{data.asset_key.to_user_string()}:{data.check_name}"
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
                planned.add(name)
            else:
                latest[name] = data
    failed = sorted(
        n for n, e in latest.items() if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    )
    warned = sorted(n for n, e in latest.items() if not e.passed and n not in failed)
    missing = sorted(planned - latest.keys())
    if failed:
        problems.append(f"asset checks failed: {', '.join(failed)}")
    if missing:
        problems.append(f"asset checks planned but never evaluated: {', '.join(missing)}")
    if not latest:
        problems.append("no asset check was evaluated for the session")
    passed = len(latest) - len(failed) - len(warned)
    warnings = f", {len(warned)} failed with a warning ({', '.join(warned)})" if warned else ""
    return f"checks: {passed} passed{warnings} in {len(runs)} Dagster runs", problems


def session_evidence(
    data_root: Path,
    day: dt.date,
    journal: pd.DataFrame,
    instance: dg.DagsterInstance | None,
    account: str | None,
) -> SessionEvidence:
    """Judge one session from its files, its journal rows and (with ``instance``) Dagster."""
    iso = day.isoformat()
    problems: list[str] = []
    positions = _json(data_root / "positions" / f"{iso}.json")
    run_account = str(positions["account_id"]) if positions else None
    if run_account is None:
        problems.append("no positions file: the run stopped before the portfolio snapshot")
    elif not run_account.startswith(PAPER_PREFIX):
        problems.append(f"account {run_account} is not a paper account")
    elif account is not None and run_account != account:
        problems.append(f"ran on paper account {run_account}, not {account}")

    risk_path = data_root / "reports" / f"risk_report_{iso}.json"
    risk = _json(risk_path)
    if risk is None:
        problems.append("no risk report: the run stopped before the compliance gate")
    elif risk.get("passed") is not True:
        failed = [str(c.get("check")) for c in risk.get("checks", []) if not c.get("passed")]
        problems.append(f"the compliance gate failed: {', '.join(failed) or 'passed is not true'}")

    submitted_path = data_root / "reports" / f"submitted_orders_{iso}.json"
    submitted = _json(submitted_path)
    orders = 0
    if submitted is None:
        problems.append("no submission record: the run stopped before submitted_orders")
    else:
        if submitted.get("auto_submit") is not True:
            problems.append("auto-submit was off: no order went to the paper account")
        rows = submitted.get("orders") or []
        orders = len(rows)
        if rows and all(o.get("outcome") == "refused" for o in rows):
            problems.append("the order guard refused every order: none went to the paper account")
        for o in rows:
            outcome = str(o.get("outcome"))
            if outcome in NOT_SENT or o.get("status") in NOT_ACCEPTED:
                why = o.get("message") or o.get("status")
                what = NOT_SENT.get(outcome, "rejected")
                problems.append(
                    f"{o.get('action')} {o.get('quantity')} {o.get('symbol')} {what}: {why}"
                )

    journal_row = None
    rows = journal[journal["partition"] == iso] if "partition" in journal else journal
    if rows.empty:
        problems.append("no journal row for the session")
    else:
        passed = rows["constraints_passed"].fillna(False).astype(bool)
        for seq in rows.loc[~passed, "seq"]:
            problems.append(f"journal row {int(seq)}: the compliance gate blocked a run")
        if passed.any():
            last = rows[passed].iloc[-1]
            journal_row = int(last["seq"])
            hashed = json.loads(last["files_sha256"] or "{}")
            for path in (risk_path, submitted_path):
                relative = path.relative_to(data_root).as_posix()
                if not path.exists():
                    continue  # reported above
                if relative not in hashed:
                    problems.append(f"journal row {journal_row} does not hash {relative}")
                elif hashed[relative] != sha256_file(path):
                    problems.append(
                        f"{relative} is not the file journal row {journal_row} hashed "
                        "(changed after the run)"
                    )

    if instance is not None:
        checks, check_problems = _dagster_checks(instance, iso)
        problems += check_problems
    else:
        checks = "checks: the risk report (no Dagster instance)"
    return SessionEvidence(day, run_account, orders, journal_row, checks, tuple(problems))


@contextlib.contextmanager
def _instance_of(data_root: Path) -> Iterator[dg.DagsterInstance | None]:
    instance = open_instance(data_root)
    if instance is None:
        yield None
        return
    with instance:
        yield instance


def promotion_check(
    data_root: Path, sessions: int | None = None, account: str | None = None
) -> PromotionCheck:
    """The evidence for promoting: the last ``sessions`` sessions with runs (default
    ``IBKR_PROMOTION_SESSIONS``), each judged by :func:`session_evidence`, on ``account`` (default:
    the paper account of the newest session), and the journal's verification."""
    required = sessions_required()
    wanted = required if sessions is None else sessions
    if wanted < required:
        raise ValueError(
            f"--sessions {wanted} is fewer than IBKR_PROMOTION_SESSIONS={required}: a promotion "
            "needs at least the configured number of green paper sessions"
        )
    with _instance_of(data_root) as instance:
        verified, _ = verify_decision_log(data_root / JOURNAL_DIR, instance)
        journal = read_journal(data_root / JOURNAL_DIR)
        days = sessions_with_runs(data_root, journal, instance)[:wanted]
        if account is None and days:
            newest = _json(data_root / "positions" / f"{days[0].isoformat()}.json")
            account = str(newest["account_id"]) if newest else None
        evidence = tuple(session_evidence(data_root, d, journal, instance, account) for d in days)
    problems = []
    if not verified.ok:
        problems.append(
            f"the decision journal does not verify ({verified.check} check): {verified.reason}"
        )
    if len(days) < wanted:
        problems.append(f"only {len(days)} sessions have runs, {wanted} are needed")
    return PromotionCheck(wanted, account, evidence, verified, tuple(problems))


def record_promotion(
    data_root: Path, check: PromotionCheck, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Append the promotion and its evidence to the decision journal; returns the row.
    Refuses (ValueError) a check that is not ``ok``."""
    if not check.ok or check.account is None:
        raise ValueError("refusing to record a promotion whose evidence is not all green")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return append_entry(
        data_root / JOURNAL_DIR,
        {
            "partition": f"promotion:{now.date().isoformat()}",
            "kind": PROMOTION_KIND,
            "paper_account": check.account,
            "sessions_required": check.required,
            "sessions": [s.session.isoformat() for s in check.sessions],
            "evidence": [s.record() for s in check.sessions],
            "journal_rows_verified": check.journal.rows,
        },
        now=now,
        key=load_settings().checked("journal").journal.appending_key(data_root / JOURNAL_DIR),
    )


def live_trading_promoted(data_dir: Path) -> Promotion | None:
    """The latest promotion recorded in the decision journal under ``data_dir``, or None when
    live trading was never promoted (or only on fewer sessions than ``IBKR_PROMOTION_SESSIONS``
    now asks for).

    Raises :class:`JournalNotVerified` when the journal fails verification: a promotion in a
    journal that may have been rewritten cannot be trusted, and the run should stop."""
    directory = data_dir / JOURNAL_DIR
    verified, _ = verify_decision_log(directory)
    if not verified.ok:
        raise JournalNotVerified(
            f"the decision journal {directory} does not verify ({verified.check} check): "
            f"{verified.reason}; live trading stays off until `ibkr-agent journal verify` passes"
        )
    journal = read_journal(directory)
    if "kind" not in journal:
        return None
    rows = journal[journal["kind"] == PROMOTION_KIND]
    if rows.empty:
        return None
    row = rows.iloc[-1]
    if int(row["sessions_required"]) < sessions_required():
        return None
    return Promotion(
        promoted_at=dt.datetime.fromisoformat(str(row["ts_utc"])),
        paper_account=str(row["paper_account"]),
        sessions=tuple(dt.date.fromisoformat(d) for d in json.loads(row["sessions"])),
        sessions_required=int(row["sessions_required"]),
        journal_seq=int(row["seq"]),
        row_hash=str(row["row_hash"]),
    )
