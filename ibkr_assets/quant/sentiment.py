"""News sentiment: the tone of each headline, and how unusual a symbol's last day of news is.

**Scoring a headline.** Polarity is a number in [-1, 1]: positive news near +1, negative
near -1, neutral or mixed near 0. Two scorers share the :class:`SentimentScorer` protocol:

* :class:`TransformersScorer` runs a fine-tuned sequence classifier through Hugging Face
  ``transformers``; the usual one is FinBERT (Araci 2019, "FinBERT: Financial sentiment
  analysis with pre-trained language models", ``ProsusAI/finbert``), a BERT model trained on
  the Financial PhraseBank with labels positive / negative / neutral. Polarity is
  P(positive) - P(negative) from the softmax. Labels are read from the model's ``id2label``,
  so any classifier with positive and negative classes works. Weights are loaded only from a
  local directory or the local Hugging Face cache (``local_files_only=True``): nothing is ever
  downloaded at run time. Runs on CPU, in batches.
* :class:`LexiconScorer` counts words from finance-specific positive and negative lists in the
  spirit of Loughran & McDonald (2011, "When is a liability not a liability? Textual analysis,
  dictionaries, and 10-Ks", *Journal of Finance* 66, 35-65), who showed that general-purpose
  dictionaries misread finance text ("liability", "tax", "cost" are not negative there).
  The lists here are short, written for headlines, and include headline verbs ("beats",
  "plunges", "downgrade"). A word preceded within three words by a negation ("not", "no",
  "never", "without", "fails to", "n't") counts with the opposite sign, as in Loughran &
  McDonald's treatment of negated positive words. Polarity = (pos - neg) / (pos + neg),
  0 when no listed word appears.

:func:`load_scorer` picks FinBERT-style when the configured model is available locally and
the lexicon otherwise; the chosen scorer's ``name`` says which, for the asset metadata.

**The signal.** A stock that always gets glowing coverage is not news when it gets another
glowing headline. :func:`headline_polarity_zscore` therefore compares each symbol's mean
polarity over the last 24 hours with its own history: the daily mean polarities of the
previous ``history_days`` days (excluding the last 24 h). ``sentiment_z = (today - mean) / sd``.
With little history the symbol's mean and variance are shrunk towards a prior (mean 0, the
cross-sectional spread of daily polarity) with the weight of ``min_history_days`` days, so a
first headline gets a sensible, finite score. Symbols without headlines in the last 24 h get
``sentiment_z = 0`` (no news, no signal) and ``headlines_24h = 0``. z is clipped to [-5, 5].
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from ibkr_assets.quant.frames import require_columns

log = logging.getLogger(__name__)

POSITIVE_LABELS = frozenset({"positive", "pos", "bullish"})
NEGATIVE_LABELS = frozenset({"negative", "neg", "bearish"})
SENTIMENT_COLUMNS = (
    "polarity_24h",
    "headlines_24h",
    "polarity_hist_mean",
    "polarity_hist_std",
    "polarity_hist_days",
    "sentiment_z",
)


@runtime_checkable
class SentimentScorer(Protocol):
    """Anything that turns texts into polarities in [-1, 1]."""

    name: str

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """One polarity per text, float64, in [-1, 1]."""
        ...


class TransformersScorer:
    """A local sequence-classification model (e.g. FinBERT): polarity = P(pos) - P(neg)."""

    def __init__(self, model_path_or_name: str, batch_size: int = 32, max_length: int = 128):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path_or_name, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_path_or_name, local_files_only=True
        ).eval()
        labels = {int(i): str(label) for i, label in self.model.config.id2label.items()}
        self.positive = [i for i, label in labels.items() if label.lower() in POSITIVE_LABELS]
        self.negative = [i for i, label in labels.items() if label.lower() in NEGATIVE_LABELS]
        if not self.positive or not self.negative:
            raise ValueError(
                f"model {model_path_or_name!r} has labels {labels}: need a positive and a "
                f"negative class (one of {sorted(POSITIVE_LABELS)} / {sorted(NEGATIVE_LABELS)})"
            )
        self.batch_size = batch_size
        self.max_length = max_length
        self.name = f"transformers:{model_path_or_name}"

    def score(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(texts), dtype="float64")
        with self._torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = [str(t) for t in texts[start : start + self.batch_size]]
                encoded = self.tokenizer(
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                probs = self.model(**encoded).logits.softmax(dim=-1).double().numpy()
                out[start : start + len(batch)] = probs[:, self.positive].sum(axis=1) - probs[
                    :, self.negative
                ].sum(axis=1)
        return out


_POSITIVE_WORDS = """
    abundance accomplish accomplished achieve achieved achievement achievements advance advanced
    advances advantage advantageous advantages approval approve approved attain attractive beat
    beating beats beneficial benefit benefited benefits best better bolster bolstered boom
    booming boost boosted boosts breakthrough breakthroughs bullish buyback buybacks champion
    climb climbed climbs collaborate compliment confident constructive creative delight
    delighted dependable desirable easier effective efficiency efficient empower enable enabled
    encouraged encouraging enhance enhanced enhancement enjoy enthusiasm enthusiastic excellence
    excellent exceed exceeded exceeding exceeds exceptional excited exciting exclusive expand
    expanded expanding expansion favorable favorably favored gain gained gaining gains good
    great greater greatest grew grow growing growth happy higher highest honor ideal impress
    impressed impressive improve improved improvement improvements improves improving incredible
    innovate innovation innovative insightful inspiration integrity jump jumped jumps leadership
    leading lucrative momentum optimism optimistic outpace outpaced outperform outperformed
    outperforming outperforms outstanding overweight perfect pleased popular positive premium
    profitability profitable progress progressed prosper prosperity rally rallied rallies
    rebound rebounded rebounds record recover recovered recovery resolve resolved reward
    rewarding rise rises rising robust rose smooth soar soared soaring soars solid stabilize
    stability stable strength strengthen strengthened strengthening strong stronger strongest
    succeed succeeded success successes successful successfully superior surge surged surges
    surpass surpassed surpasses surging tops transparency tremendous unmatched unparalleled up
    upbeat upgrade upgraded upgrades upside upturn valuable versatile vibrant win winner winning
    wins
