"""Social chatter: per symbol and session, how many posts and messages named it.

Sources behind one interface (:class:`SocialResource`), chosen by ``IBKR_SOCIAL_SOURCE``:

* ``sim`` — :class:`SimSocialResource` (the default) reads the simulated world's Reddit-like
  post and X/StockTwits-like mention counts (:mod:`ibkr_sim.market.social`) through the sim
  broker;
* ``reddit`` — :class:`RedditSocialResource` searches the subreddits ``IBKR_SOCIAL_SUBREDDITS``
  names (r/wallstreetbets by default) for each symbol with PRAW (the Python Reddit API Wrapper)
  and counts the posts per session (``posts``). Credentials are the secrets
  ``REDDIT_CLIENT_ID`` and ``REDDIT_CLIENT_SECRET`` (each its variable, the file ``<NAME>_FILE``
  names — ``IBKR_SOCIAL_REDDIT_CLIENT_SECRET_FILE`` too — or Vault:
  :mod:`ibkr_assets.settings.secret`), read at each fetch and never logged. Reddit's free Data
  API tier allows 100 queries a minute per OAuth client (Reddit Data API terms, 2023); PRAW
  reads the ``X-Ratelimit-*`` headers and waits when they run low;
* ``stocktwits`` — :class:`StocktwitsSocialResource` pages the public symbol stream
  (``https://api.stocktwits.com/api/2/streams/symbol/{SYMBOL}.json``, 30 messages a page, older
  pages by ``max=<cursor>``) and counts the messages per session (``mentions``). StockTwits
  publishes a limit of 200 requests an hour per IP without login. X (Twitter) is the mention
  source the seed names, but its API's read access is paid; StockTwits is the accessible one;
* ``none`` — :class:`NoSocialResource`: nothing is counted, and the asset says so.

**Sessions.** A session's window runs from the previous session's close (16:00 New York) to its
own, so a Monday counts the weekend; the caller passes the sessions, every one closed before the
run, and the first only opens the second's window. A session is counted only when the source
reached back past its window's start: windows older than the oldest item fetched (a busy name
whose stream runs past the request budget or the page cap) are NaN, never 0. A session without
any post inside a window the source covered is a true 0.

**Failures are named, never zero.** Every request is retried with exponential backoff
(tenacity) on HTTP 429, 5xx and network errors, up to ``max_attempts``; each source may send at
most ``max_requests`` requests a run (``IBKR_SOCIAL_MAX_REQUESTS``). What could not be counted
is in :attr:`Chatter.failed`: ``"<source> <symbol>"`` for one symbol (not found, retries spent,
budget spent), ``"<source>"`` for the whole source (refused credentials, unreachable): the
ingest asset lists them in its metadata and the run's summary, and the symbols' counts are NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import numpy as np
import pandas as pd
from pydantic import Field
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from ibkr_assets.broker import Broker
from ibkr_assets.broker.errors import BrokerError
from ibkr_assets.settings.secret import REDDIT_CLIENT_ID, REDDIT_CLIENT_SECRET, SecretError

log = dg.get_dagster_logger(__name__)
NEW_YORK = ZoneInfo("America/New_York")
#: The columns of :attr:`Chatter.counts`.
COUNT_COLUMNS = ("symbol", "session", "posts", "mentions")
T = TypeVar("T")


@dataclass
class Chatter:
    """Counts (columns ``symbol``, ``session`` and float ``posts``/``mentions``, NaN where the
    source does not count or did not reach), what could not be counted and why, and the
    requests sent."""

    counts: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    requests: int = 0


def session_closes(sessions: Sequence[date]) -> list[datetime]:
    """The close (16:00 New York, UTC) of each session: the edges of the count windows."""
    return [datetime.combine(day, time(16), NEW_YORK).astimezone(UTC) for day in sessions]


def bucket(times: Sequence[datetime], closes: Sequence[datetime], covered_from: datetime) -> list:
    """Items per window ``(closes[i], closes[i + 1]]`` (``len(closes) - 1`` windows); NaN for a
    window that starts before ``covered_from`` (the source was not read that far back)."""
    edges = np.array([pd.Timestamp(c).value for c in closes], dtype=np.int64)
    stamps = np.array([pd.Timestamp(t).value for t in times], dtype=np.int64)
    window = np.searchsorted(edges, stamps, side="left") - 1  # edges[w] < stamp <= edges[w + 1]
    inside = (window >= 0) & (window < len(edges) - 1)
    counts = np.bincount(window[inside], minlength=max(len(edges) - 1, 0)).astype(float)
    counts[edges[:-1] < pd.Timestamp(covered_from).value] = np.nan
    return counts.tolist()


def _counts(symbol: str, sessions: Sequence[date], **columns: Sequence[float]) -> pd.DataFrame:
    """One symbol's rows for ``sessions``; a count column not given is NaN."""
    n = len(sessions)
    nan = [float("nan")] * n
    return pd.DataFrame(
        {
            "symbol": [symbol] * n,
            "session": pd.to_datetime(list(sessions)),
            "posts": columns.get("posts", nan),
            "mentions": columns.get("mentions", nan),
        }
    )


