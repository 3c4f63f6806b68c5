"""Stage 5 — ``overlaid_targets``: the optimiser's weights after the news & sentiment rules.

The YAML overlay rules (:mod:`ibkr_assets.quant.overlay`) adjust the targets, e.g. drop a name
whose sentiment z-score is below −2.5, or set it to zero when a headline says "FDA ban". Every
override is kept with its rule and reason.
"""

import dagster as dg
import pandas as pd

from ibkr_assets.assets.catalog import Table, decide_asset
from ibkr_assets.assets.partition import with_partition, without_partition
from ibkr_assets.assets.targets import TARGETS
from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.metadata import readable
from ibkr_assets.partitions import as_of
from ibkr_assets.quant.decision import overlay_targets
from ibkr_assets.quant.overlay import load_rules

OVERLAID = TARGETS + Table(
    {
        "weight": ("float64", "weight after the news rules: what the desk holds, fraction of NAV"),
        "override_rule": ("string", "the overlay rule(s) that changed the weight; empty: none"),
        "override_reason": ("string", "why the rule fired, e.g. the matching headline"),
    }
)


@decide_asset(
    OVERLAID,
    stage="5-overlay",
    kinds={"yaml"},
    ins={
        "target_weights": dg.AssetIn(),
        "feature_matrix": dg.AssetIn(),
        "headlines": dg.AssetIn(),
    },
)
def overlaid_targets(
    context: dg.AssetExecutionContext,
    decide: DecideConfig,
    target_weights: pd.DataFrame,
    feature_matrix: pd.DataFrame,
    headlines: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """The targets after the news & sentiment rules: what the desk would actually hold, with each
    override, its rule and its reason."""
    partition = context.partition_key
    rules = load_rules(decide.overlay_rules)
    frame, result = overlay_targets(
        without_partition(target_weights),
        rules,
        without_partition(feature_matrix),
        without_partition(headlines),
        as_of(partition),
    )
    overrides = result.overrides_frame()
    return dg.Output(
        with_partition(frame, partition),
        metadata=readable(
            {
                "overrides": len(overrides),
                "rules": ", ".join(r.name for r in rules),
                "override_table": dg.MetadataValue.md(overrides.to_markdown(index=False))
                if len(overrides)
                else "none",
                "gross": float(frame["weight"].abs().sum()),
            }
        ),
    )
