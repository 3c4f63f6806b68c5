"""Errors a user fixes rather than bugs: a setting, a configuration file, a state file, a date.

:class:`ConfigurationError` carries one line that names what was wrong (the ``IBKR_*`` variable,
the YAML key, the file under the data root, the date) and what to do. The CLI prints it alone,
without a traceback, and exits with code 2; in a Dagster run a resource raises it when the run
starts, so the run fails before any step writes anything.

The code location must still load when a setting is wrong, or the UI would show nothing but a
traceback. A resource read from settings therefore derives from :class:`SettingsResource`:
``from_env_deferred()`` returns either the resource or one that carries the problem in its
``problem`` field, which the UI shows with the resource's configuration and which fails any run
that uses the resource, at start, with the message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

import dagster as dg
from pydantic import Field, ValidationError


class ConfigurationError(ValueError):
    """A setting, configuration file, state file or argument the user must fix; the message is
    one line naming it and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line


def settings_error(
    exc: ValidationError, fields: Mapping[str, Any], prefix: str = "IBKR_"
) -> ConfigurationError:
    """One line naming each environment variable ``exc`` refused, the value it holds, why, and
    the setting's meaning and default (from ``fields``, a pydantic ``model_fields``)."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "?"
        variable = name if name.upper().startswith(prefix) else f"{prefix}{name.upper()}"
        field = fields.get(name)
        raw = os.environ.get(variable)
        value = f"={raw!r}" if raw is not None else ""
        item = f" (item {error['loc'][1]})" if len(error["loc"]) > 1 else ""
        what = f" ({field.description})" if field is not None and field.description else ""
        default = ""
        if field is not None and not field.is_required() and field.default_factory is None:
            default = f"; fix it, or unset it for the default {field.default!r}"
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{variable}{value}{what}{item}: {message}{default}")
    return ConfigurationError("; ".join(problems))


class SettingsResource(dg.ConfigurableResource):
    """A resource read from settings: ``problem`` says why the settings could not be used."""

    problem: str | None = Field(
        None,
        description="why the settings (IBKR_* variables, IBKR_DECIDE_CONFIG) could not be used; "
        "a run that uses this resource fails at start with this message",
    )

    @classmethod
    def from_env(cls) -> Self:
        """The resource from the environment; raises :class:`ConfigurationError`."""
        raise NotImplementedError(f"{cls.__name__} does not read the environment")

    @classmethod
    def from_env_deferred(cls) -> Self:
        """``from_env()``, or, when the settings are wrong, the defaults carrying the problem: the
        code location loads, the UI shows the problem, and a run using the resource fails at
        start with it."""
        try:
            return cls.from_env()
        except ConfigurationError as exc:
            return cls(problem=str(exc))

    def checked(self) -> Self:
        """This resource, or :class:`ConfigurationError` when its settings had a problem."""
        if self.problem:
            raise ConfigurationError(self.problem)
        return self

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.checked()