def _frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        frames = [_counts("", [])]
    out = pd.concat(frames, ignore_index=True).loc[:, list(COUNT_COLUMNS)]
    return out.astype({"symbol": "string", "posts": "float64", "mentions": "float64"})


class SocialResource(dg.ConfigurableResource):
    """Where social chatter comes from. Subclasses implement :meth:`fetch`."""

    history_sessions: int = Field(121, ge=41, description="sessions of chatter asked per symbol")

    @property
    def source(self) -> str:
        """The source's name in metadata and failures (``sim``, ``reddit`` ...)."""
        raise NotImplementedError

    def fetch(self, broker: Broker, symbols: Sequence[str], sessions: Sequence[date]) -> Chatter:
        """Counts of ``symbols`` for ``sessions[1:]`` (``sessions[0]`` opens the first window);
        every session must have closed before the run."""
        raise NotImplementedError


class NoSocialResource(SocialResource):
    """``IBKR_SOCIAL_SOURCE=none``: nothing is counted (every feature NaN), and said so."""

    @property
    def source(self) -> str:
        return "none"

    def fetch(self, broker: Broker, symbols: Sequence[str], sessions: Sequence[date]) -> Chatter:
        return Chatter(_frame([]), {"none": "no social source configured (IBKR_SOCIAL_SOURCE)"})


class SimSocialResource(SocialResource):
    """The simulated world's chatter: the sim broker's own market's, or — behind the simulated
    gateway — the same world's (``IBKR_SIM_SEED``, ``IBKR_SIM_SYMBOLS``, ``IBKR_SIM_EDGE``),
    drawn in this process without its prices, which the gateway's process holds
    (:func:`ibkr_sim.market.paths.chatter_counts`). Only stocks have chatter; ETFs and others
    are named as not counted."""

    sim_seed: int = 7
    sim_symbols: int = 700
    sim_edge: str = "default"

    @property
    def source(self) -> str:
        return "sim"

    def fetch(self, broker: Broker, symbols: Sequence[str], sessions: Sequence[date]) -> Chatter:
        from ibkr_assets.broker.sim import simulated_market  # the simulated world, this source only

        market = simulated_market(broker, self.sim_seed, self.sim_symbols, self.sim_edge)
        resolved = broker.resolve_many(list(symbols))
        conids = {s: c.conid for s, c in resolved.items() if not isinstance(c, BrokerError)}
        # every stock from one slice of the simulator's panel (a replay asks for 700)
        got, refused = market.social_chatter_many(list(conids.values()), sessions[1], sessions[-1])
        failed: dict[str, str] = {}
        for symbol in symbols:  # unknown, or not a stock
            exc = resolved[symbol] if symbol not in conids else refused.get(conids[symbol])
            if exc is not None:
                failed[f"sim {symbol}"] = f"{type(exc).__name__}: {exc}"
        symbol_of = {conid: symbol for symbol, conid in conids.items()}
        names = pd.array(list(symbol_of.values()), dtype="string")  # by position, not per row
        counts = pd.DataFrame(
            {
                "symbol": names.take(pd.Index(list(symbol_of)).get_indexer(got["conid"])),
                "session": got["session"],
                "posts": got["posts"].astype(float),
                "mentions": got["mentions"].astype(float),
            }
        )
        return Chatter(_frame([counts]), failed)


class _Retryable(RuntimeError):
    """A request worth retrying: HTTP 429, 5xx or a network error (the message names which).
    ``down``: when the retries are spent the whole source is out (rate limited, unreachable),
    not only this symbol (a server error on one symbol's stream)."""

    def __init__(self, message: str, down: bool) -> None:
        super().__init__(message)
        self.down = down


