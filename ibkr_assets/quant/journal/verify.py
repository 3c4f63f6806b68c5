"""Verification: authenticate every row, walk the chain, check the head file, an expected head
and the row hashes recorded outside the journal (:class:`Anchor`); report the first failure."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ibkr_assets.quant.journal.log import (
    GENESIS_HASH,
    journal_is_new,
    locked,
    read_row,
    row_files,
    row_hash,
)
from ibkr_assets.quant.journal.signing import JournalKey, head_file, head_problem, signed


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
    key: JournalKey,
    anchors: Iterable[Anchor] = (),
) -> VerifyResult:
    """Authenticate every row and walk the chain; check the head file, ``expected_head`` and
    every outside ``anchor``. Reports the first failing check: an edited, unsigned (forged or
    rewritten), removed or reordered row, rows deleted from the end, a missing anchored row.
    Without a ``key`` secret the journal is not "intact" (check ``key``, naming what to set)
    unless it is new (:func:`journal_is_new`) and no anchor expects a row."""
    directory = Path(directory)
    anchors = list(anchors)
    if journal_is_new(directory) and not anchors:
        return VerifyResult(True, None, "no rows yet", 0)
    secret = key.secret
    if secret is None:
        rows = len(row_files(directory))
        return VerifyResult(
            False, None, f"{key.missing}; rows cannot be authenticated", rows, "key"
        )
    with locked(directory, exclusive=False):
        files = row_files(directory)
        n = len(files)
        prev = GENESIS_HASH
        hashes: list[str] = []
        for position, (file_seq, path) in enumerate(files):

            def bad(check: str, why: str, position: int = position, name: str = path.name):
                return VerifyResult(False, position, f"{name}: {why}", n, check)

            try:
                row = read_row(path)
            except Exception as exc:  # any parquet/arrow error: the file is not a journal row
                return bad("unreadable", f"unreadable ({exc})")
            stored = row.get("row_hash")
            if row_hash(row) != stored:
                return bad("contents", "contents changed (row hash mismatch)")
            if not signed(secret, "row", str(stored), row.get("row_hmac")):
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
        problem = head_problem(directory, secret, n, hashes.__getitem__)
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
