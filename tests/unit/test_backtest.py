"""The backtest replay on the simulated market (40 stocks, half a month after a 60-session
evidence warm-up): metrics of known series, no look-ahead, costs, fills like the paper
exchange, the technical shortcut, the walk-forward calibration's rule."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ibkr_assets.assets.backtest_results import save_results
from ibkr_assets.assets.ib_rules import ib_execution
from ibkr_assets.broker.sim import shared_market
from ibkr_assets.partitions import as_of, sessions_between
from ibkr_assets.quant.backtest import (
    Execution,
    ReplayData,
    backtest_statistics,
    benchmark_returns,
    calibrate,
    candidate_evidence,
    prepare_day,
    prepare_days,
    signal_panel,
    simulate,
    technical_windows,
)
from ibkr_assets.quant.costs import OrderCost
from ibkr_assets.quant.decision import optimise_targets, sector_map
from ibkr_assets.quant.evidence import EvidenceSettings
from ibkr_assets.quant.movers import DAILY_SCANNERS, replay_movers, scan_previous_session
from ibkr_assets.quant.optimiser import PortfolioOptimiser
from ibkr_assets.quant.performance import beta, excess_return, summarise
from ibkr_assets.quant.technical import technical_features
from ibkr_assets.resources.ib import IBResource
from ibkr_assets.resources.storage import StorageResource
from ibkr_spec.lots import round_lot
from tests.replay_fixtures import load_small_replay

SYMBOLS = 40
SESSIONS = sessions_between(date(2024, 6, 10), date(2024, 6, 25))
DAY = 5  # a session in the middle of the window
#: a short, lenient evidence reading: 40 names give noisy daily ICs, and a year of warm-up
#: would cost the test half a minute
EVIDENCE = EvidenceSettings(sessions=60, t_threshold=1.0)


def no_costs(shares, price, half_spread, adv_shares, daily_vol, month_shares, sell):
    return OrderCost(0.0, 0.0, 0.0)


#: no commission, spread or impact; the universe's lots, no margin what-if
free = Execution(costs=no_costs)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data, settings, problems = load_small_replay(
        tmp_path_factory.mktemp("backtest"), SYMBOLS, SESSIONS, EVIDENCE
    )
    assert not problems
    assert len(data.warmup) == EVIDENCE.sessions and data.warmup[-1] < SESSIONS[0]
    panel = signal_panel(data, settings)
    days = list(prepare_days(data, settings, panel, workers=0))
    return data, settings, days, panel


def test_metrics_of_a_series_with_known_sharpe_and_drawdown():
    # +2% / -1% alternating: mean 0.5%, sample sd 1.5% * sqrt(n / (n - 1))
    n = 20
    r = pd.Series([0.02, -0.01] * (n // 2))
    s = summarise(r)
    expected = 0.005 / (0.015 * math.sqrt(n / (n - 1))) * math.sqrt(252)
    assert s.sharpe == pytest.approx(expected, rel=1e-12)
    # the worst fall is one -1% day from a peak
    assert s.max_drawdown == pytest.approx(0.01)
    assert s.hit_rate == pytest.approx(0.5)
    # a -10% then -10% path from the start: drawdown 1 - 0.81, both days losses
    crash = summarise(pd.Series([-0.1, -0.1, 0.05]))
    assert crash.max_drawdown == pytest.approx(0.19)
    # measured costs come off the returns one for one
    costly = summarise(r, costs=pd.Series(0.001, index=r.index))
    assert costly.total_cost == pytest.approx(0.001 * n)
    assert costly.sharpe == pytest.approx(0.004 / (0.015 * math.sqrt(n / (n - 1))) * math.sqrt(252))


def test_technical_history_equals_the_one_day_computation(world):
    data, settings, _, _ = world
    windows = technical_windows(data, settings)
    day = data.sessions[DAY]
    got = windows[DAY]
    idx = data.calendar.index(day)
    first, last = data.calendar[idx - settings.history_sessions], data.calendar[idx - 1]
    sessions = data.bars["session"]
    bars = data.bars.loc[(sessions >= pd.Timestamp(first)) & (sessions <= pd.Timestamp(last))]
    want = technical_features(bars)
    pd.testing.assert_index_equal(got.index, want.index)
    assert (got["n_bars"] == want["n_bars"]).all()
    assert (got["last_session"] == want["last_session"]).all()
    numeric = want.columns.drop(["n_bars", "last_session"])
    np.testing.assert_allclose(got[numeric], want[numeric], rtol=1e-10, atol=1e-12)


def _perturb_after(data: ReplayData, i: int) -> ReplayData:
    """Every input dated at or after session ``i``'s run time, scrambled."""
    day, at = pd.Timestamp(data.sessions[i]), data.decision_times[i]
    rng = np.random.default_rng(5)
    bars = data.bars.copy()
    late = bars["session"] >= day
    for col in ("open", "high", "low", "close"):
        bars.loc[late, col] *= rng.uniform(0.5, 1.5, late.sum())
    bars.loc[late, "volume"] *= 7
    quotes = data.quotes.copy()
    later = quotes["session"] > day
    quotes.loc[later, ["bid", "ask", "last", "close", "mid"]] *= 3
    eps = data.forward_eps.copy()
    eps.loc[eps["session"] > day, "forward_eps"] *= -4
    statements = data.statements.copy()
    statements.loc[statements["report_date"] >= day, "net_income"] *= -10
    news = data.headlines.copy()
    after = news["time"] >= at
    news.loc[after, "polarity"] = -1.0
    news.loc[after, "headline"] = "FDA ban fraud scandal collapse"
    macro = data.macro.copy()
    macro.loc[macro.index >= day] *= 2
    return replace(
        data,
        bars=bars,
        quotes=quotes,
        forward_eps=eps,
        statements=statements,
        headlines=news,
        macro=macro,
    )


