"""The headline sentiment scorer: a FinBERT-style transformers classifier, or a finance lexicon.

``IBKR_SENTIMENT_MODEL`` names a local model directory or a model already in the Hugging Face
cache (``ProsusAI/finbert`` is the usual one; nothing is downloaded at run time). Without it,
or when the model cannot be loaded offline, headlines are scored with the finance lexicon of
:mod:`ibkr_assets.quant.sentiment` (``load_scorer`` decides and logs why). The scorer is loaded
once per process, on first use, so loading the code location never imports torch.
"""

from __future__ import annotations

import functools

import dagster as dg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.quant.sentiment import SentimentScorer, load_scorer


class _SentimentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IBKR_SENTIMENT_", extra="ignore")

    model: str | None = None
    batch_size: int = 32


@functools.lru_cache(maxsize=4)
def _load(model: str | None, batch_size: int) -> SentimentScorer:
    return load_scorer(model, batch_size=batch_size)


class SentimentResource(dg.ConfigurableResource):
    """Which sentiment model scores the headlines (None = the finance lexicon)."""

    model: str | None = Field(None, description="local path or HF-cache id of a classifier")
    batch_size: int = Field(32, ge=1, description="headlines per forward pass")

    @classmethod
    def from_env(cls) -> SentimentResource:
        """From ``IBKR_SENTIMENT_MODEL`` / ``IBKR_SENTIMENT_BATCH_SIZE``."""
        s = _SentimentSettings()
        return cls(model=s.model, batch_size=s.batch_size)

    def scorer(self) -> SentimentScorer:
        """The loaded scorer, cached per process."""
        return _load(self.model, self.batch_size)
