"""``ibkr-agent``: run the daily pipeline, the demo, and check the decision journal.

    ibkr-agent demo                  # the daily job for the latest session, through the simulated
                                     # IB Gateway (ib_async over a loopback socket)
    ibkr-agent demo --backend webapi # the same through the simulated Client Portal Web API
    ibkr-agent demo --backend sim    # the same on the in-process simulator (no socket)
    ibkr-agent run [--date D]        # the daily job for one NYSE session, with progress
    ibkr-agent journal verify        # authenticate the journal; name a changed, forged, removed,
                                     # reordered or truncated row
    ibkr-agent promote               # allow live trading after N green paper sessions (journalled)
    ibkr-agent backtest --months 6   # replay the daily decisions of the last 6 months, with costs
    ... --edge none                  # demo, run, backtest: on the simulated market without edge
    ibkr-agent mcp serve             # the MCP tool server (ibkr-agent mcp --help: serve, tools,
                                     # call, health)

Runs are recorded in the Dagster instance under ``<data root>/.dagster``, so ``make dev`` shows
them (lineage, checks, metadata) next to scheduled runs and backfills.

Errors a user fixes (a malformed ``IBKR_*`` variable, a typo in the decide YAML, a damaged state
file, a date that is no NYSE session) are printed as one line on stderr, naming the variable,
key, file or date and what to do, with exit code 2; a run that fails for another reason exits
with 1. After a run, only the files that run wrote are listed as its outputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import date

from ibkr_assets.cli.backtest import cmd_backtest
from ibkr_assets.cli.demo import cmd_demo
from ibkr_assets.cli.journal import cmd_journal_verify
from ibkr_assets.cli.mcp import cmd_mcp
from ibkr_assets.cli.output import print_error
from ibkr_assets.cli.promote import cmd_promote
from ibkr_assets.cli.run import cmd_run


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibkr-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the daily job for the latest session, simulated world")
    demo.add_argument(
        "--backend",
        choices=("gateway", "webapi", "sim"),
        default="gateway",
        help="gateway: through the simulated IB Gateway over ib_async (default); "
        "webapi: through the simulated Client Portal Web API gateway over HTTPS; "
        "sim: the in-process simulator",
    )
    _add_edge(demo)
    run = sub.add_parser("run", help="run the daily job for one NYSE session")
    _add_edge(run)
    run.add_argument("--date", type=_date, help="the session (YYYY-MM-DD); default the latest")
    journal = sub.add_parser("journal", help="the tamper-evident decision journal")
    jsub = journal.add_subparsers(dest="journal_command", required=True)
    verify = jsub.add_parser(
        "verify",
        help="authenticate every row; report a changed, forged, removed or reordered row, "
        "rows deleted from the end, or a row Dagster recorded that is missing",
    )
    verify.add_argument("--dir", help="journal directory (default <data root>/decision_log)")
    promote = sub.add_parser(
        "promote", help="allow live trading after N green paper sessions (recorded in the journal)"
    )
    promote.add_argument(
        "--sessions",
        type=int,
        help="sessions to check (default IBKR_PROMOTION_SESSIONS, 10; never fewer)",
    )
    promote.add_argument(
        "--account", help="the paper account the sessions ran on (default: the newest session's)"
    )
    # Parsed by the MCP server's own CLI (main hands ``mcp ...`` over before parsing).
    sub.add_parser(
        "mcp",
        add_help=False,
        help="the MCP tool server: serve, tools, call, health (ibkr-agent mcp --help)",
    )
    bt = sub.add_parser("backtest", help="replay the daily decisions of the last months")
    bt.add_argument("--months", type=int, default=6, help="months to replay (default 6)")
    bt.add_argument("--symbols", type=int, help="only the first N symbols of the watch-list")
    bt.add_argument("--end", type=_date, help="last session (default the latest closed one)")
    bt.add_argument(
        "--calibrate",
        action="store_true",
        help="also the walk-forward calibration of how the signals' evidence is read (replays at "
        "least 24 months; slower)",
    )
    bt.add_argument(
        "--workers", type=int, default=1, help="processes preparing the days (0 = none)"
    )
    _add_edge(bt)
    return parser


def _add_edge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--edge",
        choices=("default", "none"),
        help="the simulated market's edge (overrides IBKR_SIM_EDGE): default (realistic daily ICs, "
        "0.01-0.03) or none (no observable predicts returns)",
    )


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "run": cmd_run,
    "backtest": cmd_backtest,
    "promote": cmd_promote,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["mcp"]:
        cmd_mcp(argv[1:])
    args = build_parser().parse_args(argv)
    from ibkr_assets.errors import ConfigurationError  # after --help, which needs no dagster

    try:
        if args.command == "journal":
            return cmd_journal_verify(args)
        return _COMMANDS[args.command](args)
    except ConfigurationError as exc:
        print_error(str(exc))
        return 2