def test_no_look_ahead(world):
    data, settings, days, _ = world
    # sanity: the perturbation does reach the inputs of the *next* session
    scrambled = _perturb_after(data, DAY)
    panel = signal_panel(scrambled, settings)
    technical = technical_windows(scrambled, settings)
    later = prepare_day(scrambled, DAY + 1, technical[DAY + 1], settings, panel)
    assert not np.allclose(later.alpha["alpha_score"], days[DAY + 1].alpha["alpha_score"])
    assert not later.evidence.table.equals(days[DAY + 1].evidence.table)

    day = prepare_day(scrambled, DAY, technical[DAY], settings, panel)
    want = days[DAY]
    pd.testing.assert_frame_equal(day.features, want.features)
    pd.testing.assert_frame_equal(day.evidence.table, want.evidence.table)
    assert day.evidence.composite_ic == want.evidence.composite_ic
    pd.testing.assert_frame_equal(day.alpha, want.alpha)
    pd.testing.assert_frame_equal(day.model.cov, want.model.cov)
    pd.testing.assert_frame_equal(day.model.scenarios, want.model.scenarios)
    assert day.macro_adjustment == want.macro_adjustment
    got = simulate([day], scrambled, settings, free).targets[want.session]
    expect = simulate([want], data, settings, free).targets[want.session]
    pd.testing.assert_series_equal(got, expect)
    assert (expect > 0).sum() >= 2, "the day should hold a book (its evidence weighs signals)"


def test_costs_lower_returns(world):
    data, settings, days, _ = world
    frictionless = simulate(days, data, settings, free)
    costly = simulate(days, data, settings, ib_execution())
    no_cost = frictionless.daily
    assert (no_cost["cost"] == 0).all() and (no_cost["commission"] == 0).all()
    assert (costly.daily["commission"] > 0).any() and (costly.daily["spread"] > 0).any()
    assert costly.summary.total_cost > 0
    assert costly.daily["equity"].iloc[-1] < no_cost["equity"].iloc[-1]
    assert costly.summary.total_return < frictionless.summary.total_return
    np.testing.assert_allclose(
        costly.daily["net_return"], costly.daily["gross_return"] - costly.daily["cost"]
    )
    # the equity curve compounds the net returns and ends at the final NAV
    final = costly.daily["nav"].iloc[-1] / settings.initial_capital
    assert costly.daily["equity"].iloc[-1] == pytest.approx(final, rel=1e-12)
    assert costly.daily["turnover"].iloc[0] > 0.5, "the first session invests the cash"


