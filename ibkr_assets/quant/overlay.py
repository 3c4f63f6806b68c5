"""News & sentiment overlay: human rules applied to the optimiser's targets before any order.

The optimiser trusts the alpha scores; a trader knows some news overrides any model — an FDA ban,
a fraud allegation, a sentiment collapse. The overlay applies a short list of rules from a YAML
file, in order, to the target weights, and records every change (symbol, rule, reason, weight
before and after) for the decision journal. Weight removed by a rule is not redistributed: it
stays in cash until the next optimisation.

Rule types (``ibkr_assets/config/news_rules.yaml`` is the default file)::

    rules:
      - name: sentiment_collapse
        type: sentiment_below     # sentiment z-score below threshold -> weight × scale
        threshold: -2.5
        scale: 0.0                # optional, default 0 (drop)
      - name: regulatory_ban
        type: headline_contains   # any headline in the last window_hours contains a phrase
        phrases: ["FDA ban", "fraud"]   # case-insensitive
        window_hours: 24          # optional, default 24
        scale: 0.0
      - name: negative_news_cap
        type: cap                 # |w| at most max_weight ...
        max_weight: 0.05
        sentiment_below: -1.5     # ... optionally only when sentiment is below this
        symbols: [XYZ]            # ... optionally only for these symbols

A symbol without a sentiment score never triggers a sentiment rule (no news is not bad news).
Event-driven overrides of a quantitative book follow the practice described by Tetlock (2007),
"Giving content to investor sentiment", *J. Finance* 62(3): extreme media pessimism predicts
short-term price pressure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

DEFAULT_RULES_PATH = Path(__file__).resolve().parent.parent / "config" / "news_rules.yaml"


class _Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1)


class SentimentBelow(_Rule):
    """Scale (default: drop) a position whose sentiment z-score is below ``threshold``."""

    type: Literal["sentiment_below"]
    threshold: float
    scale: float = Field(0.0, ge=0, le=1)


class HeadlineContains(_Rule):
    """Scale (default: drop) a position with a recent headline containing any phrase."""

    type: Literal["headline_contains"]
    phrases: list[str] = Field(min_length=1)
    window_hours: float = Field(24.0, gt=0)
    scale: float = Field(0.0, ge=0, le=1)


class Cap(_Rule):
    """Cap ``|w|`` at ``max_weight``, optionally only for low sentiment or listed symbols."""

    type: Literal["cap"]
    max_weight: float = Field(ge=0)
    sentiment_below: float | None = None
    symbols: list[str] | None = None


Rule = Annotated[SentimentBelow | HeadlineContains | Cap, Field(discriminator="type")]
_RULE = TypeAdapter(Rule)


class RulesError(ValueError):
    """A malformed rules file; the message names the file and the rule."""


def parse_rules(data: object, source: str = "<rules>") -> list[Rule]:
    """Validate a loaded YAML document (``{"rules": [...]}``) into rule objects."""
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RulesError(f"{source}: expected a mapping with a 'rules' list")
    rules, names = [], set()
    for i, raw in enumerate(data["rules"]):
        label = raw.get("name") if isinstance(raw, dict) else None
        where = f"{source}: rule #{i + 1}" + (f" ({label!r})" if label else "")
        try:
            rule = _RULE.validate_python(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'rule'}: {e['msg']}" for e in exc.errors()
            )
            raise RulesError(f"{where}: {problems}") from None
        if rule.name in names:
            raise RulesError(f"{where}: duplicate rule name")
        names.add(rule.name)
        rules.append(rule)
    return rules


def load_rules(path: str | Path = DEFAULT_RULES_PATH) -> list[Rule]:
    """Read and validate a YAML rules file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: cannot read the rules YAML: {exc}") from exc
    return parse_rules(data, str(path))


@dataclass(frozen=True)
class Override:
    """One change the overlay made to a target weight."""

    symbol: str
    rule: str
    reason: str
    weight_before: float
    weight_after: float


@dataclass(frozen=True)
class OverlayResult:
    """The overlaid weights and every override, in the order applied."""

    weights: pd.Series
    overrides: list[Override]

    def overrides_frame(self) -> pd.DataFrame:
        """Overrides as a DataFrame (symbol, rule, reason, weight_before, weight_after)."""
        cols = list(Override.__dataclass_fields__)
        return pd.DataFrame([o.__dict__ for o in self.overrides], columns=cols)


