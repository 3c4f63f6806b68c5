"""Social chatter (``IBKR_SOCIAL_``): where the ``social_chatter`` ingest asset counts posts and
messages naming each symbol, and how much of a source's rate limit one run may use.

The credentials of Reddit are secrets (:data:`~ibkr_assets.settings.secret.REDDIT_CLIENT_ID`,
:data:`~ibkr_assets.settings.secret.REDDIT_CLIENT_SECRET`, read at each fetch); the client
secret's file may also be named by ``IBKR_SOCIAL_REDDIT_CLIENT_SECRET_FILE``, its older name.
StockTwits' public symbol streams need no credentials. X (Twitter) is not offered: its API's
read access is paid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ibkr_assets.settings.pipeline import EnvList

#: The sources ``IBKR_SOCIAL_SOURCE`` names.
SocialSource = Literal["sim", "reddit", "stocktwits", "none"]


class SocialSettings(BaseSettings):
    """The social-chatter source from ``IBKR_SOCIAL_*``."""

    model_config = SettingsConfigDict(env_prefix="IBKR_SOCIAL_", extra="ignore")

    source: SocialSource = Field(
        "sim",
        description="where social chatter comes from: sim (the simulated world: post and mention "
        "counts), reddit (posts, PRAW; REDDIT_CLIENT_ID / REDDIT_CLIENT_SECRET), stocktwits "
        "(messages of the public symbol streams) or none",
    )
    subreddits: EnvList = Field(
        default_factory=lambda: ["wallstreetbets"],
        description="subreddits searched for each symbol (IBKR_SOCIAL_SOURCE=reddit)",
    )
    reddit_user_agent: str = Field(
        "python:ibkr-agent:0.1 (social chatter counts)",
        description="User-Agent of the Reddit requests (Reddit asks for a unique, descriptive one "
        "naming the app and its Reddit user)",
    )
    history_sessions: int = Field(
        121,
        ge=41,
        description="sessions of chatter per symbol the ingest asks for (the z-scores compare the "
        "last with the 60 before, themselves measured against the 60 before them: 121 in all, "
        "what a replay reads, so the daily job's scores equal the backtest's)",
    )
    max_requests: int = Field(
        200,
        ge=1,
        description="HTTP requests one run may send to the source (StockTwits allows 200 an hour "
        "without login); symbols beyond it are named as not counted",
    )
