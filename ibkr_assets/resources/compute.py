"""Where the work that grows runs: a Dask cluster (``dask.distributed``) behind a ``map``.

:func:`dask_map` opens a :class:`distributed.Client` on the scheduler ``IBKR_DASK_SCHEDULER``
names (a real cluster: ``dask scheduler`` and ``dask worker tcp://host:8786`` processes, each
worker with this package installed), or on a :class:`distributed.LocalCluster` of
``IBKR_DASK_WORKERS`` worker processes (default one per core, one thread each) started for the
work and closed after it; it yields a :class:`DaskMap`, which the pure layer takes as its
``map_fn`` (:func:`~ibkr_assets.quant.backtest.calibration.calibrate`): ``ibkr_assets.quant``
never imports Dask. Dask schedules; nothing here does but hand it tasks and gather them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from distributed import Client, Future, LocalCluster

from ibkr_assets.quant.parallel import MapFn
from ibkr_assets.settings import load_settings
from ibkr_assets.settings.compute import DaskSettings


class DaskMap:
    """``map(function, items)`` over a Dask cluster: one task per item, the results in the
    items' order (a list). A :func:`functools.partial`'s bound arguments (a replay's data, the
    same for every task) are scattered to the cluster once and shared by the tasks, not shipped
    with each. A task's exception is raised here as it was raised on its worker."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _scattered(self, value: Any) -> Future:
        # in a list: scatter would split a list, tuple or dict argument into its elements
        return self.client.scatter([value], hash=False)[0]

    def __call__(self, function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        target: Callable[..., Any] = function
        args: tuple[Any, ...] = ()
        keywords: dict[str, Any] = {}
        if isinstance(function, partial):
            target = function.func
            args = tuple(self._scattered(a) for a in function.args)
            keywords = {k: self._scattered(v) for k, v in function.keywords.items()}
        futures = [
            self.client.submit(target, *args, item, pure=False, **keywords) for item in items
        ]
        return self.client.gather(futures)


@contextmanager
def dask_client(settings: DaskSettings | None = None) -> Iterator[Client]:
    """A client of the scheduler ``IBKR_DASK_SCHEDULER`` names once a worker has joined it, or
    of a local cluster started here: ``IBKR_DASK_WORKERS`` processes (default one per core as
    Dask counts them: CPU affinity and cgroup quota), one thread each, no dashboard. Closed on
    leaving (the local cluster shut down). ``settings`` default to the environment's."""
    settings = settings or load_settings().checked("compute").compute
    if settings.scheduler is None:
        with (
            LocalCluster(
                n_workers=settings.workers,  # None: one per core
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    wait = settings.connect_seconds
    try:
        client = Client(settings.scheduler, timeout=wait)
    except OSError as exc:  # distributed raises OSError (and its TimeoutError) on no answer
        raise ConnectionError(
            f"IBKR_DASK_SCHEDULER={settings.scheduler}: no Dask scheduler answered within "
            f"{wait:g} s ({exc}); start one (`dask scheduler`, then `dask worker "
            f"{settings.scheduler}`) or unset IBKR_DASK_SCHEDULER for a local cluster"
        ) from exc
    with client:
        try:
            client.wait_for_workers(1, timeout=wait)
        except TimeoutError as exc:
            raise ConnectionError(
                f"IBKR_DASK_SCHEDULER={settings.scheduler}: the scheduler answered but no "
                f"worker joined it within {wait:g} s; start one (`dask worker "
                f"{settings.scheduler}`)"
            ) from exc
        yield client


@contextmanager
def dask_map(settings: DaskSettings | None = None) -> Iterator[DaskMap]:
    """A :class:`DaskMap` over :func:`dask_client`'s cluster, for the time of the block."""
    with dask_client(settings) as client:
        yield DaskMap(client)


@contextmanager
def symbol_map() -> Iterator[tuple[MapFn, int]]:
    """The ``map`` and the number of symbol groups the feature computation of a large universe
    uses (:func:`~ibkr_assets.quant.technical.technical_panel_by_symbols`): with
    ``IBKR_DASK_SCHEDULER`` set, the cluster's workers, one group each; unset, the builtin map in
    one group — a local cluster started for one pass of features costs more than it saves on
    one machine."""
    settings = load_settings().checked("compute").compute
    if settings.scheduler is None:
        yield map, 1
        return
    with dask_client(settings) as client:
        yield DaskMap(client), max(len(client.scheduler_info()["workers"]), 1)
