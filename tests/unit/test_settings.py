"""The settings tree: one model, every variable documented in README.md, malformed values named,
read once per process, and no field declared twice for a section and its Dagster resource."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from ibkr_assets.broker.settings import BrokerConnection, BrokerSettings
from ibkr_assets.errors import ConfigurationError, env_variables
from ibkr_assets.resources import build_resources
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.settings import (
    MCP_TOKEN,
    SECRETS,
    TABLE_BEGIN,
    TABLE_END,
    SecretError,
    env_sections,
    load_settings,
    settings_table,
    with_table,
)

PROJECT = Path(__file__).resolve().parents[2]
#: Where a variable may still be read outside the settings tree: the secrets, read at each use,
#: the Dagster instance's storage (IBKR_PG_*, read where Dagster opens the instance, in the
#: webserver and daemon too; not in the tree yet: a section would change README's table),
#: and environments handed to a subprocess (the MCP server's pipeline launch and CLI re-exec
#: copy os.environ).
READS_ALLOWED = {
    "ibkr_assets/settings/tree.py",
    "ibkr_assets/settings/secret.py",
    "mcp_server/pipeline.py",
    "mcp_server/cli.py",
}


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (PROJECT / "README.md").read_text()
    assert with_table(readme) == readme, "run: python -m ibkr_assets.settings --readme README.md"
    assert TABLE_BEGIN in readme and TABLE_END in readme


def test_the_defaults_fail_a_run_on_a_gateway_that_stays_down_within_two_minutes() -> None:
    """Issue #16: a gateway that stays down fails the run in at most 2 minutes. Mid-run the
    backend reconnects for IBKR_RECONNECT_SECONDS, then may still be in one attempt (up to
    IBKR_TIMEOUT on a gateway that accepts and never answers) after one backoff wait (8 s and
    0.5 s of jitter at most); at the start, IBKR_CONNECT_ATTEMPTS attempts with the waits
    between them (0.5, 1, 2, 4, 8 ... s, each with up to 0.5 s of jitter; a closed port refuses
    at once). Measured on loopback: 8-9 s at the start, 65 s after a kill (closed port)."""
    default = {name: f.default for name, f in BrokerSettings.model_fields.items()}
    waits = sum(min(0.5 * 2**i, 8.0) + 0.5 for i in range(default["connect_attempts"] - 1))
    assert waits <= 10.0
    assert default["reconnect_seconds"] + 8.5 + default["timeout"] <= 120.0 - waits


def test_every_field_has_a_documented_variable() -> None:
    table = settings_table()
    for section in env_sections().values():
        prefix = str(section.model_config.get("env_prefix", ""))
        for name, field in section.model_fields.items():
            assert field.description, f"{section.__name__}.{name} has no description"
            for variable in env_variables(name, field, prefix):
                assert f"`{variable}`" in table, f"{variable} is not in the table"
    for secret in SECRETS:
        assert f"| `{secret.variable}` |" in table
    for variable in ("IBKR_TIMEOUT", "IBKR_CONNECT_ATTEMPTS", "IBKR_DECIDE_CONFIG"):
        assert re.search(rf"^\| `{variable}` \| [^|]+ \| \w", table, re.MULTILINE), variable


def test_a_malformed_variable_is_named_and_the_others_still_apply(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("IBKR_PORT", "four thousand")
    monkeypatch.setenv("IBKR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IBKR_PIPELINE_MAX_NOTIONAL", "-1")
    settings = load_settings()
    assert settings.broker.port == 4002 and settings.broker.data_dir == str(tmp_path)
    assert "IBKR_PORT='four thousand'" in settings.problems["broker"]
    assert "IBKR_PIPELINE_MAX_NOTIONAL='-1'" in settings.problems["pipeline_orders"]
    assert settings.checked("pipeline", "decide") is settings  # other sections are usable
    with pytest.raises(ConfigurationError, match=r"IBKR_PORT='four thousand' \(7497 TWS paper"):
        settings.checked("broker")
    ib = build_resources()["ib"]  # the code location loads; a run using ib fails at start
    assert "IBKR_PORT" in (ib.problem or "") and "IBKR_PIPELINE_MAX_NOTIONAL" in ib.problem


def test_a_secret_is_never_shown_in_the_problem(monkeypatch) -> None:
    monkeypatch.setenv("IBKR_MCP_TOKEN", "short-secret")
    with pytest.raises(SecretError, match="IBKR_MCP_TOKEN is 12 characters") as err:
        MCP_TOKEN.read()
    assert "short-secret" not in str(err.value)


def test_the_settings_are_read_once_until_a_variable_changes(monkeypatch) -> None:
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", "30")
    first = load_settings()
    assert load_settings() is first and first.broker.sim_symbols == 30
    monkeypatch.setenv("IBKR_SIM_SYMBOLS", "40")
    assert load_settings().broker.sim_symbols == 40


def test_updated_validates_and_does_not_read_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("IBKR_KILL_SWITCH", "true")
    settings = load_settings()
    demo = settings.updated(broker={"backend": "tws", "port": 4010}, pipeline={"watchlist": ["A"]})
    assert (demo.broker.backend, demo.broker.port, demo.pipeline.watchlist) == ("tws", 4010, ["A"])
    assert demo.broker.kill_switch and settings.broker.backend == "sim"
    with pytest.raises(ValidationError):
        settings.updated(pipeline={"watchlist": ["NOT;A;TICKER"]})


def test_the_ib_resource_declares_no_field_of_its_own(monkeypatch, tmp_path) -> None:
    assert set(IBResource.model_fields) == {*BrokerConnection.model_fields, "problem"}
    monkeypatch.setenv("IBKR_ALLOW_SYMBOLS", "aapl,msft")
    monkeypatch.setenv("IBKR_CONNECT_ATTEMPTS", "2")
    resource = IBResource(port=4010, data_dir=tmp_path)  # a Path is kept as its text
    settings = resource.settings()
    assert (settings.port, settings.data_dir) == (4010, str(tmp_path))
    assert settings.allow_symbols == ["AAPL", "MSFT"] and settings.connect_attempts == 2


def test_the_simulator_clock_is_iso_text_and_refuses_other_text() -> None:
    pinned = BrokerSettings(sim_now=datetime(2024, 6, 3, 15, tzinfo=UTC))
    assert pinned.sim_now == "2024-06-03T15:00:00+00:00"
    assert pinned.sim_clock == datetime(2024, 6, 3, 15, tzinfo=UTC)
    assert BrokerSettings(sim_now="2024-06-03T15:00:00Z").sim_clock == pinned.sim_clock
    with pytest.raises(ValidationError):
        BrokerSettings(sim_now="yesterday at three")


def test_only_the_settings_tree_reads_the_environment() -> None:
    readers = {
        str(path.relative_to(PROJECT))
        for package in ("ibkr_assets", "mcp_server")
        for path in (PROJECT / package).rglob("*.py")
        if re.search(r"os\.environ|getenv", path.read_text())
    }
    assert readers <= READS_ALLOWED, readers
