"""Watchlists, kept with the paper accounts in ``paper.sqlite`` (one login's lists: the
Client Portal gateway, the in-process sim backend and any other process on the file share them).

A user list has an id of digits only, unique among the lists (IB: "Must be a number, digits 0-9
only"); saving under an id that exists replaces that list (IB: a POST with an existing id
overwrites it). IB also keeps lists of its own, read-only, which ``GET /iserver/watchlists``
shows unless asked for user lists only; the simulator keeps one, :data:`HOLDINGS_ID`
("Holdings": every contract held in any paper account, by conid; its id is the simulator's own,
not digits, so no user list can take it).

Errors are :class:`~ibkr_spec.errors.IBError`: 321 for a bad id or name, an unknown or read-only
list; 200 for an unknown conid (nothing is saved: IB refuses a list with a bad row whole).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ibkr_sim.exchange.hours import utc
from ibkr_sim.exchange.storage import Store, Tx, from_us, to_us
from ibkr_sim.universe import Universe
from ibkr_spec.errors import INVALID_REQUEST, IBError

#: the id of IB's read-only "Holdings" list in the simulator
HOLDINGS_ID = "IB_HOLDINGS"
HOLDINGS_NAME = "Holdings"


@dataclass(frozen=True)
class WatchlistInfo:
    """A watchlist: its contracts by conid in the order given, when it last changed (UTC)."""

    watchlist_id: str
    name: str
    conids: tuple[int, ...]
    read_only: bool
    modified: datetime


class WatchlistBook:
    """The login's watchlists, over the exchange's state file."""

    def __init__(self, store: Store, universe: Universe, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._universe = universe
        self._clock = clock

    def watchlists(self) -> list[WatchlistInfo]:
        """IB's read-only lists first, then the user's by id (numerically)."""
        with self._store.tx() as tx:
            users = [self._user(r) for r in tx.conn.execute("SELECT * FROM watchlists")]
            return [self._holdings(tx), *sorted(users, key=lambda w: int(w.watchlist_id))]

    def watchlist(self, watchlist_id: str) -> WatchlistInfo:
        """One list; IBError 321 naming the known ids when there is none."""
        with self._store.tx() as tx:
            return self._find(tx, watchlist_id)

    def save(
        self, name: str, conids: Sequence[int], watchlist_id: str | None = None
    ) -> WatchlistInfo:
        """Create a list (the next free id when ``watchlist_id`` is None) or replace one."""
        if not name.strip():
            raise IBError(INVALID_REQUEST, "a watchlist needs a name")
        if watchlist_id == HOLDINGS_ID:
            raise IBError(INVALID_REQUEST, f"watchlist {HOLDINGS_ID} ({HOLDINGS_NAME}) is IB's own")
        if watchlist_id is not None and not watchlist_id.isdigit():
            raise IBError(INVALID_REQUEST, f"watchlist id {watchlist_id!r} must be digits 0-9 only")
        unique = list(dict.fromkeys(int(c) for c in conids))
        for conid in unique:
            self._universe.by_conid(conid)  # IBError 200 for a bad row: nothing saved
        at = utc(self._clock())
        with self._store.tx() as tx:
            if watchlist_id is None:
                row = tx.conn.execute(
                    "SELECT coalesce(max(CAST(watchlist_id AS INTEGER)), 0) FROM watchlists"
                ).fetchone()
                watchlist_id = str(row[0] + 1)
            tx.conn.execute(
                "INSERT OR REPLACE INTO watchlists VALUES (?, ?, ?, ?)",
                (watchlist_id, name.strip(), json.dumps(unique), to_us(at)),
            )
            return self._find(tx, watchlist_id)

    def delete(self, watchlist_id: str) -> None:
        """Remove a user list; IBError 321 for IB's own or an unknown one."""
        with self._store.tx() as tx:
            if self._find(tx, watchlist_id).read_only:
                raise IBError(
                    INVALID_REQUEST, f"watchlist {watchlist_id} is IB's own and cannot be deleted"
                )
            tx.conn.execute("DELETE FROM watchlists WHERE watchlist_id = ?", (watchlist_id,))

    # -- internals ---------------------------------------------------------------------------
    def _find(self, tx: Tx, watchlist_id: str) -> WatchlistInfo:
        if watchlist_id == HOLDINGS_ID:
            return self._holdings(tx)
        row = tx.conn.execute(
            "SELECT * FROM watchlists WHERE watchlist_id = ?", (str(watchlist_id),)
        ).fetchone()
        if row is None:
            known = [HOLDINGS_ID] + [
                r[0] for r in tx.conn.execute("SELECT watchlist_id FROM watchlists")
            ]
            raise IBError(
                INVALID_REQUEST,
                f"no watchlist with id {watchlist_id!r} (known: {', '.join(known)})",
            )
        return self._user(row)

    @staticmethod
    def _user(row: sqlite3.Row) -> WatchlistInfo:
        return WatchlistInfo(
            watchlist_id=row["watchlist_id"],
            name=row["name"],
            conids=tuple(json.loads(row["conids"])),
            read_only=False,
            modified=from_us(row["modified_us"]),
        )

    def _holdings(self, tx: Tx) -> WatchlistInfo:
        held = tx.conn.execute(
            "SELECT DISTINCT conid FROM positions WHERE quantity != 0 ORDER BY conid"
        )
        return WatchlistInfo(
            watchlist_id=HOLDINGS_ID,
            name=HOLDINGS_NAME,
            conids=tuple(r[0] for r in held),
            read_only=True,
            modified=utc(self._clock()),
        )


__all__ = ["HOLDINGS_ID", "HOLDINGS_NAME", "WatchlistBook", "WatchlistInfo"]