"""
_NEGATIVE_WORDS = """
    abandon abandoned ban banned abuse accident accusation accusations accuse accused adverse
    adversely allegation allegations alleged antitrust bad bankrupt bankruptcy bearish breach
    breached burden cancel canceled cancelled cancellation caution cautious cease challenge
    challenged challenging closure collapse collapsed collapses concern concerned concerns
    conflict contraction correction corruption costly crash crashed crashes crisis critical
    criticism criticized cut cuts cutting damage damaged damages danger dangerous decline
    declined declines declining decrease decreased default defaulted defaults defect defective
    deficit delay delayed delays delinquent delist delisted deny denied deteriorate deteriorated
    deteriorating deterioration difficult difficulties difficulty disappoint disappointed
    disappointing disappointment disappoints lowers lowered plunging slumping sinking tumbling
    disaster discontinue discontinued dispute disruption divest doubt downgrade downgraded
    downgrades downside downturn drop dropped drops dump erode eroded erosion error errors fail
    failed failing fails failure fall fallen falling falls fear fears fined fines flaw fraud
    fraudulent halt halted halts hurt impair impaired impairment inability inadequate incident
    ineffective inferior injunction insolvency insolvent instability investigation
    investigations lawsuit lawsuits layoff layoffs liquidate liquidation litigation lose loses
    losing loss losses lost lower lowest miss missed misses misstatement negative negatively
    obstacle obsolete outflow outflows penalty penalties plummet plummeted plummets plunge
    plunged plunges poor poorly probe problem problems protest recall recalled recalls recession
    reject rejected resign resigned resignation restate restated restatement restructuring
    retreat risky sank scandal sell-off selloff setback severe shortfall shrink shrinking sink
    sinks slash slashed slashes slide slides slip slipped slips slow slowdown slowed slows
    sluggish slump slumped slumps stall stalled stumble subpoena sue sued suffer suffered
    suspend suspended suspension tumble tumbled tumbles turmoil uncertain uncertainty
    underperform underperformed underweight unfavorable unprofitable unrest violate violated
    violation volatile volatility warn warned warning warns weak weaken weakened weakening
    weaker weakens weakness weighs worries worry worse worsen worsened worst writedown
    write-down writeoff
