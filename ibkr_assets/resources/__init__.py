"""Dagster resources: IB broker, storage, fundamentals, sentiment, alerts."""

from __future__ import annotations

from typing import Any

from ibkr_assets.resources.ib import IBResource


def build_resources() -> dict[str, Any]:
    """The resources of the code location, configured from the environment at run time."""
    return {"ib": IBResource.from_env()}
