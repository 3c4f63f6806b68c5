"""The optimiser keeps stdout clean without redirecting the process's file descriptors.

A stdio MCP session shares the process's stdout with the pipeline code it calls, so nothing may
print there (HiGHS's banner) and nothing may swap fd 1 out from under it (a ``dup2`` to
/dev/null while the first solver is created). Each check runs in a fresh interpreter, because
HiGHS prints its banner only once per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Solve a small long-only book with HiGHS first, as the pipeline's optimiser does for a large
#: one, after making every fd-level redirection primitive fail loudly.
_SOLVE = textwrap.dedent(
    """
    import os
    import sys

    import numpy as np
    import pandas as pd

    def refuse(*args, **kwargs):
        raise AssertionError(f"process-wide stdout redirection: {args}")

    os.dup = os.dup2 = refuse
    from ibkr_assets.quant.optimiser import OptimiserConfig, PortfolioOptimiser

    rng = np.random.default_rng(3)
    symbols = [f"S{i}" for i in range(12)]
    rets = rng.normal(0.0003, 0.012, (250, 12))
    scenarios = pd.DataFrame(rets, columns=symbols)
    cov = pd.DataFrame(np.cov(rets, rowvar=False), index=symbols, columns=symbols)
    alpha = pd.Series(rng.normal(0, 0.002, 12), index=symbols)
    held = pd.Series(0.0, index=symbols)
    for variance in (20.0, 0.0):  # the quadratic program, then the linear one
        config = OptimiserConfig(risk_aversion=variance, cvar_aversion=0.05, solver="HIGHS")
        result = PortfolioOptimiser(symbols, cov, scenarios, config).solve(alpha, held)
        assert result.solver == "HIGHS", result.solver
        print(f"{result.solver} {result.weights.abs().sum():.4f}", file=sys.stderr)
    """
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_highs_prints_its_banner_on_stdout_by_default():
    """The control: a bare HiGHS solver does write to stdout, so the next test can fail."""
    pytest.importorskip("highspy")
    run = _run("import highspy; highspy.Highs()")
    assert run.returncode == 0, run.stderr
    assert "HiGHS" in run.stdout


def test_optimiser_solves_with_highs_and_writes_nothing_to_stdout():
    pytest.importorskip("highspy")
    run = _run(_SOLVE)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert run.stderr.count("HIGHS ") == 2  # both problems were solved by HiGHS
