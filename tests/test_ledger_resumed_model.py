"""Model-based test of the Ledger's book as a next incarnation resumes it: the last
kept copy with the calls made after it made again (``ledger_changes.resumed``).

The Ledger keeps a copy of its book, then logs the book's calls of the orders' messages
(reserve, settle, expire) instead of copying again after each; any other change makes a
new copy. This runs the whole model of ``test_ledger_book_model`` (reserves, fills,
settlements of every kind, lagging and failing fetches, time passing, in any order) on
a book kept that way, copies also made at any moment (a long log, another message), and
checks after every step that the book resumed from the copy and its log is the book.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from coordinator.trading.ledger_book import LedgerBook
from coordinator.trading.ledger_changes import Change, resumed
from tests.test_ledger_book_model import LedgerBookMachine

LOGGED = frozenset({"reserve", "settle", "expire"})
"""What the Ledger logs (the calls of Reserve, ReserveMany and Settle)."""
CHANGING = LOGGED | {"fetched_view", "not_executed", "adopt"}


class KeptBook:
    """A book as the Ledger keeps it for its next incarnation."""

    def __init__(self, book: LedgerBook) -> None:
        self.live = book
        self.kept = book.snapshot()
        self.changes: list[Change] = []

    def keep(self) -> None:
        self.kept = self.live.snapshot()
        self.changes = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.live, name)
        if name not in CHANGING:
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if name in LOGGED:
                self.changes.append((name, args, kwargs))
            else:
                self.keep()
            return result

        return call


def seen(book: LedgerBook) -> tuple[Any, ...]:
    """Everything of a book the Ledger reads or answers with."""
    return (
        book.view,
        book.fetched,
        book.fetched_requested_at,
        dict(book.orders),
        tuple(book.closed),
        book.held_quote(),
        book.buying(),
        book.selling(),
        book.cash_margin,
        dict(book.base_margin),
        book.last_id,
        book.prefix,
        dict(book.never_executed),
        book.reservation_count(),
        book.reserved_notional(),
    )


class ResumedBookMachine(LedgerBookMachine):
    @initialize(cash=st.sampled_from([100.0, 1_000.0, 5_000.0]))
    def start(self, cash: float) -> None:
        LedgerBookMachine.start(self, cash)
        self.book = KeptBook(self.book)  # type: ignore[assignment]

    @precondition(lambda self: hasattr(self, "book"))
    @rule()
    def copy_kept(self) -> None:
        """A copy made now: another message, or the log at its limit."""
        self.book.keep()  # type: ignore[attr-defined]

    @invariant()
    def the_book_resumed_from_its_copy_is_the_book(self) -> None:
        if not hasattr(self, "book"):
            return
        kept: KeptBook = self.book  # type: ignore[assignment]
        before = seen(kept.kept)
        again = resumed(kept.kept, kept.changes)
        assert seen(again) == seen(kept.live)
        assert seen(kept.kept) == before, "the kept copy itself is left as it was"


TestResumedBookModel = ResumedBookMachine.TestCase
TestResumedBookModel.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
