"""AlertResource against real local servers on loopback: a Slack-like HTTP endpoint and an SMTP
sink written here (no mocks of slack-sdk or smtplib)."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ibkr_assets.errors import ConfigurationError
from ibkr_assets.resources.alerts import AlertDeliveryError, AlertResource
from ibkr_assets.settings import load_settings


class _SlackHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        self.server.requests.append(  # type: ignore[attr-defined]
            {"path": self.path, "body": raw, "auth": self.headers.get("Authorization", "")}
        )
        status = self.server.status  # type: ignore[attr-defined]
        if self.path.startswith("/api/"):
            payload = json.dumps({"ok": True, "channel": "C1", "ts": "1.0"}).encode()
            ctype = "application/json"
        else:
            payload, ctype = b"ok" if status == 200 else b"no_service", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slack_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackHandler)
    server.requests = []  # type: ignore[attr-defined]
    server.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        self.wfile.write(b"220 sink ESMTP\r\n")
        envelope: dict[str, object] = {"rcpt": []}
        while line := self.rfile.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-sink\r\n250 AUTH PLAIN\r\n")
            elif verb == "AUTH":
                envelope["auth"] = cmd
                self.wfile.write(b"235 ok\r\n")
            elif verb == "MAIL":
                envelope["from"] = cmd
                self.wfile.write(b"250 ok\r\n")
            elif verb == "RCPT":
                envelope["rcpt"].append(cmd)  # type: ignore[union-attr]
                self.wfile.write(b"250 ok\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 go\r\n")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                envelope["data"] = data
                self.server.messages.append(envelope)  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_log_channel_appends_json_lines(tmp_path):
    path = tmp_path / "alerts" / "alerts.jsonl"
    alerts = AlertResource(log_path=str(path))
    alerts.send("gate failed", "concentration 0.15 > 0.12", severity="error")
    alerts.send("orders queued", "3 orders", severity="info")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["subject"] for r in rows] == ["gate failed", "orders queued"]
    assert rows[0]["severity"] == "error" and rows[0]["channel"] == "log"
    assert "0.15 > 0.12" in rows[0]["body"]


def test_bad_severity_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="severity"):
        AlertResource(log_path=str(tmp_path / "a.jsonl")).send("x", "y", severity="panic")  # type: ignore[arg-type]


def test_slack_webhook_posts_the_text(slack_server, tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{slack_server.server_port}/services/T0/B0/secret"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    alerts = AlertResource(channel="slack", log_path=str(tmp_path / "a"))
    alerts.send("Compliance gate failed 2024-03-04", "concentration: 0.15 > 0.12", "error")
    [req] = slack_server.requests
    assert req["path"] == "/services/T0/B0/secret"
    payload = json.loads(req["body"])
    assert "Compliance gate failed 2024-03-04" in payload["text"]
    assert "0.15 > 0.12" in payload["text"]
    # logged as well, so a Slack outage never loses the alert
    assert "Compliance gate failed" in (tmp_path / "a").read_text()


def test_slack_webhook_failure_never_leaks_the_url(slack_server, tmp_path, monkeypatch):
    slack_server.status = 404
    url = f"http://127.0.0.1:{slack_server.server_port}/services/T0/B0/topsecret"
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    alerts = AlertResource(channel="slack", log_path=str(tmp_path / "a"))
    with pytest.raises(AlertDeliveryError, match="HTTP 404") as info:
        alerts.send("s", "b")
    assert "topsecret" not in str(info.value)
    assert (tmp_path / "a").read_text().count("\n") == 1


def test_slack_unreachable_raises_without_secret(tmp_path, monkeypatch):
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as s:
        port = s.server_address[1]
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{port}/services/T0/B0/topsecret")
    alerts = AlertResource(channel="slack", timeout_s=2)
    with pytest.raises(AlertDeliveryError) as info:
        alerts.send("s", "b")
    assert "topsecret" not in str(info.value)


def test_slack_bot_token_uses_chat_post_message(slack_server, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    alerts = AlertResource(
        channel="slack",
        slack_route="bot",
        slack_channel="#desk",
        slack_api_url=f"http://127.0.0.1:{slack_server.server_port}/api/",
    )
    alerts.send("orders queued", "2 orders for 2024-03-04", "info")
    [req] = slack_server.requests
    assert req["path"] == "/api/chat.postMessage"
    assert req["auth"] == "Bearer xoxb-test-token"
    body = json.loads(req["body"])
    assert body["channel"] == "#desk"
    assert "orders queued" in body["text"]


def test_slack_without_credentials_is_a_clear_error():
    with pytest.raises(AlertDeliveryError, match="SLACK_WEBHOOK_URL"):
        AlertResource(channel="slack").send("s", "b")


def test_email_goes_through_smtp(smtp_server, monkeypatch):
    monkeypatch.setenv("IBKR_SMTP_PASSWORD", "pw")
    alerts = AlertResource(
        channel="email",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.server_address[1],
        smtp_user="desk",
        email_from="bot@example.test",
        email_to=["risk@example.test", "pm@example.test"],
    )
    alerts.send("Compliance gate failed", "var_historical: 0.031 > 0.025", "error")
    [env] = smtp_server.messages
    assert len(env["rcpt"]) == 2
    assert "AUTH PLAIN" in env["auth"]
    msg = message_from_bytes(env["data"])
    assert msg["Subject"] == "[ibkr-agent error] Compliance gate failed"
    assert "0.031 > 0.025" in msg.get_payload()


def test_email_without_recipients_or_server_fails_clearly():
    with pytest.raises(AlertDeliveryError, match="recipients"):
        AlertResource(channel="email").send("s", "b")
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as s:
        port = s.server_address[1]
    alerts = AlertResource(
        channel="email", smtp_host="127.0.0.1", smtp_port=port, email_to=["a@b"], timeout_s=2
    )
    with pytest.raises(AlertDeliveryError, match=f"127.0.0.1:{port}"):
        alerts.send("s", "b")


def test_from_settings_reads_settings_and_holds_no_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IBKR_ALERT_CHANNEL", "email")
    monkeypatch.setenv("IBKR_ALERT_EMAIL_TO", '["risk@example.test"]')
    monkeypatch.setenv("IBKR_ALERT_SMTP_USER", "risk-bot")
    monkeypatch.setenv("IBKR_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("IBKR_ALERT_ORDER_POLL_SECONDS", "120")
    monkeypatch.setenv("IBKR_ALERT_SLACK_ROUTE", "bot")
    res = AlertResource.from_settings(load_settings())
    assert res.channel == "email" and res.order_poll_seconds == 120
    assert res.email_to == ["risk@example.test"] and res.smtp_user == "risk-bot"
    assert res.slack_route == "bot"
    assert res.log_path == str(tmp_path / "alerts" / "alerts.jsonl")
    assert "hunter2" not in repr(res.__dict__)
    assert res.problem is None


@pytest.mark.parametrize(
    ("env", "secret"),
    [
        ({"IBKR_ALERT_CHANNEL": "slack"}, "SLACK_WEBHOOK_URL"),
        ({"IBKR_ALERT_CHANNEL": "slack", "IBKR_ALERT_SLACK_ROUTE": "bot"}, "SLACK_BOT_TOKEN"),
        ({"IBKR_ALERT_CHANNEL": "email", "IBKR_ALERT_SMTP_USER": "u"}, "IBKR_SMTP_PASSWORD"),
    ],
    ids=["slack-webhook", "slack-bot", "email-login"],
)
def test_a_missing_secret_is_named_when_an_alert_is_sent(monkeypatch, tmp_path, env, secret):
    """Which secret an alert needs is decided by the settings; it is read when the alert is
    sent, and its absence named (with its _FILE variable) after the alert was logged."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IBKR_ALERT_EMAIL_TO", '["risk@example.test"]')
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    resource = AlertResource.from_settings(load_settings())
    with pytest.raises(AlertDeliveryError, match=f"set {secret}, or {secret}_FILE"):
        resource.send("gate failed", "concentration")
    assert "gate failed" in (tmp_path / "alerts" / "alerts.jsonl").read_text()


def test_a_malformed_alert_setting_is_carried_by_the_resource(monkeypatch):
    monkeypatch.setenv("IBKR_ALERT_SMTP_PORT", "twenty-five")
    res = AlertResource.from_settings(load_settings())
    assert res.smtp_port == 25  # the default, until the setting is fixed
    assert "IBKR_ALERT_SMTP_PORT='twenty-five'" in (res.problem or "")
    with pytest.raises(ConfigurationError, match="IBKR_ALERT_SMTP_PORT='twenty-five'"):
        res.checked()
