"""Asset checks: data quality (Great Expectations, :mod:`.data_quality`) and the compliance
gate; ``definitions.py`` loads every check defined in these modules.

Every check records its session: a partitioned ``AssetCheckSpec``, which Dagster 1.13 still
calls a preview feature. The project relies on it knowingly, so its ``PreviewWarning`` (and only
that one) is not shown to users of the UI (``make dev``) or the CLI.
"""

import warnings

import dagster as dg

warnings.filterwarnings(
    "ignore",
    message="Specifying a partitions_def on an AssetCheckSpec",
    category=dg.PreviewWarning,
)