def _recent_headlines(
    headlines: pd.DataFrame | None, as_of: pd.Timestamp, hours: float, symbols: pd.Index
) -> pd.DataFrame:
    """The headlines of ``symbols`` in the ``hours`` up to ``as_of``, in their order."""
    if headlines is None or headlines.empty:
        return pd.DataFrame(columns=["symbol", "time", "headline"])
    missing = {"symbol", "time", "headline"} - set(headlines.columns)
    if missing:
        raise ValueError(f"headlines need columns {sorted(missing)}")
    times = pd.to_datetime(headlines["time"], utc=True, cache=False)
    start = as_of - pd.Timedelta(hours=hours)
    recent = ((times > start) & (times <= as_of)).to_numpy()
    about = headlines["symbol"].astype(str).isin(symbols.astype(str)).to_numpy()
    return headlines.loc[recent & about].reset_index(drop=True)


def apply_overlay(
    weights: pd.Series,
    rules: list[Rule],
    *,
    sentiment: pd.Series | None = None,
    headlines: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
) -> OverlayResult:
    """Apply ``rules`` in order to ``weights``; ``sentiment`` is a z-score per symbol and
    ``headlines`` has ``symbol, time, headline`` (headlines up to ``as_of``, UTC, count)."""
    w = pd.Series(weights, dtype="float64").copy()
    bad = w.index[~np.isfinite(w.to_numpy())].tolist()
    if bad:
        raise ValueError(f"NaN or infinite target weight for {bad}")
    sent = None if sentiment is None else pd.Series(sentiment, dtype="float64")
    needs_sentiment = [
        r.name
        for r in rules
        if isinstance(r, SentimentBelow) or (isinstance(r, Cap) and r.sentiment_below is not None)
    ]
    if needs_sentiment and sent is None:
        raise ValueError(f"rules {needs_sentiment} need sentiment scores")
    needs_time = any(isinstance(r, HeadlineContains) for r in rules)
    ts = None
    if needs_time:
        if as_of is None:
            raise ValueError("headline rules need as_of (the decision time)")
        ts = pd.Timestamp(as_of)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    overrides: list[Override] = []

    def change(symbol: str, new: float, rule: Rule, reason: str) -> None:
        old = float(w[symbol])
        if new != old:
            w[symbol] = new
            overrides.append(Override(str(symbol), rule.name, reason, old, float(new)))

    for rule in rules:
        if isinstance(rule, SentimentBelow):
            low = sent.reindex(w.index) < rule.threshold
            for sym in w.index[low.to_numpy()]:
                change(
                    sym,
                    w[sym] * rule.scale,
                    rule,
                    f"sentiment z {sent[sym]:.2f} < {rule.threshold:g}",
                )
        elif isinstance(rule, HeadlineContains):
            # a zero weight scaled stays zero, so only held names can be overridden: only their
            # headlines are read
            held = w.index[(w != 0).to_numpy()]
            recent = _recent_headlines(headlines, ts, rule.window_hours, held)
            said = recent["headline"].astype(str).tolist()  # a missing one holds no phrase
            text = [line.lower() if isinstance(line, str) else "" for line in said]
            lines_of: dict[str, list[int]] = {}
            for i, symbol in enumerate(recent["symbol"].astype(str).tolist()):
                lines_of.setdefault(symbol, []).append(i)
            by_symbol = {s: np.array(rows, dtype=np.intp) for s, rows in lines_of.items()}
            # each phrase looked for once in every recent line; a symbol's lines index into it
            found = {
                p: np.array([p.lower() in line for line in text], dtype=bool) for p in rule.phrases
            }
            for sym in (s for s in held if str(s) in by_symbol):
                lines = by_symbol[str(sym)]
                for phrase in rule.phrases:
                    hit = lines[found[phrase][lines]]
                    if len(hit):
                        original = recent.at[int(hit[0]), "headline"]
                        change(
                            sym,
                            w[sym] * rule.scale,
                            rule,
                            f"headline contains {phrase!r}: {original!r}",
                        )
                        break
        else:
            mask = pd.Series(True, index=w.index)
            if rule.symbols is not None:
                mask &= w.index.isin(rule.symbols)
            if rule.sentiment_below is not None:
                mask &= (sent.reindex(w.index) < rule.sentiment_below).to_numpy()
            for sym in w.index[mask.to_numpy() & (w.abs() > rule.max_weight).to_numpy()]:
                capped = float(np.sign(w[sym]) * rule.max_weight)
                change(sym, capped, rule, f"|w| capped at {rule.max_weight:g}")
    return OverlayResult(w, overrides)
