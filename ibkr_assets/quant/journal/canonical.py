"""One byte-exact representation to hash: :func:`canonical_json` sorts keys, drops whitespace,
writes floats with 12 significant digits (so 0.1 + 0.2 and 0.3 agree), maps NaN to null and
numpy/pandas scalars, dates and frames to plain JSON; sha256 of text, JSON and files."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON types with normalised floats."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if obj is pd.NaT:
        return None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating | decimal.Decimal):
        x = float(obj)
        if math.isnan(x):
            return None
        if math.isinf(x):
            raise ValueError("canonical_json: infinite float")
        x = float(f"{x:.12g}")
        if x == 0:
            return 0.0
        return int(x) if x.is_integer() and abs(x) < 2**53 else x
    if isinstance(obj, pd.Timestamp | dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, pd.DataFrame):
        return plain(obj.to_dict(orient="split"))
    if isinstance(obj, pd.Series):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return sorted(plain(v) for v in obj)
    if isinstance(obj, list | tuple | np.ndarray):
        return [plain(v) for v in obj]
    raise TypeError(f"canonical_json: cannot encode {type(obj).__name__}")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, floats normalised (see module)."""
    return json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    """Hex sha256 of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex sha256 of :func:`canonical_json` of ``obj``."""
    return sha256_text(canonical_json(obj))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