@pytest.fixture(scope="module")
def replayed(world):
    data, settings, days, _ = world
    return simulate(days, data, settings, ib_execution())


def test_orders_fill_only_where_the_day_s_range_reaches_them(world, replayed):
    """Every trade against its session's bar: a resting limit fills at its limit and only when
    the quote reached it, one marketable at the open pays the spread and never passes its
    limit, an unreached one fills nothing; fills never exceed the order."""
    data, _, _, _ = world
    trades = replayed.trades
    bars = data.bars.set_index(["session", "symbol"])
    quotes = data.quotes.set_index(["session", "symbol"])
    assert set(trades["fill"]) == {"open", "limit", "none"}, "all three cases on a month"
    assert (trades["filled"] <= trades["ordered"]).all()
    for t in trades.itertuples():
        bar, quote = bars.loc[(t.session, t.symbol)], quotes.loc[(t.session, t.symbol)]
        half = 0.5 * quote["spread"] / quote["mid"] * bar["open"]
        buy = t.side == "BUY"
        touch = bar["open"] + half if buy else bar["open"] - half
        marketable = touch <= t.limit_price if buy else touch >= t.limit_price
        reached = bar["low"] + half <= t.limit_price if buy else bar["high"] - half >= t.limit_price
        if t.fill == "limit":
            assert not marketable and reached and t.price == t.limit_price
            assert t.spread == 0 and t.impact == 0
        elif t.fill == "open":
            assert marketable and t.spread == pytest.approx(half * t.filled, rel=1e-9)
            assert (t.price <= t.limit_price) if buy else (t.price >= t.limit_price)
        else:
            assert not marketable and not reached and t.filled == 0
    # the book holds what was filled, not what was ordered
    last = replayed.positions.loc[replayed.positions["session"] == trades["session"].max()]
    signed = trades["filled"].where(trades["side"] == "BUY", -trades["filled"])
    held = signed.groupby(trades["symbol"]).sum()
    np.testing.assert_allclose(
        last.set_index("symbol")["shares"].sort_index(), held.loc[held != 0].sort_index()
    )


def test_orders_are_whole_tiered_round_lots(world, replayed):
    """With even lots (the live default) every order but an exit is whole round lots of the
    name's price tier at the previous close (ibkr_spec.lots.round_lot)."""
    data, settings, _, _ = world
    assert settings.even_lots
    closes = data.bars.pivot_table(index="session", columns="symbol", values="close")
    previous = closes.shift(1)
    held = replayed.positions.set_index(["session", "symbol"])["shares"]
    sessions = list(closes.index)
    checked = 0
    for t in replayed.trades.itertuples():
        before = sessions[sessions.index(t.session) - 1]
        exit_ = t.side == "SELL" and held.get((before, t.symbol), 0.0) == t.ordered
        if not exit_:
            lot = round_lot(previous.at[t.session, t.symbol])
            assert t.ordered % lot == 0, (t.symbol, t.ordered, lot)
            checked += 1
    assert checked > 20


