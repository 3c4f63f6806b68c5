"""What a modify changes of an open order, checked once for every backend.

The Broker protocol's ``modify(order_id, quantity, limit_price, stop_price)`` is answered by each
backend; the backend builds one :class:`OrderChange` from its arguments (the quantity checked
there) and its order code reads the fields from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ibkr_assets.broker.models import modified_quantity


@dataclass(frozen=True)
class OrderChange:
    """A modify of the open order with IB ``orderId`` ``order_id``: each field it sets, None
    keeping the order's own. ``quantity`` in shares / contracts (positive), prices in the
    contract's currency. Raises InvalidRequest for a quantity that is not positive."""

    order_id: int
    quantity: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None

    def __post_init__(self) -> None:
        modified_quantity(self.order_id, self.quantity)

    def updates(self) -> dict[str, Any]:
        """The fields this change sets, by their model name (for ``model_copy(update=...)``)."""
        fields = {
            "quantity": self.quantity,
            "limit_price": self.limit_price,
            "stop_price": self.stop_price,
        }
        return {name: value for name, value in fields.items() if value is not None}
