"""Sentiment scorers (a tiny BERT classifier built here, through the FinBERT loading code;
the finance lexicon) and the per-symbol headline z-score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from ibkr_assets.quant.sentiment import (
    SENTIMENT_COLUMNS,
    HeadlineTape,
    LexiconScorer,
    SentimentScorer,
    TransformersScorer,
    _kahan_welford,
    headline_polarity_zscore,
    load_scorer,
    polarity_zscore_panel,
    score_headlines,
    split_headlines,
)

HEADLINES = [
    "Acme beats estimates and raises guidance",
    "Acme shares plunge after profit warning",
    "Acme to hold annual meeting on Tuesday",
    "Regulators open probe into Acme accounting",
    "Acme",
]
VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "acme", "beats", "estimates", "and", "raises",
    "guidance", "shares", "plunge", "after", "profit", "warning", "to", "hold", "annual",
    "meeting", "on", "tuesday", "regulators", "open", "probe", "into", "accounting",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with FinBERT's label names, saved like a downloaded model."""
    path = tmp_path_factory.mktemp("tiny-finbert")
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
        id2label={0: "positive", 1: "negative", 2: "neutral"},
        label2id={"positive": 0, "negative": 1, "neutral": 2},
    )
    BertForSequenceClassification(config).save_pretrained(path)
    return path


def test_transformers_scorer_equals_direct_forward_pass(tiny_model: Path) -> None:
    scorer = load_scorer(str(tiny_model), batch_size=2)  # 3 batches, the last one short
    assert isinstance(scorer, TransformersScorer) and isinstance(scorer, SentimentScorer)
    assert scorer.name == f"transformers:{tiny_model}"
    polarity = scorer.score(HEADLINES)
    assert polarity.shape == (len(HEADLINES),) and polarity.dtype == np.float64
    assert np.all(np.abs(polarity) <= 1.0)
    # Independent path: the slow Python tokenizer, one text at a time, no padding.
    tokenizer = BertTokenizer.from_pretrained(tiny_model)
    model = BertForSequenceClassification.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        expected = []
        for text in HEADLINES:
            probs = torch.softmax(model(**tokenizer(text, return_tensors="pt")).logits[0], -1)
            expected.append(float(probs[0] - probs[1]))
    np.testing.assert_allclose(polarity, expected, atol=1e-5)
    assert np.ptp(polarity) > 0  # a real model, not a constant


def test_model_without_sentiment_labels_is_an_error(tiny_model: Path, tmp_path: Path) -> None:
    model = BertForSequenceClassification.from_pretrained(tiny_model)
    model.config.id2label = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(tmp_path)
    BertTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="LABEL_0"):
        load_scorer(str(tmp_path))


def test_unavailable_model_falls_back_to_lexicon(tmp_path: Path) -> None:
    for model in (None, "", str(tmp_path / "absent"), "ProsusAI/not-a-cached-model"):
        scorer = load_scorer(model)
        assert isinstance(scorer, LexiconScorer)
        assert scorer.name.startswith("lexicon")


def test_lexicon_polarity_and_negation() -> None:
    lexicon = LexiconScorer()
    texts = [
        "Apple beats estimates, revenue surges to a record",
        "Boeing plunges after FAA probe and delivery delays",
        "Tesla did not beat expectations",
        "Bank says no losses from the exposure",
        "Strong quarter but guidance disappoints",
        "Company to hold annual meeting",
        "Retailer doesn't expect improvement",
    ]
    np.testing.assert_allclose(lexicon.score(texts), [1.0, -1.0, -1.0, 1.0, 0.0, 0.0, -1.0])
    # Mixed: two positive words, one negative.
    assert lexicon.polarity("Strong gains despite lawsuit") == pytest.approx(1 / 3)


def _scored(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "time", "polarity"]).assign(
        time=lambda f: pd.to_datetime(f["time"], utc=True)
    )


