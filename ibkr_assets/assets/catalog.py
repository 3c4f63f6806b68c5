"""The catalog entry of each asset: its columns, owners, tags, kinds and where it is stored.

Each table asset declares its columns once, as a :class:`Table` (pandas dtype and meaning with
unit per column); the frame is typed from it where the asset builds the frame, and the Dagster
UI's Columns panel shows it (``dagster/column_schema``). Every asset is owned by :data:`OWNERS`
and tagged with its ``stage``, its data ``source`` (``ib``, ``ib-news``, ``sim`` or ``fmp``
fundamentals, or ``derived`` from other assets) and whether trading depends on it
(``trading_critical``): filter the catalog with e.g. ``tag:trading_critical=true``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import dagster as dg

from ibkr_assets.assets.partition import PARTITION_COLUMN, PARTITION_DESCRIPTION
from ibkr_assets.partitions import DAILY_PARTITIONS
from ibkr_assets.resources.warehouse_io import WAREHOUSE_SCHEMA

#: Tag keys of every asset.
STAGE, SOURCE, TRADING_CRITICAL = "stage", "source", "trading_critical"
#: Data sources: IB's API (whichever backend, the simulated one included), IB's news, or only
#: other assets of the pipeline.
IB, IB_NEWS, DERIVED = "ib", "ib-news", "derived"
#: Who answers for the pipeline's assets (a Dagster owner: ``team:<name>`` or an e-mail).
OWNERS = ["team:trading"]
#: The asset group and warehouse schema of the decision stages (4–9).
DECIDE_GROUP = "decide"


class Table:
    """The columns of a table, in order: each column's pandas dtype and its meaning with its
    unit — the one declaration the asset types its frame from and the catalog shows."""

    def __init__(self, columns: Mapping[str, tuple[str, str]]) -> None:
        self.columns = dict(columns)

    def __add__(self, more: Table) -> Table:
        """This table's columns followed by ``more``'s (a table that extends another)."""
        return Table({**self.columns, **more.columns})

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def dtypes(self) -> dict[str, str]:
        """Column -> pandas dtype (for ``DataFrame.astype``)."""
        return {name: dtype for name, (dtype, _) in self.columns.items()}

    def schema(self, partitioned: bool = True) -> dg.TableSchema:
        """The column schema of the catalog; ``partitioned`` adds the partition column the
        warehouse stores with every row."""
        columns = [dg.TableColumn(n, dtype, text) for n, (dtype, text) in self.columns.items()]
        if partitioned:
            columns.append(dg.TableColumn(PARTITION_COLUMN, "datetime64[s]", PARTITION_DESCRIPTION))
        return dg.TableSchema(columns=columns)


def asset_tags(stage: str, source: str, critical: bool = False) -> dict[str, str]:
    """The catalog tags of an asset: its stage, its data source and whether trading depends on
    it (a failure or a late run leaves the desk without today's orders)."""
    return {STAGE: stage, SOURCE: source, TRADING_CRITICAL: str(critical).lower()}


def catalog_kwargs(
    *,
    stage: str,
    source: str = DERIVED,
    kinds: Iterable[str] = (),
    critical: bool = False,
    columns: dg.TableSchema | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Owners, tags, kinds and metadata (with the column schema) of an asset's decorator (or
    ``AssetOut``)."""
    meta = dict(metadata or {})
    if columns is not None:
        meta["dagster/column_schema"] = columns
    return {
        "owners": OWNERS,
        "tags": asset_tags(stage, source, critical),
        "kinds": set(kinds),
        "metadata": meta,
    }


def table_metadata(warehouse_schema: str) -> dict[str, str]:
    """Where the DuckDB IO manager keeps a daily table: its warehouse schema and the partition
    column whose rows a rerun replaces."""
    return {WAREHOUSE_SCHEMA: warehouse_schema, "partition_expr": PARTITION_COLUMN}


def daily_asset_kwargs(
    group: str,
    table: Table | None = None,
    *,
    stage: str | None = None,
    source: str = DERIVED,
    kinds: Iterable[str] = (),
    critical: bool = False,
    warehouse_schema: str | None = None,
) -> dict[str, Any]:
    """Decorator arguments of a daily asset stored in the warehouse: the session partitions,
    its group, its warehouse schema (the group's unless given), and its catalog entry (stage —
    the group's unless given —, source, kinds besides pandas and duckdb, the columns of
    ``table``)."""
    return {
        "partitions_def": DAILY_PARTITIONS,
        "group_name": group,
        **catalog_kwargs(
            stage=stage or group,
            source=source,
            kinds={"pandas", "duckdb", *kinds},
            critical=critical,
            columns=table.schema() if table is not None else None,
            metadata=table_metadata(warehouse_schema or group),
        ),
    }


def decide_asset(
    table: Table,
    *,
    stage: str,
    source: str = DERIVED,
    kinds: Iterable[str] = (),
    group: str = DECIDE_GROUP,
    **kwargs: Any,
) -> Callable[..., dg.AssetsDefinition]:
    """``@dg.asset`` of a decision stage storing ``table``: the daily partitions, the ``decide``
    warehouse schema and the partition column (so a rerun replaces its partition's rows), and
    its catalog entry (``group``, ``stage``, ``source``, ``kinds``, trading-critical: a failure
    or a late run leaves the desk without today's orders or their record); ``kwargs`` go to
    ``dg.asset``."""
    base = daily_asset_kwargs(
        group,
        table,
        stage=stage,
        source=source,
        kinds=kinds,
        critical=True,
        warehouse_schema=DECIDE_GROUP,
    )
    return dg.asset(**base, **kwargs)
