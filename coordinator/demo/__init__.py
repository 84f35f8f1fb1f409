"""``coordinator demo``: the embedded coordinator fed with replayed real candles and
signals drawn from them, so that a newcomer sees it trade on paper within a minute.

- ``replay``: the candle files, the conversion to the quote asset, and the messages of
  the market-data channels re-stamped to the wall clock (pure);
- ``rules``: the signal rule (an EMA cross) and the signals' shape (pure);
- ``feeder``: the thread that publishes them through the coordinator's Redis;
- ``progress``: the progress line, from the coordinator's API;
- ``runner``: the settings and the run, from start to a clean stop.
"""
