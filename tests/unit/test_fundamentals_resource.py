"""The FMP client against a real HTTP server on loopback: parsing, look-ahead cut, retries,
the key kept out of URLs and errors, a symbol without data (empty list, HTTP 404) recorded and
named in a warning instead of crashing, a malformed answer raised."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from ibkr_assets.resources.fundamentals import FMPError, FMPFundamentalsResource

KEY = "sekret-key-123"
QUARTERS = [
    ("2023-12-31", "2024-02-01"),
    ("2024-03-31", "2024-05-02"),
    ("2024-06-30", "2024-08-01"),
]


def _payload(endpoint: str, symbol: str) -> list[dict]:
    if symbol == "NOPE":
        return []
    if symbol == "BROKEN":  # rows without the "date" every statement has
        return [{"symbol": symbol, "revenue": 1.0}]
    rows = []
    for i, (end, filed) in enumerate(QUARTERS):
        row = {"date": end, "filingDate": filed, "symbol": symbol}
        if endpoint == "income-statement":
            row |= {"revenue": 100.0 + i, "grossProfit": 40.0 + i, "netIncome": 10.0 + i}
            row |= {"weightedAverageShsOutDil": 1000.0}
        elif endpoint == "balance-sheet-statement":
            row |= {"totalAssets": 500.0 + i, "longTermDebt": 50.0 - i}
            row |= {"totalCurrentAssets": 80.0, "totalCurrentLiabilities": 40.0}
        else:
            row |= {"operatingCashFlow": 12.0 + i}
        rows.append(row)
    return rows


class _Handler(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[str, dict, str | None]]] = []
    fail_first: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        url = urlparse(self.path)
        endpoint = url.path.rsplit("/", 1)[-1]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.calls.append((endpoint, query, self.headers.get("apikey")))
        if self.headers.get("apikey") != KEY:
            return self._send(401, {"Error Message": "Invalid API KEY."})
        if self.fail_first.get(endpoint, 0) > 0:
            self.fail_first[endpoint] -= 1
            return self._send(503, {"Error Message": "busy"})
        if query.get("symbol") == "GONE":
            return self._send(404, {"Error Message": "not found"})
        if endpoint == "analyst-estimates":
            body = [
                {"date": "2025-12-31", "epsAvg": 7.0},
                {"date": "2024-12-31", "epsAvg": 6.0},
                {"date": "2023-12-31", "epsAvg": 5.0},
            ]
            return self._send(200, body)
        return self._send(200, _payload(endpoint, query["symbol"]))

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.calls = []
    _Handler.fail_first = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/stable"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _fmp_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret FMP_API_KEY, read by the resource at each fetch."""
    monkeypatch.setenv("FMP_API_KEY", KEY)


def _client(url: str) -> FMPFundamentalsResource:
    return FMPFundamentalsResource(base_url=url, backoff_seconds=0, max_attempts=3)


def test_statements_before_as_of_and_next_year_eps(server: str) -> None:
    _Handler.fail_first = {"balance-sheet-statement": 2}  # two 503s, then success
    got = _client(server).fetch(None, ["AAPL", "NOPE"], as_of=date(2024, 8, 1))  # type: ignore[arg-type]
    st = got.statements
    # the quarter filed on 2024-08-01 is not yet public at the as-of date
    assert list(st["period_end"].dt.date.astype(str)) == ["2023-12-31", "2024-03-31"]
    np.testing.assert_allclose(st["revenue"], [100.0, 101.0])
    np.testing.assert_allclose(st["long_term_debt"], [50.0, 49.0])
    np.testing.assert_allclose(st["operating_cash_flow"], [12.0, 13.0])
    np.testing.assert_allclose(st["shares_outstanding"], [1000.0, 1000.0])
    assert set(st["symbol"]) == {"AAPL"}
    assert got.forward_eps.set_index("symbol")["forward_eps"].to_dict() == {"AAPL": 6.0}
    assert "NOPE" in got.missing and "income-statement" in got.missing["NOPE"]
    balance_calls = [c for c in _Handler.calls if c[0] == "balance-sheet-statement"]
    assert len(balance_calls) == 3, "two 503s retried, then the AAPL answer"
    for _, query, header_key in _Handler.calls:
        assert header_key == KEY and "apikey" not in query, "key travels in a header, not the URL"
        assert query["period"] in ("quarter", "annual")


def test_refused_key_is_a_clear_error_without_the_key(server: str, monkeypatch) -> None:
    monkeypatch.setenv("FMP_API_KEY", "wrong-key-999")
    with pytest.raises(FMPError, match="FMP_API_KEY") as err:
        _client(server).fetch(None, ["AAPL"], as_of=date(2024, 8, 1))  # type: ignore[arg-type]
    assert "wrong-key-999" not in str(err.value) and "401" in str(err.value)


def test_persistent_server_errors_mark_the_symbol_missing(server: str) -> None:
    _Handler.fail_first = {"income-statement": 99}
    got = _client(server).fetch(None, ["MSFT"], as_of=date(2024, 8, 1))  # type: ignore[arg-type]
    assert got.statements.empty
    assert "HTTP 503" in got.missing["MSFT"] and "3 attempts" in got.missing["MSFT"]
    assert len([c for c in _Handler.calls if c[0] == "income-statement"]) == 3


def test_not_found_is_missing_and_named_in_a_warning(server: str, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        got = _client(server).fetch(None, ["AAPL", "GONE", "NOPE"], as_of=date(2024, 8, 1))  # type: ignore[arg-type]
    assert set(got.statements["symbol"]) == {"AAPL"}
    assert "HTTP 404" in got.missing["GONE"] and "income-statement" in got.missing["NOPE"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "2 of 3 symbols" in warning and "GONE: " in warning and "NOPE: " in warning


def test_a_malformed_answer_raises(server: str) -> None:
    with pytest.raises(KeyError, match="date"):
        _client(server).fetch(None, ["BROKEN"], as_of=date(2024, 8, 1))  # type: ignore[arg-type]