def test_zscore_against_own_history() -> None:
    as_of = pd.Timestamp("2025-03-10 13:00", tz="America/New_York")  # 17:00 UTC
    history = [
        ("AAA", f"2025-02-{d:02d} 15:00", p)
        for d, p in zip(range(1, 21), np.tile([0.1, 0.3, 0.2, 0.4], 5), strict=True)
    ]
    rows = [
        *history,
        ("AAA", "2025-03-10 01:00", 0.9),  # inside the 24 h window (UTC)
        ("AAA", "2025-03-10 12:00", 0.7),
        ("AAA", "2025-03-10 18:00", -1.0),  # after as_of: ignored
        ("BBB", "2025-03-10 10:00", -0.4),  # no history at all
    ]
    out = headline_polarity_zscore(_scored(rows), as_of, symbols=["AAA", "BBB", "CCC"])
    assert list(out.columns) == list(SENTIMENT_COLUMNS)
    daily = np.tile([0.1, 0.3, 0.2, 0.4], 5)
    n, k = 20, 5
    mean = n * daily.mean() / (n + k)
    prior_sd = daily.std(ddof=1)  # pooled over every daily mean in the history
    sd = np.sqrt(((n - 1) * daily.var(ddof=1) + k * prior_sd**2) / (n - 1 + k))
    aaa = out.loc["AAA"]
    assert aaa["headlines_24h"] == 2 and aaa["polarity_hist_days"] == 20
    np.testing.assert_allclose(aaa["polarity_24h"], 0.8)
    np.testing.assert_allclose(aaa["sentiment_z"], min((0.8 - mean) / sd, 5.0))
    # No history: prior mean 0, prior sd; finite.
    np.testing.assert_allclose(out.loc["BBB", "sentiment_z"], -0.4 / prior_sd)
    # No headlines today: no signal.
    assert out.loc["CCC", "sentiment_z"] == 0.0 and out.loc["CCC", "headlines_24h"] == 0


def test_score_headlines_scores_each_text_once() -> None:
    class Counting:
        name = "counting"

        def __init__(self) -> None:
            self.calls: list[int] = []

        def score(self, texts: list[str]) -> np.ndarray:
            self.calls.append(len(texts))
            return np.array([len(t) / 100 for t in texts])

    frame = pd.DataFrame({"symbol": ["A", "B", "A"], "headline": ["up", "down", "up"]})
    scorer = Counting()
    out = score_headlines(frame, scorer)
    assert scorer.calls == [2]
    np.testing.assert_allclose(out["polarity"], [0.02, 0.04, 0.02])
    with pytest.raises(ValueError, match="headline"):
        score_headlines(frame.drop(columns="headline"), scorer)


def _reference_zscore(
    scored: pd.DataFrame, as_of: pd.Timestamp, symbols: list[str], history_days: int
) -> pd.DataFrame:
    """The one-session z-score written directly with pandas (the implementation before the
    panel), an independent check of :func:`polarity_zscore_panel`."""
    now = as_of.tz_convert("UTC")
    start = now - pd.Timedelta(hours=24)
    frame = scored.dropna(subset=["polarity"])
    frame = frame.loc[frame["time"] <= now]
    recent = frame.loc[frame["time"] > start]
    past = frame.loc[
        (frame["time"] <= start) & (frame["time"] > start - pd.Timedelta(days=history_days))
    ]
    index = pd.Index(symbols, name="symbol", dtype=object)
    today = recent.groupby("symbol")["polarity"].agg(["mean", "size"]).reindex(index)
    daily = past.groupby(["symbol", past["time"].dt.floor("D")])["polarity"].mean()
    hist = daily.groupby(level="symbol").agg(["mean", "var", "size"]).reindex(index)
    pool = daily if len(daily) >= 2 else recent.groupby("symbol")["polarity"].mean()
    prior_sd = float(pool.std(ddof=1)) if len(pool) >= 2 else 0.5
    prior_sd = prior_sd if np.isfinite(prior_sd) and prior_sd > 0 else 0.5
    n = hist["size"].fillna(0.0).to_numpy()
    mean = hist["mean"].fillna(0.0).to_numpy()
    var = hist["var"].fillna(0.0).to_numpy()
    shrunk_mean = n * mean / (n + 5.0)
    dof = np.maximum(n - 1, 0)
    shrunk_sd = np.sqrt((dof * var + 5.0 * prior_sd**2) / (dof + 5.0))
    x = today["mean"].to_numpy()
    z = np.clip(np.nan_to_num((x - shrunk_mean) / shrunk_sd, nan=0.0), -5.0, 5.0)
    return pd.DataFrame(
        {"polarity_24h": x, "headlines_24h": today["size"].fillna(0).to_numpy(), "z": z},
        index=index,
    )


