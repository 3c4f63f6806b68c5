"""The one Dagster entry point: every asset, check, job, schedule, sensor and resource.

Each concern lives in its own module and is merged here; asset modules under ``assets/`` and
check modules under ``checks/`` are picked up automatically. Every asset links to its source
(the UI's code reference): the file and line in this checkout, and the same lines on GitHub or
GitLab at the checked-out commit when the checkout's ``origin`` remote is there.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from ibkr_assets import assets as assets_package
from ibkr_assets import checks as checks_package
from ibkr_assets.freshness import FRESHNESS_SENSORS
from ibkr_assets.jobs import JOBS, RUN_EXECUTOR, SCHEDULES
from ibkr_assets.resources import build_resources
from ibkr_assets.sensors import SENSORS

#: The checkout the code location runs from (the repository root).
CHECKOUT = Path(__file__).resolve().parent.parent
#: ``git@host:owner/repo.git`` or ``https://host/owner/repo(.git)`` on a host whose file links
#: Dagster knows how to build.
_REMOTE = re.compile(r"^(?:git@|https://)(github\.com|gitlab\.com)[:/](.+?)(?:\.git)?/?$")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):  # no git, or a stuck one: local links only
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_remote() -> tuple[str, str] | None:
    """(web URL of the repository, commit checked out) when the checkout has an ``origin``
    remote on GitHub or GitLab; None otherwise (no git, no remote, another host)."""
    remote, commit = _git("config", "--get", "remote.origin.url"), _git("rev-parse", "HEAD")
    match = _REMOTE.match(remote or "")
    if match is None or not commit:
        return None
    return f"https://{match.group(1)}/{match.group(2)}", commit


def with_code_references(assets: Sequence[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """``assets`` with each definition's file and line, linked to the remote when there is one
    (:func:`source_remote`)."""
    located = dg.with_source_code_references(assets)
    remote = source_remote()
    if remote is not None:
        located = dg.link_code_references_to_git(
            located,
            git_url=remote[0],
            git_branch=remote[1],
            file_path_mapping=dg.AnchorBasedFilePathMapping(
                local_file_anchor=Path(__file__),
                file_anchor_path_in_repository="ibkr_assets/definitions.py",
            ),
        )
    return list(located)  # type: ignore[arg-type]


defs = dg.Definitions(
    assets=with_code_references(dg.load_assets_from_package_module(assets_package)),
    asset_checks=dg.load_asset_checks_from_package_module(checks_package),
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=[*SENSORS, *FRESHNESS_SENSORS],
    resources=build_resources(),
    # "Materialize" in the UI too: every step in one process, one IB connection per run.
    executor=RUN_EXECUTOR,
)
