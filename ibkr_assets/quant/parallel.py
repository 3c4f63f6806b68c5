"""How a caller fans pure work out: a ``map`` the quant layer is handed and never chooses.

``map_fn(function, items)`` yields ``function(item)`` for each item, in order: the builtin ``map``
(here, one item after another) or the assets layer's Dask map
(:class:`~ibkr_assets.resources.compute.DaskMap`, the items over a cluster's workers). The quant
layer imports no scheduler; results do not depend on which map ran them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: A ``map``: ``map_fn(function, items)`` yields ``function(item)`` for each item, in order.
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
