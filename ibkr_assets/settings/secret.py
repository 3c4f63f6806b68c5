"""The secrets: resolved by Dagster at run time from the ``dg.EnvVar`` fields
:func:`ibkr_assets.resources.build_resources` gives resources, never read by the settings."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class Secret:
    """A secret a resource receives as ``dg.EnvVar``: the variable and what it holds."""

    variable: str
    description: str

    def env_var(self) -> dg.EnvVar:
        """The secret as a Dagster resource field: resolved when a run starts, never logged."""
        return dg.EnvVar(self.variable)


SLACK_WEBHOOK_URL = Secret(
    "SLACK_WEBHOOK_URL", "Slack incoming-webhook URL (IBKR_ALERT_SLACK_ROUTE=webhook)"
)
SLACK_BOT_TOKEN = Secret(
    "SLACK_BOT_TOKEN", "Slack bot token posting to IBKR_ALERT_SLACK_CHANNEL (route bot)"
)
SMTP_PASSWORD = Secret("IBKR_SMTP_PASSWORD", "SMTP password, when IBKR_ALERT_SMTP_USER is set")
FMP_API_KEY = Secret("FMP_API_KEY", "Financial Modeling Prep API key, when IBKR_FUNDAMENTALS=fmp")
REDDIT_CLIENT_ID = Secret(
    "REDDIT_CLIENT_ID", "Reddit script-app client id, when IBKR_SOCIAL_SOURCE=reddit"
)
REDDIT_CLIENT_SECRET = Secret(
    "REDDIT_CLIENT_SECRET",
    "Reddit client secret, when IBKR_SOCIAL_SOURCE=reddit and no secret file is named",
)
SECRETS = (
    SLACK_WEBHOOK_URL,
    SLACK_BOT_TOKEN,
    SMTP_PASSWORD,
    FMP_API_KEY,
    REDDIT_CLIENT_ID,
    REDDIT_CLIENT_SECRET,
)
