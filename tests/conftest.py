"""Shared fixtures. Nothing in a test talks to anything but the simulator on loopback."""

from __future__ import annotations

import os

# Tests must never reach a real IB account, a real Slack, or the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
for _var in ("IBKR_BACKEND", "IBKR_HOST", "IBKR_PORT", "IBKR_ALLOW_LIVE", "SLACK_WEBHOOK_URL"):
    os.environ.pop(_var, None)
# The decision journal signs its rows with a key kept outside the journal; tests use this one
# rather than creating ~/.config/ibkr-agent/journal.key.
os.environ["IBKR_JOURNAL_KEY"] = "tests-only-journal-key-0123456789abcdef"
# The tests' simulated worlds hold 20-60 stocks, too few for a signal's daily IC to be
# significant: the daily job's evidence is read over 40 sessions with no |t| threshold, so the
# decision path trades (tests of the evidence itself set their own reading).
os.environ.setdefault("IBKR_EVIDENCE_SESSIONS", "40")
os.environ.setdefault("IBKR_EVIDENCE_T_THRESHOLD", "0")