class SourceDown(RuntimeError):
    """The whole source failed (refused credentials, unreachable): no symbol can be counted."""


class SymbolFailed(RuntimeError):
    """This symbol could not be counted (not found, retries spent); the others may be."""


class _Budget:
    """The requests a source may still send this run."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def spend(self) -> None:
        if self.used >= self.limit:
            raise SymbolFailed(f"request budget of {self.limit} per run spent")
        self.used += 1


class _HTTPSource(SocialResource):
    """What the real sources share: the budget, retries and the walk back through pages."""

    max_requests: int = Field(200, ge=1, description="requests per run (IBKR_SOCIAL_MAX_REQUESTS)")
    max_pages: int = Field(10, ge=1, description="pages read per symbol at most")
    max_attempts: int = Field(4, ge=1, description="tries per request (429 / 5xx / network)")
    backoff_seconds: float = Field(2.0, ge=0, description="first retry wait, doubled each time")
    timeout: float = Field(20.0, gt=0, description="seconds per request")

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call`` retried with exponential backoff while it raises :class:`_Retryable`; then
        :class:`SourceDown` or :class:`SymbolFailed` naming the last error."""
        attempt = retry(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=60),
            reraise=True,
        )(call)
        try:
            return attempt()
        except _Retryable as exc:
            failure = SourceDown if exc.down else SymbolFailed
            raise failure(f"{exc} after {self.max_attempts} attempts") from exc

    def _page(self, session: Any, symbol: str, cursor: Any) -> tuple[list[datetime], Any]:
        """One page of items naming ``symbol``, newest first, from ``cursor`` (None: the
        newest): their times and the cursor of the next older page (None: no more)."""
        raise NotImplementedError

    def _open(self) -> Any:
        """The source's client for one fetch (closed by :meth:`_close`)."""
        raise NotImplementedError

    def _close(self, session: Any) -> None:
        """Release what :meth:`_open` opened."""

    @property
    def column(self) -> str:
        """Which count column the source fills: ``posts`` or ``mentions``."""
        raise NotImplementedError

    def fetch(self, broker: Broker, symbols: Sequence[str], sessions: Sequence[date]) -> Chatter:
        closes = session_closes(sessions)
        budget = _Budget(self.max_requests)
        frames: list[pd.DataFrame] = []
        failed: dict[str, str] = {}
        try:
            session = self._open()
        except SourceDown as exc:
            return Chatter(_frame([]), {self.source: str(exc)})
        try:
            for i, symbol in enumerate(symbols):
                try:
                    times, covered_from = self._walk(session, symbol, closes[0], budget)
                except SymbolFailed as exc:
                    failed[f"{self.source} {symbol}"] = str(exc)
                    continue
                except SourceDown as exc:
                    failed[self.source] = f"{exc}; {len(symbols) - i} symbol(s) not counted"
                    break
                counts = bucket(times, closes, covered_from)
                frames.append(_counts(symbol, sessions[1:], **{self.column: counts}))
        finally:
            self._close(session)
        return Chatter(_frame(frames), failed, budget.used)

    def _walk(
        self, session: Any, symbol: str, start: datetime, budget: _Budget
    ) -> tuple[list[datetime], datetime]:
        """Every item naming ``symbol`` back to ``start`` (or as far as the pages go): their
        times and the instant from which the count is complete."""
        times: list[datetime] = []
        cursor = None
        for _ in range(self.max_pages):
            budget.spend()
            page, cursor = self._retrying(lambda c=cursor: self._page(session, symbol, c))
            times.extend(page)
            if cursor is None:  # the source has nothing older: complete from the beginning
                return times, start
            if page and min(page) <= start:
                return times, start
        return times, min(times) if times else datetime.max.replace(tzinfo=UTC)


