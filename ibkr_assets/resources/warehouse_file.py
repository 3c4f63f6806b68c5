"""How a process opens ``warehouse.duckdb``: attached, while in use, to one in-memory DuckDB
instance the process keeps.

``duckdb.connect(file)`` creates a database instance whenever no other connection of the process
holds the file, which costs ~20-30 ms of CPU (its catalog of built-in functions is built each
time); a daily job opens the warehouse ~80 times (every table written and read, the bar cache),
~2 s in all. Attaching the file to an instance that already exists costs ~2 ms. The file is
detached as soon as its last user in the process is done, so DuckDB's lock on it (one writing
process at a time) is held no longer than before: the MCP server or another run opens it
between two steps. The instance keeps the memory of its largest read or write for the next one
(a 5,000-stock daily job's peak: 3.66 -> 3.76 GiB); its allocator's background threads would
return it, but cost the 700-stock job ~1 s of re-faulted pages.

A file locked by another process is waited for, up to a minute; a file DuckDB cannot open for
another reason (damaged, truncated, not a DuckDB file) is a
:class:`~ibkr_assets.errors.ConfigurationError` naming it and what to do.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random_exponential

from ibkr_assets.errors import ConfigurationError


def _locked(exc: BaseException) -> bool:
    """True when DuckDB refused the file because another process holds its lock."""
    return isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc)


def _unusable(path: Path, exc: duckdb.Error) -> ConfigurationError:
    reason = str(exc).removeprefix("IO Error: ").rstrip("!.")
    return ConfigurationError(
        f"cannot open the warehouse {path}: {reason}. If it is damaged, move it aside "
        f"(mv {path} {path}.damaged) and run again: its tables are rebuilt as partitions are "
        "materialised again, and the daily-bar cache (cache.daily_bars) refetches from IB."
    )


def _quoted(path: Path) -> str:
    """``path`` as a SQL string literal (ATTACH takes no parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


class _Attachments:
    """This process's in-memory DuckDB instance and the files attached to it: each file's alias
    and how many users it has (threads may share a file; it is attached once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._home = duckdb.connect(":memory:")
        self._aliases = (f"warehouse_{n}" for n in itertools.count())
        self._attached: dict[Path, tuple[str, int]] = {}

    @property
    def pid(self) -> int:
        return self._pid

    def attach(self, path: Path, *, wait: bool) -> str:
        """Attach ``path`` (a new user of it): its alias. While another process holds its lock,
        waits up to a minute when ``wait``, else raises DuckDB's error at once."""

        @retry(  # each attempt under the lock, the waits between them not
            retry=retry_if_exception(lambda exc: wait and _locked(exc)),
            stop=stop_after_delay(60),
            wait=wait_random_exponential(multiplier=0.05, max=2),
            reraise=True,
        )
        def attach_once() -> str:
            with self._lock:
                alias, users = self._attached.get(path, ("", 0))
                if not users:
                    alias = next(self._aliases)
                    self._home.execute(f"ATTACH {_quoted(path)} AS {alias}")
                self._attached[path] = (alias, users + 1)
                return alias

        try:
            return attach_once()
        except duckdb.Error as exc:
            if _locked(exc):
                raise
            raise _unusable(path, exc) from None

    def detach(self, path: Path) -> None:
        """One user of ``path`` is done; the last one detaches it (DuckDB checkpoints the file
        and releases its lock)."""
        with self._lock:
            alias, users = self._attached[path]
            if users > 1:
                self._attached[path] = (alias, users - 1)
                return
            del self._attached[path]
            self._home.execute(f"DETACH {alias}")

    def cursor(self, alias: str) -> duckdb.DuckDBPyConnection:
        """A connection of its own (one per thread) whose unqualified names are in ``alias``."""
        conn = self._home.cursor()
        conn.execute(f"USE {alias}")
        return conn


_process: _Attachments | None = None
_process_lock = threading.Lock()


def _attachments() -> _Attachments:
    """This process's attachments (a forked child makes its own: DuckDB's instance is not
    shared across processes)."""
    global _process
    with _process_lock:
        if _process is None or _process.pid != os.getpid():
            _process = _Attachments()
        return _process


@contextmanager
def open_warehouse(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the DuckDB file ``path`` (created when missing; its folder must exist),
    its schemas and tables named as in a connection to the file itself. Waits up to a minute
    while another process holds the file's lock; a file DuckDB cannot open for another reason
    raises :class:`~ibkr_assets.errors.ConfigurationError` naming it and what to do."""
    path = path.resolve()
    process = _attachments()
    alias = process.attach(path, wait=True)
    try:
        conn = process.cursor(alias)
        try:
            yield conn
        finally:
            conn.close()
    finally:
        process.detach(path)


def check_warehouse(path: Path) -> None:
    """Raise :class:`~ibkr_assets.errors.ConfigurationError` when the DuckDB file ``path``
    exists and cannot be opened; a file locked by another process is taken as sound."""
    if not path.exists():
        return
    path = path.resolve()
    process = _attachments()
    try:
        process.attach(path, wait=False)
    except duckdb.Error as exc:
        if _locked(exc):
            return
        raise
    process.detach(path)
