"""Command line: ``coordinator run [--paper] | check-config | paper-exchange | demo | drill``.

Exit codes: 0 clean stop, 1 could not start (or any other error the coordinator
names), 2 bad configuration or usage, 3 the supervisor gave up (restart intensity
exceeded) and stopped the tree.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coordinator import __version__
from coordinator.config import SETTINGS, Config, ConfigError, load_config
from coordinator.errors import CoordinatorError

__all__ = ["main"]

logger = logging.getLogger("coordinator")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return args.handler(args)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except CoordinatorError as exc:
        # A failure the coordinator named: one line, not a traceback.
        print(f"coordinator: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or "(no detail)"


def _print_config_error(exc: ConfigError) -> None:
    print("configuration error(s), the coordinator did not start:", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coordinator",
        description="Coordinator of the RootTrading system.",
    )
    parser.add_argument("--version", action="version", version=f"coordinator {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML file with settings (same names as the environment variables)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the coordinator until SIGTERM or SIGINT")
    run.add_argument("--host", help="HTTP bind address (COORDINATOR_HOST)")
    run.add_argument("--port", help="HTTP port (COORDINATOR_PORT, default 5003)")
    run.add_argument(
        "--data-dir",
        help="directory of the embedded servers (COORDINATOR_DATA_DIR, default ./.coordinator)",
    )
    run.add_argument(
        "--paper",
        action="store_true",
        help="trade on the in-process paper exchange, no real money (PAPER_TRADING=true)",
    )
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check-config", help="print the effective configuration, secrets hidden"
    )
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--host")
    check.add_argument("--port")
    check.add_argument("--data-dir")
    check.add_argument("--paper", action="store_true", help="as `run --paper`")
    check.set_defaults(handler=_check_config)

    paper = commands.add_parser(
        "paper-exchange",
        help="serve the Trader and Portfolio contracts on paper (POST /order, GET /balances...)",
    )
    paper.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    paper.add_argument("--port", type=int, default=5002, help="port (default 5002)")
    paper.add_argument(
        "--redis-url", help="follow prices on the market-data channels of this Redis"
    )
    paper.add_argument(
        "--no-market-data",
        action="store_true",
        help="do not follow the market-data channels: fill at each order's reference price",
    )
    paper.add_argument(
        "--fee-in-base",
        action="store_true",
        default=None,
        help="take a BUY's fee in the base asset (default PAPER_FEE_IN_BASE)",
    )
    paper.set_defaults(handler=_paper_exchange)

    status = commands.add_parser(
        "status",
        help="print a running coordinator's state, dependencies, positions and last decisions",
    )
    status.add_argument("--url", default="http://127.0.0.1:5003", help="the coordinator's API")
    status.add_argument("--json", action="store_true", help="print the answers as JSON")
    status.set_defaults(handler=_status)

    demo = commands.add_parser(
        "demo",
        help="run the embedded coordinator on paper, fed with replayed candles and signals",
    )
    demo.add_argument("--candles", type=Path, help="candle folder (default ../shared/data/candles)")
    demo.add_argument(
        "--speed", type=float, default=300.0, help="replayed seconds per second (default 300)"
    )
    demo.add_argument("--port", type=int, help="HTTP port (COORDINATOR_PORT, default 5003)")
    demo.add_argument("--data-dir", type=Path, help="data directory (default ./.coordinator-demo)")
    demo.set_defaults(handler=_demo)

    drill = commands.add_parser(
        "drill", help="inject a fault into a running coordinator's actor (COORDINATOR_DRILLS=1)"
    )
    drill.add_argument("actor", help="actor name, as listed by GET /supervisor")
    drill.add_argument("kind", choices=("crash", "hang", "fail-start"))
    drill.add_argument("--seconds", type=float, default=30.0, help="how long to hang")
    drill.add_argument("--url", default="http://127.0.0.1:5003", help="the coordinator's API")
    drill.set_defaults(handler=_drill)
    return parser


def _load(args: argparse.Namespace) -> Config | None:
    overrides = {
        "COORDINATOR_HOST": getattr(args, "host", None),
        "COORDINATOR_PORT": getattr(args, "port", None),
        "COORDINATOR_DATA_DIR": getattr(args, "data_dir", None),
        "PAPER_TRADING": True if getattr(args, "paper", False) else None,
    }
    try:
        return load_config(overrides=overrides, config_file=args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return None


def _configure_logging(config: Config) -> None:
    from coordinator.logs import configure_logging

    configure_logging(
        config.service.log_level,
        config.service.log_format,
        coordinator_level=config.service.coordinator_log_level,
    )


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_CONFIG
    effective = config.redacted()
    if args.json:
        print(json.dumps(effective, indent=2, default=str))
        return EXIT_OK
    width = max(len(s.name) for s in SETTINGS)
    if config.config_file is not None:
        print(f"# config file: {config.config_file}")
    for setting in SETTINGS:
        entry = effective[setting.name]
        value = entry["value"]
        shown = (
            "(not set)"
            if value is None
            else json.dumps(value)
            if not isinstance(value, str)
            else value
        )
        print(f"{setting.name:<{width}}  {shown}  [{entry['source']}]")
    for note in config.notes:
        print(f"# {logging.getLevelName(note.level)}: {note.text}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return EXIT_CONFIG
    from coordinator.collector import space_out_collections
    from coordinator.daemon import (
        EXIT_ESCALATED,
        EXIT_IDENTITY_LOST,
        EXIT_START_FAILED,
        Coordinator,
        set_after,
    )
    from coordinator.logs import log_thread_stacks
    from coordinator.malloc_arenas import limit_malloc_arenas

    _configure_logging(config)
    wake = threading.Event()
    received: dict[str, Any] = {"stop": None, "dump": False}

    def on_stop_signal(signum: int, _frame: Any) -> None:
        now = time.monotonic()
        if received["stop"] is not None:
            # Asked again, later, while stopping: leave now. The embedded servers go
            # with us (parent-death signal). A copy of the first signal sent to the
            # whole process group at the same moment does not count.
            if now - received["stop_at"] > 2.0:
                os.write(2, b"second stop signal: exiting at once\n")
                os._exit(EXIT_START_FAILED)
            return
        received["stop"] = signal.Signals(signum).name
        received["stop_at"] = now
        wake.set()

    def on_dump_signal(_signum: int, _frame: Any) -> None:
        received["dump"] = True
        wake.set()

    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    signal.signal(signal.SIGUSR1, on_dump_signal)

    logger.info("coordinator %s starting (pid %d)", __version__, os.getpid())
    limit_malloc_arenas()
    space_out_collections()
    coordinator = Coordinator(config)
    try:
        coordinator.start()
    except Exception as exc:
        logger.critical("could not start: %s", exc, exc_info=not _expected_start_error(exc))
        return EXIT_START_FAILED
    threading.Thread(
        target=set_after,
        args=(coordinator.outcome.finished, wake),
        name="tree-watch",
        daemon=True,
    ).start()
    exit_code = EXIT_OK
    try:
        while True:
            wake.wait()
            wake.clear()
            if received["dump"]:
                received["dump"] = False
                log_thread_stacks(logger)
            if received["stop"] is not None:
                logger.info("%s received; stopping", received["stop"])
                break
            if coordinator.outcome.finished.is_set():
                if coordinator.identity_lost is not None:
                    logger.critical("stopped: %s", coordinator.identity_lost)
                    exit_code = EXIT_IDENTITY_LOST
                elif coordinator.outcome.failure is not None:
                    logger.critical("the supervisor gave up: %s", coordinator.outcome.failure)
                    exit_code = EXIT_ESCALATED
                break
    finally:
        coordinator.stop()
    return exit_code


def _demo(args: argparse.Namespace) -> int:
    from coordinator.demo.runner import DemoOptions, run_demo

    if args.config is not None:
        print(
            "coordinator demo: --config is not read by the demo, which runs with its own "
            "settings (set variables in the environment to change them)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return run_demo(
        DemoOptions(candles=args.candles, speed=args.speed, port=args.port, data_dir=args.data_dir)
    )


def _paper_exchange(args: argparse.Namespace) -> int:
    config = _load(argparse.Namespace(config=args.config))
    if config is None:
        return EXIT_CONFIG
    from coordinator.http.server import HttpServerError
    from coordinator.infra.paper_exchange import PaperExchange

    _configure_logging(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        exchange = PaperExchange(
            host=args.host,
            port=args.port,
            starting_balance=config.paper.starting_balance,
            fee_rate=config.paper.fee_percent / 100.0,
            fee_in_base=bool(args.fee_in_base or config.paper.fee_in_base),
            quote_asset=config.risk.quote_asset,
            redis_url=None
            if args.no_market_data
            else args.redis_url or config.redis.connection_url(),
        ).start()
    except HttpServerError as exc:
        logger.critical("could not start: %s", exc)
        return 1
    stop.wait()
    exchange.stop()
    return EXIT_OK


def _expected_start_error(exc: Exception) -> bool:
    from coordinator.daemon import StartupError
    from coordinator.http.server import HttpServerError
    from coordinator.infra.embedded import EmbeddedServerError
    from coordinator.infra.instances import IdentityInUse, InstanceBeside
    from coordinator.infra.store import StoreError

    return isinstance(
        exc,
        StartupError
        | HttpServerError
        | EmbeddedServerError
        | StoreError
        | IdentityInUse
        | InstanceBeside,
    )


def _drill(args: argparse.Namespace) -> int:
    import requests

    token = os.environ.get("COORDINATOR_API_TOKEN")
    url = f"{args.url.rstrip('/')}/drills/actors/{args.actor}/{args.kind}"
    params = {"seconds": args.seconds} if args.kind == "hang" else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.post(url, params=params, headers=headers, timeout=5)
    except requests.RequestException as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    print(response.text)
    return EXIT_OK if response.status_code < 300 else 1


def _status(args: argparse.Namespace) -> int:
    import requests

    from coordinator.status_report import ROUTES, render_status

    base = args.url.rstrip("/")
    answers: dict[str, Any] = {}
    reached = False
    for name, path in ROUTES.items():
        try:
            response = requests.get(base + path, timeout=5)
        except requests.RequestException as exc:
            answers[name] = f"cannot reach {base}: {type(exc).__name__}"
            continue
        reached = True
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 200 and isinstance(answer, dict):
            answers[name] = answer
        else:
            error = answer.get("error") if isinstance(answer, dict) else None
            answers[name] = f"{path} answered {response.status_code}: {error or response.reason}"
    if not reached:
        print(f"cannot reach a coordinator at {base}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(answers, indent=2))
    else:
        sys.stdout.write(render_status(base, answers))
    return EXIT_OK