"""
_NEGATION_WORDS = """
    not no never none neither nor nobody nothing without cannot cant isnt wasnt arent werent
    dont doesnt didnt wont wouldnt shouldnt couldnt hasnt havent hadnt fail fails failed
"""
_NEGATORS = frozenset(_NEGATION_WORDS.split())
_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


class LexiconScorer:
    """Finance word lists with negation: polarity = (pos - neg) / (pos + neg)."""

    name = "lexicon:loughran-mcdonald-style"

    def __init__(self, negation_window: int = 3):
        self.positive = frozenset(_POSITIVE_WORDS.split())
        self.negative = frozenset(_NEGATIVE_WORDS.split())
        self.negation_window = negation_window

    def polarity(self, text: str) -> float:
        tokens = [t.replace("'", "") for t in _TOKEN.findall(str(text).lower())]
        pos = neg = 0
        for i, token in enumerate(tokens):
            sign = (token in self.positive) - (token in self.negative)
            if not sign or token in _NEGATORS:
                continue
            if any(t in _NEGATORS for t in tokens[max(0, i - self.negation_window) : i]):
                sign = -sign
            pos, neg = pos + (sign > 0), neg + (sign < 0)
        return 0.0 if pos + neg == 0 else (pos - neg) / (pos + neg)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.polarity(t) for t in texts], dtype="float64")


def load_scorer(model: str | None, batch_size: int = 32) -> SentimentScorer:
    """The transformers scorer for ``model`` (a local path or a model id already in the Hugging
    Face cache) when it loads offline, else the lexicon scorer (with a warning saying why).

    A model that loads but has no positive/negative labels is a configuration error and raises.
    """
    if not model:
        return LexiconScorer()
    try:
        return TransformersScorer(model, batch_size=batch_size)
    except OSError as exc:  # not in the cache / no such directory: never download
        where = "path" if Path(model).exists() else "model id (not in the local HF cache)"
        log.warning("sentiment model %r %s unusable, using the lexicon: %s", model, where, exc)
        return LexiconScorer()


def score_headlines(headlines: pd.DataFrame, scorer: SentimentScorer) -> pd.DataFrame:
    """``headlines`` (needs a ``headline`` column) with a ``polarity`` column; each distinct
    text is scored once."""
    if "headline" not in headlines.columns:
        raise ValueError("headlines lack the 'headline' column")
    text = headlines["headline"].fillna("").astype(str)
    unique = pd.unique(text.to_numpy())
    polarity = pd.Series(scorer.score(list(unique)), index=unique, dtype="float64")
    return headlines.assign(polarity=polarity.reindex(text.to_numpy()).to_numpy())


def split_headlines(
    headlines: pd.DataFrame, as_of: datetime | pd.Timestamp, hours: float, per_symbol: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``headlines`` (``symbol``, ``time`` in UTC, all before ``as_of``) split into the last
    ``hours`` before ``as_of`` — the ``per_symbol`` most recent of each symbol, newest first —
    and the older ones (the symbol's own sentiment baseline)."""
    start = pd.Timestamp(_utc(as_of)) - pd.Timedelta(hours=hours)
    mask = (headlines["time"] >= start).to_numpy()
    recent, history = headlines.loc[mask], headlines.loc[~mask]
    recent = (
        recent.sort_values(["symbol", "time"], ascending=[True, False])
        .groupby("symbol", sort=False)
        .head(per_symbol)
        .reset_index(drop=True)
    )
    return recent, history