class StocktwitsSocialResource(_HTTPSource):
    """Messages of StockTwits' public symbol streams (``mentions``); no credentials."""

    base_url: str = "https://api.stocktwits.com/api/2"

    @property
    def source(self) -> str:
        return "stocktwits"

    @property
    def column(self) -> str:
        return "mentions"

    def _open(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url, timeout=self.timeout, headers={"Accept": "application/json"}
        )

    def _close(self, session: httpx.Client) -> None:
        session.close()

    def _page(self, session: httpx.Client, symbol: str, cursor: Any) -> tuple[list[datetime], Any]:
        params = {} if cursor is None else {"max": cursor}
        try:
            response = session.get(f"/streams/symbol/{symbol}.json", params=params)
        except httpx.TransportError as exc:
            raise _Retryable(f"StockTwits {symbol}: {type(exc).__name__}: {exc}", True) from exc
        where = f"StockTwits {symbol}: HTTP {response.status_code}"
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(where, down=response.status_code == 429)
        if response.status_code == 404:
            raise SymbolFailed(f"{where}: StockTwits has no stream for the symbol")
        if response.status_code >= 400:
            raise SymbolFailed(f"{where}: {response.text[:200]}")
        try:
            payload = response.json()
            times = [_utc(m["created_at"]) for m in payload["messages"]]
            more = payload.get("cursor", {})
        except (ValueError, KeyError, TypeError) as exc:
            raise SymbolFailed(f"{where}: not a symbol stream ({exc!r})") from exc
        return times, (more.get("max") if more.get("more") and times else None)


class RedditSocialResource(_HTTPSource):
    """Posts naming each symbol in the configured subreddits, through PRAW (``posts``).

    A symbol is searched as ``"$SYM" OR "SYM"`` (Reddit's search looks at titles and text),
    newest first, 100 posts a page. One- and two-letter tickers match common words; their counts
    are noisy, which the robust z-score (:mod:`ibkr_assets.quant.social`) tolerates but does not
    cure."""

    user_agent: str = Field(description="Reddit User-Agent naming the app and its user")
    subreddits: list[str] = Field(default_factory=lambda: ["wallstreetbets"])
    reddit_url: str = "https://www.reddit.com"
    oauth_url: str = "https://oauth.reddit.com"

    @property
    def source(self) -> str:
        return "reddit"

    @property
    def column(self) -> str:
        return "posts"

    def _open(self) -> Any:
        import praw  # only this source needs it

        try:
            client_id, secret = REDDIT_CLIENT_ID.required(), REDDIT_CLIENT_SECRET.required()
        except SecretError as exc:
            raise SourceDown(str(exc)) from None
        reddit = praw.Reddit(
            client_id=client_id.get_secret_value(),
            client_secret=secret.get_secret_value(),
            user_agent=self.user_agent,
            reddit_url=self.reddit_url,
            oauth_url=self.oauth_url,
            check_for_updates=False,
            timeout=int(self.timeout),
        )
        reddit.read_only = True
        return reddit

    def _page(self, session: Any, symbol: str, cursor: Any) -> tuple[list[datetime], Any]:
        import prawcore

        path = f"/r/{'+'.join(self.subreddits)}/search"
        params = {
            "q": f'"${symbol}" OR "{symbol}"',
            "restrict_sr": "on",
            "sort": "new",
            "t": "year",
            "limit": 100,
            **({} if cursor is None else {"after": cursor}),
        }
        try:
            listing = session.get(path, params=params)
        except prawcore.RequestException as exc:
            why = type(exc.original_exception).__name__
            raise _Retryable(f"Reddit {symbol}: {why}", down=True) from exc
        except prawcore.OAuthException as exc:
            raise SourceDown(
                f"Reddit refused the credentials ({exc.error}): check REDDIT_CLIENT_ID and "
                "REDDIT_CLIENT_SECRET"
            ) from exc
        except prawcore.ResponseException as exc:
            code = exc.response.status_code
            where = f"Reddit {symbol}: HTTP {code}"
            if code == 429 or code >= 500:
                raise _Retryable(where, down=code == 429) from exc
            if code in (401, 403):
                raise SourceDown(
                    f"{where}: Reddit refused the credentials; check REDDIT_CLIENT_ID, "
                    "REDDIT_CLIENT_SECRET and the app's access"
                ) from exc
            if code in (302, 404):
                raise SourceDown(
                    f"{where}: no subreddit r/{'+'.join(self.subreddits)}; check "
                    "IBKR_SOCIAL_SUBREDDITS"
                ) from exc
            raise SymbolFailed(where) from exc
        times = [datetime.fromtimestamp(post.created_utc, UTC) for post in listing.children]
        return times, (listing.after if times else None)


def _utc(text: str) -> datetime:
    """An ISO-8601 time (StockTwits: ``2024-03-08T15:59:01Z``) as an aware UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
