"""The decision journal: an append-only, hash-chained record of what the pipeline decided and why.

Each daily run appends one row: when (UTC), which partition, the sha256 of the canonical JSON of
the targets and orders and of every file the run wrote, the top drivers, the ex-ante return,
volatility and CVaR, and whether the compliance gate passed. Every row also stores the previous
row's hash and its own hash over all its fields, so the rows form a chain in the manner of a
blockchain or Certificate Transparency log (Haber & Stornetta 1991, "How to time-stamp a digital
document", *J. Cryptology* 3(2)): editing any field, deleting a row or swapping two rows breaks
the chain at that row, and :func:`verify_journal` names the first broken one.

Storage: one parquet file per row, ``<seq:08d>_<partition>.parquet``, so file names sort in
append order and a row, once written, is never rewritten. Files are written to a temporary name
and hard-linked into place, which is atomic and refuses to overwrite an existing row, so two
writers racing for the same sequence number cannot both succeed.

Hashing needs one byte-exact representation: :func:`canonical_json` sorts keys, drops
whitespace, writes floats with 12 significant digits (so 0.1 + 0.2 and 0.3 agree), maps NaN to
null and numpy/pandas scalars, dates and frames to plain JSON. Scalar fields are stored as
parquet columns; dicts and lists are stored as their canonical JSON text.

Limit: deleting the *last* rows leaves a valid shorter chain. Anchor the head hash elsewhere
(e.g. the run's metadata in Dagster) and pass it as ``expected_head`` to detect truncation.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GENESIS_HASH = "0" * 64
_FILE_RE = re.compile(r"^(\d{8})_(.+)\.parquet$")
RESERVED = ("seq", "ts_utc", "prev_hash", "row_hash")


def _plain(obj: Any) -> Any:
    """``obj`` as plain JSON types with normalised floats."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if obj is pd.NaT:
        return None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating | decimal.Decimal):
        x = float(obj)
        if math.isnan(x):
            return None
        if math.isinf(x):
            raise ValueError("canonical_json: infinite float")
        x = float(f"{x:.12g}")
        if x == 0:
            return 0.0
        return int(x) if x.is_integer() and abs(x) < 2**53 else x
    if isinstance(obj, pd.Timestamp | dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, pd.DataFrame):
        return _plain(obj.to_dict(orient="split"))
    if isinstance(obj, pd.Series):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return sorted(_plain(v) for v in obj)
    if isinstance(obj, list | tuple | np.ndarray):
        return [_plain(v) for v in obj]
    raise TypeError(f"canonical_json: cannot encode {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, floats normalised (see module)."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    """Hex sha256 of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of :func:`canonical_json` of ``obj``."""
    return sha256_text(canonical_json(obj))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def decision_entry(
    partition: str,
    targets: Any,
    orders: Any,
    files: Mapping[str, str | os.PathLike[str]] | None = None,
    *,
    top_drivers: Any = None,
    ex_ante_return: float | None = None,
    ex_ante_volatility: float | None = None,
    ex_ante_cvar: float | None = None,
    constraints_passed: bool,
    **extra: Any,
) -> dict[str, Any]:
    """The daily pipeline's journal entry: sha256 of the canonical JSON of ``targets`` and
    ``orders``, sha256 of each written file (``files``: label -> path), the drivers, the
    ex-ante statistics and the gate's verdict, plus any ``extra`` fields."""
    return {
        "partition": partition,
        "targets_sha256": sha256_json(targets),
        "orders_sha256": sha256_json(orders),
        "files_sha256": {k: sha256_file(v) for k, v in sorted((files or {}).items())},
        "top_drivers": top_drivers,
        "ex_ante_return": ex_ante_return,
        "ex_ante_volatility": ex_ante_volatility,
        "ex_ante_cvar": ex_ante_cvar,
        "constraints_passed": bool(constraints_passed),
        **extra,
    }


def _row_hash(row: Mapping[str, Any]) -> str:
    return sha256_json({k: v for k, v in row.items() if k != "row_hash"})


def _files(directory: Path) -> list[tuple[int, Path]]:
    if not directory.exists():
        return []
    out = []
    for p in directory.iterdir():
        m = _FILE_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out, key=lambda t: t[1].name)


