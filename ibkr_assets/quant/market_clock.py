"""The US equity market's clock as the quant functions read it: New York time, and the 16:00
close at which a session's bar (and its chatter counts) become known."""

from __future__ import annotations

import pandas as pd

MARKET_TZ = "America/New_York"
#: A session's close, after its midnight (16:00 New York).
SESSION_CLOSE = pd.Timedelta(hours=16)
