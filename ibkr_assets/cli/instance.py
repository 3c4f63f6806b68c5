"""Where a command's runs live: the settings checked up front, the data root, and the Dagster
instance under it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # dagster is imported lazily to keep --help fast
    from dagster import DagsterInstance


def check_settings() -> None:
    """Read every setting a run uses, so that a malformed one is named before anything runs
    (raises :class:`~ibkr_assets.errors.ConfigurationError`); the MCP server's are its own."""
    from ibkr_assets.settings import env_sections, load_settings

    load_settings().checked(*(name for name in [*env_sections(), "decide"] if name != "mcp"))


def data_dir() -> Path:
    """The data root (``IBKR_DATA_DIR``), absolute."""
    from ibkr_assets.settings import load_settings

    return Path(load_settings().broker.data_dir).resolve()


def dagster_instance() -> DagsterInstance:
    """The Dagster instance at ``DAGSTER_HOME``, default ``<data root>/.dagster``."""
    import dagster as dg

    from ibkr_assets.settings import load_settings

    home = (load_settings().run.dagster_home or data_dir() / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    project = Path(__file__).resolve().parents[2] / "dagster.yaml"
    if not config.exists():  # the project's instance settings (telemetry off, run queue), once
        default = "telemetry:\n  enabled: false\n"
        config.write_text(project.read_text() if project.exists() else default)
    elif project.exists() and config.read_text() != project.read_text():
        print(
            f"note: {config} differs from the project's {project} (run queue, limits); "
            "copy it over to use the shipped settings",
            file=sys.stderr,
        )
    return dg.DagsterInstance.from_config(str(home))
