"""Secrets from files, rotated while the MCP server runs, and never logged nor written: distinct
values are planted in variables and ``*_FILE`` files, then the settings are dumped, an alert is
sent to a loopback webhook, the MCP server authenticates requests with a token file that is
rotated under it, and the decision journal is appended with a key file; the logs, the captured
output and every file under the data dir are searched for the planted values."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from ibkr_assets.quant.journal import append_entry, verify_journal
from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.settings import MCPSettings, load_settings, settings_table
from tests.webhook import webhook_receiver

from .conftest import serve_http, sim_broker_factory

TOKEN_1 = "planted-mcp-token-one-0123456789abcdef"
TOKEN_2 = "planted-mcp-token-two-0123456789abcdef"
JOURNAL_KEY = "planted-journal-key-0123456789abcdef"
SMTP_PASSWORD = "planted-smtp-password-51c2"
FMP_KEY = "planted-fmp-key-9d41"
REDDIT_SECRET = "planted-reddit-secret-3e07"
WEBHOOK_PATH = "/services/T0/B0/planted-webhook-7f3a"


def _secret_file(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value + "\n")
    return path


def test_planted_secrets_are_never_logged_or_written(tmp_path, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    data, secrets = tmp_path / "data", tmp_path / "run-secrets"
    data.mkdir()
    secrets.mkdir()
    with webhook_receiver() as (base, posted):
        webhook = base + WEBHOOK_PATH
        token = _secret_file(secrets, "mcp_token", TOKEN_1)
        files = {
            "SLACK_WEBHOOK_URL_FILE": _secret_file(secrets, "slack_webhook_url", webhook),
            "FMP_API_KEY_FILE": _secret_file(secrets, "fmp_api_key", FMP_KEY),
            "IBKR_MCP_TOKEN_FILE": token,
            "IBKR_JOURNAL_KEY_FILE": _secret_file(secrets, "journal_key", JOURNAL_KEY),
        }
        monkeypatch.delenv("IBKR_JOURNAL_KEY")  # tests/conftest.py sets it
        for variable, path in files.items():
            monkeypatch.setenv(variable, str(path))
        monkeypatch.setenv("IBKR_SMTP_PASSWORD", SMTP_PASSWORD)
        monkeypatch.setenv("REDDIT_CLIENT_SECRET", REDDIT_SECRET)
        monkeypatch.setenv("IBKR_DATA_DIR", str(data))
        monkeypatch.setenv("IBKR_ALERT_CHANNEL", "slack")

        # the settings, as dumped
        settings = load_settings()
        print(settings, settings.model_dump_json(), settings_table())
        # an alert, its webhook URL read from the file
        AlertResource.from_settings(settings).send("gate failed", "concentration 0.15 > 0.12")
    assert posted == [WEBHOOK_PATH]
    # the MCP server, configured as if on a LAN address, its token file rotated under it
    with serve_http(MCPSettings(data_dir=data), "192.168.1.20", sim_broker_factory(data)) as up:

        def ping(bearer: str) -> httpx.Response:
            auth = {"Authorization": f"Bearer {bearer}"}
            return httpx.post(up.base + "/tools/call", json={"name": "ping"}, headers=auth)

        assert ping(TOKEN_1).status_code == 200
        token.write_text(TOKEN_2 + "\n")  # rotated: no restart
        refused = ping(TOKEN_1)
        assert refused.status_code == 401 and TOKEN_1 not in refused.text
        assert ping(TOKEN_2).status_code == 200
        token.unlink()  # unreadable: every request refused, the reason in the server's log
        gone = ping(TOKEN_2)
        assert gone.status_code == 503 and str(token) not in gone.text
        assert f"IBKR_MCP_TOKEN_FILE: the file {token} cannot be read" in caplog.text
    # the decision journal, signed with the key from its file
    journal = data / "decision_log"
    key = load_settings().journal.appending_key(journal)
    append_entry(journal, {"partition": "2026-01-05", "orders": 0}, key=key)
    assert verify_journal(journal, key=load_settings().journal.key()).ok

    out, err = capfd.readouterr()
    written = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert (data / "alerts" / "alerts.jsonl").is_file() and list(journal.glob("*.parquet"))
    for planted in (TOKEN_1, TOKEN_2, JOURNAL_KEY, SMTP_PASSWORD, FMP_KEY, REDDIT_SECRET):
        for where, text in (("logs", caplog.text), ("stdout", out), ("stderr", err)):
            assert planted not in text, f"{planted} in the {where}"
        assert planted.encode() not in written, f"{planted} written under the data dir"
    assert "planted-webhook" not in caplog.text + out + err
    assert b"planted-webhook" not in written
