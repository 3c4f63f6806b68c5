"""The pipeline's side of issue #13: its submission passes the same order guard, and any number
of simultaneous submissions of one ticket send each order once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import pytest

from ibkr_assets.assets.execution import TICKET_COLUMNS
from ibkr_assets.assets.submission import submit_ticket, unpromoted_live_account
from ibkr_assets.broker import BrokerSettings, connect
from ibkr_sim.gateway import running_clock, start_gateway
from ibkr_sim.gateway.profile import IB_PAPER

from .conftest import SESSION_TIME, SIM_SYMBOLS, World

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META"]
PREFIX = "ibkr-agent:2026-11-20:"


def _settings(world: World, **kw) -> BrokerSettings:
    return BrokerSettings(
        backend="sim",
        data_dir=world.data_dir,
        sim_now=SESSION_TIME,
        sim_symbols=SIM_SYMBOLS,
        **kw,
    )


def _ticket(world: World, quantity: int = 7) -> pd.DataFrame:
    broker = world.account()
    rows = []
    for sym in SYMBOLS:
        c = broker.resolve(sym)
        price = broker.quotes([c])[0].price
        rows.append(
            {
                "symbol": sym,
                "conid": c.conid,
                "action": "BUY",
                "quantity": quantity,
                "order_type": "MKT",
                "limit_price": float("nan"),
                "notional": quantity * price,
                "order_ref": f"{PREFIX}{sym}:BUY:{quantity}",
                "whatif_attempts": 1,
                "whatif_decision": "accepted",
                "maint_margin_after": 0.0,
                "commission": 1.0,
            }
        )
    return pd.DataFrame(rows, columns=list(TICKET_COLUMNS)).astype(TICKET_COLUMNS)


_WORKER = """
import json, sys, time
from datetime import datetime
import pandas as pd
from ibkr_assets.assets.execution import TICKET_COLUMNS
from ibkr_assets.assets.submission import submit_ticket
from ibkr_assets.broker import BrokerSettings, connect
from ibkr_sim.gateway import running_clock, start_gateway

data_dir, ticket_path, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
ticket = pd.DataFrame(json.load(open(ticket_path))).astype(TICKET_COLUMNS)
now, symbols = datetime.fromisoformat(sys.argv[4]), int(sys.argv[5])
backend, port, client_id = sys.argv[7], int(sys.argv[8]), int(sys.argv[9])
broker = connect(BrokerSettings(backend=backend, data_dir=data_dir, sim_now=now,
                                sim_symbols=symbols, port=port, client_id=client_id,
                                pacing=False))
while time.time() < start:
    time.sleep(0.001)
frame = submit_ticket(broker, ticket, sys.argv[6])
print(json.dumps(frame["outcome"].tolist()))
"""


@contextmanager
def _venue(world: World, backend: str) -> Iterator[int]:
    """The port of the simulated gateway on this world for ``tws``; 0 for the in-process sim."""
    if backend == "sim":
        yield 0
        return
    with start_gateway(
        host="127.0.0.1",
        port=0,
        seed=7,
        symbols=SIM_SYMBOLS,
        pacing="off",
        data_dir=world.data_dir,
        clock=running_clock(SESSION_TIME),
        # a paper login sharing a live account's US-equity data: delayed quotes are 15 minutes
        # old, and the guard rightly refuses marketable orders on them (max_quote_age_s)
        profile=IB_PAPER.with_options(
            live_data=IB_PAPER.live_data | {"STK"}, history_gap_rate=0.0, farm_drops_per_day=0.0
        ),
    ) as gateway:
        yield gateway.port


@pytest.mark.parametrize("backend", ["sim", "tws"])
def test_three_simultaneous_submissions_send_each_order_once(world: World, backend: str):
    ticket = _ticket(world)
    path = world.data_dir / "ticket.json"
    path.write_text(ticket.to_json(orient="records"))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with _venue(world, backend) as port:
        start = time.time() + 8.0  # every worker imported and connected by then
        outcomes = _run_workers(world, path, start, env, backend, port)
    assert Counter(outcomes)["placed"] == len(SYMBOLS)  # one worker placed each, once
    refs = Counter(e.order_ref for e in world.account().executions())
    assert refs == Counter(ticket["order_ref"])
    for sym in SYMBOLS:
        assert world.holdings(sym) == 7


def _run_workers(world, path, start, env, backend, port) -> list[str]:
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                str(world.data_dir),
                str(path),
                str(start),
                SESSION_TIME.isoformat(),
                str(SIM_SYMBOLS),
                PREFIX,
                backend,
                str(port),
                str(21 + n),  # one IB clientId per process, as IB requires
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for n in range(3)
    ]
    outcomes = []
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        outcomes += json.loads(out.strip().splitlines()[-1])
    return outcomes


def test_kill_switch_stops_the_pipelines_submission(world: World):
    (world.data_dir / "KILL").write_text("halt")
    frame = submit_ticket(connect(_settings(world)), _ticket(world), PREFIX)
    assert set(frame["outcome"]) == {"refused"}
    assert frame["message"].str.contains("kill switch").all()
    assert world.account().executions() == [] and world.account().open_orders() == []


def test_read_only_stops_the_pipelines_submission(world: World):
    frame = submit_ticket(connect(_settings(world, readonly=True)), _ticket(world), PREFIX)
    assert set(frame["outcome"]) == {"refused"}
    assert frame["message"].str.contains("IBKR_READONLY").all()
    assert world.account().executions() == []


def test_pipeline_caps_refuse_and_name_their_setting(world: World, monkeypatch):
    monkeypatch.setenv("IBKR_PIPELINE_MAX_NOTIONAL", "2000")
    ticket = _ticket(world)
    frame = submit_ticket(connect(_settings(world)), ticket, PREFIX)
    over = ticket["notional"] > 2000
    assert over.any() and (~over).any()
    refused = frame.loc[frame["outcome"] == "refused", "symbol"]
    assert set(refused) == set(ticket.loc[over, "symbol"])
    assert (
        frame.loc[frame["outcome"] == "refused", "message"]
        .str.contains("IBKR_PIPELINE_MAX_NOTIONAL")
        .all()
    )
    held = {p.contract.symbol for p in world.account().positions()}
    assert held == set(ticket.loc[~over, "symbol"])


def test_a_live_account_without_promotion_gets_a_recommendation_only(world: World):
    import sqlite3

    world.account().accounts()  # creates the paper account file
    with sqlite3.connect(world.data_dir / "sim" / "paper.sqlite") as db:
        db.execute("INSERT OR IGNORE INTO accounts VALUES ('U7777777', 0, 'USD', 'Live')")
        db.execute("INSERT OR IGNORE INTO cash VALUES ('U7777777', 'USD', 500000.0)")
    broker = connect(_settings(world, allow_live=True, account="U7777777"))
    why = unpromoted_live_account(broker, "U7777777", world.data_dir)
    assert why and "U7777777 is a live account" in why and "ibkr-agent promote" in why
    assert unpromoted_live_account(broker, "DU1234567", world.data_dir) is None


@pytest.mark.parametrize("quantity", [3])
def test_rerunning_a_submission_sends_nothing_more(world: World, quantity: int):
    ticket = _ticket(world, quantity)
    broker = connect(_settings(world))
    first = submit_ticket(broker, ticket, PREFIX)
    again = submit_ticket(connect(_settings(world)), ticket, PREFIX)
    assert set(first["outcome"]) == {"placed"}
    assert set(again["outcome"]) <= {"already_sent", "already_executed"}
    assert len(world.account().executions()) == len(SYMBOLS)
