"""Where a command's runs live: the settings checked up front, the data root, and the Dagster
instance under it.

Several ``ibkr-agent run`` processes may start at once (a schedule tick, a manual run, an
assistant's launch). Dagster creates the instance's SQLite storages (tables, alembic stamp) the
first time one is opened, and two processes doing that together leave it broken for good
(``table runs already exists``, then ``alembic_version has more than one head``). So the
instance is opened under an exclusive file lock (:func:`file_lock`, ``<home>/instance.lock``):
the first process creates the storages, the others wait for it and then open them as they are.
"""

from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # dagster is imported lazily to keep --help fast
    from dagster import DagsterInstance

    from ibkr_assets.settings import Settings

#: Seconds a process waits for another one to finish creating the instance's storages.
INSTANCE_LOCK_SECONDS = 120.0
#: Seconds between two attempts to take a lock another process holds.
LOCK_POLL_SECONDS = 0.1


def check_settings() -> None:
    """Read every setting a run uses, so that a malformed one is named before anything runs
    (raises :class:`~ibkr_assets.errors.ConfigurationError`); the MCP server's are its own."""
    from ibkr_assets.settings import env_sections, load_settings

    load_settings().checked(*(name for name in [*env_sections(), "decide"] if name != "mcp"))


def edge_settings(edge: str | None) -> Settings:
    """This process's settings with the simulated market's edge ``--edge`` names (``default`` or
    ``none``), or as read (``IBKR_SIM_EDGE``) when no flag was given."""
    from ibkr_assets.settings import load_settings

    settings = load_settings()
    return settings.updated(broker={"sim_edge": edge}) if edge else settings


def data_dir() -> Path:
    """The data root (``IBKR_DATA_DIR``), absolute."""
    from ibkr_assets.settings import load_settings

    return Path(load_settings().broker.data_dir).resolve()


def dagster_home() -> Path:
    """The Dagster home: ``DAGSTER_HOME`` (``run.dagster_home``), default ``<data root>/.dagster``;
    created when missing."""
    from ibkr_assets.settings import load_settings

    home = (load_settings().run.dagster_home or data_dir() / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


@contextmanager
def file_lock(path: Path, wait: float = 0.0, note: str = "") -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created when missing; ``flock``, so the system
    releases it when the process ends, however it ends), with ``note`` (who holds it) written in
    the file while held. Waits up to ``wait`` seconds for another process to release it; yields
    True when held, False when another process still holds it after ``wait`` (its note is then
    the file's text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(LOCK_POLL_SECONDS)
        try:
            _rewrite(handle, note)
            yield True
        finally:
            _rewrite(handle, "")
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _rewrite(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()


def dagster_instance() -> DagsterInstance:
    """The Dagster instance at :func:`dagster_home`, opened under ``<home>/instance.lock`` (see
    the module docstring); raises :class:`~ibkr_assets.errors.ConfigurationError` when another
    process holds that lock for more than :data:`INSTANCE_LOCK_SECONDS`."""
    import dagster as dg

    from ibkr_assets.errors import ConfigurationError

    home = dagster_home()
    lock = home / "instance.lock"
    with file_lock(lock, wait=INSTANCE_LOCK_SECONDS) as held:
        if not held:
            raise ConfigurationError(
                f"the Dagster instance {home} is being created or migrated by another process "
                f"that has held {lock} for more than {INSTANCE_LOCK_SECONDS:.0f} s; if no other "
                f"ibkr-agent or dagster process is running (`fuser {lock}`), run again"
            )
        _install_config(home)
        return dg.DagsterInstance.from_config(str(home))


def _install_config(home: Path) -> None:
    """Copy the project's ``dagster.yaml`` (telemetry off, run queue) into ``home`` once; say
    so when the copy there differs from the project's."""
    config = home / "dagster.yaml"
    project = Path(__file__).resolve().parents[2] / "dagster.yaml"
    if not config.exists():
        default = "telemetry:\n  enabled: false\n"
        config.write_text(project.read_text() if project.exists() else default)
    elif project.exists() and config.read_text() != project.read_text():
        print(
            f"note: {config} differs from the project's {project} (run queue, limits); "
            "copy it over to use the shipped settings",
            file=sys.stderr,
        )
