"""Data quality of the feature matrix, validated with Great Expectations.

Before any score is computed, the day's feature matrix must pass five checks (each an asset
check on ``feature_matrix``, partitioned by session like the asset, blocking: a failure stops
the stages downstream):

==============================  ==============================================================
check                           Great Expectations expectation(s)
==============================  ==============================================================
``no_nulls_in_required``        ``expect_column_values_to_not_be_null`` per required column
``prices_volumes_positive``     ``expect_column_values_to_be_between(min 0, strict)`` per price /
                                volume column
``unique_symbols``              ``expect_column_values_to_be_unique("symbol")``
``fresh_for_partition``         ``expect_column_values_to_be_in_set("last_session", [previous
                                session])``: every symbol's latest bar is the session before
                                the partition — nothing older, nothing later (no look-ahead)
``universe_coverage``           ``expect_column_values_to_be_in_set("present", [True],
                                mostly=0.95)`` over the universe
==============================  ==============================================================

A failed check names the expectation, the column and the offending symbols; a failed coverage
check says the coverage, of how many symbols, the threshold (``IBKR_MIN_UNIVERSE_COVERAGE``) and
the symbols without a row (most often: IB could not serve their daily bars, which the run's
summary names with IB's error). Validation runs in an ephemeral GX context (nothing written to
disk) on a pandas datasource.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg
import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from ibkr_assets.partitions import DAILY_PARTITIONS

NO_NULLS = "no_nulls_in_required"
POSITIVE = "prices_volumes_positive"
UNIQUE = "unique_symbols"
FRESH = "fresh_for_partition"
COVERAGE = "universe_coverage"
CHECK_DESCRIPTIONS = {
    NO_NULLS: "No nulls in the required feature columns",
    POSITIVE: "Prices and volumes strictly positive",
    UNIQUE: "One row per symbol",
    FRESH: "Every symbol's latest bar is the session before the partition",
    COVERAGE: "At least the configured share (95%) of the universe is present",
}


def check_specs(
    asset: str = "feature_matrix", partitions_def: dg.PartitionsDefinition = DAILY_PARTITIONS
) -> list[dg.AssetCheckSpec]:
    """The data-quality checks of an asset, blocking its downstream stages on failure. They are
    partitioned like the asset (one NYSE session each), so every evaluation records its session
    and the asset's Checks tab shows each session's data quality."""
    return [
        dg.AssetCheckSpec(
            name, asset=asset, description=text, blocking=True, partitions_def=partitions_def
        )
        for name, text in CHECK_DESCRIPTIONS.items()
    ]


@dataclass(frozen=True)
class ExpectationOutcome:
    """One evaluated expectation: which check it belongs to, and the symbols that broke it."""

    check: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int = 0
    offending_symbols: list[str] = field(default_factory=list)
    observed: Any = None
    element_count: int = 0
    mostly: float | None = None

    def describe(self) -> str:
        where = f"({self.column})" if self.column else ""
        if self.success:
            return f"{self.expectation}{where}: passed"
        if self.check == COVERAGE and self.mostly is not None and self.element_count:
            present = self.element_count - self.unexpected_count
            return (
                f"universe coverage {present / self.element_count:.1%} ({present} of "
                f"{self.element_count} symbols) below the required {self.mostly:.0%}; no row "
                f"for {self.unexpected_count}: {', '.join(self.offending_symbols[:50]) or '-'}"
            )
        shown = self.offending_symbols[:20]
        more = len(self.offending_symbols) - len(shown)
        names = ", ".join(shown) + (f" and {more} more" if more else "")
        return (
            f"{self.expectation}{where} FAILED for {self.unexpected_count} row(s): {names or '-'}"
        )


@functools.lru_cache(maxsize=1)
def _batch_definition() -> Any:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("pipeline")
    return source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")


def _run(frame: pd.DataFrame, expectations: Sequence[Any]) -> list[ExpectationOutcome]:
    """Validate ``frame`` against ``expectations`` (each tagged with ``meta={"check": name}``)."""
    batch_definition = _batch_definition()  # also makes the GX context the active one
    suite = gx.ExpectationSuite(name="data_quality")
    for expectation in expectations:
        suite.add_expectation(expectation)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(
        suite,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["symbol"]},
    )
    outcomes = []
    for r in result.results:
        config = r.expectation_config
        rows = r.result.get("unexpected_index_list") or []
        symbols = list(dict.fromkeys(str(row["symbol"]) for row in rows if "symbol" in row))
        outcomes.append(
            ExpectationOutcome(
                check=str(config.meta["check"]),
                expectation=config.type,
                column=config.kwargs.get("column"),
                success=bool(r.success),
                unexpected_count=int(r.result.get("unexpected_count") or 0),
                offending_symbols=symbols,
                observed=r.result.get("observed_value"),
                element_count=int(r.result.get("element_count") or 0),
                mostly=config.kwargs.get("mostly"),
            )
        )
    return outcomes


def validate_feature_matrix(
    features: pd.DataFrame,
    universe_symbols: Sequence[str],
    session: date,
    previous_session: date,
    required_columns: Sequence[str],
    positive_columns: Sequence[str],
    min_coverage: float = 0.95,
) -> list[ExpectationOutcome]:
    """Run every data-quality expectation on a feature matrix (one row per ``symbol``, with a
    ``last_session`` column: the date of the symbol's latest daily bar)."""
    E = gx.expectations
    absent = [c for c in [*required_columns, *positive_columns] if c not in features.columns]
    if absent:
        raise ValueError(f"feature matrix for {session} lacks required column(s): {absent}")
    frame = features.reset_index(drop=True).assign(
        symbol=features["symbol"].astype(str).to_numpy(),
        last_session=pd.to_datetime(features["last_session"]).dt.strftime("%Y-%m-%d").to_numpy(),
    )
    expectations: list[Any] = [
        E.ExpectColumnValuesToNotBeNull(column=c, meta={"check": NO_NULLS})
        for c in required_columns
    ]
    expectations += [
        E.ExpectColumnValuesToBeBetween(
            column=c, min_value=0, strict_min=True, meta={"check": POSITIVE}
        )
        for c in positive_columns
    ]
    expectations.append(E.ExpectColumnValuesToBeUnique(column="symbol", meta={"check": UNIQUE}))
    expectations.append(
        E.ExpectColumnValuesToBeInSet(
            column="last_session", value_set=[previous_session.isoformat()], meta={"check": FRESH}
        )
    )
    outcomes = _run(frame, expectations)

    wanted = list(dict.fromkeys(str(s) for s in universe_symbols))
    present = set(frame["symbol"])
    coverage = pd.DataFrame({"symbol": wanted, "present": [s in present for s in wanted]})
    outcomes += _run(
        coverage,
        [
            E.ExpectColumnValuesToBeInSet(
                column="present", value_set=[True], mostly=min_coverage, meta={"check": COVERAGE}
            )
        ],
    )
    return outcomes


def check_results(
    outcomes: Sequence[ExpectationOutcome], asset: str = "feature_matrix"
) -> list[dg.AssetCheckResult]:
    """One AssetCheckResult per check: passed only when all its expectations passed; the
    metadata lists each failed expectation with its offending symbols."""
    results = []
    for name in CHECK_DESCRIPTIONS:
        mine = [o for o in outcomes if o.check == name]
        failed = [o for o in mine if not o.success]
        offending = sorted({s for o in failed for s in o.offending_symbols})
        metadata: dict[str, Any] = {
            "expectations": len(mine),
            "failed_expectations": dg.MetadataValue.md(
                "\n".join(f"- {o.describe()}" for o in failed) or "(none)"
            ),
            "offending_symbols": ", ".join(offending[:100]) or "(none)",
        }
        results.append(
            dg.AssetCheckResult(
                check_name=name,
                asset_key=asset,
                passed=not failed,
                severity=dg.AssetCheckSeverity.ERROR,
                description="; ".join(o.describe() for o in failed) or CHECK_DESCRIPTIONS[name],
                metadata=metadata,
            )
        )
    return results
