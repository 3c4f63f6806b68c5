"""How the tests' small simulated worlds read the signals' evidence.

They hold 8-60 stocks, too few for a signal's daily IC to be significant over the production
reading (250 sessions, |t| >= 2): the daily job would find no evidence and hold nothing. These
variables read 20 sessions (the least) with no |t| threshold, so the decision path trades and a
run measures little; the pytest process sets them as defaults (tests/conftest.py), and a test
that starts a process with a cleaned environment passes them on. Tests of the evidence itself
set their own reading.
"""

SMALL_WORLD_EVIDENCE = {"IBKR_EVIDENCE_SESSIONS": "20", "IBKR_EVIDENCE_T_THRESHOLD": "0"}