def test_the_what_if_sizes_orders_down_while_margin_fails(world):
    """A margin rule that fails every order larger than 30,000 USD of stock: the what-if loop
    (quant.orders.resize_until_margin_ok, as the live stage) shrinks each by whatif_shrink
    until it passes, whole lots, or drops it."""
    data, settings, days, _ = world

    def strict(shares: float, price: float) -> float:
        return 1e12 if abs(shares) * price > 30_000 else 0.0

    result = simulate(days[:2], data, settings, replace(ib_execution(), initial_margin=strict))
    trades = result.trades
    assert {"resized"} <= set(trades["whatif_decision"])
    assert (trades["ordered"] * trades["limit_price"] <= 30_000 * 1.0001).all()
    resized = trades.loc[trades["whatif_decision"] == "resized"]
    assert (resized["whatif_attempts"] > 1).all()
    # Reg-T on a cash account that is at most 95% invested never binds
    assert set(simulate(days[:2], data, settings, ib_execution()).trades["whatif_decision"]) == {
        "accepted"
    }


def test_saved_results_recompute_the_summary(world, replayed, tmp_path):
    """Sharpe and turnover recomputed from the saved Parquet files match the summary."""
    folder = save_results(StorageResource(data_dir=str(tmp_path)), "unit", replayed)
    daily = pd.read_parquet(folder / "daily.parquet").set_index("session")
    trades = pd.read_parquet(folder / "trades.parquet")
    positions = pd.read_parquet(folder / "positions.parquet")
    net = daily["nav"] / daily["nav_open"] - 1
    np.testing.assert_allclose(net, daily["net_return"], atol=1e-12)
    sharpe = net.mean() / net.std(ddof=1) * math.sqrt(252)
    assert sharpe == pytest.approx(replayed.summary.sharpe, rel=1e-9)
    notional = (trades["filled"] * trades["price"].fillna(0)).groupby(trades["session"]).sum()
    turnover = (notional.reindex(daily.index, fill_value=0.0) / daily["nav_open"]).iloc[1:]
    assert turnover.mean() / 2 == pytest.approx(replayed.summary.average_turnover, rel=1e-9)
    costs = trades[["commission", "spread", "impact"]].sum().sum()
    assert costs == pytest.approx((daily["cost"] * daily["nav_open"]).sum(), rel=1e-9)
    weights = positions.groupby("session")["weight"].sum()
    np.testing.assert_allclose(weights, daily["gross_exposure"].loc[weights.index], rtol=1e-9)


def test_walk_forward_calibration_keeps_a_reading_only_when_significant(world):
    data, settings, days, panel = world
    grid = candidate_evidence(settings.evidence)
    assert grid["configured"] == settings.evidence
    assert grid["sessions x2"].sessions == 2 * settings.evidence.sessions
    assert grid["prior_sd x0.5"].prior_sd == pytest.approx(settings.evidence.prior_sd / 2)
    with pytest.raises(ValueError, match="24 months"):
        calibrate(days, data, settings, free, panel)
    small = {"train_sessions": 4, "fold_sessions": 2, "min_sessions": 8}
    only = calibrate(days, data, settings, free, panel, {"configured": settings.evidence}, **small)
    assert only.decision == "rejected" and only.tuned == settings.evidence
    assert only.mean_difference == 0 and only.test_sessions == len(days) - 4
    strict = replace(settings.evidence, t_threshold=50.0)  # no signal passes: an empty book
    grid = {"configured": settings.evidence, "strict": strict}
    result = calibrate(days, data, settings, free, panel, grid, **small)
    assert len(result.folds) == math.ceil((len(days) - 4) / 2)
    base = simulate(days, data, settings, free).daily["net_return"]
    empty = simulate(days, data, settings, free, evidence=strict, panel=panel).daily
    assert (empty["names_held"] == 0).all() and (empty["net_return"] == 0).all()
    chosen = {"configured": base, "strict": empty["net_return"]}
    diffs = pd.concat(
        [
            chosen[f.chosen].loc[f.test[0] : f.test[1]] - base.loc[f.test[0] : f.test[1]]
            for f in result.folds
        ]
    )
    assert result.mean_difference == pytest.approx(diffs.mean(), abs=1e-15)
    assert result.kept == (result.candidate == "strict" and result.t_stat >= 2)
    assert set(result.sharpe) == {"configured", "strict"}


