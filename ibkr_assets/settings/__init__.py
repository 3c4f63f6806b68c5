"""The settings tree: every environment variable the project reads, read once per process.

:func:`load_settings` reads each section below from its variables (the prefix of a section is
that of its variables: ``IBKR_``, ``IBKR_PIPELINE_``, ``IBKR_ALERT_``, ``IBKR_SENTIMENT_``,
``IBKR_MCP_``) and the YAML file ``IBKR_DECIDE_CONFIG`` names, once per process: the result is
cached, and read again only when a variable of the tree changed (a test's ``monkeypatch``;
:func:`clear_settings_cache` forgets it). Nothing else in ``ibkr_assets`` or ``mcp_server``
reads a variable; the secrets (:data:`SECRETS`) are not in the tree but read by
:mod:`.secret` each time they are used, from their variable, a file or Vault.

Sections (``Settings`` fields): ``broker`` (connection, simulated world, order guard switches),
``pipeline_orders`` (the pipeline's caps in the order guard), ``pipeline`` (stages 1–3),
``decide_file`` and ``decide`` (the limits of stages 4–9, from the YAML file), ``alerts``,
``sentiment``, ``fundamentals``, ``social`` (social chatter), ``promotion``, ``journal`` (the
signing key's default file), ``mcp`` (the tool server), ``run`` (who started a run, the Dagster
instance), ``vault`` (where the secrets are in HashiCorp Vault, if anywhere). The
broker sections live in the broker core (:mod:`ibkr_assets.broker.settings`), which may import
nothing of ours; the fields a Dagster resource also shows in its configuration are declared
once, in a plain pydantic model both the section and the resource inherit
(``BrokerConnection``, :class:`PipelineFields`, :class:`DecideLimits`, :class:`AlertFields`,
:class:`SentimentFields`).

Modules: :mod:`.tree` (the root :class:`Settings`, loading, problems), one module per section
(:mod:`.pipeline` with sentiment and fundamentals, :mod:`.decide`, :mod:`.alerts`,
:mod:`.journal`, :mod:`.run` with promotion, :mod:`.mcp`, :mod:`.social`), :mod:`.secret` (the
secrets: from ``NAME``, ``NAME_FILE`` or Vault, read at each use, and the ``vault`` section)
and :mod:`.table` (README's table of variables: ``python -m ibkr_assets.settings`` prints it,
``--readme README.md`` rewrites it there between its markers).
"""

from ibkr_assets.settings.alerts import AlertFields, AlertSettings
from ibkr_assets.settings.decide import DecideFileSettings, DecideLimits, read_decide_file
from ibkr_assets.settings.journal import JournalSettings
from ibkr_assets.settings.mcp import MCPSettings
from ibkr_assets.settings.pipeline import (
    FundamentalsSettings,
    PipelineFields,
    PipelineSettings,
    SentimentFields,
    SentimentSettings,
)
from ibkr_assets.settings.run import PromotionSettings, RunSettings
from ibkr_assets.settings.secret import (
    FMP_API_KEY,
    JOURNAL_KEY,
    MCP_TOKEN,
    REDDIT_CLIENT_ID,
    REDDIT_CLIENT_SECRET,
    SECRETS,
    SLACK_BOT_TOKEN,
    SLACK_WEBHOOK_URL,
    SMTP_PASSWORD,
    VAULT_TOKEN,
    Secret,
    SecretError,
    VaultSettings,
)
from ibkr_assets.settings.social import SocialSettings
from ibkr_assets.settings.table import TABLE_BEGIN, TABLE_END, settings_table, with_table
from ibkr_assets.settings.tree import Settings, clear_settings_cache, env_sections, load_settings

__all__ = [
    "FMP_API_KEY",
    "JOURNAL_KEY",
    "MCP_TOKEN",
    "REDDIT_CLIENT_ID",
    "REDDIT_CLIENT_SECRET",
    "SECRETS",
    "SLACK_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "SMTP_PASSWORD",
    "TABLE_BEGIN",
    "TABLE_END",
    "VAULT_TOKEN",
    "AlertFields",
    "AlertSettings",
    "DecideFileSettings",
    "DecideLimits",
    "FundamentalsSettings",
    "JournalSettings",
    "MCPSettings",
    "PipelineFields",
    "PipelineSettings",
    "PromotionSettings",
    "RunSettings",
    "Secret",
    "SecretError",
    "SentimentFields",
    "SentimentSettings",
    "Settings",
    "SocialSettings",
    "VaultSettings",
    "clear_settings_cache",
    "env_sections",
    "load_settings",
    "read_decide_file",
    "settings_table",
    "with_table",
]
