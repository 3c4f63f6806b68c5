"""The secrets: one way to read each, at the time it is used.

A secret ``NAME`` (``SLACK_WEBHOOK_URL``, ``IBKR_MCP_TOKEN``... :data:`SECRETS`) is, in order:

1. the variable ``NAME`` itself;
2. the contents of the file the variable ``NAME_FILE`` names (the Docker / Kubernetes secrets
   convention: ``SLACK_WEBHOOK_URL_FILE=/run/secrets/slack_webhook_url``), read as UTF-8;
3. when ``VAULT_ADDR`` is set, the key ``NAME`` of the HashiCorp Vault KV version 2 secret
   ``IBKR_VAULT_PATH`` (default ``ibkr-agent``) of the engine mounted at ``IBKR_VAULT_MOUNT``
   (default ``secret``), read through ``hvac`` with the token ``VAULT_TOKEN`` (or
   ``VAULT_TOKEN_FILE``); hvac also honours ``VAULT_CACERT`` / ``VAULT_CAPATH`` for Vault's TLS
   certificate and ``VAULT_CLIENT_CERT`` / ``VAULT_CLIENT_KEY``.

A blank variable counts as unset, and a trailing newline (of a variable or a file) is not part
of the secret. ``NAME`` and ``NAME_FILE`` both set is an error naming both; a file that cannot
be read, or is empty, is an error naming the variable and the path; Vault unreachable, refusing
the token or without the secret ``IBKR_VAULT_PATH`` is an error naming ``VAULT_ADDR`` and the
path. None of them ever holds a secret's value (:class:`SecretError`).

Nothing caches a secret: :meth:`Secret.read` reads it again at each call, and its callers call it
when they use the secret (each run of the fundamentals and social sources, each alert sent, each
HTTP request the MCP server authenticates, each journal append or verification). Rewriting the
file, or a new version in Vault, takes effect at the next use, without a restart; each read with
Vault is one HTTP request to it. A value read is a :class:`pydantic.SecretStr` (shown as
``**********``), held only as long as the call that uses it; no resource field, settings
section, log line, metadata or file of ours holds one.

The PostgreSQL password of a Dagster instance on PostgreSQL is :data:`PG_PASSWORD`
(``IBKR_PG_PASSWORD``), read in the same way at each new database connection
(:mod:`ibkr_assets.dagster_instance`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.errors import ConfigurationError, settings_error

#: The suffix of the variable naming a secret's file (``SLACK_WEBHOOK_URL_FILE``).
FILE_SUFFIX = "_FILE"


class SecretError(ConfigurationError):
    """A secret could not be read: the message names the variables, files or Vault path to
    fix, never the secret."""


class VaultSettings(BaseSettings):
    """Where the secrets are in HashiCorp Vault (KV version 2), when ``VAULT_ADDR`` is set."""

    model_config = SettingsConfigDict(env_prefix="IBKR_VAULT_", extra="ignore")

    addr: str | None = Field(
        None,
        validation_alias=AliasChoices("VAULT_ADDR", "addr"),
        description="Vault's address (https://vault.example:8200); set = a secret neither in "
        "its variable nor in its _FILE is read from Vault (token VAULT_TOKEN or "
        "VAULT_TOKEN_FILE)",
    )
    mount: str = Field("secret", description="mount point of Vault's KV version 2 engine")
    path: str = Field(
        "ibkr-agent",
        description="the Vault secret holding ours, one key per variable name "
        "(SLACK_WEBHOOK_URL, IBKR_MCP_TOKEN...)",
    )
    timeout: float = Field(5.0, gt=0, description="seconds to wait for Vault's answer")


@dataclass(frozen=True)
class Secret:
    """A secret: its variable, what it holds, and what a usable value looks like."""

    variable: str
    description: str
    #: Other variables naming its file, still read (older names).
    file_aliases: tuple[str, ...] = ()
    #: A value shorter than this (characters) is refused.
    min_length: int = 0
    #: False for Vault's own token.
    in_vault: bool = True

    @property
    def file_variable(self) -> str:
        """The variable naming the file that holds the secret (``NAME_FILE``)."""
        return self.variable + FILE_SUFFIX

    def file(self) -> Path | None:
        """The file a variable names now (``NAME_FILE`` or an older name), None when none does."""
        for variable in (self.file_variable, *self.file_aliases):
            if (value := _unset_if_blank(variable)) is not None:
                return Path(value).expanduser()
        return None

    def read(self) -> SecretStr | None:
        """The secret now, from its variable, its file or Vault (see the module's docstring);
        None when it is in none of them. Raises :class:`SecretError` when it is set twice,
        its file or Vault cannot be read, or it is shorter than :attr:`min_length`."""
        names = (self.variable, self.file_variable, *self.file_aliases)
        given = {name: value for name in names if (value := _unset_if_blank(name)) is not None}
        if len(given) > 1:
            raise SecretError(
                f"{' and '.join(given)} are {'both' if len(given) == 2 else 'all'} set: set "
                f"only one ({self.variable} holds the {self.description}; "
                f"{self.file_variable} names a file holding it)"
            )
        if self.variable in given:
            return self.checked(given[self.variable], self.variable)
        if given:
            (variable, path), *_ = given.items()
            text = read_secret_file(Path(path).expanduser(), variable)
            return self.checked(text, f"{variable} ({path})")
        if self.in_vault and (vault := _vault_settings()).addr:
            found = _vault_secrets(vault).get(self.variable)
            where = f"{self.variable} in Vault ({vault.mount}/{vault.path})"
            return None if found is None else self.checked(str(found), where)
        return None

    def checked(self, value: str, source: str) -> SecretStr:
        """``value`` without a trailing newline, as a secret; :class:`SecretError` naming
        ``source`` (where it was read) when it is shorter than :attr:`min_length`."""
        value = value.rstrip("\r\n")
        if len(value) < self.min_length:
            raise SecretError(
                f"{source} is {len(value)} characters; use at least {self.min_length}, e.g. "
                "the output of python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return SecretStr(value)

    def required(self) -> SecretStr:
        """:meth:`read`, or :class:`SecretError` naming where to put the secret."""
        value = self.read()
        if value is None:
            vault = f", or store it in Vault as the key {self.variable}" if self.in_vault else ""
            raise SecretError(
                f"no {self.description}: set {self.variable}, or {self.file_variable} to a file "
                f"holding it{vault}"
            )
        return value


def read_secret_file(path: Path, source: str) -> str:
    """The text of the secret file ``path`` (``source`` names who named it: a variable), a
    trailing newline removed; :class:`SecretError` naming both when it cannot be read or is
    empty, never its contents."""
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SecretError(
            f"{source}: the file {path} cannot be read ({exc.strerror}); make it readable by "
            "this process or name another"
        ) from None
    except UnicodeDecodeError:
        raise SecretError(f"{source}: the file {path} is not UTF-8 text") from None
    if not text:
        raise SecretError(f"{source}: the file {path} is empty; write the secret into it")
    return text


def _unset_if_blank(variable: str) -> str | None:
    """The variable's value, None when unset or blank."""
    value = os.environ.get(variable)
    return value if value and value.strip() else None


def _vault_settings() -> VaultSettings:
    """The Vault settings now (:class:`SecretError` naming a malformed one)."""
    try:
        return VaultSettings()
    except ValidationError as exc:
        raise SecretError(
            str(settings_error(exc, VaultSettings.model_fields, "IBKR_VAULT_"))
        ) from None


def _vault_secrets(vault: VaultSettings) -> dict[str, object]:
    """The keys of the KV v2 secret ``vault.path`` (its latest version), read with hvac."""
    import hvac  # only when VAULT_ADDR is set

    token = VAULT_TOKEN.read()
    where = f"Vault at {vault.addr} (VAULT_ADDR), secret {vault.mount}/{vault.path}"
    if token is None:
        raise SecretError(f"{where}: no token; set VAULT_TOKEN or VAULT_TOKEN_FILE")
    client = hvac.Client(url=vault.addr, token=token.get_secret_value(), timeout=vault.timeout)
    try:
        answer = client.secrets.kv.v2.read_secret_version(
            path=vault.path, mount_point=vault.mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        raise SecretError(
            f"{where}: no such secret; create it, or set IBKR_VAULT_MOUNT / IBKR_VAULT_PATH"
        ) from None
    except (hvac.exceptions.Unauthorized, hvac.exceptions.Forbidden) as exc:
        raise SecretError(
            f"{where}: Vault refused the token ({type(exc).__name__}); check VAULT_TOKEN or "
            "VAULT_TOKEN_FILE and its policy"
        ) from None
    except (hvac.exceptions.VaultError, OSError) as exc:  # requests' errors are OSErrors
        raise SecretError(f"{where}: cannot be read ({type(exc).__name__})") from None
    try:
        return dict(answer["data"]["data"])
    except (KeyError, TypeError):
        raise SecretError(f"{where}: not a KV version 2 secret; check IBKR_VAULT_MOUNT") from None


#: Vault's own token: from its variable or file, never from Vault.
VAULT_TOKEN = Secret("VAULT_TOKEN", "Vault token, when VAULT_ADDR is set", in_vault=False)
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
    "Reddit client secret, when IBKR_SOCIAL_SOURCE=reddit",
    file_aliases=("IBKR_SOCIAL_REDDIT_CLIENT_SECRET_FILE",),
)
#: At least 32 characters: 32 characters of ``secrets.token_urlsafe`` carry 192 bits.
MCP_TOKEN = Secret(
    "IBKR_MCP_TOKEN",
    "MCP server's bearer token, at least 32 characters; required off loopback",
    min_length=32,
)
JOURNAL_KEY = Secret(
    "IBKR_JOURNAL_KEY",
    "decision journal's signing key, at least 32 characters; unset = the file "
    "$XDG_CONFIG_HOME/ibkr-agent/journal.key, created by the first append",
    min_length=32,
)
PG_PASSWORD = Secret(
    "IBKR_PG_PASSWORD",
    "PostgreSQL password of the Dagster instance, when IBKR_PG_URL or IBKR_PG_HOST is set",
)
SECRETS = (
    SLACK_WEBHOOK_URL,
    SLACK_BOT_TOKEN,
    SMTP_PASSWORD,
    FMP_API_KEY,
    REDDIT_CLIENT_ID,
    REDDIT_CLIENT_SECRET,
    MCP_TOKEN,
    JOURNAL_KEY,
    PG_PASSWORD,
    VAULT_TOKEN,
)
