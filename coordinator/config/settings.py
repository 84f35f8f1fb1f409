"""The settings table: every variable's name, the section and field it fills, its
kind, default and meaning. The README's configuration table is generated from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coordinator.config.identity import INSTANCE_ALLOWED, INSTANCE_PATTERN, InstanceMode
from coordinator.config.kinds import (
    STOP_RULES,
    AnyPath,
    Boolean,
    Choice,
    Integer,
    Kind,
    Ladder,
    LogLevel,
    Names,
    Number,
    Numbers,
    Range,
    RateLimit,
    SymbolDecimals,
    SymbolRules,
    Symbols,
    Text,
    Url,
    Weights,
)

__all__ = ["CONFIG_FILE_VARIABLE", "SETTINGS", "SETTINGS_BY_NAME", "Setting"]


@dataclass(frozen=True)
class Setting:
    """One configuration variable: its environment name, kind, default and meaning."""

    name: str
    section: str
    field: str
    kind: Kind
    default: Any
    help: str
    secret: bool = False


_SECONDS = Number(above=0, unit="seconds")


def _s(
    name: str,
    section: str,
    field: str,
    kind: Kind,
    default: Any,
    help: str,
    *,
    secret: bool = False,
) -> Setting:
    return Setting(name, section, field, kind, default, help, secret)


# fmt: off
SETTINGS: tuple[Setting, ...] = (
    # service
    _s("COORDINATOR_HOST", "service", "host", Text(), "127.0.0.1", "HTTP API bind address"),
    _s("COORDINATOR_PORT", "service", "port", Integer(1, 65535), 5003, "HTTP API port"),
    _s(
        "COORDINATOR_DATA_DIR",
        "service",
        "data_dir",
        AnyPath(),
        ".coordinator",
        "data of the embedded Redis and PostgreSQL servers",
    ),
    _s(
        "COORDINATOR_API_TOKEN",
        "service",
        "api_token",
        Text(allowed="a string of at least 16 characters", pattern=r".{16,}"),
        None,
        "bearer token for mutating endpoints; unset: they answer 403",
        secret=True,
    ),
    _s(
        "COORDINATOR_DRILLS",
        "service",
        "drills",
        Boolean(),
        False,
        "enable /drills/actors/{name}/... fault injection",
    ),
    _s("LOG_LEVEL", "service", "log_level", LogLevel(), "info", "log level (RootTrading's variable; per-message lines stay off below INFO unless COORDINATOR_LOG_LEVEL asks)"),
    _s("COORDINATOR_LOG_LEVEL", "service", "coordinator_log_level", LogLevel(), None, "log level of this service, wins over LOG_LEVEL; debug also turns on the per-message lines (each signal, each tick)"),
    _s("LOG_FORMAT", "service", "log_format", Choice(("auto", "json", "text", "kv")), "auto", "auto: text lines when stderr is a terminal, JSON lines otherwise; json, text (for people) or kv (key=value lines)"),
    _s("HTTP_THREADS", "service", "http_threads", Integer(1, 64), 16, "waitress worker threads (published /health and /status need none); more connections busy at once than this wait in a queue, counted in one log line a minute"),
    _s(
        "HTTP_ASK_TIMEOUT",
        "service",
        "ask_timeout",
        Number(above=0, maximum=10, unit="seconds"),
        0.5,
        "how long a route waits for an actor before answering 503",
    ),
    _s("HTTP_SNAPSHOT_TTL", "service", "snapshot_ttl", Number(minimum=0, maximum=5, unit="seconds"), 0.25, "how long read-only routes reuse an answer, and how often /health and /status are produced off the request path; 0: never (each request produces its answer)"),
    # http: what one client may ask of the API, and what the server holds open
    _s("HTTP_RATE_LIMIT_MUTATING", "http", "rate_limit_mutating", RateLimit(), "10/s burst 20", "commands (routes with the token, but POST /signals) per client address; over it 429 with Retry-After; off: no limit"),
    _s("HTTP_RATE_LIMIT_SIGNALS", "http", "rate_limit_signals", RateLimit(), "200/s burst 400", "POST /signals per client address; over it 429 with Retry-After; off: no limit"),
    _s("HTTP_RATE_LIMIT_CLIENTS", "http", "rate_limit_clients", Integer(1, 100_000), 10_000, "client addresses the rate limits remember; past it the least recent is forgotten"),
    _s("HTTP_MAX_BODY_BYTES", "http", "max_body_bytes", Integer(1024, 512 * 1024), 64 * 1024, "request body size limit of every route but POST /signals (which takes MAX_SIGNAL_BYTES); over it 413"),
    _s("HTTP_CHANNEL_TIMEOUT", "http", "channel_timeout", Integer(1, 3600), 30, "seconds an idle or stalled connection is kept open (waitress channel_timeout)"),
    _s("HTTP_CONNECTION_LIMIT", "http", "connection_limit", Integer(10, 100_000), 2000, "connections open at once (waitress connection_limit); kept under the open-files limit, which start-up raises to its hard limit"),
    _s("HTTP_CLEANUP_INTERVAL", "http", "cleanup_interval", Integer(1, 3600), 10, "seconds between two sweeps closing the connections idle past HTTP_CHANNEL_TIMEOUT (waitress cleanup_interval)"),
    _s("HTTP_REQUEST_TIMEOUT", "http", "request_timeout", Integer(1, 3600), 30, "seconds a request may take to arrive whole (headers and body), however steadily it trickles in; then its connection is closed"),
    # dependencies
    _s("TRADER_API_URL", "trader", "url", Url(("http", "https")), None, "Trader service base URL; unset, unless on paper: RootTrading's http://trader:5002"),
    _s("PORTFOLIO_API_URL", "portfolio", "url", Url(("http", "https")), None, "Portfolio service base URL; unset, unless on paper: RootTrading's http://portfolio:8000"),
    _s("REDIS_URL", "redis", "url", Url(("redis", "rediss", "unix")), None, "Redis URL; unset with no REDIS_HOST: embedded Redis"),
    _s("REDIS_HOST", "redis", "host", Text(), None, "Redis host (instead of REDIS_URL)"),
    _s("REDIS_PORT", "redis", "port", Integer(1, 65535), 6379, "Redis port, with REDIS_HOST"),
    _s("REDIS_PASSWORD", "redis", "password", Text(allowed="a string"), None, "Redis password, with REDIS_HOST", secret=True),
    _s("REDIS_DB", "redis", "db", Integer(0, 15), 0, "Redis database number, with REDIS_HOST"),
    _s("DATABASE_URL", "database", "url", Url(("postgresql", "postgres")), None, "PostgreSQL URL; unset with no PGHOST: embedded PostgreSQL"),
    _s("PGHOST", "database", "host", Text(), None, "PostgreSQL host (instead of DATABASE_URL)"),
    _s("PGPORT", "database", "port", Integer(1, 65535), 5432, "PostgreSQL port, with PGHOST"),
    _s("PGUSER", "database", "user", Text(), "postgres", "PostgreSQL user, with PGHOST"),
    _s("PGPASSWORD", "database", "password", Text(allowed="a string"), None, "PostgreSQL password, with PGHOST", secret=True),
    _s("PGDATABASE", "database", "name", Text(), "trading", "PostgreSQL database, with PGHOST"),
    # trading
    _s("MAX_CONCURRENT_TRADES", "trading", "max_concurrent_trades", Integer(1, 1000), 5, "open positions at most"),
    _s("UNIVERSE_SIZE", "trading", "universe_size", Integer(1, 500), 10, "symbols in the trading universe at most"),
    _s(
        "TRADING_SYMBOLS",
        "trading",
        "symbols",
        Symbols(accepts_empty=True),
        ("BTCUSDC", "ETHUSDC", "SOLUSDC", "XRPUSDC", "BNBUSDC"),
        "candidate symbols; set but empty: none listed (UNIVERSE_CANDIDATES then defaults to data)",
    ),
    _s("TRADING_ENABLED", "trading", "enabled", Boolean(), True, "false: shadow mode, decide and record but send no order"),
    # coordination (the seed's settings)
    _s("SIGNAL_TIMEOUT", "coordination", "signal_timeout", _SECONDS, 30.0, "a signal older than this is stale"),
    _s("MAX_PENDING_SIGNALS", "coordination", "max_pending_signals", Integer(1, 100_000), 100, "signals in flight at most"),
    _s("VALIDATION_THREADS", "coordination", "validation_threads", Integer(1, 64), 4, "Validator actors"),
    _s("HEALTH_CHECK_INTERVAL", "coordination", "health_check_interval", _SECONDS, 60.0, "seconds between dependency probes"),
    _s(
        "UNIVERSE_UPDATE_INTERVAL",
        "coordination",
        "universe_update_interval",
        _SECONDS,
        3600.0,
        "seconds between universe rotations",
    ),
    # universe criteria
    _s("MIN_VOLUME_24H", "universe", "min_volume_24h", Number(minimum=0, unit="USDC"), 1_000_000.0, "24 h quote volume at least"),
    _s("MAX_SPREAD_PERCENT", "universe", "max_spread_percent", Number(above=0, unit="percent"), 0.1, "bid/ask spread at most"),
    _s("MIN_MARKET_CAP", "universe", "min_market_cap", Number(minimum=0, unit="USD"), 50_000_000.0, "market capitalisation at least"),
    _s("VOLATILITY_RANGE", "universe", "volatility_range", Range(), (0.02, 0.15), "volatility low-high"),
    _s("CORRELATION_LIMIT", "universe", "correlation_limit", Number(above=0, maximum=1), 0.8, "correlation with a kept symbol at most"),
    # health
    _s("HEALTH_PROBE_TIMEOUT", "health", "probe_timeout", Number(above=0, maximum=30, unit="seconds"), 2.0, "timeout of one probe"),
    _s("BREAKER_FAILURE_THRESHOLD", "health", "failure_threshold", Integer(1, 100), 3, "consecutive failures that open a breaker"),
    _s("BREAKER_OPEN_SECONDS", "health", "open_seconds", _SECONDS, 10.0, "first open period of a breaker"),
    _s("BREAKER_OPEN_MAX_SECONDS", "health", "open_max_seconds", _SECONDS, 300.0, "longest open period of a breaker"),
    # supervisor
    _s("SUPERVISOR_STRATEGY", "supervisor", "strategy", Choice(("one_for_one", "rest_for_one")), "one_for_one", "restart strategy"),
    _s("SUPERVISOR_START_TIMEOUT", "supervisor", "start_timeout", _SECONDS, 30.0, "a starting child that neither answers its readiness Ping nor begins a message for this long is replaced"),
    _s("SUPERVISOR_STOP_TIMEOUT", "supervisor", "stop_timeout", _SECONDS, 5.0, "wait for each child to stop at most"),
    _s("SUPERVISOR_LIVENESS_INTERVAL", "supervisor", "liveness_interval", _SECONDS, 5.0, "seconds between liveness Pings"),
    _s("SUPERVISOR_LIVENESS_TIMEOUT", "supervisor", "liveness_timeout", _SECONDS, 15.0, "a Ping unanswered this long while the child begins no message for as long (stuck inside one) marks it hung"),
    _s("SUPERVISOR_BACKOFF_BASE", "supervisor", "backoff_base", Number(minimum=0, unit="seconds"), 0.5, "first restart delay"),
    _s("SUPERVISOR_BACKOFF_MAX", "supervisor", "backoff_max", Number(minimum=0, unit="seconds"), 30.0, "longest restart delay"),
    _s("SUPERVISOR_BACKOFF_JITTER", "supervisor", "backoff_jitter", Number(minimum=0, maximum=1), 0.2, "fraction of the delay taken off at random"),
    _s("SUPERVISOR_BACKOFF_RESET", "supervisor", "backoff_reset", _SECONDS, 60.0, "running this long resets a child's backoff"),
    _s("SUPERVISOR_MAX_RESTARTS", "supervisor", "max_restarts", Integer(0, 10_000), 10, "restarts allowed within the window"),
    _s("SUPERVISOR_RESTART_WINDOW", "supervisor", "restart_window", _SECONDS, 60.0, "window of the restart intensity"),
    _s(
        "SUPERVISOR_MAX_START_FAILURES",
        "supervisor",
        "max_start_failures",
        Integer(1, 1000),
        6,
        "consecutive failed starts of one child before escalation",
    ),
    # instance
    _s(
        "COORDINATOR_INSTANCE",
        "instance",
        "name",
        Text(pattern=INSTANCE_PATTERN, allowed=INSTANCE_ALLOWED),
        None,
        "this coordinator's identity among those sharing Redis and PostgreSQL: its row in "
        "coordinator_instances, its stream consumer name, the instance of every decision "
        "and order it stores; unset: the host name, '-' and 8 hex digits of the SHA-256 of "
        "the resolved COORDINATOR_DATA_DIR (stable across restarts)",
    ),
    _s(
        "COORDINATOR_INSTANCES",
        "instance",
        "mode",
        Choice(tuple(mode.value for mode in InstanceMode)),
        InstanceMode.SINGLE.value,
        "single: this coordinator runs alone and always leads, without a lease, so its "
        "trailing stops keep firing through a PostgreSQL outage; a second coordinator on "
        "the same database is refused at start. cluster: several share the database and "
        "the holder of the leader lease leads (set it on every instance)",
    ),
    _s("INSTANCE_HEARTBEAT", "instance", "heartbeat", _SECONDS, 1.0, "seconds between two heartbeats of this instance's row"),
    _s("INSTANCE_LIVENESS", "instance", "liveness", _SECONDS, 5.0, "a row whose heartbeat is younger than this (and not stopped) is a live coordinator: a start with its identity is refused; older, it is taken over"),
    # intake
    _s("SIGNALS_CHANNEL", "intake", "channel", Text(), "roottrading:signals:filtered", "Redis pub/sub channel of the aggregator's signals"),
    _s("SIGNALS_STREAM_ENABLED", "intake", "stream_enabled", Boolean(), True, "also read the durable Redis Stream"),
    _s("SIGNALS_STREAM", "intake", "stream", Text(), "roottrading:signals:stream", "Redis Stream of signals (field 'data' holds the JSON)"),
    _s("SIGNALS_STREAM_GROUP", "intake", "stream_group", Text(), "coordinator", "consumer group on the stream"),
    _s("SIGNALS_STREAM_CONSUMER", "intake", "stream_consumer", Text(pattern=INSTANCE_PATTERN, allowed=INSTANCE_ALLOWED), None, "this coordinator's consumer name on the stream; unset: COORDINATOR_INSTANCE (set it to keep the name of an earlier setup, such as coordinator-1, the former default)"),
    _s("SYMBOL_PARTITIONS", "intake", "partitions", Integer(1, 1024), 16, "cluster mode: symbols fall into this many partitions, shared among the live instances; a signal is decided by the holder of its symbol's partition (the same on every instance)"),
    _s("SIGNALS_PARTITION_STREAM", "intake", "partition_stream", Text(), None, "cluster mode: prefix of the partition streams through which a signal reaches the owner of its symbol (<prefix><k>); unset: SIGNALS_STREAM + ':partition:'"),
    _s("STREAM_CLAIM_IDLE", "intake", "claim_idle", _SECONDS, 30.0, "entries pending this long with a dead consumer are taken over"),
    _s("DEDUP_WINDOW", "intake", "dedup_window", _SECONDS, 3600.0, "a signal id seen within this is a duplicate"),
    _s("MAX_SIGNAL_BYTES", "intake", "max_signal_bytes", Integer(1024), 1024 * 1024, "a signal payload over this many bytes is rejected as invalid, whichever way it comes"),
    _s("EVENTS_CHANNEL", "intake", "events_channel", Text(), "roottrading:coordinator:events", "Redis channel of the coordinator's events"),
    # risk, portfolio, market conditions, sizing
    _s("QUOTE_ASSET", "risk", "quote_asset", Text(pattern=r"[A-Z]{3,6}", allowed="3 to 6 capital letters"), "USDC", "asset orders are sized in"),
    _s("MIN_ORDER_NOTIONAL", "risk", "min_notional", Number(minimum=0, unit="quote asset"), 15.0, "smallest order"),
    _s("MAX_EXPOSURE_PERCENT", "risk", "max_exposure_percent", Number(above=0, maximum=100, unit="percent"), 35.0, "one asset's share of equity at most"),
    _s("MAX_ORDERS_PER_MINUTE", "risk", "max_orders_per_minute", Integer(1, 10_000), 30, "BUY orders in any minute at most"),
    _s("DAILY_LOSS_LIMIT_PERCENT", "risk", "daily_loss_limit_percent", Number(above=0, maximum=100, unit="percent"), 5.0, "no BUY once today's loss reaches this share of equity"),
    _s("MAX_DRAWDOWN_PERCENT", "risk", "max_drawdown_percent", Number(above=0, maximum=100, unit="percent"), 15.0, "no BUY once equity is this far below its peak"),
    _s("STOP_LOSS_COOLDOWN", "risk", "stop_loss_cooldown", Number(minimum=0, unit="seconds"), 1800.0, "no BUY of a symbol this long after its stop-loss"),
    _s("REQUIRE_MARKET_DATA", "risk", "require_market_data", Boolean(), True, "a BUY needs a market price to compare with"),
    _s("MAX_PRICE_DEVIATION_PERCENT", "risk", "max_price_deviation_percent", Number(above=0, unit="percent"), 1.0, "signal price vs market price at most"),
    _s("MARKET_DATA_MAX_AGE", "risk", "market_data_max_age", _SECONDS, 180.0, "a market price older than this is stale"),
    _s("SIZING_THRESHOLDS", "risk", "sizing_thresholds", Numbers(3, 0, 1000, increasing=True), (1.0, 1.5, 2.2), "signal force limits of WEAK, MODERATE, STRONG"),
    _s("SIZING_PERCENTS", "risk", "sizing_percents", Numbers(4, 0.01, 100), (12.0, 18.0, 22.0, 28.0), "percent of free quote per category WEAK..VERY_STRONG"),
    _s("SIZING_MODE", "risk", "sizing_mode", Choice(("roottrading", "table")), "roottrading", "rootTrading: RootTrading's force, categories and amount (see Sizing); table: SIZING_THRESHOLDS and SIZING_PERCENTS"),
    _s("UNIVERSE_OVERRIDE", "risk", "universe_override", Boolean(), True, "a consensus BUY of force >= 2 with >= 5 strategies may enter outside the universe (RootTrading's override; a blacklist still refuses)"),
    _s("PORTFOLIO_CACHE_TTL", "risk", "portfolio_cache_ttl", _SECONDS, 2.0, "balances and positions are fetched again after this"),
    _s("PORTFOLIO_MAX_AGE", "risk", "portfolio_max_age", _SECONDS, 30.0, "a BUY needs a portfolio view at most this old"),
    _s("PORTFOLIO_MAX_AGE_EXIT", "risk", "portfolio_max_age_exit", _SECONDS, 600.0, "a SELL may size on a view this old"),
    _s("PORTFOLIO_TIMEOUT", "risk", "portfolio_timeout", Number(above=0, maximum=30, unit="seconds"), 2.0, "timeout of a Portfolio request"),
    _s("RESERVATION_LIFETIME", "risk", "reservation_lifetime", Number(minimum=10, maximum=3600, unit="seconds"), 90.0, "an order's reservation not settled after this is released with a warning (longer than the Trader timeouts and the intent claim; a WARNING at start when shorter than an order held after a 5xx may wait)"),
    _s("FILL_SETTLE_WINDOW", "risk", "fill_settle_window", Number(minimum=10, maximum=3600, unit="seconds"), 180.0, "our fill is laid over the Portfolio's view until both its positions and balances show it, at most this long, and past it until a view fetched after the fill (the Portfolio out of reach: a view older than the fill cannot show it)"),
    _s("QUANTITY_DECIMALS", "risk", "quantity_decimals", Integer(0, 8), 8, "order quantities are floored to this many decimals"),
    _s("QUANTITY_DECIMALS_BY_SYMBOL", "risk", "quantity_decimals_by_symbol", SymbolDecimals(), (), "decimals of particular symbols"),
    # execution and storage
    _s("TRADER_CONNECT_TIMEOUT", "execution", "connect_timeout", Number(above=0, maximum=30, unit="seconds"), 1.0, "connect timeout of POST /order"),
    _s("TRADER_READ_TIMEOUT", "execution", "read_timeout", Number(above=0, maximum=120, unit="seconds"), 15.0, "read timeout of POST /order (past it the order is unknown and reconciled); RootTrading's Trader fills on Binance before it answers"),
    _s("INTENT_GROUP_WAIT", "execution", "intent_group_wait", Number(minimum=0, maximum=0.001, unit="seconds"), 0.0005, "order intents claimed together share one durable commit; while they come in together, a batch waits this long for more to join (0: only those already waiting)"),
    _s("STORE_FLUSH_INTERVAL", "execution", "flush_interval", Number(above=0, maximum=5, unit="seconds"), 0.02, "the store writer flushes its batch this often"),
    _s("STORE_BATCH_SIZE", "execution", "batch_size", Integer(1, 100_000), 2000, "or as soon as it holds this many records"),
    # paper exchange
    _s("PAPER_TRADING", "paper", "trading", Boolean(), None, "true: orders go to the in-process paper exchange (not with TRADER_API_URL/PORTFOLIO_API_URL); unset: paper only when nothing is configured (all embedded), else the Trader and Portfolio at their URLs or RootTrading's http://trader:5002 and http://portfolio:8000"),
    _s("PAPER_STARTING_BALANCE", "paper", "starting_balance", Number(minimum=0, unit="quote asset"), 10_000.0, "paper exchange starting balance"),
    _s("PAPER_FEE_PERCENT", "paper", "fee_percent", Number(minimum=0, maximum=10, unit="percent"), 0.1, "paper exchange fee per fill"),
    _s("PAPER_FEE_IN_BASE", "paper", "fee_in_base", Boolean(), False, "paper exchange takes a BUY's fee in the base asset (the free balance is then under the position)"),
    # universe manager
    _s("UNIVERSE_CANDIDATES", "universe_manager", "candidates", Choice(("config", "redis", "data")), "config", "candidates: TRADING_SYMBOLS, the trading:symbols Redis key, or every symbol with data"),
    _s("UNIVERSE_TIMEFRAME", "universe_manager", "timeframe", Choice(("1m", "3m", "5m", "15m", "1h")), "15m", "candle timeframe of the statistics"),
    _s("VOLATILITY_WINDOW", "universe_manager", "window", Integer(10, 10_000), 96, "candles of the volatility and correlation window"),
    _s("UNIVERSE_FILTERS", "universe_manager", "filters", Names(("volume", "spread", "market_cap", "volatility", "score", "correlation", "top")), ("volume", "spread", "market_cap", "volatility", "score", "correlation", "top"), "the filter chain, in order"),
    _s("UNIVERSE_SCORE_WEIGHTS", "universe_manager", "score_weights", Weights(("volume", "volatility", "momentum")), (("momentum", 0.2), ("volatility", 0.3), ("volume", 0.5)), "weights of the score"),
    _s("UNKNOWN_SPREAD_POLICY", "universe_manager", "unknown_spread", Choice(("keep", "drop")), "keep", "a symbol with no fresh bid/ask"),
    _s("UNKNOWN_MARKET_CAP_POLICY", "universe_manager", "unknown_market_cap", Choice(("keep", "drop")), "keep", "a symbol whose market cap is unknown"),
    _s("BOOK_TICKER_KEY", "universe_manager", "book_ticker_key", Text(), "roottrading:market:book_ticker", "Redis hash: symbol -> {bid, ask, time} JSON"),
    _s("SPREAD_MAX_AGE", "universe_manager", "spread_max_age", _SECONDS, 300.0, "a bid/ask older than this is unknown"),
    _s("MARKET_CAP_KEY", "universe_manager", "market_cap_key", Text(), "roottrading:market:cap", "Redis hash: base asset or symbol -> market cap in USD"),
    _s("MARKET_CAP_FILE", "universe_manager", "market_cap_file", AnyPath(), None, "JSON file {asset or symbol: market cap in USD}, read at each rotation"),
    _s("CORE_PAIRS", "universe_manager", "core_pairs", Symbols(), ("BTCUSDC", "ETHUSDC"), "always in the universe"),
    _s("UNIVERSE_ENTRY_ROTATIONS", "universe_manager", "entry_rotations", Integer(1, 100), 2, "rotations in a row a symbol must qualify to enter"),
    _s("UNIVERSE_ENTRY_MARGIN", "universe_manager", "entry_margin", Number(minimum=0, maximum=10), 0.2, "or enter at once by beating the weakest member by this fraction"),
    _s("UNIVERSE_EXIT_MISSES", "universe_manager", "exit_misses", Integer(1, 100), 2, "rotations in a row a member may miss before it leaves"),
    _s("UNIVERSE_MAX_CHANGES", "universe_manager", "max_changes", Integer(1, 1000), 3, "additions and removals per rotation at most"),
    _s("UNIVERSE_MIN_RESIDENCY", "universe_manager", "min_residency", Number(minimum=0, unit="seconds"), 7200.0, "a member stays at least this long"),
    _s("AUTO_BLACKLIST_STOP_LOSSES", "universe_manager", "auto_stop_losses", Integer(1, 1000), 3, "stop-losses on a symbol that blacklist it"),
    _s("AUTO_BLACKLIST_WINDOW", "universe_manager", "auto_window", _SECONDS, 86400.0, "within this"),
    _s("AUTO_BLACKLIST_COOLDOWN", "universe_manager", "auto_cooldown", _SECONDS, 86400.0, "for this long"),
    # trailing stops
    _s("STOP_RULES", "stops", "rules", Names(STOP_RULES), ("stoploss", "breakeven", "percent"), "the stop rules of a position by default (stoploss required)"),
    _s("STOP_RULES_BY_SYMBOL", "stops", "rules_by_symbol", SymbolRules(), (), "rule sets of particular symbols"),
    _s("STOP_LOSS_PERCENT", "stops", "stop_loss_percent", Number(above=0, maximum=99, unit="percent"), 5.0, "hard stop-loss under the entry price"),
    _s("TRAILING_STOP_PERCENT", "stops", "trail_percent", Number(above=0, maximum=99, unit="percent"), 2.0, "percent rule: trail this far under the peak"),
    _s("TRAILING_STOP_OFFSET_PERCENT", "stops", "trail_offset_percent", Number(minimum=0, maximum=1000, unit="percent"), 1.0, "percent rule: once the peak is this far over the entry"),
    _s("ATR_MULTIPLIER", "stops", "atr_multiple", Number(above=0, maximum=100), 3.0, "atr rule: trail this many ATRs under the peak"),
    _s("ATR_PERIOD", "stops", "atr_period", Integer(1, 1000), 14, "candles of the ATR (Wilder)"),
    _s("ATR_TIMEFRAME", "stops", "atr_timeframe", Choice(("1m", "3m", "5m", "15m")), "5m", "candle timeframe of the ATR"),
    _s("PROFIT_LADDER", "stops", "ladder", Ladder(), ((2.0, 0.5), (4.0, 2.0), (8.0, 5.0)), "ladder rule: gain:lock steps in percent"),
    _s("BREAKEVEN_AFTER_PERCENT", "stops", "breakeven_after_percent", Number(above=0, maximum=1000, unit="percent"), 1.5, "breakeven rule: once the peak is this far over the entry"),
    _s("BREAKEVEN_OFFSET_PERCENT", "stops", "breakeven_offset_percent", Number(minimum=0, maximum=1000, unit="percent"), 0.2, "breakeven rule: the stop goes this far over the entry (fees)"),
    _s("STOP_PRICE_MAX_AGE", "stops", "price_max_age", _SECONDS, 90.0, "a price older than this is stale: no stop decision on it"),
    _s("POSITIONS_REFRESH_INTERVAL", "stops", "refresh_interval", _SECONDS, 10.0, "open positions are fetched again this often (and soon after our orders)"),
    _s("STOP_EXIT_RETRY_BASE", "stops", "retry_base", _SECONDS, 1.0, "first wait before an exit is tried again after a failure"),
    _s("STOP_EXIT_RETRY_MAX", "stops", "retry_max", _SECONDS, 60.0, "longest wait between exit attempts"),
    _s("STOP_EXIT_TIMEOUT", "stops", "exit_timeout", _SECONDS, 90.0, "an exit with no outcome after this is looked at again"),
    _s("STOP_EXIT_SETTLE", "stops", "exit_settle", _SECONDS, 90.0, "a position still held this long after it was sold is watched again, with an alert (its next exit reads the stored orders first)"),
    _s("STOP_STATE_FLUSH_INTERVAL", "stops", "flush_interval", Number(above=0, maximum=10, unit="seconds"), 0.25, "stop state is written to PostgreSQL this often"),
    # leader lease (several coordinators on one database)
    _s("LEADER_LEASE_DURATION", "leader_lease", "duration", Number(above=0, maximum=300, unit="seconds"), 1.5, "the leader lease lasts this long from each renewal; a follower takes over once it lapses"),
    _s("LEADER_LEASE_RENEW", "leader_lease", "renew_every", Number(above=0, maximum=100, unit="seconds"), 0.5, "the leader renews its lease this often, and a follower tries to take it at least this often (under half of LEADER_LEASE_DURATION)"),
)
# fmt: on

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
CONFIG_FILE_VARIABLE = "COORDINATOR_CONFIG"