def _read_row(path: Path) -> dict[str, Any]:
    frame = pd.read_parquet(path)
    if len(frame) != 1:
        raise ValueError(f"{path.name}: expected one row, found {len(frame)}")
    return {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}


def _stored(value: Any) -> Any:
    plain = _plain(value)
    return canonical_json(plain) if isinstance(plain, dict | list) else plain


def append_entry(
    directory: str | os.PathLike[str],
    entry: Mapping[str, Any],
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Append ``entry`` (must contain ``partition``) as the next chained row; return the row.

    Scalars are stored as columns, dicts/lists as canonical JSON text. The keys
    ``seq``, ``ts_utc``, ``prev_hash`` and ``row_hash`` are set here and may not be passed.
    """
    clash = [k for k in RESERVED if k in entry]
    if clash:
        raise ValueError(f"journal entry may not set {clash}")
    partition = str(entry.get("partition") or "")
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", partition):
        raise ValueError(f"journal entry needs a partition of [A-Za-z0-9_.:-], got {partition!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = _files(directory)
    if files:
        last = _read_row(files[-1][1])
        seq, prev = int(last["seq"]) + 1, str(last["row_hash"])
    else:
        seq, prev = 0, GENESIS_HASH
    ts = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    row: dict[str, Any] = {
        "seq": seq,
        "ts_utc": ts.isoformat(timespec="microseconds"),
        **{str(k): _stored(v) for k, v in entry.items()},
        "prev_hash": prev,
    }
    row["row_hash"] = _row_hash({k: _plain(v) for k, v in row.items()})
    target = directory / f"{seq:08d}_{partition.replace(':', '-')}.parquet"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".parquet")
    os.close(fd)
    try:
        pd.DataFrame([row]).to_parquet(tmp, index=False)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise RuntimeError(
                f"journal row {seq} already exists ({target.name}): another writer appended "
                "concurrently; retry"
            ) from None
    finally:
        os.unlink(tmp)
    return row


def read_journal(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """All rows in append order (empty frame if there is no journal yet)."""
    rows = [_read_row(p) for _, p in _files(Path(directory))]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class VerifyResult:
    """``ok`` or the first bad row (its position in file order) and why."""

    ok: bool
    first_bad_row: int | None
    reason: str
    rows: int


def verify_journal(
    directory: str | os.PathLike[str], expected_head: str | None = None
) -> VerifyResult:
    """Walk the chain; report the first row that was changed, removed or reordered."""
    files = _files(Path(directory))
    prev = GENESIS_HASH
    for position, (file_seq, path) in enumerate(files):
        try:
            row = _read_row(path)
        except Exception as exc:
            return VerifyResult(False, position, f"{path.name}: unreadable ({exc})", len(files))
        stored = row.get("row_hash")
        if _row_hash(row) != stored:
            return VerifyResult(
                False, position, f"{path.name}: contents changed (row hash mismatch)", len(files)
            )
        if row.get("seq") != position or file_seq != position:
            return VerifyResult(
                False,
                position,
                f"{path.name}: sequence {row.get('seq')} at position {position} "
                "(a row was removed or rows were reordered)",
                len(files),
            )
        if row.get("prev_hash") != prev:
            return VerifyResult(
                False,
                position,
                f"{path.name}: prev_hash does not match the previous row "
                "(a row was removed, replaced or reordered)",
                len(files),
            )
        prev = str(stored)
    if expected_head is not None and prev != expected_head:
        return VerifyResult(
            False,
            len(files),
            "head hash differs from the expected one (rows truncated?)",
            len(files),
        )
    return VerifyResult(True, None, f"{len(files)} rows, chain intact", len(files))
