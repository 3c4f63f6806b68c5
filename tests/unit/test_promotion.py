"""Paper -> live promotion judged from the files daily runs write (hand-made in a temporary
data root); the checks a Dagster instance recorded: tests/pipeline/test_promotion_dagster.py."""

from __future__ import annotations

import json

import pytest

from ibkr_assets.cli import main
from ibkr_assets.promotion import (
    JournalNotVerified,
    live_trading_promoted,
    promotion_check,
    record_promotion,
)
from ibkr_assets.quant.journal import append_entry, head_file, read_journal
from tests.journal_key import TEST_KEY
from tests.promotion_fixtures import ACCOUNT, ORDER, SESSIONS, green_sessions, problems, run_session

REFUSED = {**ORDER, "outcome": "refused", "message": "order guard: max_order_notional"}


def test_ten_green_paper_sessions_are_promoted_and_journalled(tmp_path, monkeypatch, capsys):
    green_sessions(tmp_path)
    assert live_trading_promoted(tmp_path) is None  # never promoted
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    assert main(["promote"]) == 0
    out = capsys.readouterr().out
    assert "promoted" in out and "10 green paper sessions on DU1234567" in out
    row = read_journal(tmp_path / "decision_log").iloc[-1]
    assert row["kind"] == "live_promotion" and row["partition"].startswith("promotion:")
    assert row["paper_account"] == ACCOUNT and row["sessions_required"] == 10
    evidence = json.loads(row["evidence"])
    assert [e["session"] for e in evidence] == [d.isoformat() for d in reversed(SESSIONS[:10])]
    assert all(e["green"] and e["orders"] == 1 for e in evidence)
    promotion = live_trading_promoted(tmp_path)
    assert promotion is not None and promotion.paper_account == ACCOUNT
    assert promotion.journal_seq == 10 and promotion.sessions[0] == SESSIONS[9]
    assert promotion.promoted_at.tzinfo is not None


def test_fewer_sessions_than_required_are_refused_and_nothing_written(
    tmp_path, monkeypatch, capsys
):
    green_sessions(tmp_path, SESSIONS[:9])
    check = promotion_check(tmp_path)
    assert not check.ok and check.problems == ("only 9 sessions have runs, 10 are needed",)
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    assert main(["promote"]) == 1
    assert "not promoted" in capsys.readouterr().out
    assert len(read_journal(tmp_path / "decision_log")) == 9
    with pytest.raises(ValueError, match="not all green"):
        record_promotion(tmp_path, check)


def test_a_rejected_order_refuses_the_promotion(tmp_path, monkeypatch, capsys):
    green_sessions(tmp_path, SESSIONS[:9])
    rejected = {**ORDER, "outcome": "rejected", "message": "IB 201: order rejected - margin"}
    run_session(tmp_path, SESSIONS[9], orders=[rejected])
    assert problems(promotion_check(tmp_path)) == {
        SESSIONS[9].isoformat(): ["BUY 10.0 AAPL rejected: IB 201: order rejected - margin"]
    }
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    assert main(["promote"]) == 1
    out = capsys.readouterr().out
    assert f"{SESSIONS[9]}  DU1234567  NOT green" in out and "IB 201" in out
    assert "1 of 10 sessions not green" in out
    assert "live_promotion" not in read_journal(tmp_path / "decision_log").get("kind", [])


def test_a_broken_journal_refuses_the_promotion(tmp_path):
    green_sessions(tmp_path)
    head_file(tmp_path / "decision_log").unlink()
    check = promotion_check(tmp_path)
    assert not check.ok and check.journal.check == "head"
    assert check.problems[0].startswith("the decision journal does not verify (head check)")
    with pytest.raises(JournalNotVerified, match="head check"):
        live_trading_promoted(tmp_path)


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        (dict(gate_passed=False), "the compliance gate failed: concentration"),
        (dict(auto_submit=False), "auto-submit was off"),
        (dict(account="U7654321"), "account U7654321 is not a paper account"),
        (dict(account="DU7654321"), "ran on paper account DU7654321, not DU1234567"),
    ],
)
def test_a_session_that_was_not_green_paper_trading(tmp_path, session, expected):
    green_sessions(tmp_path, SESSIONS[1:10])
    run_session(tmp_path, SESSIONS[0], **session)  # the oldest of the last ten
    found = problems(promotion_check(tmp_path))[SESSIONS[0].isoformat()]
    assert any(expected in p for p in found), found


def test_reports_edited_after_the_run_or_a_gate_blocked_rerun_do_not_count(tmp_path):
    green_sessions(tmp_path)
    report = tmp_path / "reports" / f"risk_report_{SESSIONS[3]}.json"
    report.write_text(report.read_text().replace("true", "true "))
    append_entry(
        tmp_path / "decision_log",
        {"partition": SESSIONS[5].isoformat(), "constraints_passed": False},
        key=TEST_KEY,
    )
    found = problems(promotion_check(tmp_path))
    assert found == {
        SESSIONS[3].isoformat(): [
            f"reports/risk_report_{SESSIONS[3]}.json is not the file journal row 3 hashed "
            "(changed after the run)"
        ],
        SESSIONS[5].isoformat(): ["journal row 10: the compliance gate blocked a run"],
    }


def test_the_last_sessions_with_runs_count_including_a_run_that_stopped_early(tmp_path):
    run_session(tmp_path, SESSIONS[0], gate_passed=False)  # an older failure: outside the window
    green_sessions(tmp_path, SESSIONS[1:11])
    assert promotion_check(tmp_path).ok
    stopped = tmp_path / "features" / f"{SESSIONS[11]}.parquet"  # the newest run died early
    stopped.parent.mkdir()
    stopped.write_bytes(b"")
    check = promotion_check(tmp_path)
    assert not check.ok and [s.session for s in check.sessions][:2] == [SESSIONS[11], SESSIONS[10]]
    assert problems(check)[SESSIONS[11].isoformat()][0].startswith("no positions file")


def test_the_configured_number_of_sessions_is_a_floor(tmp_path, monkeypatch, capsys):
    green_sessions(tmp_path)
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    assert main(["promote", "--sessions", "3"]) == 2
    assert "--sessions 3 is fewer than IBKR_PROMOTION_SESSIONS=10" in capsys.readouterr().out
    assert main(["promote"]) == 0
    monkeypatch.setenv("IBKR_PROMOTION_SESSIONS", "12")  # raised after the promotion
    assert live_trading_promoted(tmp_path) is None


@pytest.mark.parametrize(
    ("orders", "expected"),
    [
        (
            [{**ORDER, "outcome": "not_sent", "message": "IB has nothing"}],
            ["BUY 10.0 AAPL not sent: IB has nothing"],
        ),
        (
            [{**ORDER, "outcome": "unknown", "message": "IB unreachable"}],
            ["BUY 10.0 AAPL of unknown fate: IB unreachable"],
        ),
        ([REFUSED], ["the order guard refused every order: none went to the paper account"]),
        ([{**ORDER, "outcome": "placed", "status": "Filled"}, {**REFUSED, "symbol": "MSFT"}], []),
    ],
    ids=["not-sent", "unknown", "all-refused", "some-refused-is-green"],
)
def test_orders_that_did_not_go_out_make_the_session_not_green(tmp_path, orders, expected):
    green_sessions(tmp_path, SESSIONS[:9])
    run_session(tmp_path, SESSIONS[9], orders=orders)
    assert problems(promotion_check(tmp_path)).get(SESSIONS[9].isoformat(), []) == expected