def _utc(values: pd.Series | datetime | pd.Timestamp) -> pd.Series | pd.Timestamp:
    """Timestamps in UTC; naive ones are taken to be UTC."""
    if isinstance(values, pd.Series):
        return pd.to_datetime(values, utc=True, cache=False)
    ts = pd.Timestamp(values)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def headline_polarity_zscore(
    scored: pd.DataFrame,
    as_of: datetime | pd.Timestamp,
    symbols: Sequence[str] | None = None,
    window_hours: float = 24.0,
    history_days: int = 60,
    min_history_days: int = 5,
    default_sd: float = 0.5,
) -> pd.DataFrame:
    """Per symbol: mean polarity over ``(as_of - window_hours, as_of]``, its own history and
    the z-score (:data:`SENTIMENT_COLUMNS`), indexed by symbol: :func:`polarity_zscore_panel`
    of the one time ``as_of``.

    ``scored`` has ``symbol``, ``time`` and ``polarity`` (see :func:`score_headlines`); rows
    after ``as_of`` are ignored. Rows are ``symbols`` when given, else every symbol seen.
    ``default_sd`` is the prior spread used when not even two daily means exist to estimate it.
    """
    tape = HeadlineTape.of(scored)
    now = pd.Timestamp(_utc(as_of))
    if symbols is None:
        seen = np.isfinite(tape.polarity) & (tape.times <= now.value)
        symbols = sorted(set(tape.symbols[tape.codes[seen]]))
    index = pd.Index(list(symbols), name="symbol", dtype=object)
    panel = polarity_zscore_panel(
        tape,
        [now],
        list(index),
        window_hours=window_hours,
        history_days=history_days,
        min_history_days=min_history_days,
        default_sd=default_sd,
    )
    return pd.DataFrame({c: panel[c][0] for c in SENTIMENT_COLUMNS}, index=index)


@dataclass(frozen=True)
class HeadlineTape:
    """Scored headlines as arrays in time order (ties in their original order): ``codes``
    index ``symbols`` (sorted); ``times`` UTC nanoseconds; ``polarity`` (NaN: unscored);
    ``days`` the UTC day (days since 1970-01-01) each falls in; ``positions`` each one's row in
    the frame it was read from."""

    symbols: np.ndarray
    codes: np.ndarray
    times: np.ndarray
    polarity: np.ndarray
    days: np.ndarray
    positions: np.ndarray

    @classmethod
    def of(cls, scored: pd.DataFrame) -> HeadlineTape:
        """The tape of ``scored`` (``symbol``, ``time``, ``polarity``; naive times are UTC)."""
        require_columns(scored, "scored headlines", ("symbol", "time", "polarity"))
        times = _utc(scored["time"]).dt.tz_localize(None).to_numpy("datetime64[ns]")
        times = times.astype("int64")
        order = np.argsort(times, kind="stable")
        codes, symbols = pd.factorize(scored["symbol"].astype(str).to_numpy()[order], sort=True)
        polarity = pd.to_numeric(scored["polarity"], errors="coerce").to_numpy("float64")
        times = times[order]
        return cls(
            np.asarray(symbols, dtype=object),
            codes.astype("int64"),
            times,
            polarity[order],
            times // _DAY_NS,
            order.astype("int64"),
        )


_DAY_NS = 86_400 * 10**9
_HOUR_NS = 3_600 * 10**9


