"""Stage 3 — ``alpha_scores``: one score in [-1, 1] per symbol, and why.

A thin wrapper over :func:`ibkr_assets.quant.alpha.compute_alpha_scores`: the technical,
fundamental and sentiment blocks of the day's feature matrix, blended with the configured
weights (``IBKR_WEIGHT_TECHNICAL`` ...), plus the macro regime of the day as an environment
adjustment. The metadata shows what a PM looks at first: the distribution of scores (a PNG in
the Dagster UI, also saved under ``plots/YYYY-MM-DD/``), the top and bottom names with their
drivers, and the regime.
"""

import io

import dagster as dg
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ibkr_assets.assets.catalog import Table, daily_asset_kwargs
from ibkr_assets.assets.materialization import png_markdown, preview
from ibkr_assets.assets.partition import session_of, with_partition, without_partition
from ibkr_assets.config import PipelineConfig
from ibkr_assets.metadata import readable
from ibkr_assets.quant.alpha import AlphaWeights, compute_alpha_scores
from ibkr_assets.quant.macro import FEATURE_COLUMNS as MACRO_COLUMNS
from ibkr_assets.quant.macro import latest_regime
from ibkr_assets.resources.storage import StorageResource

#: What :func:`compute_alpha_scores` returns: the blend and its blocks, each in [-1, 1].
ALPHA_SCORES = Table(
    {
        "symbol": ("string", "ticker symbol"),
        "alpha_score": ("float64", "expected edge in [-1, 1]: the weighted blend of the blocks"),
        "technical": ("float64", "technical block (trend, breakout, RSI, momentum), -1 to 1"),
        "fundamental": ("float64", "fundamental block (Piotroski, value, growth), -1 to 1"),
        "sentiment": ("float64", "news sentiment block (sentiment_z), -1 to 1"),
        "macro": ("float64", "macro-regime adjustment added to every name, -1 to 1"),
        "top_drivers": ("string", "the five largest contributions, e.g. 'mom_12_1 +0.081'"),
    }
)


def alpha_plot(scores: pd.DataFrame, title: str, names: int = 10) -> bytes:
    """PNG: histogram of alpha scores, and the top and bottom ``names`` as horizontal bars."""
    ranked = scores.sort_values("alpha_score")
    ends = pd.concat([ranked.head(names), ranked.tail(names)]).drop_duplicates("symbol")
    fig = Figure(figsize=(11, 4.5), dpi=90)  # no pyplot: no global state, safe in threads
    hist, bars = fig.subplots(1, 2)
    values = scores["alpha_score"].to_numpy(dtype="float64")
    bins = 30 if len(values) and np.ptp(values) > 1e-9 else 1  # all equal: one bar
    hist.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
    hist.axvline(0, color="grey", linewidth=0.8)
    hist.set(title=f"{title}: alpha distribution", xlabel="alpha score", ylabel="symbols")
    colours = ["#c44e52" if v < 0 else "#55a868" for v in ends["alpha_score"]]
    bars.barh(ends["symbol"].astype(str), ends["alpha_score"], color=colours)
    bars.axvline(0, color="grey", linewidth=0.8)
    bars.set(title=f"top and bottom {names}", xlabel="alpha score")
    bars.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def alpha_weights(config: PipelineConfig) -> AlphaWeights:
    """The blend weights of the pipeline settings."""
    return AlphaWeights(
        technical=config.weight_technical,
        fundamental=config.weight_fundamental,
        sentiment=config.weight_sentiment,
        macro=config.weight_macro,
    )


@dg.asset(**daily_asset_kwargs("signals", ALPHA_SCORES, stage="3-signals", kinds={"matplotlib"}))
def alpha_scores(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    pipeline: PipelineConfig,
    feature_matrix: pd.DataFrame,
    macro_gauges: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    """Each symbol's expected edge in [-1, 1] from trend, value, quality, news and the regime."""
    key, _, _ = session_of(context)
    macro = without_partition(macro_gauges).set_index("session").loc[:, list(MACRO_COLUMNS)]
    regime = latest_regime(macro)
    scores = compute_alpha_scores(
        without_partition(feature_matrix),
        weights=alpha_weights(pipeline),
        macro_adjustment=regime.macro_adjustment,
    )
    png = alpha_plot(scores, key)
    path = storage.write_bytes(storage.plot_path(key, "alpha_scores"), png)
    ranked = scores.sort_values("alpha_score", ascending=False)
    meta = {
        "dagster/row_count": len(scores),
        "alpha_plot": png_markdown(png, "alpha scores"),
        "plot_path": dg.MetadataValue.path(str(path)),
        "top_10": preview(ranked, 10),
        "bottom_10": preview(ranked.iloc[::-1], 10),
        "regime": regime.label,
        "macro_adjustment": float(regime.macro_adjustment),
        "mean_alpha": float(scores["alpha_score"].mean()),
        "share_positive": float((scores["alpha_score"] > 0).mean()),
    }
    return dg.Output(with_partition(scores, key), metadata=readable(meta))
