"""``json.loads`` for the small messages read thousands of times a second, and
``JSONEncoder.encode`` for the rows written as many times.

``json.loads`` of bytes guesses the encoding (UTF-8, 16 or 32), decodes with
``surrogatepass`` and matches whitespace on each side: about 1.8 us of a 5.6 us parse
of a market-data candle. Here a message that decodes as strict UTF-8 and is one JSON
document from its first byte to its last is read without those steps; any other goes
through ``json.loads`` itself, which decides (what it accepts, its errors). So the
result is always ``json.loads``'s own.

``JSONEncoder.encode`` builds C's encoder anew at every call (about 1 us of a 6 us
decision row): ``encoder_of`` builds it once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any

__all__ = ["encoder_of", "loads"]

_DECODER = json.JSONDecoder()


def loads(payload: bytes | str) -> Any:
    """``json.loads(payload)``, the usual message read the short way."""
    try:
        text = payload.decode() if isinstance(payload, bytes) else payload
        value, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        # UnicodeDecodeError is a ValueError: json.loads may read what strict UTF-8
        # does not (another encoding, a lone surrogate), or raise its own error.
        return json.loads(payload)
    if end != len(text):
        return json.loads(payload)
    return value


def encoder_of(options: json.JSONEncoder) -> Callable[[Any], str]:
    """``options.encode``, with C's encoder built once: the same text, and the same
    errors (ValueError for a NaN with ``allow_nan`` off, TypeError for what has no
    JSON). What it does not do is look for a container inside itself (the one part of
    the encoder made per call): a value with such a cycle recurses until a
    RecursionError. For values made of JSON read, or of records, which have none.
    Only ``options`` without an indent, whose encoding is C's anyway."""
    if options.indent is not None or _encoder.c_make_encoder is None:
        return options.encode
    strings = (
        _encoder.encode_basestring_ascii if options.ensure_ascii else _encoder.encode_basestring
    )
    encode = _encoder.c_make_encoder(
        None,  # no markers: the search for cycles, the one part built per call
        options.default,
        strings,
        None,
        options.key_separator,
        options.item_separator,
        options.sort_keys,
        options.skipkeys,
        options.allow_nan,
    )

    def encoded(value: Any) -> str:
        if isinstance(value, str):
            return strings(value)  # as JSONEncoder.encode: not through the C encoder
        return "".join(encode(value, 0))

    return encoded
