"""The social-chatter sources (:mod:`ibkr_assets.resources.social`) on recorded payloads in the
real APIs' shapes (``tests/unit/data/social``: a Reddit OAuth token and search listings, StockTwits
symbol streams), served by a loopback HTTP server: counts per session window, paging back to
the first window, a 429 retried, a failing source or symbol named (never counted as 0), the
request budget, and the sim source."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.broker import connect
from ibkr_assets.broker.settings import BrokerSettings
from ibkr_assets.quant.social import social_features
from ibkr_assets.resources.social import (
    RedditSocialResource,
    SimSocialResource,
    StocktwitsSocialResource,
)

DATA = Path(__file__).parent / "data" / "social"
#: Tue 5 .. Fri 8 March 2024: windows of the 6th, 7th and 8th (the 5th opens the first)
SESSIONS = [date(2024, 3, 5), date(2024, 3, 6), date(2024, 3, 7), date(2024, 3, 8)]
SECRET = "loopback-client-secret-do-not-log"


def _payload(name: str) -> bytes:
    return (DATA / name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    """Reddit (token, search) and StockTwits (symbol streams) from the recorded payloads."""

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # the OAuth token: 401 for a refused client
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        refused = "d3Jvbmc6" in self.headers.get("Authorization", "")  # base64 of "wrong:"
        if refused:
            self._send(401, b'{"message": "Unauthorized", "error": 401}')
        else:
            self._send(200, _payload("reddit_token.json"))

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        seen = self.server.requests  # type: ignore[attr-defined]
        seen.append(url.path + ("?" + url.query if url.query else ""))
        if url.path == "/r/wallstreetbets/search":
            q = query.get("q", "")
            if "AAPL" in q:
                page = "2" if query.get("after") == "t3_p3" else "1"
                return self._send(200, _payload(f"reddit_search_AAPL_{page}.json"))
            if "GME" in q:
                first = sum("GME" in r for r in seen) == 1
                if first:  # rate limited once, then answered
                    return self._send(429, b'{"message": "Too Many Requests", "error": 429}')
                return self._send(200, _payload("reddit_search_GME.json"))
            return self._send(200, b'{"kind": "Listing", "data": {"after": null, "children": []}}')
        if url.path == "/streams/symbol/AAPL.json":
            page = "2" if query.get("max") == "1003" else "1"
            return self._send(200, _payload(f"stocktwits_AAPL_{page}.json"))
        if url.path == "/streams/symbol/TSLA.json":
            return self._send(429, _payload("stocktwits_429.json"))
        return self._send(404, _payload("stocktwits_404.json"))


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.requests  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _reddit_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets REDDIT_CLIENT_ID and REDDIT_CLIENT_SECRET, read at each fetch."""
    monkeypatch.setenv("REDDIT_CLIENT_ID", "loopback")
    monkeypatch.setenv("REDDIT_CLIENT_SECRET", SECRET)


def _reddit(url: str, **kwargs: object) -> RedditSocialResource:
    options: dict[str, object] = {
        "user_agent": "python:ibkr-agent-tests:0.1 (loopback)",
        "reddit_url": url,
        "oauth_url": url,
        "backoff_seconds": 0.0,
        **kwargs,
    }
    return RedditSocialResource(**options)  # type: ignore[arg-type]


def _by_session(chatter: pd.DataFrame, symbol: str, column: str) -> list[float]:
    rows = chatter.loc[chatter["symbol"] == symbol].sort_values("session")
    return rows[column].tolist()


def test_reddit_counts_posts_per_session_through_pages_and_a_429(server, caplog) -> None:
    url, requests = server
    caplog.set_level(logging.DEBUG)
    got = _reddit(url).fetch(None, ["AAPL", "GME"], SESSIONS)  # type: ignore[arg-type]
    # AAPL: 03-06 21:00Z sits at the 6th's close (counted there), 03-07 22:00Z after the
    # 7th's close (the 8th's window); the page back to 03-05 ends the walk: complete
    assert _by_session(got.counts, "AAPL", "posts") == [1.0, 1.0, 3.0]
    assert _by_session(got.counts, "GME", "posts") == [0.0, 0.0, 1.0]  # after one 429
    assert got.counts["mentions"].isna().all()  # Reddit counts posts only
    assert got.failed == {}
    assert got.requests == 3 and sum("GME" in r for r in requests) == 2
    assert all("restrict_sr=on" in r and "sort=new" in r for r in requests)
    assert SECRET not in caplog.text


