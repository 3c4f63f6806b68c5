"""The secrets (ibkr_assets/settings/secret.py): a variable or the file its ``_FILE`` variable
names, read again at each use (rotation without a restart), or HashiCorp Vault KV v2 through
hvac against a fake Vault on loopback; every error names what to fix, never the secret."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ibkr_assets.resources.alerts import AlertResource
from ibkr_assets.settings import (
    FMP_API_KEY,
    MCP_TOKEN,
    REDDIT_CLIENT_SECRET,
    SLACK_WEBHOOK_URL,
    SecretError,
)
from tests.webhook import webhook_receiver

VAULT_TOKEN = "hvs.loopback-vault-token-never-logged"


class _Vault(BaseHTTPRequestHandler):
    """Vault's KV v2 read, ``GET /v1/<mount>/data/<path>``, as Vault answers it."""

    def do_GET(self) -> None:
        server = self.server
        server.reads += 1  # type: ignore[attr-defined]
        if self.headers.get("X-Vault-Token") != VAULT_TOKEN:
            self._answer(403, {"errors": ["permission denied"]})
        elif self.path != "/v1/secret/data/ibkr-agent":
            self._answer(404, {"errors": []})
        else:
            data, version = server.data, server.version  # type: ignore[attr-defined]
            metadata = {"created_time": "2026-01-05T10:00:00Z", "version": version}
            self._answer(200, {"data": {"data": data, "metadata": metadata}})

    def _answer(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def vault(monkeypatch, tmp_path) -> Iterator[ThreadingHTTPServer]:
    """A fake Vault on loopback; VAULT_ADDR points at it, its token in VAULT_TOKEN_FILE."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Vault)
    server.data = {}  # type: ignore[attr-defined]
    server.version = 1  # type: ignore[attr-defined]
    server.reads = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp_path / "vault-token"
    token.write_text(VAULT_TOKEN + "\n")
    monkeypatch.setenv("VAULT_ADDR", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("VAULT_TOKEN_FILE", str(token))
    for secret in (FMP_API_KEY, MCP_TOKEN):
        monkeypatch.delenv(secret.variable, raising=False)
    yield server
    server.shutdown()
    server.server_close()


def test_a_variable_or_its_file_and_unset_is_none(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("FMP_API_KEY", raising=False)
    assert FMP_API_KEY.read() is None
    monkeypatch.setenv("FMP_API_KEY", "from-the-variable")
    assert FMP_API_KEY.read().get_secret_value() == "from-the-variable"
    monkeypatch.setenv("FMP_API_KEY", "  ")  # blank = unset: the file is read
    key = tmp_path / "fmp"
    key.write_text("from-the-file\n")  # a trailing newline is not part of the secret
    monkeypatch.setenv("FMP_API_KEY_FILE", str(key))
    value = FMP_API_KEY.read()
    assert value.get_secret_value() == "from-the-file" and "from-the-file" not in repr(value)


def test_a_rotated_file_is_read_at_the_next_use(monkeypatch, tmp_path) -> None:
    token = tmp_path / "token"
    monkeypatch.delenv("IBKR_MCP_TOKEN", raising=False)
    monkeypatch.setenv("IBKR_MCP_TOKEN_FILE", str(token))
    token.write_text("a" * 40)
    assert MCP_TOKEN.required().get_secret_value() == "a" * 40
    token.write_text("b" * 40 + "\n")
    assert MCP_TOKEN.required().get_secret_value() == "b" * 40


def test_both_set_an_unreadable_file_and_a_short_value_are_named(monkeypatch, tmp_path) -> None:
    secret_text = "c" * 40
    path = tmp_path / "token"
    path.write_bytes(secret_text.encode() + b"\xff")  # not UTF-8
    monkeypatch.setenv("IBKR_MCP_TOKEN", secret_text)
    monkeypatch.setenv("IBKR_MCP_TOKEN_FILE", str(path))
    with pytest.raises(SecretError, match="IBKR_MCP_TOKEN and IBKR_MCP_TOKEN_FILE are both set"):
        MCP_TOKEN.read()
    monkeypatch.delenv("IBKR_MCP_TOKEN")
    with pytest.raises(SecretError, match=f"IBKR_MCP_TOKEN_FILE: the file {path} is not UTF-8"):
        MCP_TOKEN.read()
    missing = tmp_path / "absent"
    monkeypatch.setenv("IBKR_MCP_TOKEN_FILE", str(missing))
    with pytest.raises(SecretError, match=f"IBKR_MCP_TOKEN_FILE: the file {missing} cannot be"):
        MCP_TOKEN.read()
    path.write_text("")
    monkeypatch.setenv("IBKR_MCP_TOKEN_FILE", str(path))
    with pytest.raises(SecretError, match="is empty"):
        MCP_TOKEN.read()
    path.write_text("short-token\n")
    with pytest.raises(SecretError, match=r"IBKR_MCP_TOKEN_FILE \(.*\) is 11 characters") as e:
        MCP_TOKEN.read()
    assert "short-token" not in str(e.value) and secret_text not in str(e.value)


def test_an_older_file_variable_still_works_and_conflicts_are_named(monkeypatch, tmp_path) -> None:
    path = tmp_path / "reddit"
    path.write_text("reddit-secret\n")
    monkeypatch.delenv("REDDIT_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("IBKR_SOCIAL_REDDIT_CLIENT_SECRET_FILE", str(path))
    assert REDDIT_CLIENT_SECRET.read().get_secret_value() == "reddit-secret"
    monkeypatch.setenv("REDDIT_CLIENT_SECRET_FILE", str(path))
    with pytest.raises(SecretError, match="REDDIT_CLIENT_SECRET_FILE and IBKR_SOCIAL_REDDIT"):
        REDDIT_CLIENT_SECRET.read()


def test_missing_required_secret_names_every_place_to_put_it(monkeypatch) -> None:
    monkeypatch.delenv("FMP_API_KEY", raising=False)
    with pytest.raises(SecretError, match=r"set FMP_API_KEY, or FMP_API_KEY_FILE .* Vault"):
        FMP_API_KEY.required()


def test_vault_kv2_through_hvac_read_at_each_use(vault) -> None:
    vault.data = {"FMP_API_KEY": "fmp-from-vault", "IBKR_MCP_TOKEN": "t" * 40}
    assert FMP_API_KEY.read().get_secret_value() == "fmp-from-vault"
    assert MCP_TOKEN.read().get_secret_value() == "t" * 40
    assert SLACK_WEBHOOK_URL.read() is None  # not in Vault: unset
    vault.data, vault.version = {"FMP_API_KEY": "fmp-rotated"}, 2  # a new version
    assert FMP_API_KEY.read().get_secret_value() == "fmp-rotated"
    assert vault.reads == 4  # nothing cached


def test_vault_after_the_variable_and_its_file(vault, monkeypatch) -> None:
    vault.data = {"FMP_API_KEY": "fmp-from-vault"}
    monkeypatch.setenv("FMP_API_KEY", "fmp-from-the-variable")
    assert FMP_API_KEY.read().get_secret_value() == "fmp-from-the-variable"
    assert vault.reads == 0


def test_vault_errors_name_the_address_never_the_token(vault, monkeypatch, tmp_path) -> None:
    address = f"http://127.0.0.1:{vault.server_address[1]}"
    wrong = tmp_path / "wrong-token"
    wrong.write_text("hvs.wrong-token-for-tests")
    monkeypatch.setenv("VAULT_TOKEN_FILE", str(wrong))
    with pytest.raises(SecretError, match=f"Vault at {address}.*refused the token") as e:
        FMP_API_KEY.read()
    assert "hvs.wrong" not in str(e.value)
    monkeypatch.setenv("VAULT_TOKEN", VAULT_TOKEN)
    monkeypatch.delenv("VAULT_TOKEN_FILE")
    monkeypatch.setenv("IBKR_VAULT_PATH", "elsewhere")
    with pytest.raises(SecretError, match="secret/elsewhere: no such secret"):
        FMP_API_KEY.read()
    monkeypatch.delenv("VAULT_TOKEN")
    with pytest.raises(SecretError, match="no token; set VAULT_TOKEN or VAULT_TOKEN_FILE"):
        FMP_API_KEY.read()
    monkeypatch.setenv("VAULT_TOKEN", VAULT_TOKEN)
    vault.shutdown()
    vault.server_close()
    with pytest.raises(SecretError, match=f"Vault at {address}.*cannot be read"):
        FMP_API_KEY.read()


def test_an_alert_reads_its_rotated_webhook_file_at_each_send(monkeypatch, tmp_path) -> None:
    url = tmp_path / "webhook"
    monkeypatch.setenv("SLACK_WEBHOOK_URL_FILE", str(url))
    alerts = AlertResource(channel="slack", log_path=str(tmp_path / "alerts.jsonl"))
    with webhook_receiver() as (base, paths):
        url.write_text(f"{base}/services/first\n")
        alerts.send("one", "b")
        url.write_text(f"{base}/services/second\n")
        alerts.send("two", "b")
    assert paths == ["/services/first", "/services/second"]
