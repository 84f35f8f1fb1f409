"""Binance symbols: their shape, and their base and quote assets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.trading.symbols import QUOTE_ASSETS, is_symbol, split_symbol


@pytest.mark.parametrize(
    ("symbol", "parts"),
    [
        ("BTCUSDC", ("BTC", "USDC")),
        ("BTCFDUSD", ("BTC", "FDUSD")),
        ("ETHBTC", ("ETH", "BTC")),
        ("1000SATSUSDT", ("1000SATS", "USDT")),
    ],
)
def test_a_symbol_splits_at_the_longest_known_quote(symbol, parts):
    assert split_symbol(symbol) == parts


@pytest.mark.parametrize("symbol", ["NOPE", "USDC", ""])
def test_a_symbol_without_a_base_before_a_known_quote_is_refused(symbol):
    with pytest.raises(ValueError, match="known quote asset"):
        split_symbol(symbol)


@pytest.mark.parametrize("text", ["BTCUSDC", "1INCHUSDC", "A" * 20])
def test_symbol_shapes(text):
    assert is_symbol(text)


@pytest.mark.parametrize("text", ["btcusdc", "BTC", "A" * 21, "BTC-USDC", 7, None, "BTCUSDC\n"])
def test_not_symbol_shapes(text):
    assert not is_symbol(text)


@given(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=10),
    st.sampled_from(QUOTE_ASSETS),
)
def test_split_gives_back_the_symbol(base, quote):
    got_base, got_quote = split_symbol(base + quote)
    assert got_base + got_quote == base + quote
    assert got_quote in QUOTE_ASSETS and got_base
