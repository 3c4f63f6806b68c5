"""The headline sentiment scorer: a FinBERT-style transformers classifier, or a finance lexicon.

``IBKR_SENTIMENT_MODEL`` names a local model directory or a model already in the Hugging Face
cache (``ProsusAI/finbert`` is the usual one; nothing is downloaded at run time). Without it,
or when ``IBKR_SENTIMENT_LEXICON`` names a word list instead, headlines are scored with the
finance lexicon of :mod:`ibkr_assets.quant.sentiment`. The scorer is loaded once per process,
on first use, so loading the code location never imports torch.
"""

from __future__ import annotations

import functools
from typing import Any

import dagster as dg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _SentimentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IBKR_SENTIMENT_", extra="ignore")

    model: str | None = None
    lexicon: str | None = None


@functools.lru_cache(maxsize=4)
def _load(model: str | None, lexicon: str | None) -> Any:
    from ibkr_assets.quant.sentiment import load_scorer  # transformers/torch load lazily

    return load_scorer(model=model, lexicon=lexicon)


class SentimentResource(dg.ConfigurableResource):
    """Which sentiment model scores the headlines."""

    model: str | None = Field(None, description="local path or HF-cache name of a classifier")
    lexicon: str | None = Field(None, description="path of a finance word list (lexicon scorer)")

    @classmethod
    def from_env(cls) -> SentimentResource:
        """From ``IBKR_SENTIMENT_MODEL`` / ``IBKR_SENTIMENT_LEXICON``."""
        s = _SentimentSettings()
        return cls(model=s.model, lexicon=s.lexicon)

    def scorer(self) -> Any:
        """The loaded scorer (cached per process)."""
        return _load(self.model, self.lexicon)
