"""The headline sentiment scorer: a FinBERT-style transformers classifier, or a finance lexicon.

``IBKR_SENTIMENT_MODEL`` names a local model directory or a model already in the Hugging Face
cache (``ProsusAI/finbert`` is the usual one; nothing is downloaded at run time). Without it,
or when the model cannot be loaded offline, headlines are scored with the finance lexicon of
:mod:`ibkr_assets.quant.sentiment` (``load_scorer`` decides and logs why). The scorer is loaded
once per process, on first use, so loading the code location never imports torch.
"""

from __future__ import annotations

import functools

from ibkr_assets.errors import SettingsResource
from ibkr_assets.quant.sentiment import SentimentScorer, load_scorer
from ibkr_assets.settings import SentimentFields, Settings


@functools.lru_cache(maxsize=4)
def _load(model: str | None, batch_size: int) -> SentimentScorer:
    return load_scorer(model, batch_size=batch_size)


class SentimentResource(SettingsResource, SentimentFields):
    """Which sentiment model scores the headlines (None = the finance lexicon)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SentimentResource:
        """The ``sentiment`` section (``IBKR_SENTIMENT_MODEL`` / ``IBKR_SENTIMENT_BATCH_SIZE``)."""
        return cls(**settings.sentiment.model_dump(), problem=settings.problem("sentiment"))

    def scorer(self) -> SentimentScorer:
        """The loaded scorer, cached per process."""
        return _load(self.model, self.batch_size)
