import numpy as np
import pandas as pd
import pytest

from ibkr_assets.quant.overlay import (
    DEFAULT_RULES_PATH,
    Cap,
    HeadlineContains,
    RulesError,
    SentimentBelow,
    apply_overlay,
    load_rules,
    parse_rules,
)

W = pd.Series({"AAA": 0.10, "BBB": 0.08, "CCC": 0.12, "DDD": 0.06, "EEE": -0.04})
AS_OF = pd.Timestamp("2026-11-24 13:00", tz="UTC")
HEADLINES = pd.DataFrame(
    {
        "symbol": ["BBB", "BBB", "DDD", "EEE"],
        "time": pd.to_datetime(
            ["2026-11-24 09:00", "2026-11-22 09:00", "2026-11-22 10:00", "2026-11-24 12:00"],
            utc=True,
        ),
        "headline": [
            "BBB shares slide after FDA BAN on lead drug",
            "BBB beats estimates",
            "DDD faces FDA ban",  # older than 24 h: ignored
            "EEE announces buyback",
        ],
    }
)
SENTIMENT = pd.Series({"AAA": -3.1, "BBB": 0.2, "CCC": -1.8, "EEE": -2.0})


def test_default_rules_file_loads_and_applies():
    rules = load_rules(DEFAULT_RULES_PATH)
    assert [type(r) for r in rules] == [SentimentBelow, HeadlineContains, Cap]
    res = apply_overlay(W, rules, sentiment=SENTIMENT, headlines=HEADLINES, as_of=AS_OF)
    expected = {"AAA": 0.0, "BBB": 0.0, "CCC": 0.05, "DDD": 0.06, "EEE": -0.04}
    np.testing.assert_allclose(res.weights[list(expected)].to_numpy(), list(expected.values()))
    got = [(o.symbol, o.rule, o.weight_before, o.weight_after) for o in res.overrides]
    assert got == [
        ("AAA", "sentiment_collapse", 0.10, 0.0),
        ("BBB", "event_risk_headline", 0.08, 0.0),
        ("CCC", "negative_sentiment_cap", 0.12, 0.05),
    ]
    assert res.overrides[0].reason == "sentiment z -3.10 < -2.5"
    assert (
        "'FDA ban'" in res.overrides[1].reason and "FDA BAN on lead drug" in res.overrides[1].reason
    )
    frame = res.overrides_frame()
    assert list(frame.columns) == ["symbol", "rule", "reason", "weight_before", "weight_after"]
    assert W["AAA"] == 0.10  # input not modified


def test_scale_symbols_and_short_caps():
    rules = parse_rules(
        {
            "rules": [
                {"name": "halve", "type": "sentiment_below", "threshold": -1.9, "scale": 0.5},
                {"name": "cap_e", "type": "cap", "max_weight": 0.01, "symbols": ["EEE"]},
            ]
        }
    )
    res = apply_overlay(W, rules, sentiment=SENTIMENT)
    assert res.weights["AAA"] == pytest.approx(0.05)
    assert res.weights["EEE"] == pytest.approx(-0.01)  # halved to -0.02, then capped, sign kept
    assert [o.rule for o in res.overrides] == ["halve", "halve", "cap_e"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"rules": [{"name": "x", "type": "sentiment_blow", "threshold": 1}]}, r"rule #1 \('x'\)"),
        ({"rules": [{"name": "neg", "type": "sentiment_below"}]}, r"\('neg'\).*threshold"),
        (
            {"rules": [{"name": "h", "type": "headline_contains", "phrases": []}]},
            r"\('h'\).*phrases",
        ),
        (
            {"rules": [{"name": "c", "type": "cap", "max_weight": 0.1, "typo": 1}]},
            r"\('c'\).*typo",
        ),
        ({"rules": "nope"}, "expected a mapping with a 'rules' list"),
    ],
)
def test_malformed_rules_name_the_rule(doc, message):
    with pytest.raises(RulesError, match=message):
        parse_rules(doc, "news_rules.yaml")


def test_malformed_file_and_missing_inputs(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("rules: [\n")
    with pytest.raises(RulesError, match="cannot read the rules YAML"):
        load_rules(p)
    dup = {"rules": [{"name": "a", "type": "cap", "max_weight": 0.1}] * 2}
    with pytest.raises(RulesError, match="duplicate rule name"):
        parse_rules(dup)
    rules = load_rules()
    with pytest.raises(ValueError, match="need sentiment scores"):
        apply_overlay(W, rules, headlines=HEADLINES, as_of=AS_OF)
    with pytest.raises(ValueError, match="need as_of"):
        apply_overlay(W, rules, sentiment=SENTIMENT, headlines=HEADLINES)
    with pytest.raises(ValueError, match=r"NaN or infinite target weight for \['AAA'\]"):
        apply_overlay(W.replace(0.10, np.nan), rules, sentiment=SENTIMENT, as_of=AS_OF)
