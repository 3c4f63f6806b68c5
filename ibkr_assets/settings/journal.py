"""The decision journal's signing key (``IBKR_JOURNAL_KEY``, ``IBKR_JOURNAL_KEY_FILE``,
``XDG_CONFIG_HOME``), resolved here for :mod:`ibkr_assets.quant.journal`, which reads no
settings: :meth:`JournalSettings.key` to verify, :meth:`JournalSettings.appending_key` to append
(the key file is created for a new journal only)."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.quant.journal import JournalKey, journal_is_new

#: The variable holding the key itself (at least :data:`MIN_KEY_CHARS` characters).
KEY_ENV = "IBKR_JOURNAL_KEY"
#: The variable naming the key file (default ``<config home>/ibkr-agent/journal.key``).
KEY_FILE_ENV = "IBKR_JOURNAL_KEY_FILE"
#: A key shorter than this (in characters) is refused.
MIN_KEY_CHARS = 32


class JournalSettings(BaseSettings):
    """Where the decision journal's signing key is (see :mod:`ibkr_assets.quant.journal`)."""

    model_config = SettingsConfigDict(env_prefix="IBKR_", extra="ignore")

    journal_key: SecretStr | None = Field(
        None, description="the decision journal's signing key (at least 32 characters)"
    )
    journal_key_file: Path | None = Field(
        None,
        description="file holding the key when IBKR_JOURNAL_KEY is unset; default "
        "$XDG_CONFIG_HOME/ibkr-agent/journal.key, created by the first append",
    )
    config_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("XDG_CONFIG_HOME", "config_home"),
        description="base of the default key file; unset = ~/.config",
    )

    @field_validator("journal_key", "journal_key_file", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("config_home", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def key_file(self) -> Path:
        """The key file: ``IBKR_JOURNAL_KEY_FILE``, else ``<config home>/ibkr-agent/journal.key``
        (``~/.config/ibkr-agent/journal.key`` when ``XDG_CONFIG_HOME`` is unset)."""
        if self.journal_key_file is not None:
            return self.journal_key_file.expanduser()
        return (self.config_home or Path.home() / ".config") / "ibkr-agent" / "journal.key"

    def key(self, create: bool = False) -> JournalKey:
        """The key rows are signed with, read at call time and never logged or stored in the
        journal: ``IBKR_JOURNAL_KEY``, else the contents of :attr:`key_file` (created first when
        ``create``). Without a usable key (none set, the file unreadable, or shorter than
        :data:`MIN_KEY_CHARS` characters) the key has no secret and names what to set."""
        if self.journal_key is not None:
            text, source = self.journal_key.get_secret_value(), KEY_ENV
        else:
            path = self.key_file
            source = f"the key file {path}"
            if not path.exists():
                if not create:
                    return JournalKey(
                        None,
                        f"no journal key: {KEY_ENV} is not set and the key file {path} does not "
                        f"exist; set {KEY_ENV} or {KEY_FILE_ENV} to the key that signed this "
                        "journal",
                    )
                _create_key_file(path)
            try:
                text = path.read_text().strip()
            except OSError as exc:
                return JournalKey(None, f"{source} cannot be read: {exc.strerror}")
        if len(text) < MIN_KEY_CHARS:
            return JournalKey(
                None,
                f"the journal key in {source} has {len(text)} characters, at least "
                f"{MIN_KEY_CHARS} are needed (e.g. python -c 'import secrets; "
                "print(secrets.token_hex(32))')",
            )
        return JournalKey(text.encode("utf-8"))

    def appending_key(self, directory: str | os.PathLike[str]) -> JournalKey:
        """The key to append to the journal in ``directory`` with: :meth:`key`, its file created
        only when the journal is new (no row, no head file) — never a new key for old rows."""
        return self.key(create=journal_is_new(directory))


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
