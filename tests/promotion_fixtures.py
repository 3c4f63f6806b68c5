"""A data root as daily runs leave it, hand-made for the promotion tests: per session the
positions, risk report and submission record, and the journal row hashing them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from ibkr_assets.partitions import sessions_between
from ibkr_assets.promotion import PromotionCheck
from ibkr_assets.quant.journal import append_entry, sha256_file
from tests.journal_key import TEST_KEY

ACCOUNT = "DU1234567"
#: The 12 NYSE sessions of 2024-05-14 .. 2024-05-30 (Memorial Day, 2024-05-27, is not one).
SESSIONS = sessions_between("2024-05-14", "2024-05-30")
ORDER = {"order_ref": "ibkr-agent:x", "symbol": "AAPL", "action": "BUY", "quantity": 10.0}


def _write(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def run_session(
    root: Path,
    day: date,
    *,
    account: str = ACCOUNT,
    gate_passed: bool = True,
    auto_submit: bool = True,
    orders: list[dict] | None = None,
) -> None:
    """The files a daily run of ``day`` leaves: positions, risk report, submission record and
    the journal row hashing them (as ``decision_journal`` / a gate-blocked ``risk_report``)."""
    iso = day.isoformat()
    _write(root / "positions" / f"{iso}.json", {"session": iso, "account_id": account})
    checks = [{"check": "concentration", "passed": gate_passed}]
    files = [
        _write(
            root / "reports" / f"risk_report_{iso}.json", {"passed": gate_passed, "checks": checks}
        )
    ]
    if gate_passed:
        placed = [{**ORDER, "outcome": "placed", "status": "Submitted", "message": ""}]
        record = {"partition": iso, "auto_submit": auto_submit, "orders": orders or placed}
        files.append(_write(root / "reports" / f"submitted_orders_{iso}.json", record))
    append_entry(
        root / "decision_log",
        {
            "partition": iso,
            "files_sha256": {p.relative_to(root).as_posix(): sha256_file(p) for p in files},
            "constraints_passed": gate_passed,
        },
        key=TEST_KEY,
    )


def green_sessions(root: Path, days: list[date] = SESSIONS[:10]) -> None:
    """Green paper sessions (by default the oldest ten of ``SESSIONS``)."""
    for day in days:
        run_session(root, day)


def problems(check: PromotionCheck) -> dict[str, list[str]]:
    """Each session that is not green, with its problems."""
    return {s.session.isoformat(): list(s.problems) for s in check.sessions if s.problems}