def test_vectorised_forward_eps_equals_one_by_one():
    market = shared_market(7, SYMBOLS)
    conids = [s.conid for s in market.universe.stocks]
    for day in (date(2024, 6, 3), date(2021, 2, 16)):
        assert market.forward_eps_many(conids, day) == [market.forward_eps(c, day) for c in conids]


def test_metrics_rows_are_appended(tmp_path):
    storage = StorageResource(data_dir=str(tmp_path))
    path = storage.metrics_dir / "rolling_backtest.csv"
    storage.append_csv_row(path, {"label": "a", "sharpe": 1.5})
    storage.append_csv_row(path, {"label": "b", "sharpe": float("nan"), "extra": 2})
    rows = pd.read_csv(path)
    assert rows["label"].tolist() == ["a", "b"] and rows["sharpe"].iloc[0] == 1.5
    assert math.isnan(rows["sharpe"].iloc[1]) and rows["extra"].iloc[1] == 2


def test_a_keyed_metrics_row_replaces_its_own(tmp_path):
    """A partition's rerun replaces its row; other partitions and command-line rows are kept,
    ordered by partition."""
    storage = StorageResource(data_dir=str(tmp_path))
    path = storage.metrics_dir / "rolling_backtest.csv"
    storage.append_csv_row(path, {"label": "2024-06-10", "sharpe": 1.0}, key="label")
    storage.append_csv_row(path, {"label": "cli", "sharpe": 0.5})
    storage.append_csv_row(path, {"label": "2024-06-03", "sharpe": 2.0}, key="label")
    storage.append_csv_row(path, {"label": "2024-06-10", "sharpe": 3.0}, key="label")
    storage.append_csv_row(path, {"label": "cli", "sharpe": 0.7})
    rows = pd.read_csv(path)
    assert rows["label"].tolist() == ["2024-06-03", "2024-06-10", "cli", "cli"]
    assert rows["sharpe"].tolist() == [2.0, 3.0, 0.5, 0.7]
    assert not list(path.parent.glob(".*.tmp")), "the temporary file was renamed over the CSV"


def test_reused_optimiser_solves_like_a_fresh_one(world):
    """The replay re-solves one compiled problem every day; the live job builds its own."""
    data, settings, days, _ = world
    first, later = days[0], days[DAY]
    sectors = sector_map(data.universe, first.model.symbols)
    compiled = PortfolioOptimiser.from_risk_model(first.model, settings.optimiser, sectors)

    def scored(day):
        return day.alpha

    start, _, _ = optimise_targets(
        scored(first), first.model, sectors, pd.Series(dtype=float), settings.optimiser
    )
    current = start.set_index("symbol")["target_weight"]
    args = (scored(later), later.model, sectors, current, settings.optimiser)
    reused, reused_result, _ = optimise_targets(*args, optimiser=compiled)
    fresh, fresh_result, _ = optimise_targets(*args)
    assert (fresh["target_weight"] > 0).sum() >= 2
    # the same optimum; its weights to 0.5 bp of NAV: this day's objective is nearly flat along
    # one direction (the solver's tolerance moves weights 1.5e-5 for a 3e-9 relative change)
    assert reused_result.objective == pytest.approx(fresh_result.objective, rel=1e-8)
    np.testing.assert_allclose(reused["target_weight"], fresh["target_weight"], atol=5e-5)


