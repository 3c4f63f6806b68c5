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
  secret key kept *outside* the journal, which the caller passes (:class:`JournalKey`; quant
  reads no settings): :meth:`ibkr_assets.settings.JournalSettings.key` reads
  ``IBKR_JOURNAL_KEY`` (the key itself) or the file named by ``IBKR_JOURNAL_KEY_FILE`` (default
  ``$XDG_CONFIG_HOME/ibkr-agent/journal.key``, i.e. ``~/.config/ibkr-agent/journal.key``,
  created with mode 0600 for the first append to a new journal). Without the key no row can be
  forged, and a full rewrite with recomputed sha256 hashes fails every row's HMAC;
* **the head, anchored outside the rows**: ``<journal dir>.head.json`` beside the directory
  (``data/decision_log.head.json``) holds the last row's sequence number and hash, signed with
  the same key and replaced atomically on each append, so deleting the last rows — or all of
  them — no longer leaves a valid shorter chain. Dagster's recorded heads (the
  ``decision_journal`` materialisations' ``row_hash``) are a second anchor, passed to
  :func:`verify_journal` as ``anchors`` (:mod:`ibkr_assets.journal_verify` reads them).

Limits: a key holder can rewrite everything (keep the key on another machine or in a secret
store for real protection); an older head file put back together with the matching truncation
is caught only by the Dagster anchors.

Modules: :mod:`.canonical` (the byte-exact JSON that is hashed), :mod:`.signing` (the key, HMAC,
the head file), :mod:`.log` (row files, lock, append, read), :mod:`.verify` (the checks).
"""

from ibkr_assets.quant.journal.canonical import (
    canonical_json,
    sha256_file,
    sha256_json,
    sha256_text,
)
from ibkr_assets.quant.journal.log import (
    GENESIS_HASH,
    RESERVED,
    JournalTampered,
    append_entry,
    journal_is_new,
    read_journal,
)
from ibkr_assets.quant.journal.signing import JournalKey, JournalKeyError, head_file
from ibkr_assets.quant.journal.verify import Anchor, VerifyResult, verify_journal

__all__ = [
    "GENESIS_HASH",
    "RESERVED",
    "Anchor",
    "JournalKey",
    "JournalKeyError",
    "JournalTampered",
    "VerifyResult",
    "append_entry",
    "canonical_json",
    "head_file",
    "journal_is_new",
    "read_journal",
    "sha256_file",
    "sha256_json",
    "sha256_text",
    "verify_journal",
]
