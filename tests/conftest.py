"""Shared fixtures. Nothing in a test talks to anything but the simulator on loopback."""

from __future__ import annotations

import os

from tests.small_world import SMALL_WORLD_EVIDENCE

# Tests must never reach a real IB account, a real Slack, Vault or PostgreSQL server, or the
# Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
for _var in (
    "IBKR_BACKEND",
    "IBKR_HOST",
    "IBKR_PORT",
    "IBKR_ALLOW_LIVE",
    "SLACK_WEBHOOK_URL",
    "VAULT_ADDR",
    # the Dagster instance's server (ibkr_assets/dagster_instance.py); tests/instance starts one
    "IBKR_PG_URL",
    "IBKR_PG_HOST",
    "IBKR_PG_PORT",
    "IBKR_PG_USER",
    "IBKR_PG_DB",
    # no test pushes to a developer's Pushgateway or sends work to their Dask cluster
    "IBKR_PUSHGATEWAY_URL",
    "IBKR_DASK_SCHEDULER",
):
    os.environ.pop(_var, None)
# The decision journal signs its rows with a key kept outside the journal; tests use this one
# rather than creating ~/.config/ibkr-agent/journal.key.
os.environ["IBKR_JOURNAL_KEY"] = "tests-only-journal-key-0123456789abcdef"
# The tests' small simulated worlds read the evidence leniently (tests/small_world.py).
for _var, _value in SMALL_WORLD_EVIDENCE.items():
    os.environ.setdefault(_var, _value)
