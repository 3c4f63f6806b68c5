"""The decision journal: an append-only, authenticated record of what the pipeline decided and why.

Each daily run appends one row: when (UTC), which partition, the sha256 of the canonical JSON of
the targets and orders and of every file the run wrote, the top drivers, the ex-ante return,
volatility and CVaR, and whether the compliance gate passed. Every row also stores the previous
row's hash and its own hash over all its fields, so the rows form a chain in the manner of a
blockchain or Certificate Transparency log (Haber & Stornetta 1991, "How to time-stamp a digital
document", *J. Cryptology* 3(2)): editing any field, deleting a row or swapping two rows breaks
the chain at that row, and :func:`verify_journal` names the first broken one.

A hash chain alone can be rebuilt by anyone who can write the files. Two things make a rewrite
detectable:

* **authentication**: each row carries ``row_hmac``, HMAC-SHA256 (RFC 2104) of its hash under a
  secret key kept *outside* the journal — ``IBKR_JOURNAL_KEY`` (the key itself) or the file named
  by ``IBKR_JOURNAL_KEY_FILE`` (default ``$XDG_CONFIG_HOME/ibkr-agent/journal.key``, i.e.
  ``~/.config/ibkr-agent/journal.key``, created with mode 0600 by the first append to an empty
  journal). Without the key no row can be forged, and a full rewrite with recomputed sha256
  hashes fails every row's HMAC;
* **the head, anchored outside the rows**: ``<journal dir>.head.json`` beside the directory
  (``data/decision_log.head.json``) holds the last row's sequence number and hash, signed with
  the same key and replaced atomically on each append, so deleting the last rows — or all of
  them — no longer leaves a valid shorter chain. Dagster's recorded heads (the
  ``decision_journal`` materialisations' ``row_hash``) are a second anchor, passed to
  :func:`verify_journal` as ``anchors`` (:mod:`ibkr_assets.journal_verify` reads them).

Limits: a key holder can rewrite everything (keep the key on another machine or in a secret
store for real protection); an older head file put back together with the matching truncation
is caught only by the Dagster anchors.

Storage: one parquet file per row, ``<seq:08d>_<partition>.parquet``, so file names sort in
append order and a row, once written, is never rewritten. Appends hold an exclusive
``fcntl.flock`` on ``<journal dir>/.lock`` from reading the last row to replacing the head file,
so concurrent writers (several processes) serialise; rows are written to a temporary name and
hard-linked into place, which is atomic and refuses to overwrite an existing row.

Hashing needs one byte-exact representation: :func:`canonical_json` sorts keys, drops
whitespace, writes floats with 12 significant digits (so 0.1 + 0.2 and 0.3 agree), maps NaN to
null and numpy/pandas scalars, dates and frames to plain JSON. Scalar fields are stored as
parquet columns; dicts and lists are stored as their canonical JSON text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import fcntl
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GENESIS_HASH = "0" * 64
_FILE_RE = re.compile(r"^(\d{8})_(.+)\.parquet$")
RESERVED = ("seq", "ts_utc", "prev_hash", "row_hash", "row_hmac")
#: The environment variable holding the journal key itself (at least ``MIN_KEY_CHARS``).
KEY_ENV = "IBKR_JOURNAL_KEY"
#: The environment variable naming the key file (default :func:`default_key_file`).
KEY_FILE_ENV = "IBKR_JOURNAL_KEY_FILE"
MIN_KEY_CHARS = 32
_LOCK_NAME = ".lock"  # a dot-file: pandas/pyarrow skip it when reading the directory


class JournalKeyError(RuntimeError):
    """No usable journal key: rows can be neither signed nor authenticated."""


class JournalTampered(RuntimeError):
    """The journal does not match its head file: appending would hide the damage."""


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


# -- the key ------------------------------------------------------------------------------------


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/ibkr-agent/journal.key`` (``~/.config/ibkr-agent/journal.key`` when
    ``XDG_CONFIG_HOME`` is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ibkr-agent" / "journal.key"


def key_file() -> Path:
    """The key file: ``IBKR_JOURNAL_KEY_FILE``, else :func:`default_key_file`."""
    named = os.environ.get(KEY_FILE_ENV, "").strip()
    return Path(named).expanduser() if named else default_key_file()


def _create_key_file(path: Path) -> None:
    """A new random 256-bit key (hex) at ``path``, mode 0600. Written to a temporary file and
    hard-linked into place, so two first appends racing end up with one key, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".journal-key-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def journal_key(create: bool = False) -> bytes:
    """The key rows are signed with, read at call time and never logged or stored in the
    journal: ``IBKR_JOURNAL_KEY``, else the contents of :func:`key_file` (created first when
    ``create``; the journal creates it only for its first row).

    Raises :class:`JournalKeyError` naming what to set when there is no key, or when the key is
    shorter than ``MIN_KEY_CHARS`` characters."""
    text = os.environ.get(KEY_ENV, "").strip()
    source = KEY_ENV
    if not text:
        path = key_file()
        source = f"the key file {path}"
        if not path.exists():
            if not create:
                raise JournalKeyError(
                    f"no journal key: {KEY_ENV} is not set and the key file {path} does not "
                    f"exist; set {KEY_ENV} or {KEY_FILE_ENV} to the key that signed this journal"
                )
            _create_key_file(path)
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise JournalKeyError(f"{source} cannot be read: {exc.strerror}") from None
    if len(text) < MIN_KEY_CHARS:
        raise JournalKeyError(
            f"the journal key in {source} has {len(text)} characters, at least {MIN_KEY_CHARS} "
            "are needed (e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return text.encode("utf-8")


def _sign(key: bytes, kind: str, text: str) -> str:
    """Hex HMAC-SHA256 of ``text`` under ``key``; ``kind`` separates row and head signatures."""
    message = f"ibkr-agent journal {kind}\n{text}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _signed(key: bytes, kind: str, text: str, signature: Any) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(signature, _sign(key, kind, text))


# -- rows, head file and lock -------------------------------------------------------------------


def _row_hash(row: Mapping[str, Any]) -> str:
    return sha256_json({k: v for k, v in row.items() if k not in ("row_hash", "row_hmac")})


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


def head_file(directory: str | os.PathLike[str]) -> Path:
    """``<journal dir>.head.json``: beside the journal directory, not in it
    (``data/decision_log`` -> ``data/decision_log.head.json``)."""
    resolved = Path(directory).resolve()
    return resolved.with_name(f"{resolved.name}.head.json")


_HEAD_FIELDS = ("seq", "row_hash", "ts_utc")


def _write_head(directory: Path, key: bytes, row: Mapping[str, Any]) -> None:
    """Replace the head file atomically with the signed ``seq`` and ``row_hash`` of ``row``."""
    body = {k: row[k] for k in _HEAD_FIELDS}
    head = {**body, "hmac": _sign(key, "head", canonical_json(body))}
    path = head_file(directory)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(head, indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _head_problem(
    directory: Path, key: bytes, rows: int, hash_at: Callable[[int], Any]
) -> tuple[str, str] | None:
    """``(check, reason)`` when a journal of ``rows`` rows (``hash_at(seq)``: the stored hash of
    row ``seq``) does not match its head file; None when it does (or neither exists)."""
    path = head_file(directory)
    try:
        head = json.loads(path.read_text())
    except FileNotFoundError:
        if not rows:
            return None
        return (
            "head",
            f"the head file {path} is missing for a journal of {rows} rows: without it the "
            "deletion of the last rows cannot be detected (restore it from a backup)",
        )
    except (OSError, ValueError) as exc:
        return "head", f"the head file {path} cannot be read ({exc})"
    body = {k: head.get(k) for k in _HEAD_FIELDS} if isinstance(head, dict) else {}
    if not body or not _signed(key, "head", canonical_json(body), head.get("hmac")):
        return "head", f"the head file {path} is not signed with the journal key (edited or forged)"
    seq = int(body["seq"])
    if seq >= rows:
        return (
            "truncated",
            f"the head file {path.name} says the journal has {seq + 1} rows, it has {rows}: "
            "rows were deleted from the end",
        )
    if hash_at(seq) != body["row_hash"]:
        return "head", f"row {seq} is not the row the head file {path.name} records (replaced)"
    return None


@contextlib.contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
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
    key: bytes | None = None,
) -> dict[str, Any]:
    """Append ``entry`` (must contain ``partition``) as the next chained, signed row; return it.

    Scalars are stored as columns, dicts/lists as canonical JSON text. The keys ``seq``,
    ``ts_utc``, ``prev_hash``, ``row_hash`` and ``row_hmac`` are set here and may not be passed.
    ``key`` defaults to :func:`journal_key` (created for the first row of an empty journal).
    Raises :class:`JournalTampered`, writing nothing, when the journal does not match its head
    file or its last row is not signed: appending would hide the damage.
    """
    clash = [k for k in RESERVED if k in entry]
    if clash:
        raise ValueError(f"journal entry may not set {clash}")
    partition = str(entry.get("partition") or "")
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", partition):
        raise ValueError(f"journal entry needs a partition of [A-Za-z0-9_.:-], got {partition!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory, exclusive=True):
        files = _files(directory)
        if key is None:
            key = journal_key(create=not files and not head_file(directory).exists())
        last = _read_row(files[-1][1]) if files else None
        problem = _head_problem(
            directory, key, len(files), lambda s: _read_row(files[s][1]).get("row_hash")
        )
        if problem is None and last is not None:
            if _row_hash(last) != last.get("row_hash"):
                problem = ("contents", f"the last row {files[-1][1].name} was changed")
            elif not _signed(key, "row", str(last["row_hash"]), last.get("row_hmac")):
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
        row["row_hash"] = _row_hash({k: _plain(v) for k, v in row.items()})
        row["row_hmac"] = _sign(key, "row", row["row_hash"])
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
        _write_head(directory, key, row)
    return row


def read_journal(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """All rows in append order (empty frame if there is no journal yet). Reading does not
    authenticate: use :func:`verify_journal` for that."""
    rows = [_read_row(p) for _, p in _files(Path(directory))]
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Anchor:
    """A row hash recorded outside the journal (e.g. a Dagster materialisation's ``row_hash``)
    that the journal must still contain; ``source`` says where it was recorded."""

    row_hash: str
    source: str


@dataclass(frozen=True)
class VerifyResult:
    """``ok``, or the check that failed (``check``), the first bad row (its position in file
    order, when one row is to blame) and why.

    Checks: ``key`` (no key to authenticate with), ``unreadable``, ``contents`` (a row's hash),
    ``signature`` (a row's HMAC), ``sequence`` (rows removed or reordered), ``chain``
    (``prev_hash``), ``head`` and ``truncated`` (the head file), ``expected_head``, ``anchor``
    (a row recorded outside the journal is missing)."""

    ok: bool
    first_bad_row: int | None
    reason: str
    rows: int
    check: str | None = None


def verify_journal(
    directory: str | os.PathLike[str],
    expected_head: str | None = None,
    *,
    key: bytes | None = None,
    anchors: Iterable[Anchor] = (),
) -> VerifyResult:
    """Authenticate every row and walk the chain; check the head file, ``expected_head`` and
    every outside ``anchor``. Reports the first failing check: an edited, unsigned (forged or
    rewritten), removed or reordered row, rows deleted from the end, a missing anchored row.
    ``key`` defaults to :func:`journal_key`; without one the journal is not "intact"."""
    directory = Path(directory)
    anchors = list(anchors)
    if not _files(directory) and not head_file(directory).exists() and not anchors:
        return VerifyResult(True, None, "no rows yet", 0)
    if key is None:
        try:
            key = journal_key()
        except JournalKeyError as exc:
            rows = len(_files(directory))
            return VerifyResult(False, None, f"{exc}; rows cannot be authenticated", rows, "key")
    with _locked(directory, exclusive=False):
        files = _files(directory)
        n = len(files)
        prev = GENESIS_HASH
        hashes: list[str] = []
        for position, (file_seq, path) in enumerate(files):

            def bad(check: str, why: str, position: int = position, name: str = path.name):
                return VerifyResult(False, position, f"{name}: {why}", n, check)

            try:
                row = _read_row(path)
            except Exception as exc:  # any parquet/arrow error: the file is not a journal row
                return bad("unreadable", f"unreadable ({exc})")
            stored = row.get("row_hash")
            if _row_hash(row) != stored:
                return bad("contents", "contents changed (row hash mismatch)")
            if not _signed(key, "row", str(stored), row.get("row_hmac")):
                return bad(
                    "signature",
                    "not signed with the journal key (HMAC missing or wrong): a forged or "
                    "rewritten row, or the key is not the one that signed this journal",
                )
            if row.get("seq") != position or file_seq != position:
                return bad(
                    "sequence",
                    f"sequence {row.get('seq')} at position {position} "
                    "(a row was removed or rows were reordered)",
                )
            if row.get("prev_hash") != prev:
                return bad(
                    "chain",
                    "prev_hash does not match the previous row "
                    "(a row was removed, replaced or reordered)",
                )
            prev = str(stored)
            hashes.append(prev)
        problem = _head_problem(directory, key, n, hashes.__getitem__)
        if problem is not None:
            return VerifyResult(False, None, problem[1], n, problem[0])
        behind = n - 1 - int(json.loads(head_file(directory).read_text())["seq"]) if n else 0
    if expected_head is not None and prev != expected_head:
        return VerifyResult(
            False,
            n,
            "head hash differs from the expected one (rows truncated?)",
            n,
            "expected_head",
        )
    present = set(hashes)
    for anchor in anchors:
        if anchor.row_hash not in present:
            return VerifyResult(
                False,
                None,
                f"{anchor.source} recorded row {anchor.row_hash[:16]}..., which the journal "
                "does not contain (rows deleted, or the journal rewritten)",
                n,
                "anchor",
            )
    reason = f"{n} rows, chain intact, every row signed, head file matches"
    if anchors:
        reason += f", {len(present & {a.row_hash for a in anchors})} rows recorded outside found"
    if behind:
        reason += f" ({behind} signed rows after the head: an append stopped before its update)"
    return VerifyResult(True, None, reason, n)
