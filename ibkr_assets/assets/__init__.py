"""The pipeline's assets, one module per stage; ``definitions.py`` loads every module here.

Stages 1–3: :mod:`.ingest` (universe, quotes, daily_bars, fundamentals, headlines,
macro_gauges, top_movers), :mod:`.features` (feature_matrix and its data-quality checks),
:mod:`.signals` (alpha_scores), :mod:`.portfolio` (portfolio_snapshot).
"""
