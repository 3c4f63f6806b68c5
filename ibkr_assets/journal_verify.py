"""The decision journal checked against what Dagster recorded of it.

:func:`ibkr_assets.quant.journal.verify_journal` authenticates every row and compares the chain
with its signed head file. Dagster holds a second, independent record: every
``decision_journal`` materialisation stores the ``row_hash`` it appended, and a ``risk_report``
blocked by the compliance gate stores its ``journal_row_hash``. :func:`verify_decision_log`
reads those from the instance at ``<data root>/.dagster`` (where ``ibkr-agent run`` and
``make dev`` keep runs) through Dagster's public instance API, and fails when the journal no
longer holds one of them — which catches an older head file put back after deleting rows.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ibkr_assets.quant.journal import Anchor, VerifyResult, verify_journal
from ibkr_assets.settings import load_settings

#: Where a data root keeps its Dagster instance (``ibkr-agent run``, ``make dev``).
DAGSTER_DIR = ".dagster"
JOURNAL_DIR = "decision_log"
#: (asset, metadata key) pairs whose materialisations record a journal row hash.
RECORDED_HEADS = (("decision_journal", "row_hash"), ("risk_report", "journal_row_hash"))
_PAGE = 1000


def dagster_home(data_root: Path) -> Path:
    """``<data root>/.dagster``: the instance whose runs wrote this data root."""
    return data_root / DAGSTER_DIR


def open_instance(data_root: Path) -> dg.DagsterInstance | None:
    """The data root's Dagster instance, or None when it has none (runs went elsewhere, e.g. a
    test's ephemeral instance). The caller disposes of it (``with``)."""
    home = dagster_home(data_root)
    return dg.DagsterInstance.from_config(str(home)) if home.is_dir() else None


def recorded_heads(instance: dg.DagsterInstance) -> list[Anchor]:
    """Every journal row hash the instance's materialisations recorded, newest first."""
    anchors = []
    for asset, field in RECORDED_HEADS:
        cursor = None
        while True:
            page = instance.fetch_materializations(dg.AssetKey(asset), limit=_PAGE, cursor=cursor)
            for record in page.records:
                materialization = record.asset_materialization
                value = materialization.metadata.get(field) if materialization else None
                if value is not None:
                    source = f"Dagster ({asset} {record.partition_key}, run {record.run_id[:8]})"
                    anchors.append(Anchor(str(value.value), source))
            if not page.has_more:
                break
            cursor = page.cursor
    return anchors


def verify_decision_log(
    directory: Path, instance: dg.DagsterInstance | None = None
) -> tuple[VerifyResult, int | None]:
    """Verify the journal in ``directory`` (rows, signatures, head file) and that it holds every
    row Dagster recorded; ``instance`` defaults to the one of the journal's data root (its
    parent directory, :func:`open_instance`). The key is the settings' (``IBKR_JOURNAL_KEY`` or
    its key file); without one a journal with rows is not intact (check ``key``).

    Returns the result and how many recorded heads were checked (None: no Dagster instance).
    The recorded heads are read before the journal, so a row appended meanwhile is never
    reported missing."""
    key = load_settings().checked("journal").journal.key()
    if instance is not None:
        anchors = recorded_heads(instance)
    else:
        own = open_instance(directory.resolve().parent)
        if own is None:
            return verify_journal(directory, key=key), None
        with own:
            anchors = recorded_heads(own)
    return verify_journal(directory, key=key, anchors=anchors), len(anchors)