def test_reddit_refused_credentials_name_the_source_without_the_secret(
    server, caplog, monkeypatch
) -> None:
    url, _ = server
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("REDDIT_CLIENT_ID", "wrong")
    got = _reddit(url).fetch(None, ["AAPL", "GME"], SESSIONS)  # type: ignore[arg-type]
    assert got.counts.empty
    assert list(got.failed) == ["reddit"]
    assert (
        "refused the credentials" in got.failed["reddit"] and "2 symbol(s)" in got.failed["reddit"]
    )
    assert SECRET not in got.failed["reddit"] and SECRET not in caplog.text


def test_reddit_secret_from_a_file_and_a_missing_file_named(server, tmp_path, monkeypatch) -> None:
    """The client secret's file under its older variable name, still read."""
    url, _ = server
    secret = tmp_path / "reddit_secret"
    secret.write_text(SECRET + "\n")
    monkeypatch.delenv("REDDIT_CLIENT_SECRET")
    monkeypatch.setenv("IBKR_SOCIAL_REDDIT_CLIENT_SECRET_FILE", str(secret))
    got = _reddit(url).fetch(None, ["GME"], SESSIONS)  # type: ignore[arg-type]
    assert got.failed == {} and len(got.counts) == 3
    monkeypatch.setenv("IBKR_SOCIAL_REDDIT_CLIENT_SECRET_FILE", str(tmp_path / "nope"))
    missing = _reddit(url).fetch(None, ["GME"], SESSIONS)  # type: ignore[arg-type]
    assert "cannot be read" in missing.failed["reddit"] and missing.counts.empty
    assert "IBKR_SOCIAL_REDDIT_CLIENT_SECRET_FILE" in missing.failed["reddit"]


def test_stocktwits_counts_messages_and_names_what_it_could_not_count(server) -> None:
    url, requests = server
    source = StocktwitsSocialResource(base_url=url, backoff_seconds=0.0, max_attempts=2)
    got = source.fetch(None, ["AAPL", "ZZZZ", "TSLA", "MSFT"], SESSIONS)  # type: ignore[arg-type]
    assert _by_session(got.counts, "AAPL", "mentions") == [1.0, 1.0, 3.0]
    assert got.counts["posts"].isna().all()
    assert set(got.counts["symbol"]) == {"AAPL"}  # nothing counted as 0 for the others
    assert "no stream" in got.failed["stocktwits ZZZZ"]
    # TSLA rate limited past the retries: the source is out, MSFT never asked
    assert "HTTP 429 after 2 attempts" in got.failed["stocktwits"]
    assert "2 symbol(s) not counted" in got.failed["stocktwits"]
    assert not any("MSFT" in r for r in requests) and sum("TSLA" in r for r in requests) == 2


def test_stocktwits_budget_and_a_partial_walk_are_nan_not_zero(server) -> None:
    url, _ = server
    budget = StocktwitsSocialResource(base_url=url, max_requests=2, backoff_seconds=0.0)
    got = budget.fetch(None, ["AAPL", "AAPL "], SESSIONS)  # type: ignore[arg-type]
    assert got.requests == 2 and "request budget of 2" in got.failed["stocktwits AAPL "]
    one_page = StocktwitsSocialResource(base_url=url, max_pages=1, backoff_seconds=0.0)
    partial = one_page.fetch(None, ["AAPL"], SESSIONS)  # type: ignore[arg-type]
    # the first page reaches back to 03-07 23:00Z only: no window is complete
    assert partial.counts["mentions"].isna().all() and len(partial.counts) == 3


def test_an_unreachable_source_is_named() -> None:
    source = StocktwitsSocialResource(
        base_url="http://127.0.0.1:9", backoff_seconds=0.0, max_attempts=2, timeout=2.0
    )
    got = source.fetch(None, ["AAPL", "MSFT"], SESSIONS)  # type: ignore[arg-type]
    assert got.counts.empty and "ConnectError" in got.failed["stocktwits"]


def test_the_sim_source_serves_the_simulated_counts_and_names_an_etf(tmp_path) -> None:
    broker = connect(BrokerSettings(backend="sim", data_dir=str(tmp_path), sim_symbols=20))
    sessions = [date(2024, 1, 2) + pd.Timedelta(days=d) for d in range(0, 120)]
    sessions = [d for d in sessions if d.weekday() < 5][:70]
    got = SimSocialResource(sim_symbols=20).fetch(broker, ["AAPL", "SPY"], sessions)
    assert "no social chatter about SPY" in got.failed["sim SPY"]
    aapl = got.counts.loc[got.counts["symbol"] == "AAPL"]
    assert len(aapl) > 50 and (aapl["posts"] >= 0).all() and (aapl["mentions"] > 0).all()
    features = social_features(got.counts, ["AAPL", "SPY"])
    assert np.isfinite(features.loc["AAPL"]).all() and features.loc["SPY"].isna().all()
