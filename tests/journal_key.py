"""The key tests sign decision journals with: ``IBKR_JOURNAL_KEY`` (tests/conftest.py sets it) as
the settings' journal section resolves it, so the pipeline, the promotion and ``ibkr-agent
journal verify`` sign and verify with the same key."""

from __future__ import annotations

from ibkr_assets.settings import JournalSettings

TEST_KEY = JournalSettings().key()
