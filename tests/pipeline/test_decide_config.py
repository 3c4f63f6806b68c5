"""DecideConfig: defaults, YAML overrides from IBKR_DECIDE_CONFIG, clear errors on bad files."""

from __future__ import annotations

import pytest

from ibkr_assets.decide_config import DecideConfig
from ibkr_assets.settings import load_settings


def _from_env() -> DecideConfig:
    """The ``decide`` resource of this environment's settings; raises on a bad file."""
    return DecideConfig.from_settings(load_settings().checked("decide"))


def test_defaults_are_the_issue_limits(monkeypatch):
    monkeypatch.delenv("IBKR_DECIDE_CONFIG", raising=False)
    c = _from_env()
    assert (c.max_gross, c.max_weight, c.cash_buffer) == (1.2, 0.12, 0.05)
    assert (c.concentration_max, c.liquidity_max_adv) == (0.12, 0.10)
    assert (c.whatif_shrink, c.auto_submit, c.long_only) == (0.8, False, True)
    assert c.scenario_sessions == 504


def test_yaml_overrides(tmp_path, monkeypatch):
    path = tmp_path / "limits.yaml"
    path.write_text("concentration_max: 0.05\nauto_submit: true\nsector_cap: null\n")
    monkeypatch.setenv("IBKR_DECIDE_CONFIG", str(path))
    c = _from_env()
    assert c.concentration_max == 0.05 and c.auto_submit is True and c.sector_cap is None
    assert c.max_weight == 0.12  # untouched fields keep their defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "concentraton_max: 0.05\n",
            "unknown key 'concentraton_max' .did you mean 'concentration_max'",
        ),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: [\n", "cannot read the YAML"),
    ],
)
def test_bad_yaml_is_named(tmp_path, monkeypatch, text, message):
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    monkeypatch.setenv("IBKR_DECIDE_CONFIG", str(path))
    with pytest.raises(ValueError, match=message):
        _from_env()


def test_out_of_range_limit_is_rejected():
    with pytest.raises(ValueError, match="max_weight"):
        DecideConfig(max_weight=1.5)
