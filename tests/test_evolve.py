"""``evolve`` makes what ``dataclasses.replace`` makes: for the book's orders, field by
field, whatever the changes; through ``replace`` itself where a copy by slots would
skip what ``__init__`` does."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.messages.pipeline import OrderRecord
from coordinator.trading.evolve import evolve
from coordinator.trading.execution import OrderStatus
from coordinator.trading.ledger_orders import Assumption, BookOrder, OrderState
from coordinator.trading.signals import Side
from coordinator.trading.validation import OrderPlan

PLAN = OrderPlan(
    symbol="BTCUSDC",
    side=Side.BUY,
    quantity=0.5,
    reference_price=60_000.0,
    notional=30_000.0,
    category="strong",
)

_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
_VALUES = {
    "reservation_id": st.text(max_size=8),
    "plan": st.just(PLAN),
    "owner": st.text(max_size=8),
    "reserved_at": _floats,
    "expires_at": _floats,
    "state": st.sampled_from(OrderState),
    "base_before": _floats,
    "base_after": _floats,
    "held_before": _floats,
    "held_after": _floats,
    "entry_before": st.none() | _floats,
    "positions_shown": st.booleans(),
    "balances_shown": st.booleans(),
    "assumed": st.none() | st.sampled_from(Assumption),
    "signal_id": st.text(max_size=8),
    "number": st.integers(),
    "filled_before": st.none() | st.integers(),
    "unknown": st.booleans(),
    "filled_at": st.none() | _floats,
    "proceeds_counted": st.booleans(),
    "fee_share_before": _floats,
    "fee_share": _floats,
    "base_offsets": st.lists(_floats, max_size=3).map(tuple),
}
_NAMES = [f.name for f in dataclasses.fields(BookOrder)]


def test_every_field_of_a_book_order_is_given_a_value_here() -> None:
    assert sorted(_VALUES) == sorted(_NAMES)


@given(
    st.fixed_dictionaries(_VALUES),
    st.lists(st.sampled_from(_NAMES), unique=True).flatmap(
        lambda names: st.fixed_dictionaries({n: _VALUES[n] for n in names})
    ),
)
def test_a_book_order_evolved_is_the_order_replace_makes(
    values: dict[str, object], changes: dict[str, object]
) -> None:
    order = BookOrder(**values)  # type: ignore[arg-type]
    made = evolve(order, **changes)
    expected = dataclasses.replace(order, **changes)
    assert type(made) is BookOrder
    assert [getattr(made, n) for n in _NAMES] == [getattr(expected, n) for n in _NAMES]
    assert made == expected and made is not order
    assert order == BookOrder(**values), "the original is left as it was"  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.unknown = True  # type: ignore[misc]


def test_a_name_that_is_no_field_is_refused_as_replace_refuses_it() -> None:
    order = BookOrder(
        reservation_id="r1",
        plan=PLAN,
        owner="validator-1",
        reserved_at=1.0,
        expires_at=2.0,
        state=OrderState.RESERVED,
        base_before=0.0,
        base_after=0.5,
        held_before=0.0,
        held_after=0.5,
    )
    with pytest.raises(TypeError, match="no field"):
        evolve(order, unknwon=True)


@dataclass(frozen=True, slots=True)
class _Checked:
    amount: float

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError("negative")


@dataclass(frozen=True, slots=True)
class _Counted:
    items: tuple[int, ...]
    count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "count", len(self.items))


@dataclass(frozen=True)
class _Unslotted:
    name: str


def test_a_class_whose_init_does_more_than_set_fields_goes_through_replace() -> None:
    with pytest.raises(ValueError, match="negative"):
        evolve(_Checked(1.0), amount=-1.0)
    assert evolve(_Counted((1, 2)), items=(1, 2, 3)).count == 3
    assert evolve(_Unslotted("a"), name="b") == _Unslotted("b")


def test_an_order_record_evolved_is_the_record_replace_makes() -> None:
    record = OrderRecord(
        client_order_id="c1",
        signal_id="s1",
        symbol="BTCUSDC",
        side="BUY",
        quantity=0.5,
        reference_price=60_000.0,
        state=OrderStatus.PENDING,
        at=1.0,
    )
    changes = {"state": OrderStatus.SENT, "error": "x", "at": 2.0}
    assert evolve(record, **changes) == dataclasses.replace(record, **changes)


@dataclass(frozen=True, slots=True)
class _Base:
    first: int
    second: str = "b"


@dataclass(frozen=True, slots=True)
class _Derived(_Base):
    third: float = 0.0


def test_a_record_with_fields_of_its_parent_class_evolves_as_replace_makes_it() -> None:
    # The parent's fields have their slots in the parent: each set through its own.
    record = _Derived(1, "x", 2.5)
    assert evolve(record, first=7, third=9.5) == replace(record, first=7, third=9.5)
    assert evolve(record) == record and evolve(record) is not record
    with pytest.raises(TypeError, match="no field"):
        evolve(record, fourth=1)