def test_statistics_against_benchmarks_built_by_hand(world):
    """Both benchmarks bought at the close before the first session: equal amounts of every
    name, and SPY; the strategy's excess return, beta and interval on the same sessions."""
    data, settings, days, _ = world
    result = simulate(days, data, settings, ib_execution())
    closes = data.bars.pivot_table(index="session", columns="symbol", values="close")
    before = closes.index[closes.index < pd.Timestamp(data.sessions[0])][-1]
    window = closes.loc[before : pd.Timestamp(data.sessions[-1])]
    value = (window / window.iloc[0]).mean(axis=1)
    bench = benchmark_returns(data)
    np.testing.assert_allclose(bench["equal_weight"], value.pct_change().iloc[1:], rtol=1e-12)
    spy = data.macro["spy"].loc[before : pd.Timestamp(data.sessions[-1])]
    np.testing.assert_allclose(bench["spy"], spy.pct_change().iloc[1:], rtol=1e-12)
    assert list(bench["spy"].index) == list(result.daily.index)
    stats = backtest_statistics(result, data, trials=3, trial_sharpes=[0.5, 1.0, 2.0])
    net = result.daily["net_return"]
    ew = stats.benchmarks["equal_weight"]
    assert ew.summary.total_return == pytest.approx(value.iloc[-1] - 1, rel=1e-12)
    assert ew.excess_return == pytest.approx(excess_return(net, bench["equal_weight"]).annualised)
    assert stats.beta_spy == pytest.approx(beta(net, bench["spy"]))
    interval = stats.sharpe_interval
    assert interval.low < result.summary.sharpe < interval.high
    assert 0 <= stats.deflated_sharpe <= 1 and stats.trials == 3
    # the drawdown column is performance's, from the starting capital
    assert result.daily["drawdown"].max() == pytest.approx(result.summary.max_drawdown)


def test_the_replayed_scan_is_the_simulator_s_pre_open_scan(world, tmp_path):
    """The movers a replay adds come from the pre-open scans rebuilt from daily bars: the same
    names, order and figures as the simulated scanner answers at the daily job's run time."""
    data, _, _, _ = world
    broker = IBResource(data_dir=str(tmp_path), sim_symbols=SYMBOLS).get_broker()
    session = data.sessions[DAY]
    pinned = broker.pinned(as_of(session.isoformat()))
    avg = data.universe.drop_duplicates("symbol").set_index("symbol")["adv"]
    closes = data.bars.pivot_table(index="session", columns="symbol", values="close")
    volumes = data.bars.pivot_table(index="session", columns="symbol", values="volume")
    k = int(closes.index.searchsorted(pd.Timestamp(session)))
    rebuilt = scan_previous_session(
        closes.iloc[k - 1], closes.iloc[k - 2], volumes.iloc[k - 1], avg, DAILY_SCANNERS, 10
    )
    for code in DAILY_SCANNERS:
        live = pinned.scan(code, limit=10)
        mine = rebuilt.loc[rebuilt["scanner"] == code]
        assert [h.contract.symbol for h in live] == mine["symbol"].tolist(), code
        np.testing.assert_allclose(
            [h.change_pct for h in live], mine["change_pct"], atol=1e-3, err_msg=code
        )
        np.testing.assert_allclose([h.volume for h in live], mine["volume"], rtol=1e-9)


def test_with_a_watch_list_a_session_trades_its_universe_only(world):
    """A replay of a 20-name watch-list decides each session over the watch-list, its holdings
    and that session's movers (the live universe), never the other loaded names."""
    data, settings, days, _ = world
    watch = sorted(data.universe["symbol"].astype(str))[:20]
    narrowed = replace(data, watchlist=watch)
    loose = replace(settings, mover_min_change_pct=2.0, mover_min_volume_ratio=0.5)
    movers = replay_movers(
        data.bars,
        [pd.Timestamp(s) for s in data.sessions],
        data.universe.set_index("symbol")["adv"],
        loose.scanner_codes,
        loose.scanner_limit,
        loose.mover_min_change_pct,
        loose.mover_min_volume_ratio,
    )
    assert any(set(m) - set(watch) for m in movers.values()), "some movers off the list"
    result = simulate(days, narrowed, loose, free)
    held: set[str] = set()
    for session, weights in result.targets.items():
        day = pd.Timestamp(session)
        assert set(weights.index) <= {*watch, *movers[day], *held}, session
        book = result.positions.loc[result.positions["session"] == day]
        held = set(book["symbol"])
    assert any(set(w.index[w > 0]) - set(watch) for w in result.targets.values())
