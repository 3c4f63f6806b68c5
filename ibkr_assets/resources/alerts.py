"""Alerts: tell a human when the compliance gate blocks the ticket, a run fails, or orders go out.

Three channels, chosen by ``IBKR_ALERT_CHANNEL`` (other settings: ``IBKR_ALERT_LOG_PATH``,
``IBKR_ALERT_SLACK_ROUTE``, ``IBKR_ALERT_SLACK_CHANNEL``, ``IBKR_ALERT_SMTP_HOST`` /
``_SMTP_PORT`` / ``_SMTP_USER`` / ``_SMTP_STARTTLS``, ``IBKR_ALERT_EMAIL_FROM``,
``IBKR_ALERT_EMAIL_TO`` as a JSON list, and ``IBKR_ALERT_ORDER_POLL_SECONDS``, how often the
order sensor asks IB about a session's submitted orders until they are done, and
``IBKR_ALERT_SENSOR_INTERVAL_SECONDS``, the least time between two evaluations of each alert
sensor by the Dagster daemon; all in the ``alerts`` section of :mod:`ibkr_assets.settings`):

* ``log`` (the default): the alert goes to the ``ibkr_assets.alerts`` logger and, when
  ``log_path`` is set, is appended as one JSON line to that file (``data/alerts/alerts.jsonl`` by
  default) so an operator — or a test — can read every alert the pipeline raised.
* ``slack``: through slack-sdk, either an incoming webhook (``SLACK_WEBHOOK_URL``, the default
  route) or, with ``IBKR_ALERT_SLACK_ROUTE=bot``, a bot token (``SLACK_BOT_TOKEN``) posting
  ``chat.postMessage`` to ``slack_channel``.
* ``email``: SMTP through the standard library (``smtplib``), STARTTLS and login when configured;
  the password comes from ``IBKR_SMTP_PASSWORD``.

Every alert is also written to the log sink first, so an alert is never lost silently when Slack
or the mail server is down; a delivery failure then raises :class:`AlertDeliveryError`, whose
message never contains the webhook URL, the token or the password. The secret the channel needs
(the Slack route's, or the SMTP password when there is an SMTP user) is read at each alert sent
(:mod:`ibkr_assets.settings.secret`: its variable, the file ``<NAME>_FILE`` names, or Vault), so a
rotated secret file takes effect at the next alert; no field of the resource holds it.
"""

from __future__ import annotations

import json
import logging
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

from ibkr_assets.errors import SettingsResource
from ibkr_assets.settings import (
    SLACK_BOT_TOKEN,
    SLACK_WEBHOOK_URL,
    SMTP_PASSWORD,
    AlertFields,
    SecretError,
    Settings,
)

Severity = Literal["info", "warning", "error"]

logger = logging.getLogger("ibkr_assets.alerts")
#: slack-sdk's clients log through this one: at DEBUG its webhook client logs the URL of each
#: request, which is the secret, so nothing below INFO is ever emitted.
_slack_logger = logging.getLogger("ibkr_assets.alerts.slack_sdk")
_slack_logger.setLevel(logging.INFO)

_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SLACK_ICONS = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}


class AlertDeliveryError(RuntimeError):
    """The alert was logged but could not be delivered to Slack or by email."""


class AlertResource(SettingsResource, AlertFields):
    """Where the pipeline's alerts go: log (default), Slack, or email."""

    slack_api_url: str = "https://slack.com/api/"
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertResource:
        """The ``alerts`` section, the log file under the data root unless one is set."""
        alerts = settings.alerts
        fields = alerts.model_dump(include=set(AlertFields.model_fields))
        return cls(
            **fields | {"log_path": alerts.log_path or _default_log(settings.broker.data_dir)},
            problem=settings.problem("alerts"),
        )

    def send(self, subject: str, body: str, severity: Severity = "warning") -> dict[str, str]:
        """Log the alert, then deliver it on the configured channel.

        Returns the alert record (time, severity, subject, body, channel). Raises
        AlertDeliveryError when Slack or the mail server refused it (it is logged regardless).
        """
        if severity not in _LOG_LEVELS:
            raise ValueError(f"severity must be one of {sorted(_LOG_LEVELS)}, not {severity!r}")
        record = {
            "time": datetime.now(UTC).isoformat(),
            "severity": severity,
            "subject": subject,
            "body": body,
            "channel": self.channel,
        }
        self._log(record)
        if self.channel == "slack":
            self._send_slack(subject, body, severity)
        elif self.channel == "email":
            self._send_email(subject, body, severity)
        return record

    def _log(self, record: dict[str, str]) -> None:
        logger.log(_LOG_LEVELS[record["severity"]], "%s\n%s", record["subject"], record["body"])
        if self.log_path:
            path = Path(self.log_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True) + "\n")

    def _send_slack(self, subject: str, body: str, severity: Severity) -> None:
        text = f"{_SLACK_ICONS[severity]} *{subject}*\n{body}"
        secret = SLACK_BOT_TOKEN if self.slack_route == "bot" else SLACK_WEBHOOK_URL
        try:
            value = secret.required().get_secret_value()
        except SecretError as exc:
            raise AlertDeliveryError(f"channel is slack but {exc}") from None
        try:
            if self.slack_route == "webhook":
                from slack_sdk.webhook import WebhookClient

                hook = WebhookClient(value, timeout=int(self.timeout_s), logger=_slack_logger)
                response = hook.send(text=text)
                if response.status_code != 200:
                    raise AlertDeliveryError(
                        f"Slack webhook answered HTTP {response.status_code}: {response.body[:200]}"
                    )
            else:
                from slack_sdk import WebClient

                client = WebClient(
                    token=value,
                    base_url=self.slack_api_url,
                    timeout=int(self.timeout_s),
                    logger=_slack_logger,
                )
                client.chat_postMessage(channel=self.slack_channel, text=text)
        except AlertDeliveryError:
            raise
        except Exception as exc:  # slack-sdk / network errors; never echo the URL or token
            raise AlertDeliveryError(f"Slack delivery failed: {type(exc).__name__}") from None

    def _send_email(self, subject: str, body: str, severity: Severity) -> None:
        if not self.email_to:
            raise AlertDeliveryError("channel is email but no recipients (IBKR_ALERT_EMAIL_TO)")
        msg = EmailMessage()
        msg["Subject"] = f"[ibkr-agent {severity}] {subject}"
        msg["From"] = self.email_from
        msg["To"] = ", ".join(self.email_to)
        msg.set_content(body)
        try:
            password = SMTP_PASSWORD.required() if self.smtp_user else None
        except SecretError as exc:
            raise AlertDeliveryError(
                f"channel is email with IBKR_ALERT_SMTP_USER but {exc}"
            ) from None
        try:
            with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_s) as smtp:
                if self.smtp_starttls:
                    smtp.starttls()
                if self.smtp_user and password is not None:
                    smtp.login(self.smtp_user, password.get_secret_value())
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise AlertDeliveryError(
                f"email to {self.smtp_host}:{self.smtp_port} failed: {type(exc).__name__}: "
                f"{getattr(exc, 'smtp_code', '')}"
            ) from None


def _default_log(data_dir: str) -> str:
    """The alert log under the data root: ``<data root>/alerts/alerts.jsonl``."""
    return str(Path(data_dir) / "alerts" / "alerts.jsonl")