def test_the_panel_is_bit_for_bit_the_one_session_computation() -> None:
    # discrete polarities (as the lexicon's) make many exactly tied z-scores: their ranks
    # change with the last bit, so the panel must sum in the one-session order
    rng = np.random.default_rng(3)
    n = 6000
    symbols = [f"S{i:02d}" for i in range(40)]
    minutes = rng.integers(0, 70 * 24 * 60, n)
    frame = pd.DataFrame(
        {
            "symbol": rng.choice(symbols, n),
            "time": pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(minutes, "min"),
            "polarity": rng.choice([-1.0, -0.5, -1 / 3, 0.0, 1 / 3, 0.5, 1.0, np.nan], n),
        }
    )
    as_ofs = [pd.Timestamp("2025-02-10 07:00", tz="America/New_York") + pd.Timedelta(days=d)
              for d in range(0, 25, 3)]  # fmt: skip
    # a headline exactly at one window's start and one exactly at a run time
    frame.loc[0, "time"] = as_ofs[1].tz_convert("UTC") - pd.Timedelta(hours=24)
    frame.loc[1, "time"] = as_ofs[2].tz_convert("UTC")
    tape = HeadlineTape.of(frame)
    for per_symbol in (10**6, 2):  # every headline; the ingest's cap of the newest two
        panel = polarity_zscore_panel(
            tape, as_ofs, symbols, history_days=30, newest=(24.0, per_symbol), before_as_of=True
        )
        assert (panel["headlines_24h"] > 0).any() and (panel["headlines_24h"] == 0).any()
        assert (panel["headlines_24h"] > 2).any() == (per_symbol > 2)
        for i, at in enumerate(as_ofs):
            # what the ingest holds at ``at``: the news before it, the last day's capped, newest
            # first, after the older
            before = frame.loc[frame["time"] < at.tz_convert("UTC")]
            ingest = pd.concat(split_headlines(before, at, 24.0, per_symbol)[::-1])
            want = _reference_zscore(ingest, at, symbols, 30)
            np.testing.assert_array_equal(panel["sentiment_z"][i], want["z"])
            np.testing.assert_array_equal(panel["polarity_24h"][i], want["polarity_24h"])
            np.testing.assert_array_equal(panel["headlines_24h"][i], want["headlines_24h"])
            one = headline_polarity_zscore(ingest, at, symbols=symbols, history_days=30)
            np.testing.assert_array_equal(one["sentiment_z"], want["z"])


def test_kahan_welford_is_pandas_group_mean_and_var() -> None:
    rng = np.random.default_rng(4)
    values = rng.choice([-1.0, -0.5, -1 / 3, 0.0, 0.2, 1 / 3, 0.5, 2 / 3, 1.0], (3000, 31))
    values = (values + rng.permutation(values.ravel()).reshape(values.shape)) / 3
    values[rng.random(values.shape) < 0.6] = np.nan
    mean, var, count = _kahan_welford(values)
    group, _ = np.nonzero(np.isfinite(values))
    want = pd.Series(values[np.isfinite(values)]).groupby(group).agg(["mean", "var", "size"])
    want = want.reindex(range(len(values)))
    np.testing.assert_array_equal(mean, want["mean"])
    np.testing.assert_array_equal(var, want["var"])
    np.testing.assert_array_equal(count, want["size"].fillna(0))
    # naive summation differs in the last bit for some groups: the order of operations matters
    assert not np.array_equal(np.nansum(values, axis=1) / count, want["mean"], equal_nan=True)
