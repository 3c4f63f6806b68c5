"""How the tests' small simulated worlds read the signals' evidence.

They hold 8-60 stocks, too few for a signal's daily IC to be significant over the production
reading (250 sessions, |t| >= 2): the daily job would find no evidence and hold nothing. These
variables read 20 sessions (the least) with no |t| threshold, so the decision path trades and a
run measures little; the pytest process sets them as defaults (tests/conftest.py), and a test
that starts a process with a cleaned environment passes them on. Tests of the evidence itself
set their own reading.
"""

import json
import os
from pathlib import Path

SMALL_WORLD_EVIDENCE = {"IBKR_EVIDENCE_SESSIONS": "20", "IBKR_EVIDENCE_T_THRESHOLD": "0"}


def daemon_environment(
    root: Path, symbols: int, watchlist: list[str], **settings: str
) -> dict[str, str]:
    """The environment of a Dagster process (daemon, webserver) a test starts on a small world:
    this process's, cleaned of every ``IBKR_``/``DAGSTER_`` setting but the journal key, then
    the data root ``root`` with its instance at ``root/.dagster``, the small world's evidence
    reading, ``symbols`` simulated stocks, the ``watchlist``, and ``settings``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("IBKR_", "DAGSTER_")) or name == "IBKR_JOURNAL_KEY"
    }
    env.update(
        DAGSTER_HOME=str(root / ".dagster"),
        IBKR_DATA_DIR=str(root),
        **SMALL_WORLD_EVIDENCE,
        IBKR_SIM_SYMBOLS=str(symbols),
        IBKR_WATCHLIST=json.dumps(watchlist),
        **settings,
    )
    return env
