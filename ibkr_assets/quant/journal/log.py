"""The log: one parquet file per row, ``<seq:08d>_<partition>.parquet``, so file names sort in
append order and a row, once written, is never rewritten.

Appends hold an exclusive ``fcntl.flock`` on ``<journal dir>/.lock`` from reading the last row to
replacing the head file, so concurrent writers (several processes) serialise; rows are written to
a temporary name and hard-linked into place, which is atomic and refuses to overwrite an existing
row. Scalar fields are stored as parquet columns; dicts and lists as their canonical JSON text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ibkr_assets.quant.journal.canonical import canonical_json, plain, sha256_json
from ibkr_assets.quant.journal.signing import (
    JournalKey,
    head_file,
    head_problem,
    sign,
    signed,
    write_head,
)

GENESIS_HASH = "0" * 64
_FILE_RE = re.compile(r"^(\d{8})_(.+)\.parquet$")
RESERVED = ("seq", "ts_utc", "prev_hash", "row_hash", "row_hmac")
_LOCK_NAME = ".lock"  # a dot-file: pandas/pyarrow skip it when reading the directory


class JournalTampered(RuntimeError):
    """The journal does not match its head file: appending would hide the damage."""


def row_hash(row: Mapping[str, Any]) -> str:
    """sha256 of a row's canonical JSON without its own ``row_hash`` and ``row_hmac``."""
    return sha256_json({k: v for k, v in row.items() if k not in ("row_hash", "row_hmac")})


def row_files(directory: Path) -> list[tuple[int, Path]]:
    """``(seq, path)`` of every row file in ``directory``, in file-name (append) order."""
    if not directory.exists():
        return []
    out = []
    for p in directory.iterdir():
        m = _FILE_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out, key=lambda t: t[1].name)


def read_row(path: Path) -> dict[str, Any]:
    """The one row a row file holds, as plain JSON types."""
    frame = pd.read_parquet(path)
    if len(frame) != 1:
        raise ValueError(f"{path.name}: expected one row, found {len(frame)}")
    return {k: plain(v) for k, v in frame.iloc[0].to_dict().items()}


def _stored(value: Any) -> Any:
    stored = plain(value)
    return canonical_json(stored) if isinstance(stored, dict | list) else stored


@contextlib.contextmanager
def locked(directory: Path, exclusive: bool) -> Iterator[None]:
    """Hold ``flock`` on ``<directory>/.lock``: exclusive to append, shared to read a consistent
    journal and head. A reader that cannot create the lock file (no journal directory, or a
    read-only one) reads without it."""
    try:
        fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        if exclusive:
            raise
        fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


# -- append, read, verify -----------------------------------------------------------------------


def append_entry(
    directory: str | os.PathLike[str],
    entry: Mapping[str, Any],
    now: dt.datetime | None = None,
    *,
    key: JournalKey,
) -> dict[str, Any]:
    """Append ``entry`` (must contain ``partition``) as the next chained, signed row; return it.

    Scalars are stored as columns, dicts/lists as canonical JSON text. The keys ``seq``,
    ``ts_utc``, ``prev_hash``, ``row_hash`` and ``row_hmac`` are set here and may not be passed.
    Raises :class:`JournalKeyError` when ``key`` has no secret (a caller creates a key only for
    a new journal, :func:`journal_is_new`: never a new key for old rows), and
    :class:`JournalTampered`, writing nothing, when the journal does not match its head file or
    its last row is not signed: appending would hide the damage.
    """
    clash = [k for k in RESERVED if k in entry]
    if clash:
        raise ValueError(f"journal entry may not set {clash}")
    partition = str(entry.get("partition") or "")
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", partition):
        raise ValueError(f"journal entry needs a partition of [A-Za-z0-9_.:-], got {partition!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with locked(directory, exclusive=True):
        files = row_files(directory)
        secret = key.required()
        last = read_row(files[-1][1]) if files else None
        problem = head_problem(
            directory, secret, len(files), lambda s: read_row(files[s][1]).get("row_hash")
        )
        if problem is None and last is not None:
            if row_hash(last) != last.get("row_hash"):
                problem = ("contents", f"the last row {files[-1][1].name} was changed")
            elif not signed(secret, "row", str(last["row_hash"]), last.get("row_hmac")):
                problem = ("signature", f"the last row {files[-1][1].name} is not signed")
        if problem is not None:
            raise JournalTampered(
                f"refusing to append to {directory}: {problem[1]}; run `ibkr-agent journal "
                "verify`, and to start a new journal move this one (and its head file) aside"
            )
        seq, prev = (int(last["seq"]) + 1, str(last["row_hash"])) if last else (0, GENESIS_HASH)
        ts = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        row: dict[str, Any] = {
            "seq": seq,
            "ts_utc": ts.isoformat(timespec="microseconds"),
            **{str(k): _stored(v) for k, v in entry.items()},
            "prev_hash": prev,
        }
        row["row_hash"] = row_hash({k: plain(v) for k, v in row.items()})
        row["row_hmac"] = sign(secret, "row", row["row_hash"])
        target = directory / f"{seq:08d}_{partition.replace(':', '-')}.parquet"
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            pd.DataFrame([row]).to_parquet(tmp, index=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise RuntimeError(
                    f"journal row {seq} already exists ({target.name}): another writer appended "
                    "without the journal lock; retry"
                ) from None
        finally:
            os.unlink(tmp)
        write_head(directory, secret, row)
    return row


def journal_is_new(directory: str | os.PathLike[str]) -> bool:
    """True when ``directory`` holds no row and has no head file: the only journal a new key may
    be created for."""
    return not row_files(Path(directory)) and not head_file(directory).exists()


def read_journal(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """All rows in append order (empty frame if there is no journal yet). Reading does not
    authenticate: use :func:`verify_journal` for that."""
    rows = [read_row(p) for _, p in row_files(Path(directory))]
    return pd.DataFrame(rows)
