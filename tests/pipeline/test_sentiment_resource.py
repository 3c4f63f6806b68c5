"""The sentiment resource: configured from the environment, falls back to the lexicon offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ibkr_assets.resources.sentiment import SentimentResource
from ibkr_assets.settings import load_settings


def test_no_model_means_the_finance_lexicon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IBKR_SENTIMENT_MODEL", raising=False)
    scorer = SentimentResource.from_settings(load_settings()).scorer()
    assert scorer.name.startswith("lexicon")
    polarity = scorer.score(["Acme beats estimates", "Acme shares plunge on SEC probe"])
    assert polarity[0] > 0 > polarity[1]


def test_model_that_is_not_available_offline_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-model"
    monkeypatch.setenv("IBKR_SENTIMENT_MODEL", str(missing))
    monkeypatch.setenv("IBKR_SENTIMENT_BATCH_SIZE", "8")
    resource = SentimentResource.from_settings(load_settings())
    assert resource.model == str(missing) and resource.batch_size == 8
    scorer = resource.scorer()
    assert scorer.name.startswith("lexicon")
    np.testing.assert_allclose(scorer.score(["neutral words only"]), [0.0])
