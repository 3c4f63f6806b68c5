"""What the pipeline benches share (not a bench itself): the simulated world's size on the
command line, and a timed materialisation of the pipeline's assets.

Used by ``daily_job.py``, ``pipeline_ingest.py`` and ``backtest.py`` (run as scripts, so this
folder is on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg


def world_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (the bench's docstring), with
    ``--symbols``: the size of the simulated world (default 700 stocks)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=700)
    return parser


def parse_world(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The command line's arguments, with the simulated world sized by ``--symbols``
    (``IBKR_SIM_SYMBOLS``, read when the pipeline's resources are built)."""
    args = parser.parse_args()
    os.environ["IBKR_SIM_SYMBOLS"] = str(args.symbols)
    return args


def materialize_timed(
    what: str, assets: Sequence[Any], session: str, resources: Mapping[str, Any]
) -> tuple[float, dict[str, float]]:
    """Materialise ``assets`` (asset and check definitions) for the partition ``session``:
    the wall time of the run and the duration of each step, seconds. A failed run ends the
    bench, naming ``what`` failed, the session and the failed steps."""
    start = time.perf_counter()
    result = dg.materialize(
        list(assets), partition_key=session, resources=dict(resources), raise_on_error=False
    )
    total = time.perf_counter() - start
    if not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        raise SystemExit(f"{what} failed for {session}: {failed}")
    steps = {
        e.step_key: e.event_specific_data.duration_ms / 1000
        for e in result.all_events
        if e.event_type_value == "STEP_SUCCESS"
    }
    return total, steps
