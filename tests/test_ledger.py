"""The Ledger in a whole coordinator: reservations that cannot leak, sells of what is
free, against a paper exchange that takes the buy fee in the base asset."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import requests

from coordinator.actors import ledger as ledger_actor
from coordinator.infra.paper_exchange import PaperExchange
from coordinator.messages.pipeline import GetLedgerSnapshot, Reserve, ReserveMany, Settle
from coordinator.trading.routing import client_order_id
from coordinator.trading.signals import Signal, parse_signal
from coordinator.trading.validation import Reason
from tests.http_stub import serve_on_loopback
from tests.pipeline import PRICES, Pipeline, signal_payload
from tests.test_pipeline import signal_id
from tests.test_trailing_stops import ENV as STOP_ENV
from tests.test_trailing_stops import _restarts as _supervisor_restarts
from tests.test_trailing_stops import stop_of, tick, watched
from tests.waiting import wait_for


def ledger(pipe: Pipeline) -> Any:
    return pipe.directory.ask("ledger", GetLedgerSnapshot(), timeout=5)


def signal_of(payload: dict[str, Any]) -> Signal:
    parsed = parse_signal(payload)
    assert isinstance(parsed, Signal)
    return parsed


def bought(pipe: Pipeline, symbol: str) -> float:
    """BUY ``symbol`` by a signal; the quantity ordered."""
    buy = signal_payload(symbol, "BUY")
    pipe.publish(buy)
    record = pipe.decision(signal_id(buy))
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    wait_for(lambda: symbol in pipe.positions(), message=f"{symbol} held")
    return record["order"]["quantity"]


@pytest.fixture
def base_fee_pipe(pipelines) -> Pipeline:
    paper = PaperExchange(redis_url=None, fee_in_base=True).start()
    return pipelines(STOP_ENV, paper=paper)


def test_a_sell_signal_after_a_base_fee_buy_sells_the_free_balance(base_fee_pipe):
    pipe = base_fee_pipe
    quantity = bought(pipe, "SOLUSDC")
    free = pipe.paper.book.balances["SOL"]
    assert free == pytest.approx(quantity * 0.999), "the fee was taken in SOL"

    sell = signal_payload("SOLUSDC", "SELL")
    pipe.publish(sell)
    record = pipe.decision(signal_id(sell))
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert record["order"]["quantity"] <= free
    wait_for(lambda: "SOLUSDC" not in pipe.positions(), message="the position sold")


def test_a_stop_exit_after_a_base_fee_buy_is_accepted(base_fee_pipe):
    pipe = base_fee_pipe
    bought(pipe, "ETHUSDC")
    stop = watched(pipe, "ETHUSDC")
    free = pipe.paper.book.balances["ETH"]
    low = PRICES["ETHUSDC"] * 0.9
    pipe.paper.set_price("ETHUSDC", low)
    tick(pipe, "ETHUSDC", low)
    wait_for(lambda: "ETHUSDC" not in pipe.positions(), message="the stop's exit filled")
    record = pipe.decision(f"exit:{stop['position_key']}:1")
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert record["order"]["quantity"] <= free
    wait_for(lambda: stop_of(pipe, "ETHUSDC") is None, message="the stop closed")


def test_a_reserve_whose_asker_gave_up_makes_no_reservation(pipelines):
    pipe = pipelines()
    reservation = pipe.directory.ask(
        "ledger",
        Reserve(
            signal=signal_of(signal_payload("BTCUSDC", "BUY")),
            market=None,
            owner="validator-0#1",
            deadline=time.time() - 1.0,
        ),
        timeout=5,
    )
    assert reservation.plan is None and reservation.reservation_id is None
    assert "timed out" in reservation.checks[-1].detail
    assert ledger(pipe).reservations == 0


def test_reservations_asked_together_each_find_the_book_the_ones_before_left(pipelines):
    """A ReserveMany is checked in order, each as if asked alone: with room for two
    trades, the third BUY of three is refused. A Settle told after it waits in the
    Ledger's inbox (it does not wake it) and is taken before the next ask: the room a
    BUY not sent gives back is there for the next Reserve."""
    pipe = pipelines({"MAX_CONCURRENT_TRADES": "2"})

    def reserve(symbol: str) -> Reserve:
        return Reserve(
            signal=signal_of(signal_payload(symbol, "BUY")),
            market=None,
            owner="validator-0#1",
            deadline=time.time() + 5.0,
        )

    answers = pipe.directory.ask(
        "ledger",
        ReserveMany(reserves=(reserve("BTCUSDC"), reserve("ETHUSDC"), reserve("SOLUSDC"))),
        timeout=5,
    )
    assert [a.plan is not None for a in answers] == [True, True, False]
    assert answers[2].checks[-1].reason is Reason.MAX_CONCURRENT_TRADES, answers[2].checks
    first = answers[0]
    assert first.plan is not None and first.reservation_id is not None
    pipe.directory.tell(
        "ledger",
        Settle(
            reservation_id=first.reservation_id,
            filled=False,
            symbol=first.plan.symbol,
            side=first.plan.side,
            at=time.time(),
        ),
    )
    again = pipe.directory.ask("ledger", reserve("SOLUSDC"), timeout=5)
    assert again.plan is not None, again.checks
    assert ledger(pipe).reservations == 2


def test_a_bug_on_one_reservation_asked_together_refuses_that_one_alone(pipelines, monkeypatch):
    """The others of the ReserveMany are reserved and answered: failing the whole ask
    would leave their reservations held by nobody until they expire."""
    pipe = pipelines()
    evaluate = ledger_actor.evaluate_order

    def failing_on_eth(signal: Signal, **kwargs: Any) -> Any:
        if signal.symbol == "ETHUSDC":
            raise ValueError("test: a bug on this one")
        return evaluate(signal, **kwargs)

    monkeypatch.setattr(ledger_actor, "evaluate_order", failing_on_eth)
    reserves = tuple(
        Reserve(
            signal=signal_of(signal_payload(symbol, "BUY")),
            market=None,
            owner="validator-0#1",
            deadline=time.time() + 5.0,
        )
        for symbol in ("BTCUSDC", "ETHUSDC", "SOLUSDC")
    )
    answers = pipe.directory.ask("ledger", ReserveMany(reserves=reserves), timeout=5)
    assert [a.plan is not None for a in answers] == [True, False, True]
    assert answers[1].checks[-1].reason is Reason.INTERNAL_ERROR
    assert "a bug on this one" in answers[1].checks[-1].detail
    assert ledger(pipe).reservations == 2


def test_a_leaked_sell_reservation_expires_counted_and_exits_go_on(pipelines):
    pipe = pipelines({"RESERVATION_LIFETIME": "10", "TRADER_READ_TIMEOUT": "3"})
    bought(pipe, "SOLUSDC")
    wait_for(lambda: "SOLUSDC" in ledger(pipe).positions, message="the Ledger sees SOL")
    # A SELL reserved by an asker that then vanished: nobody will settle it.
    leaked = pipe.directory.ask(
        "ledger",
        Reserve(
            signal=signal_of(signal_payload("SOLUSDC", "SELL")),
            market=None,
            owner="validator-9#1",
            deadline=time.time() + 60.0,
        ),
        timeout=5,
    )
    assert leaked.reservation_id is not None
    assert pipe.stats()["reservations_open"] == 1
    blocked = signal_payload("SOLUSDC", "SELL")
    pipe.publish(blocked)
    assert pipe.decision(signal_id(blocked))["decision"]["reason"] == "exit_in_progress"

    wait_for(
        lambda: pipe.stats()["reservations_expired"] == 1,
        timeout=30,
        message="the leaked reservation released",
    )
    assert ledger(pipe).reservations == 0
    assert pipe.stats()["reservations_open"] == 0
    sell = signal_payload("SOLUSDC", "SELL")
    pipe.publish(sell)
    assert pipe.decision(signal_id(sell))["decision"]["outcome"] == "accepted"


def test_an_exception_after_the_reservation_settles_it(pipelines, monkeypatch):
    pipe = pipelines()
    assert pipe.coordinator.services is not None
    intents = pipe.coordinator.services.intents

    def failing_claim(requests: Any) -> list[Any]:
        raise OSError("journal: no space left on device")

    # The gate the Validators claim through, alone or several at once.
    monkeypatch.setattr(intents, "claim_many", failing_claim)
    buy = signal_payload("BTCUSDC", "BUY")
    pipe.publish(buy)
    decision = pipe.decision(signal_id(buy))["decision"]
    assert decision["outcome"] in ("rejected", "unknown")
    wait_for(lambda: ledger(pipe).reservations == 0, message="the reservation settled")
    assert pipe.paper.stats()["orders_received"] == 0


def test_a_fetch_between_the_fill_and_its_settlement_counts_the_fill_once(pipelines):
    # A Validator waiting on the Trader is not hung (the liveness limit of the tests
    # is 1 s).
    pipe = pipelines({"SUPERVISOR_LIVENESS_TIMEOUT": "10"})
    # The Trader fills at once and answers 2.5 s later: the Ledger's fetches meanwhile
    # (every second) show the fill before the Validator settles it.
    pipe.paper.knobs.update({"timeout": 2.5})
    buy = signal_payload("XRPUSDC", "BUY")
    pipe.publish(buy)
    wait_for(lambda: "XRPUSDC" in pipe.positions(), message="the BUY filled")
    # A SELL right behind it: sized by the Ledger just after the BUY's settlement.
    sell = signal_payload("XRPUSDC", "SELL")
    pipe.publish(sell)
    quantity = pipe.decision(signal_id(buy))["order"]["quantity"]
    pipe.paper.knobs.update({"timeout": 0})
    record = pipe.decision(signal_id(sell))
    assert record["decision"]["outcome"] == "accepted", record["decision"]
    assert record["order"]["quantity"] <= quantity, "not the doubled quantity"
    wait_for(lambda: "XRPUSDC" not in pipe.positions(), message="the position sold")


class LaggingPortfolio:
    """The Portfolio's routes in front of the paper exchange, with ``/balances`` frozen
    at its first answer (RootTrading caches balances for up to a minute, positions not)."""

    def __init__(self, paper: PaperExchange) -> None:
        self.positions_read = 0
        self._frozen: bytes | None = None
        portfolio = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer = requests.get(paper.url + self.path, timeout=5)
                body = answer.content
                if self.path == "/balances":
                    if portfolio._frozen is None:
                        portfolio._frozen = body
                    body = portfolio._frozen
                elif self.path == "/positions/active":
                    portfolio.positions_read += 1
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server, self.url = serve_on_loopback(Handler)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_buy_stays_spent_while_the_balances_lag_the_positions(pipelines):
    paper = PaperExchange(redis_url=None).start()
    portfolio = LaggingPortfolio(paper)
    try:
        pipe = pipelines({"PORTFOLIO_API_URL": portfolio.url}, paper=paper)
        first = signal_payload("BTCUSDC", "BUY")
        pipe.publish(first)
        spent = pipe.decision(signal_id(first))["order"]["quantity"] * PRICES["BTCUSDC"]
        # The Ledger fetches again: the position shows, the quote balance does not.
        reads = portfolio.positions_read
        wait_for(lambda: portfolio.positions_read >= reads + 2, message="two more fetches")
        second = signal_payload("ETHUSDC", "BUY")
        pipe.publish(second)
        record = pipe.decision(signal_id(second))
        assert record["decision"]["outcome"] == "accepted", record["decision"]
        sized = record["order"]["quantity"] * PRICES["ETHUSDC"]
        # The same share of what is left, not of the 10,000 the frozen balances show.
        left = 10_000.0 - spent * 1.001
        assert sized == pytest.approx(spent / 10_000.0 * left, rel=1e-3)
    finally:
        portfolio.stop()


class FrozenPortfolio:
    """The Portfolio's routes in front of the paper exchange; once ``frozen``, each
    route answers what it answered last (a Portfolio lagging behind our orders)."""

    def __init__(self, paper: PaperExchange) -> None:
        self.frozen = False
        self.reads = 0
        self._last: dict[str, tuple[int, bytes]] = {}
        portfolio = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                portfolio.reads += 1
                if portfolio.frozen and self.path in portfolio._last:
                    status, body = portfolio._last[self.path]
                else:
                    answer = requests.get(paper.url + self.path, timeout=5)
                    status, body = answer.status_code, answer.content
                    portfolio._last[self.path] = (status, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server, self.url = serve_on_loopback(Handler)

    def shows(self, asset: bytes) -> bool:
        """Whether the latest answer of each route names ``asset``."""
        return all(asset in self._last.get(route, (0, b""))[1] for route in _ROUTES)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_ROUTES = ("/positions/active", "/balances")


def _restarts(pipe: Pipeline, name: str) -> int:
    return _supervisor_restarts(requests.get(pipe.url + "/supervisor", timeout=5).json(), name)


def test_a_restarted_ledger_does_not_sell_again_what_a_lagging_portfolio_still_shows(
    pipelines,
):
    paper = PaperExchange(redis_url=None).start()
    portfolio = FrozenPortfolio(paper)
    try:
        pipe = pipelines({"PORTFOLIO_API_URL": portfolio.url}, paper=paper)
        bought(pipe, "SOLUSDC")
        wait_for(lambda: portfolio.shows(b"SOL"), message="the Portfolio shows SOL")
        # From now on the Portfolio shows SOL held, whatever happens.
        portfolio.frozen = True
        first = signal_payload("SOLUSDC", "SELL")
        pipe.publish(first)
        assert pipe.decision(signal_id(first))["decision"]["outcome"] == "accepted"
        assert "SOLUSDC" not in pipe.positions(), "sold at the exchange"
        orders = pipe.paper.stats()["orders_received"]

        restarts = _restarts(pipe, "ledger")
        pipe.drill("ledger")
        wait_for(lambda: _restarts(pipe, "ledger") > restarts, message="the Ledger restarted")
        reads = portfolio.reads
        wait_for(lambda: portfolio.reads >= reads + 2, message="the new Ledger fetched")

        second = signal_payload("SOLUSDC", "SELL")
        pipe.publish(second)
        decision = pipe.decision(signal_id(second))["decision"]
        assert decision["outcome"] == "rejected", decision
        assert decision["reason"] == "no_position", "our SELL is still laid over the view"
        assert pipe.paper.stats()["orders_received"] == orders, "nothing sent again"
    finally:
        portfolio.stop()


def test_a_new_process_does_not_sell_again_what_a_lagging_portfolio_still_shows(
    pipelines, own_postgres
):
    paper = PaperExchange(redis_url=None).start()
    portfolio = FrozenPortfolio(paper)
    env = {"PORTFOLIO_API_URL": portfolio.url}
    try:
        first = pipelines(env, paper=paper, database_dsn=own_postgres.dsn)
        bought(first, "SOLUSDC")
        wait_for(lambda: portfolio.shows(b"SOL"), message="the Portfolio shows SOL")
        portfolio.frozen = True
        sold = signal_payload("SOLUSDC", "SELL")
        first.publish(sold)
        assert first.decision(signal_id(sold))["decision"]["outcome"] == "accepted"
        first.coordinator.stop()
        orders = paper.stats()["orders_received"]

        second = pipelines(env, paper=paper, database_dsn=own_postgres.dsn)
        again = signal_payload("SOLUSDC", "SELL")
        second.publish(again)
        decision = second.decision(signal_id(again))["decision"]
        assert decision["outcome"] == "rejected", decision
        assert decision["reason"] == "no_position", "our stored SELL is laid over the view"
        assert paper.stats()["orders_received"] == orders, "nothing sent again"
    finally:
        portfolio.stop()


def test_a_held_sell_handed_back_after_a_restart_still_holds_its_symbols_exits(
    pipelines, own_postgres
):
    """A SELL answered 5xx, then the process dies: the new one holds it again, with no
    reservation of its own (its room is the copy of it laid over the view from the
    store). Found not executed, it is sent again: no second SELL of the holding may go
    out beside it meanwhile, so that copy stays until its outcome is known."""
    from tests.test_held_orders import knobs, trader_up_a_while

    paper = PaperExchange(redis_url=None).start()
    # Single mode: the second process takes in what the first left undecided from the
    # store (in a cluster it would come from its partition's stream, and each of these
    # coordinators has streams of its own).
    env = {"SIGNAL_TIMEOUT": "120", "COORDINATOR_INSTANCES": "single"}
    first = pipelines(env, paper=paper, database_dsn=own_postgres.dsn)
    bought(first, "SOLUSDC")
    trader_up_a_while(first)
    knobs(first, error_rate=1.0)
    sold = signal_payload("SOLUSDC", "SELL")
    first.publish(sold)
    cid = client_order_id(signal_id(sold))
    wait_for(lambda: paper.stats()["requests_by_client_order_id"].get(cid) == 1, message="sent")
    first.coordinator.stop()

    second = pipelines(env, paper=paper, database_dsn=own_postgres.dsn)
    # Not found at the Trader: handed back and sent again (answered 5xx again).
    wait_for(
        lambda: paper.stats()["requests_by_client_order_id"].get(cid, 0) >= 2,
        timeout=60,
        message="sent again by the new process",
    )
    # Its room is still the copy laid from the store: SOL is not sellable beside it.
    assert "SOLUSDC" not in ledger(second).positions
    wait_for(
        lambda: paper.stats()["requests_by_client_order_id"].get(cid, 0) >= 3,
        timeout=60,
        message="handed back and sent again once more",
    )
    assert "SOLUSDC" not in ledger(second).positions
