"""Errors a user fixes rather than bugs: a setting, a configuration file, a state file, a date.

:class:`ConfigurationError` carries one line that names what was wrong (the ``IBKR_*`` variable,
the YAML key, the file under the data root, the date) and what to do. The CLI prints it alone,
without a traceback, and exits with code 2; in a Dagster run a resource raises it when the run
starts, so the run fails before any step writes anything.

The code location must still load when a setting is wrong, or the UI would show nothing but a
traceback. The settings tree (:func:`ibkr_assets.settings.load_settings`) therefore records a
malformed section's problem instead of raising, and a resource read from settings derives from
:class:`SettingsResource`: built from the tree, it carries the problem in its ``problem`` field,
which the UI shows with the resource's configuration and which fails any run that uses the
resource, at start, with the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import dagster as dg
from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo


class ConfigurationError(ValueError):
    """A setting, configuration file, state file or argument the user must fix; the message is
    one line naming it and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line


def env_variables(name: str, field: FieldInfo, prefix: str) -> list[str]:
    """The environment variables that set field ``name``: its aliases that are variable names
    (upper case), else ``prefix`` + the name in upper case."""
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    named = [c for c in choices if isinstance(c, str) and c.isupper()]
    return named or [f"{prefix}{name.upper()}"]


def _secret(field: FieldInfo | None) -> bool:
    """True for a field whose value must never be shown (a ``SecretStr``, optional or not)."""
    if field is None:
        return False
    return SecretStr in getattr(field.annotation, "__args__", (field.annotation,))


def settings_error(
    exc: ValidationError, fields: Mapping[str, FieldInfo], prefix: str = "IBKR_"
) -> ConfigurationError:
    """One line naming each environment variable ``exc`` refused, the value it holds (never a
    secret's), why, and the setting's meaning and default (from ``fields``, a pydantic
    ``model_fields``)."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a check across fields names its variables itself
            problems.append(message)
            continue
        loc = str(error["loc"][0])
        name, field = next(
            ((n, f) for n, f in fields.items() if loc in (n, *env_variables(n, f, prefix))),
            (loc, None),
        )
        variable = env_variables(name, field, prefix)[0] if field else f"{prefix}{loc.upper()}"
        raw: Any = error.get("input")
        value = f"={raw!r}" if isinstance(raw, str) and not _secret(field) else ""
        item = f" (item {error['loc'][1]})" if len(error["loc"]) > 1 else ""
        what = f" ({field.description})" if field is not None and field.description else ""
        default = ""
        if field is not None and not field.is_required() and field.default_factory is None:
            default = "; fix it, or unset it" + (
                f" for the default {field.default!r}" if field.default is not None else ""
            )
        problems.append(f"{variable}{value}{what}{item}: {message}{default}")
    return ConfigurationError("; ".join(problems))


class SettingsResource(dg.ConfigurableResource):
    """A resource read from settings: ``problem`` says why the settings could not be used."""

    problem: str | None = Field(
        None,
        description="why the settings (IBKR_* variables, IBKR_DECIDE_CONFIG) could not be used; "
        "a run that uses this resource fails at start with this message",
    )

    def checked(self) -> Self:
        """This resource, or :class:`ConfigurationError` when its settings had a problem."""
        if self.problem:
            raise ConfigurationError(self.problem)
        return self

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.checked()
