"""Signing: the key rows and the head file are signed with, HMAC-SHA256 (RFC 2104), and the head
file ``<journal dir>.head.json`` that anchors the last row outside the rows.

The key is the caller's: quant reads no settings, so whoever appends or verifies passes a
:class:`JournalKey` (:meth:`ibkr_assets.settings.JournalSettings.key` resolves it from
``IBKR_JOURNAL_KEY`` or its key file)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ibkr_assets.quant.journal.canonical import canonical_json


class JournalKeyError(RuntimeError):
    """No usable journal key: rows can be neither signed nor authenticated."""


@dataclass(frozen=True)
class JournalKey:
    """The key the journal is signed with, as the caller resolved it: ``secret`` (never shown
    by ``repr``, never stored in the journal), or None and ``missing``: why there is none and
    what to set."""

    secret: bytes | None = field(repr=False)
    missing: str = ""

    def required(self) -> bytes:
        """The secret; raises :class:`JournalKeyError` with ``missing`` when there is none."""
        if self.secret is None:
            raise JournalKeyError(self.missing)
        return self.secret


def sign(key: bytes, kind: str, text: str) -> str:
    """Hex HMAC-SHA256 of ``text`` under ``key``; ``kind`` separates row and head signatures."""
    message = f"ibkr-agent journal {kind}\n{text}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed(key: bytes, kind: str, text: str, signature: Any) -> bool:
    """True when ``signature`` is :func:`sign` of ``text`` (compared in constant time)."""
    return isinstance(signature, str) and hmac.compare_digest(signature, sign(key, kind, text))


def head_file(directory: str | os.PathLike[str]) -> Path:
    """``<journal dir>.head.json``: beside the journal directory, not in it
    (``data/decision_log`` -> ``data/decision_log.head.json``)."""
    resolved = Path(directory).resolve()
    return resolved.with_name(f"{resolved.name}.head.json")


_HEAD_FIELDS = ("seq", "row_hash", "ts_utc")


def write_head(directory: Path, key: bytes, row: Mapping[str, Any]) -> None:
    """Replace the head file atomically with the signed ``seq`` and ``row_hash`` of ``row``."""
    body = {k: row[k] for k in _HEAD_FIELDS}
    head = {**body, "hmac": sign(key, "head", canonical_json(body))}
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


def head_problem(
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
    if not body or not signed(key, "head", canonical_json(body), head.get("hmac")):
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
