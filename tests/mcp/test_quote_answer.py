"""The quotes tool's whole answer is pinned: the text and the structured content of a call for
stocks, an ETF, an index, an FX pair and options, during a session, before the open and after
the close, on the simulator's seed. Making the call cheaper (bench/mcp_latency.py) must not
change one character of what an assistant receives."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ibkr_assets.settings import MCPSettings
from mcp_server.server import build_server

from .conftest import SIM_SYMBOLS, broker_factory

pytestmark = pytest.mark.anyio

#: (symbols, sec_type) asked at each instant
_ASKS = (
    (["AAPL"], "STK"),
    (["MSFT", "spy", "AAPL", "265598", "NVDA"], "STK"),
    (["AAPL 20261218 200 C", "AAPL 20261218 480 P"], "STK"),
    (["EUR.USD"], "CASH"),
    (["TNX"], "IND"),
)
#: during a session (10:30 New York), before the open, after the close, on an early close
_INSTANTS = (
    datetime(2026, 11, 20, 15, 30, tzinfo=UTC),
    datetime(2026, 11, 20, 15, 30, 41, 250_000, tzinfo=UTC),
    datetime(2026, 11, 20, 13, 0, tzinfo=UTC),
    datetime(2026, 11, 20, 22, 0, tzinfo=UTC),
    datetime(2026, 11, 27, 17, 59, tzinfo=UTC),
)

#: SHA-256 of :func:`_answers`, recorded before the quote path was made cheaper (session 17):
#: any change to a field, a value or the text's layout changes it.
ANSWERS_DIGEST = "c0bc2a8ce6e523f0844dc9d5cdc20ca5f38c79e3cd2da261a0b25c7d7af766b1"


async def _answers(data_dir: Path) -> str:
    payload = []
    for at in _INSTANTS:
        fields = {"backend": "sim", "data_dir": data_dir, "sim_now": at}
        server = build_server(
            MCPSettings(data_dir=data_dir),
            broker_factory=broker_factory({**fields, "sim_symbols": SIM_SYMBOLS}),
        )
        try:
            for symbols, sec_type in _ASKS:
                result = await server.call_tool(
                    "quotes", {"symbols": symbols, "sec_type": sec_type}
                )
                assert not result.is_error, result.content[0].text
                payload.append(
                    [
                        at.isoformat(),
                        [c.text for c in result.content],
                        result.structured_content,
                    ]
                )
        finally:
            server.app_state.close()
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


async def test_the_quotes_answer_is_unchanged(tmp_path: Path):
    assert await _answers(tmp_path) == ANSWERS_DIGEST, (
        "the quotes tool's answer changed; if that is intended, say why in the commit and "
        "record the new digest"
    )
