"""Binance symbols: what a symbol looks like, and its base and quote assets."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["QUOTE_ASSETS", "SYMBOL_PATTERN", "is_symbol", "split_symbol"]

SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{5,20}")
"""A whole symbol such as ``BTCUSDC``: capital letters and digits, 5 to 20 of them."""

QUOTE_ASSETS = ("FDUSD", "USDC", "USDT", "BUSD", "TUSD", "EUR", "BTC", "ETH", "BNB")
"""Quote assets a symbol may end with."""

# The longest first, so that FDUSD is not read as a pair quoted in USD.
_BY_LENGTH = tuple(sorted(QUOTE_ASSETS, key=len, reverse=True))


def is_symbol(text: object) -> bool:
    """Whether ``text`` is a string shaped like a symbol (not whether it is listed)."""
    return isinstance(text, str) and SYMBOL_PATTERN.fullmatch(text) is not None


# The Ledger's book splits every order's symbol several times over for each fetched
# view; the symbols met are a few thousand at most. (An error is not remembered.)
@lru_cache(maxsize=8192)
def split_symbol(symbol: str) -> tuple[str, str]:
    """``BTCUSDC`` -> (``BTC``, ``USDC``): the longest known quote asset at the end."""
    for quote in _BY_LENGTH:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ValueError(f"{symbol} does not end with a known quote asset ({', '.join(QUOTE_ASSETS)})")
