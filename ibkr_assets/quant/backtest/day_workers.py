"""The processes that prepare a replay's days (:class:`DayWorkers`): each session's
:class:`~ibkr_assets.quant.backtest.replay.DayInputs` do not depend on the book, so worker
processes compute them (:func:`~ibkr_assets.quant.backtest.replay.prepare_day`) while the main
process replays the book; :func:`prepare_days` reads them in order."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from itertools import repeat
from multiprocessing import get_context
from multiprocessing.queues import Queue
from pathlib import Path

from ibkr_assets.quant.backtest.replay import (
    DayInputs,
    DayParts,
    ReplayData,
    ReplaySettings,
    prepare_day,
    technical_windows,
    universe_closes,
)
from ibkr_assets.quant.evidence import ICPanel

_WORKER: dict[str, object] = {}


def _init_worker(handover: Queue) -> None:
    """A worker's start: once the caller has the data, the path of the file holding the replay's
    data and settings comes through ``handover`` (None: no replay, nothing to read); they are
    read, then what every day reads computed once: the technical windows, the close panel and
    the :class:`DayParts`."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # two cores: one solving in the parent, one preparing here
    path = handover.get()
    if path is None:
        return
    data, settings = pickle.loads(Path(path).read_bytes())
    _WORKER.update(
        data=data,
        settings=settings,
        technical=technical_windows(data, settings),
        closes=universe_closes(data),
        parts=DayParts.of(data, settings),
    )


def _started() -> None:
    """A no-op task: submitted once per worker so the workers start (and import) at once, not
    when the first day is asked for."""


def _prepare_in_worker(i: int, panel: ICPanel) -> DayInputs:
    day = prepare_day(
        _WORKER["data"],  # type: ignore[arg-type]
        i,
        _WORKER["technical"][i],  # type: ignore[index]
        _WORKER["settings"],  # type: ignore[arg-type]
        panel,
        _WORKER["closes"],  # type: ignore[arg-type]
        _WORKER["parts"],  # type: ignore[arg-type]
    )
    _ = day.model.loadings  # computed here, on the preparing core, and sent with the model
    return day


#: days_for(panel): every replayed session's DayInputs in order, read with the evidence ``panel``
DaysFor = Callable[[ICPanel], Iterator[DayInputs]]


class DayWorkers:
    """The processes that prepare a replay's days (:class:`DayInputs`), started early.

    Entered, ``workers`` processes start (``spawn``) and import while the caller loads the
    replay's data; :meth:`prepare` then hands them the data through a file written once (the
    caller never waits on a worker) and they compute what every day reads — the technical
    windows, the close panel, the :class:`DayParts` — while the caller goes on (measuring the
    evidence, typically); the days are then computed there while the caller consumes them. While
    they run this process's BLAS keeps one thread (two cores: one solving here, one preparing).
    With 0 workers, everything runs in this process when the days are read."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._stack = ExitStack()
        self._pool: ProcessPoolExecutor | None = None
        self._handover: Queue | None = None
        self._folder: Path | None = None
        self._handed = False

    def __enter__(self) -> DayWorkers:
        if self.workers <= 0:
            return self
        from threadpoolctl import threadpool_limits

        context = get_context("spawn")
        self._handover = context.Queue()
        self._folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory("-replay")))
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._handover,),
        )
        # leaving, the workers are told to stop and this process goes on: a worker's exit (its
        # copy of the data freed) took ~0.9 s of a 6-month 700-name replay, spent here waiting
        # (session 18); the interpreter's exit still joins them
        self._stack.callback(self._pool.shutdown, wait=False, cancel_futures=True)
        self._stack.callback(self._release)  # before the shutdown: workers waiting for data
        self._stack.enter_context(threadpool_limits(1))
        for _ in range(self.workers):
            self._pool.submit(_started)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _release(self) -> None:
        """Tell workers still waiting for data that none is coming."""
        if self._handover is not None and not self._handed:
            for _ in range(self.workers):
                self._handover.put(None)
            self._handed = True

    def prepare(self, data: ReplayData, settings: ReplaySettings) -> DaysFor:
        """Hand the workers ``data`` and ``settings`` (once); ``days_for(panel)`` then yields
        every replayed session's :class:`DayInputs` in order, read with the evidence ``panel``
        (from :func:`signal_panel`)."""
        if self._handed:
            raise ValueError("these day workers already prepare a replay: start others")
        sessions = range(len(data.sessions))
        if self._pool is None:
            if self.workers > 0:
                raise ValueError("the day workers are not started: use them in a with block")

            def in_process(panel: ICPanel) -> Iterator[DayInputs]:
                technical = technical_windows(data, settings)
                closes, parts = universe_closes(data), DayParts.of(data, settings)
                for i in sessions:
                    yield prepare_day(data, i, technical[i], settings, panel, closes, parts)

            self._handed = True
            return in_process
        data.compute_shared()  # once, here: the workers receive it with the data
        path = self._folder / "replay.pickle"
        path.write_bytes(pickle.dumps((data, settings), protocol=pickle.HIGHEST_PROTOCOL))
        for _ in range(self.workers):
            self._handover.put(str(path))
        self._handed = True
        pool = self._pool
        return lambda panel: pool.map(_prepare_in_worker, sessions, repeat(panel))


def prepare_days(
    data: ReplayData, settings: ReplaySettings, panel: ICPanel, workers: int = 1
) -> Iterator[DayInputs]:
    """Every replayed session's :class:`DayInputs`, in order (``panel`` from
    :func:`signal_panel`; ``workers`` as :class:`DayWorkers`)."""
    with DayWorkers(workers) as day_workers:
        yield from day_workers.prepare(data, settings)(panel)
