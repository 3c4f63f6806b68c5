"""``ibkr-agent backtest``: replay the daily decisions of the last months with costs, with a
progress bar; print the summary table and where the files went."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ibkr_assets.cli.instance import check_settings, edge_settings
from ibkr_assets.cli.output import console


def _figure(value: float | None, form: str) -> str:
    """``value`` in ``form``, or "n/a" when there is none (a benchmark without data)."""
    return "n/a" if value is None or value != value else form.format(value)


def _benchmark_lines(row: dict) -> list[tuple[str, str]]:
    """Each buy-and-hold benchmark's total return, Sharpe and drawdown, and the strategy's
    annualised excess return over it with its t-statistic."""
    lines = []
    for key, name in (("equal_weight", "equal-weight"), ("spy", "SPY")):
        lines += [
            (
                f"{name} buy-and-hold: return, Sharpe, drawdown",
                f"{_figure(row[f'{key}_total_return'], '{:.2%}')}, "
                f"{_figure(row[f'{key}_sharpe'], '{:.2f}')}, "
                f"{_figure(row[f'{key}_max_drawdown'], '{:.2%}')}",
            ),
            (
                f"excess over {name} (a year), t",
                f"{_figure(row[f'excess_return_{key}'], '{:+.2%}')}, "
                f"t = {_figure(row[f'excess_t_{key}'], '{:.2f}')}",
            ),
        ]
    return lines


def cmd_backtest(args: argparse.Namespace) -> int:
    """Replay the daily job's decisions over the last ``--months`` (the weekly backtest's
    function), with a progress bar; print the summary table and where the files went."""
    import warnings

    import dagster as dg
    from rich.table import Table

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    from ibkr_assets.assets.backtest import last_closed_session, run_backtest_on
    from ibkr_assets.config import watchlist_symbols
    from ibkr_assets.resources import build_resources

    check_settings()
    resources = build_resources(settings=edge_settings(args.edge))
    broker = resources["ib"].get_broker()
    symbols = watchlist_symbols(resources["pipeline"], broker)
    if args.symbols is not None:
        if args.symbols < 2:
            console.print(f"[red]--symbols must be at least 2, got {args.symbols}[/]")
            return 2
        symbols = symbols[: args.symbols]
    latest = last_closed_session(datetime.now(UTC))
    if args.end is not None and args.end > latest:
        console.print(f"[red]--end {args.end} is after the latest closed session {latest}[/]")
        return 2
    if args.months < 1:
        console.print(f"[red]--months must be at least 1, got {args.months}[/]")
        return 2
    end = args.end or latest
    with Progress(
        TextColumn("[bold]{task.fields[phase]:<9}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task("", total=total, phase=phase)
            progress.update(tasks[phase], completed=done, total=total)

        run = run_backtest_on(
            resources,
            end=end,
            months=args.months,
            label="cli",
            symbols=symbols,
            calibration=args.calibrate,
            workers=args.workers,
            progress=report,
        )
    row = run.row
    table = Table(title=f"backtest {row['first_session']} to {row['last_session']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    lines = [
        ("sessions", f"{row['sessions']}"),
        ("symbols", f"{row['symbols']}"),
        ("total return", f"{row['total_return']:.2%}"),
        ("CAGR", f"{row['cagr']:.2%}"),
        ("volatility (annual)", f"{row['annual_volatility']:.2%}"),
        ("Sharpe", f"{row['sharpe']:.2f}"),
        ("Sharpe, bootstrap 95% interval", f"{row['sharpe_low']:.2f} to {row['sharpe_high']:.2f}"),
        (f"deflated Sharpe ({row['trials']} tried)", f"{row['deflated_sharpe']:.2f}"),
        ("Sortino", f"{row['sortino']:.2f}"),
        ("max drawdown", f"{row['max_drawdown']:.2%}"),
        ("beta to SPY", _figure(row["beta_spy"], "{:.2f}")),
        *_benchmark_lines(row),
        ("turnover (one side, per session)", f"{row['avg_turnover']:.2%}"),
        ("hit rate", f"{row['hit_rate']:.1%}"),
        ("costs (of capital)", f"{row['total_cost']:.2%}"),
        ("commissions", f"${row['commission_usd']:,.0f}"),
        ("spread and impact", f"${row['slippage_usd']:,.0f}"),
        ("names held (mean)", f"{row['avg_names_held']:.1f}"),
        ("sessions the gate blocked", f"{row['gate_blocked_sessions']}"),
        ("calibration", str(row["calibration"])),
    ]
    if run.calibration is not None:
        c = run.calibration
        lines += [
            ("calibration candidate", c.candidate),
            (
                "out-of-sample difference (per session)",
                f"{c.mean_difference:+.3%}, t {c.t_stat:.2f} (keeps at {c.t_required:g}), "
                f"{c.test_sessions} sessions in {len(c.folds)} folds",
            ),
        ]
    lines.append(("seconds", ", ".join(f"{k} {v:.1f}" for k, v in run.timings.items())))
    for name, value in lines:
        table.add_row(name, value)
    console.print(table)
    console.print(f"Sharpe interval: {row['sharpe_interval_method']}")
    console.print(f"metrics row appended to {run.csv_path}")
    console.print(f"equity curve and drawdown: {run.plot_path}")
    console.print(f"sessions, positions and trades (Parquet): {run.results_dir}")
    if run.problems:
        console.print(f"[yellow]left out:[/] {', '.join(list(run.problems)[:20])}")
    return 0
