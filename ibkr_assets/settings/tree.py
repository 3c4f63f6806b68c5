"""The tree: every section in one frozen :class:`Settings`, read once per process by
:func:`load_settings`.

A malformed value does not raise here: the section keeps its defaults for the malformed
variables and ``Settings.problems`` holds one line naming each variable, its value, why and the
default (:func:`~ibkr_assets.errors.settings_error`). ``Settings.checked(...)`` raises that line
as a :class:`~ibkr_assets.errors.ConfigurationError`; resources built from the tree carry it in
their ``problem`` field, so the code location loads and a run using them fails at start.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings

from ibkr_assets.broker.settings import BrokerSettings, PipelineOrderLimits
from ibkr_assets.errors import ConfigurationError, env_variables, settings_error
from ibkr_assets.settings.alerts import AlertSettings
from ibkr_assets.settings.compute import DaskSettings
from ibkr_assets.settings.decide import DecideFileSettings, DecideLimits, read_decide_file
from ibkr_assets.settings.instance import InstanceSettings
from ibkr_assets.settings.journal import JournalSettings
from ibkr_assets.settings.mcp import MCPSettings
from ibkr_assets.settings.metrics import MetricsSettings
from ibkr_assets.settings.pipeline import FundamentalsSettings, PipelineSettings, SentimentSettings
from ibkr_assets.settings.run import PromotionSettings, RunSettings
from ibkr_assets.settings.secret import VaultSettings
from ibkr_assets.settings.social import SocialSettings


class Settings(BaseModel):
    """Every setting of the process, by section; ``problems`` names the malformed ones."""

    model_config = ConfigDict(frozen=True)

    broker: BrokerSettings
    pipeline_orders: PipelineOrderLimits
    pipeline: PipelineSettings
    decide_file: DecideFileSettings
    decide: DecideLimits
    alerts: AlertSettings
    sentiment: SentimentSettings
    fundamentals: FundamentalsSettings
    social: SocialSettings
    promotion: PromotionSettings
    journal: JournalSettings
    mcp: MCPSettings
    run: RunSettings
    metrics: MetricsSettings
    compute: DaskSettings
    instance: InstanceSettings
    vault: VaultSettings
    problems: dict[str, str] = Field(
        default_factory=dict,
        description="section -> one line naming its malformed variables; the section holds the "
        "defaults of those variables",
    )

    def checked(self, *sections: str) -> Self:
        """These settings, or :class:`~ibkr_assets.errors.ConfigurationError` naming every
        malformed variable of ``sections`` (default: of every section)."""
        names = sections or tuple(self.problems)
        problems = [self.problems[name] for name in names if name in self.problems]
        if problems:
            raise ConfigurationError("; ".join(problems))
        return self

    def problem(self, *sections: str) -> str | None:
        """The problems of ``sections`` in one line, or None when they are all well-formed."""
        problems = [self.problems[name] for name in sections if name in self.problems]
        return "; ".join(problems) or None

    def updated(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with fields of the named sections replaced, validated as the environment's
        values are (``updated(broker={"port": 4002})``); the environment is not read again."""
        replaced = {}
        for name, fields in sections.items():
            section = getattr(self, name)
            replaced[name] = type(section).model_validate({**section.model_dump(), **fields})
        return self.model_copy(update=replaced)


def env_sections() -> dict[str, type[BaseSettings]]:
    """The sections read from environment variables, by their name in :class:`Settings`."""
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
    }


def section_prefix(section: type[BaseSettings]) -> str:
    """The prefix of a section's variables (``IBKR_ALERT_``)."""
    return str(section.model_config.get("env_prefix", ""))


_Section = TypeVar("_Section", bound=BaseSettings)


def _read_section(section: type[_Section]) -> tuple[_Section, str | None]:
    """The section from the environment, or — when a variable is malformed — the section with
    that variable's default, and the line naming the problem."""
    try:
        return section(), None
    except ValidationError as exc:
        prefix = section_prefix(section)
        problem = str(settings_error(exc, section.model_fields, prefix))
        refused = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        defaults = {
            name: field.get_default(call_default_factory=True)
            for name, field in section.model_fields.items()
            if refused & {name, *env_variables(name, field, prefix)}
        }
        try:
            return section(**defaults), problem
        except ValidationError:  # a check across fields: every default
            return section.model_construct(), problem


def load_settings() -> Settings:
    """The settings of this process: read from the environment on the first call, and again
    only when one of the tree's variables changed since (a test's ``monkeypatch.setenv``; this
    project never writes the environment)."""
    return _read_settings(tuple(os.environ.get(name) for name in _variables()))


def clear_settings_cache() -> None:
    """Forget the settings read so far: the next :func:`load_settings` reads them again (a test
    that rewrote the file ``IBKR_DECIDE_CONFIG`` names)."""
    _read_settings.cache_clear()


@functools.cache
def _variables() -> tuple[str, ...]:
    """Every variable the sections read."""
    return tuple(
        variable
        for section in env_sections().values()
        for name, field in section.model_fields.items()
        for variable in env_variables(name, field, section_prefix(section))
    )


@functools.lru_cache(maxsize=16)
def _read_settings(environment: tuple[str | None, ...]) -> Settings:
    """The settings from the environment whose values of :func:`_variables` are
    ``environment`` (the cache key; the sections read the variables themselves)."""
    sections: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, section in env_sections().items():
        sections[name], problem = _read_section(section)
        if problem:
            problems[name] = problem
    try:
        sections["decide"] = read_decide_file(sections["decide_file"].decide_config)
    except ConfigurationError as exc:
        sections["decide"] = DecideLimits()
        problems["decide"] = str(exc)
    return Settings(**sections, problems=problems)
