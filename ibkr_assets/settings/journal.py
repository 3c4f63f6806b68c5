"""The decision journal's signing key, resolved here for :mod:`ibkr_assets.quant.journal`, which
reads no settings: :meth:`JournalSettings.key` to verify, :meth:`JournalSettings.appending_key`
to append. The key is the secret ``IBKR_JOURNAL_KEY`` (:data:`~.secret.JOURNAL_KEY`: the
variable, the file ``IBKR_JOURNAL_KEY_FILE`` names, or Vault), else the contents of the default
key file ``$XDG_CONFIG_HOME/ibkr-agent/journal.key``; the key file (named or default) is created
for a new journal only."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.quant.journal import JournalKey, journal_is_new
from ibkr_assets.settings.secret import JOURNAL_KEY, SecretError, read_secret_file

#: The variable holding the key itself (at least :data:`MIN_KEY_CHARS` characters).
KEY_ENV = JOURNAL_KEY.variable
#: The variable naming the key file (default ``<config home>/ibkr-agent/journal.key``).
KEY_FILE_ENV = JOURNAL_KEY.file_variable
#: A key shorter than this (in characters) is refused.
MIN_KEY_CHARS = JOURNAL_KEY.min_length


class JournalSettings(BaseSettings):
    """Where the decision journal's default key file is (see :mod:`ibkr_assets.quant.journal`)."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    config_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("XDG_CONFIG_HOME", "config_home"),
        description="base of the journal's default key file; unset = ~/.config",
    )

    @field_validator("config_home", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def key_file(self) -> Path:
        """The key file: ``IBKR_JOURNAL_KEY_FILE``, else ``<config home>/ibkr-agent/journal.key``
        (``~/.config/ibkr-agent/journal.key`` when ``XDG_CONFIG_HOME`` is unset)."""
        named = JOURNAL_KEY.file()
        if named is not None:
            return named
        return (self.config_home or Path.home() / ".config") / "ibkr-agent" / "journal.key"

    def key(self, create: bool = False) -> JournalKey:
        """The key rows are signed with, read at call time and never logged or stored in the
        journal: the secret ``IBKR_JOURNAL_KEY``, else the contents of :attr:`key_file`
        (created first when ``create`` and it does not exist). Without a usable key (none set,
        the file unreadable, or shorter than :data:`MIN_KEY_CHARS` characters) the key has no
        secret and names what to set."""
        try:
            named = JOURNAL_KEY.file()
            if named is not None and not named.exists():
                if not create:
                    return _no_key(named)
                _create_key_file(named)
            key = JOURNAL_KEY.read()
            if key is None:
                path = self.key_file
                if not path.exists():
                    if not create:
                        return _no_key(path)
                    _create_key_file(path)
                key = JOURNAL_KEY.checked(read_secret_file(path, "the key file"), str(path))
        except SecretError as exc:
            return JournalKey(None, str(exc))
        return JournalKey(key.get_secret_value().encode("utf-8"))

    def appending_key(self, directory: str | os.PathLike[str]) -> JournalKey:
        """The key to append to the journal in ``directory`` with: :meth:`key`, its file created
        only when the journal is new (no row, no head file) — never a new key for old rows."""
        return self.key(create=journal_is_new(directory))


def _no_key(path: Path) -> JournalKey:
    """No key: neither set nor in the key file ``path``, which does not exist."""
    return JournalKey(
        None,
        f"no journal key: {KEY_ENV} is not set and the key file {path} does not exist; set "
        f"{KEY_ENV} or {KEY_FILE_ENV} to the key that signed this journal",
    )


def _create_key_file(path: Path) -> None:
    """A new random 256-bit key (hex) at ``path``, mode 0600. Written to a temporary file and
    hard-linked into place, so two first appends racing end up with one key, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".journal-key-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
