"""The dry-run API's query parameters become an order the contract can validate."""

from __future__ import annotations

import pytest

from marketban.adapters.api import _order_fields
from marketban.domain.models import Order
from marketban.domain.wire import DecodeError, validate

QUERY = {
    "account_id": "A1", "exchange": "XSHG", "security": "600000", "side": "buy",
    "price": "10.50", "broker": "B001", "entered_at": "2024-05-13T09:31:02+08:00",
}  # fmt: skip


def test_a_quantity_in_ascii_digits_becomes_the_orders_integer() -> None:
    order = validate(Order, _order_fields({**QUERY, "quantity": "1000"}))
    assert order.quantity == 1000


#: Digits Python's int() reads but a JSON order could not carry: 100 in full-width digits.
FULL_WIDTH_100 = "\uff11\uff10\uff10"


@pytest.mark.parametrize("quantity", ["²", FULL_WIDTH_100, "-5", "1e3", ""])
def test_a_quantity_not_in_ascii_digits_is_an_invalid_order_not_a_failure(quantity: str) -> None:
    with pytest.raises(DecodeError, match="quantity"):
        validate(Order, _order_fields({**QUERY, "quantity": quantity}))
