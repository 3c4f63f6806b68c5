"""``ibkr-agent journal verify``: authenticate the decision journal and name what is wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

from ibkr_assets.cli.instance import data_dir
from ibkr_assets.cli.output import console


def cmd_journal_verify(args: argparse.Namespace) -> int:
    """Authenticate the journal's rows and check them against the head file and the heads
    Dagster recorded; print the check that failed."""
    from ibkr_assets.journal_verify import JOURNAL_DIR, dagster_home, verify_decision_log

    directory = Path(args.dir).resolve() if args.dir else data_dir() / JOURNAL_DIR
    result, recorded = verify_decision_log(directory)
    if not result.ok:
        where = f" at row {result.first_bad_row}" if result.first_bad_row is not None else ""
        console.print(
            f"[red]journal NOT verified{where}[/] ({result.check} check): {result.reason}",
            soft_wrap=True,
        )
        return 1
    console.print(f"[green]journal intact[/]: {directory}: {result.reason}", soft_wrap=True)
    if recorded is None:
        home = dagster_home(directory.parent)
        console.print(f"[yellow]no Dagster instance at {home}[/]: recorded heads not compared")
    else:
        console.print(f"{recorded} journal rows recorded in Dagster, all present")
    return 0
