"""Where the work that grows runs (``IBKR_DASK_``): the Dask cluster the weekly backtest's
calibration fans its candidate replays out over (:mod:`ibkr_assets.resources.compute`).
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The address schemes a Dask scheduler listens on (``distributed.comm``'s backends).
SCHEDULER_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://")


class DaskSettings(BaseSettings):
    """The Dask cluster from ``IBKR_DASK_*``: a running scheduler, or a local cluster's size."""

    model_config = SettingsConfigDict(env_prefix="IBKR_DASK_", extra="ignore")

    scheduler: str | None = Field(
        None,
        description="address of a running Dask scheduler (tcp://host:8786) whose workers run the "
        "calibration's replays (each worker needs this package installed); unset = a local "
        "cluster of IBKR_DASK_WORKERS processes started for the run and closed after it",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="worker processes of the local cluster (one thread each); unset = one per "
        "core of the machine",
    )
    connect_seconds: float = Field(
        30.0,
        gt=0,
        description="how long to wait for IBKR_DASK_SCHEDULER to answer and for its first worker "
        "to join, seconds",
    )

    @field_validator("scheduler")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if not value:  # set but empty: as unset
            return None
        if not value.startswith(SCHEDULER_SCHEMES):
            raise ValueError(
                f"expected a scheduler address such as tcp://host:8786 (schemes: "
                f"{', '.join(SCHEDULER_SCHEMES)})"
            )
        return value
