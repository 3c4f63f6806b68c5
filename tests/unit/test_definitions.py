"""The code location loads: every asset, check, job and resource resolves."""

from __future__ import annotations

import dagster as dg


def test_definitions_load() -> None:
    from ibkr_assets.definitions import defs

    assert isinstance(defs, dg.Definitions)
    dg.Definitions.validate_loadable(defs)
    defs.resolve_all_job_defs()
    assert "ib" in (defs.resources or {})