def polarity_zscore_panel(
    tape: HeadlineTape,
    as_ofs: Sequence[pd.Timestamp],
    symbols: Sequence[str],
    window_hours: float = 24.0,
    history_days: int = 60,
    min_history_days: int = 5,
    default_sd: float = 0.5,
    newest: tuple[float, int] | None = None,
    before_as_of: bool = False,
) -> dict[str, np.ndarray]:
    """:data:`SENTIMENT_COLUMNS` at each of ``as_ofs`` (UTC timestamps) for ``symbols``: column
    -> an ``as_ofs`` x ``symbols`` array, read from the ``tape`` as the module docstring says.

    At ``as_of``: the window is ``(as_of - window_hours, as_of]``, the history the
    ``history_days`` days before it, each symbol's daily means taken by UTC day (a partial day
    at either end is the mean of its headlines inside); ``polarity_24h`` the window's mean,
    ``headlines_24h`` its count; the symbol's mean and variance of its daily means are shrunk
    toward mean 0 and the prior spread with the weight of ``min_history_days`` days, the prior
    spread being the standard deviation of every symbol's daily means (of the window's
    per-symbol means with fewer than two, ``default_sd`` with fewer than two of those);
    ``sentiment_z = (polarity_24h - mean) / sd`` clipped to [-5, 5], 0 without news. Unscored
    headlines (NaN polarity) are left out. ``newest`` = ``(hours, per_symbol)``: of the
    headlines in ``[as_of - hours, as_of]`` only each symbol's newest ``per_symbol`` are read
    (as :func:`split_headlines` keeps them for the ingest); ``before_as_of``: a headline stamped
    exactly ``as_of`` is not read (the ingest fetches the news before its run time).

    Sums are taken in the order the ingest's frame holds the headlines (the history's in
    their original order, then those at the window's start; the window's newest first), with
    pandas' group reductions (the means with Kahan summation, the variance with Welford's
    algorithm, :func:`_kahan_welford` for the daily means' own), so each session's numbers are
    bit for bit those of the same call on that session alone: rank ICs of the z-scores, with
    their many exact ties, would otherwise move with the last bit."""
    sessions, n_codes = len(as_ofs), len(tape.symbols)
    if not sessions:
        counts = ("headlines_24h", "polarity_hist_days")
        return {
            c: np.zeros((0, len(symbols)), int if c in counts else float) for c in SENTIMENT_COLUMNS
        }
    days = history_days + 1  # the days a history window touches (both ends partial)
    plan = _plan(tape, as_ofs, window_hours, history_days, newest, before_as_of)
    session, rows = plan.recent
    today = pd.Series(tape.polarity[rows]).groupby(session * n_codes + tape.codes[rows])
    today = today.agg(["mean", "size"])
    x = _spread(today["mean"], sessions, n_codes)
    today_n = np.nan_to_num(_spread(today["size"], sessions, n_codes)).astype("int64")
    # each symbol's daily means: whole days once for every session, the partial ones per session
    first_day = int(plan.first_days.min())
    width = int(plan.first_days.max()) + days - first_day
    whole = _daily_means(tape, np.argsort(tape.positions, kind="stable"), first_day, width)
    session, rows = plan.partial
    offset = tape.days[rows] - plan.first_days[session]
    partial = pd.Series(tape.polarity[rows]).groupby(
        (session * n_codes + tape.codes[rows]) * days + offset
    )
    partial = partial.mean()
    key = partial.index.to_numpy()
    partial_at = (key // days // n_codes, key // days % n_codes, key % days)
    mean = np.full((sessions, n_codes), np.nan)
    var = np.full((sessions, n_codes), np.nan)
    n = np.zeros((sessions, n_codes))
    prior_sd = np.full(sessions, default_sd)
    for a in range(0, sessions, _CHUNK):
        b = min(a + _CHUNK, sessions)
        columns = plan.first_days[a:b, None] - first_day + np.arange(days)
        daily = whole[:, columns].transpose(1, 0, 2)  # sessions x symbols x days
        for i in range(a, b):
            daily[i - a, :, plan.partial_days[i]] = np.nan
        chosen = (partial_at[0] >= a) & (partial_at[0] < b)
        daily[partial_at[0][chosen] - a, partial_at[1][chosen], partial_at[2][chosen]] = (
            partial.to_numpy()[chosen]
        )
        mean[a:b], var[a:b], n[a:b] = _kahan_welford(daily)
        for i in range(a, b):
            pool = daily[i - a][np.isfinite(daily[i - a])]  # by symbol, then day
            if len(pool) < 2:
                pool = x[i][today_n[i] > 0]
            if len(pool) >= 2:
                sd = float(np.std(pool, ddof=1))
                prior_sd[i] = sd if np.isfinite(sd) and sd > 0 else default_sd
    k = float(min_history_days)
    shrunk_mean = n * np.nan_to_num(mean) / (n + k)
    dof = np.maximum(n - 1, 0)
    shrunk_sd = np.sqrt((dof * np.nan_to_num(var) + k * prior_sd[:, None] ** 2) / (dof + k))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.clip(np.nan_to_num((x - shrunk_mean) / shrunk_sd, nan=0.0), -5.0, 5.0)
    wanted = pd.Index(tape.symbols).get_indexer(pd.Index(list(symbols), dtype=object))
    has = wanted >= 0
    out = {}
    for column, values, missing in (
        ("polarity_24h", x, np.nan),
        ("headlines_24h", today_n, 0),
        ("polarity_hist_mean", mean, np.nan),
        ("polarity_hist_std", np.sqrt(var), np.nan),
        ("polarity_hist_days", n.astype("int64"), 0),
        ("sentiment_z", z, 0.0),
    ):
        full = np.full((sessions, len(wanted)), missing, dtype=values.dtype)
        full[:, has] = values[:, wanted[has]]
        out[column] = full
    return out


#: sessions whose dense daily means (sessions x symbols x days) are held at once
_CHUNK = 128


@dataclass(frozen=True)
class _Plan:
    """Which tape rows each session reads, as (session number, tape row) arrays in summation
    order: ``recent`` the window's, ``partial`` the history's on its partial days;
    ``first_days`` each session's first history day (UTC day number) and ``partial_days`` the
    offsets from it of the days read per session (the rest are whole days, the same for every
    session)."""

    recent: tuple[np.ndarray, np.ndarray]
    partial: tuple[np.ndarray, np.ndarray]
    first_days: np.ndarray
    partial_days: list[np.ndarray]


def _plan(
    tape: HeadlineTape,
    as_ofs: Sequence[pd.Timestamp],
    window_hours: float,
    history_days: int,
    newest: tuple[float, int] | None,
    before_as_of: bool,
) -> _Plan:
    """Each session's window rows and partial-day history rows (:class:`_Plan`)."""
    window = round(window_hours * _HOUR_NS)
    history = history_days * _DAY_NS
    times, scored = tape.times, np.isfinite(tape.polarity)
    recent: list[np.ndarray] = []
    partial: list[np.ndarray] = []
    first_days = np.zeros(len(as_ofs), dtype="int64")
    partial_days = []
    for i, as_of in enumerate(as_ofs):
        now = pd.Timestamp(_utc(as_of)).value
        start = now - window
        lo = int(np.searchsorted(times, start - history, side="right"))
        first = int(np.searchsorted(times, start, side="left"))
        mid = int(np.searchsorted(times, start, side="right"))
        hi = int(np.searchsorted(times, now, side="left" if before_as_of else "right"))
        read = scored[: max(hi, mid)].copy()
        # the day of the history's first instant, the day of its last; from the cap's first
        # day on, a day's headlines may be capped, so it is read per session too
        first_days[i] = (start - history + 1) // _DAY_NS
        last_whole = start // _DAY_NS
        if newest is not None:
            hours, per_symbol = newest
            since = now - round(hours * _HOUR_NS)
            capped = max(int(np.searchsorted(times, since, side="left")), lo)
            read[capped:hi] &= _newest(tape, capped, hi, per_symbol)
            last_whole = min(last_whole, since // _DAY_NS)
        # partial days: the first, and from the last whole one on
        head = int(np.searchsorted(times, (first_days[i] + 1) * _DAY_NS, side="left"))
        tail = max(int(np.searchsorted(times, last_whole * _DAY_NS, side="left")), head)
        older = np.r_[np.arange(lo, min(head, first)), np.arange(max(tail, lo), first)]
        older = older[np.argsort(tape.positions[older], kind="stable")]
        at_start = np.arange(first, mid)
        at_start = at_start[np.argsort(tape.positions[first:mid], kind="stable")]
        rows = np.concatenate([older, at_start])
        partial.append(rows[read[rows]])
        offsets = np.arange(history_days + 1)
        partial_days.append(offsets[(offsets == 0) | (offsets >= last_whole - first_days[i])])
        span = np.arange(mid, max(hi, mid))
        rows = span[np.lexsort((tape.positions[span], -times[span]))]
        recent.append(rows[read[rows]])
    return _Plan(_numbered(recent), _numbered(partial), first_days, partial_days)


def _newest(tape: HeadlineTape, first: int, hi: int, per_symbol: int) -> np.ndarray:
    """Which tape rows of ``[first, hi)`` are among their symbol's ``per_symbol`` newest there
    (of equal times, the earlier in the frame first)."""
    codes = tape.codes[first:hi]
    order = np.lexsort((tape.positions[first:hi], -tape.times[first:hi], codes))
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.zeros(hi - first, dtype=bool)
    keep[order[rank < per_symbol]] = True
    return keep


def _daily_means(tape: HeadlineTape, rows: np.ndarray, first_day: int, width: int) -> np.ndarray:
    """Symbols x days (``width`` from ``first_day``) mean polarity of the scored ``rows`` (in
    summation order) of each symbol and day, NaN without one."""
    rows = rows[np.isfinite(tape.polarity[rows])]
    offset = tape.days[rows] - first_day
    rows, offset = rows[(offset >= 0) & (offset < width)], offset[(offset >= 0) & (offset < width)]
    means = pd.Series(tape.polarity[rows]).groupby(tape.codes[rows] * width + offset).mean()
    out = np.full(len(tape.symbols) * width, np.nan)
    out[means.index.to_numpy()] = means.to_numpy()
    return out.reshape(len(tape.symbols), width)


def _kahan_welford(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along the last axis of ``values`` (NaN skipped): the mean by Kahan summation, the
    variance (ddof 1, NaN below two values) by Welford's algorithm and the count, as pandas'
    ``groupby`` mean and var compute them (the same operations in the same order, so the same
    bits: tests/unit/test_sentiment.py checks it against pandas)."""
    shape = values.shape[:-1]
    total, compensation, count = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    mean, m2 = np.zeros(shape), np.zeros(shape)
    for j in range(values.shape[-1]):
        v = values[..., j]
        ok = np.isfinite(v)
        count = count + ok
        y = v - compensation
        t = total + y
        compensation = np.where(ok, (t - total) - y, compensation)
        total = np.where(ok, t, total)
        previous = mean
        mean = np.where(ok, mean + (v - previous) / np.maximum(count, 1), mean)
        m2 = np.where(ok, m2 + (v - mean) * (v - previous), m2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count, np.where(count > 1, m2 / (count - 1), np.nan), count


def _numbered(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-session row arrays as (session number, row) arrays."""
    sizes = [len(r) for r in rows]
    session = np.repeat(np.arange(len(rows), dtype="int64"), sizes)
    return session, np.concatenate(rows) if rows else np.zeros(0, dtype="int64")


def _spread(values: pd.Series, sessions: int, n_codes: int) -> np.ndarray:
    """A Series keyed ``session * n_codes + code`` as a sessions x codes array (NaN: absent)."""
    out = np.full(sessions * n_codes, np.nan)
    out[values.index.to_numpy()] = values.to_numpy("float64")
    return out.reshape(sessions, n_codes)
