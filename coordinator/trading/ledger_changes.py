"""The Ledger's book as an earlier incarnation left it: its last kept copy, and the
changes made after it, made again in order.

The book is a pure state machine: the same calls on the same book make the same book,
reservation ids included (the copy keeps the book's prefix and its last id). So the
Ledger need not copy its book after every order, which cost more than the rest of a
Settle: it logs the calls of the orders' messages after a copy, and copies again only
after any other change or when the log is long.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from coordinator.trading.ledger_book import LedgerBook

__all__ = ["Change", "resumed"]

logger = logging.getLogger(__name__)

Change = tuple[str, tuple[Any, ...], dict[str, Any]]
"""A call that changed the book: the method's name and its arguments."""


def resumed(kept: LedgerBook, changes: Iterable[Change]) -> LedgerBook:
    """A book of its own made of the kept copy, with ``changes`` made again in order.
    The copy itself is left as it was."""
    book = kept.snapshot()
    made = tuple(changes)
    for at, (name, args, kwargs) in enumerate(made):
        try:
            getattr(book, name)(*args, **kwargs)
        except Exception:
            # Not expected of a pure book given the same calls: the rest is lost, as
            # if their messages had been lost in the crash.
            logger.exception(
                "the Ledger's book resumed without its last %d change(s)", len(made) - at
            )
            break
    return book
