"""The actors of tests/test_money_model.py as they drive the pure modules: the
Validator's path (the book's reserve/evaluate, the exit price re-check, the intent claim,
the order and its answer), the Ledger's book and fetches, the TrailingStop's stops, the
reconciler. Each order request checks the invariants against the exchange's truth."""

from __future__ import annotations

from coordinator.trading import stop_lifecycle as lc
from coordinator.trading.execution import outcome_of_existing
from coordinator.trading.freshness import PriceBook, exit_price_check
from coordinator.trading.ledger_book import LedgerBook, SettleResult
from coordinator.trading.ledger_restore import StoredOrder as RestoredOrder
from coordinator.trading.ledger_restore import restore
from coordinator.trading.order_checks import evaluate_order
from coordinator.trading.reconciliation import (
    FillSource,
    MatchPolicy,
    OurOrder,
    Resolution,
    Venue,
    reconcile,
)
from coordinator.trading.signals import Side, Signal, parse_signal
from coordinator.trading.stop_book import Holding, from_record
from coordinator.trading.stops import exit_id, exit_signal
from coordinator.trading.validation import (
    ExitTarget,
    LedgerState,
    MarketQuote,
    OrderPlan,
    Reason,
)
from tests.money_model_world import (
    CONFIG,
    EPS,
    EXECUTES,
    FEE,
    LIFE,
    LIFETIME,
    PARAMS,
    QUOTE,
    RULES,
    SETTLE_WINDOW,
    SIGNAL_TIMEOUT,
    START,
    STOP_MAX_AGE,
    Exchange,
    Held,
    Job,
    Portfolio,
    Settle,
    StoredOrder,
    TrueHolding,
    World,
    event,
)
from tests.pipeline import signal_payload


class Actors:
    """The coordinator's actors over the pure modules, and the world they act in."""

    now: float
    exchange: Exchange
    portfolio: Portfolio
    w: World
    book: LedgerBook
    restoring: list[RestoredOrder] | None
    """Our recent orders read from the store, until the first view takes them."""
    price: dict[str, float]
    prices: PriceBook
    count: int

    # --- the Ledger -------------------------------------------------------------------

    def _new_ledger(self) -> None:
        """A Ledger of a new process: an empty book, a fetch, and our recent orders read
        from the store, laid over the first view."""
        self.book = LedgerBook(
            quote=QUOTE, fee_rate=FEE, lifetime=LIFETIME, settle_window=SETTLE_WINDOW
        )
        self.w.fetches = [self.now]
        self.restoring = [
            RestoredOrder(
                client_order_id=coid,
                signal_id=row.signal_id,
                symbol=row.symbol,
                side=row.side,
                quantity=row.quantity,
                reference_price=row.price,
                created_at=row.sent_at,
                accepted=row.state == "accepted",
            )
            for coid, row in self.w.store.orders.items()
            if row.state in ("accepted", "unknown", "sent")
            and self.now - row.sent_at < SETTLE_WINDOW
        ]

    def _answer_fetch(self, requested_at: float, positions: int, balances: int) -> None:
        self.portfolio.catch_up(self.exchange, positions, balances)
        self.book.fetched_view(self.portfolio.view(self.exchange, self.now), requested_at)
        if self.restoring is not None and self.book.fetched.fetched_at is not None:
            restore(self.book, self.restoring, now=self.now)
            self.restoring = None

    def _ledger_state(self) -> LedgerState:
        book = self.book
        return LedgerState(
            reserved_quote=book.held_quote(),
            held_base=book.base_margin,
            buying=book.buying(),
            selling=book.selling(),
            closed=tuple(book.closed),
        )

    def _market(self, symbol: str) -> MarketQuote | None:
        at = self.w.seen.get(symbol)
        return None if at is None else MarketQuote(self.price[symbol], at)

    def _fresh(self, symbol: str) -> float | None:
        at = self.w.seen.get(symbol)
        return self.price[symbol] if at is not None and self.now - at <= STOP_MAX_AGE else None

    # --- the Validator ----------------------------------------------------------------

    def _process(self, job: Job, outcome: str) -> None:
        w, signal = self.w, job.signal
        coid = f"c:{signal.signal_id}"
        if signal.signal_id in w.store.decisions:
            return
        if not job.resend and (
            coid in w.held
            or any(j.resend and j.signal.signal_id == signal.signal_id for j in w.jobs)
        ):
            # A copy (a stop's exit sent again under its own id) of a signal that waits
            # in the Validator, held after a 5xx or to be sent again: dropped, as
            # ``Validator._on_signal`` drops a signal it holds in its wait queue.
            event("copy of a waiting signal dropped")
            return
        self.book.expire(self.now)
        evaluation = evaluate_order(
            signal,
            view=self.book.view,
            ledger=self._ledger_state(),
            market=self._market(signal.symbol),
            config=CONFIG,
            now=self.now,
            exit=job.exit,
        )
        failure = evaluation.failure
        event(f"{signal.side}{' exit' if job.exit else ''}: {failure.reason if failure else 'ok'}")
        plan = evaluation.plan
        if plan is None:
            assert failure is not None
            self._decide(job, "rejected", failure.reason)
            return
        order = self.book.reserve(
            plan, owner="validator-0#1", now=self.now, signal_id=signal.signal_id
        )
        rid = order.reservation_id
        if job.exit is not None:
            check = exit_price_check(
                job.exit, self._market(signal.symbol), now=self.now, max_age=STOP_MAX_AGE
            )
            if not check.passed:
                self._settle(rid, False, plan)
                self._decide(job, "rejected", check.reason)
                return
        stored = w.store.orders.get(coid)
        if not job.resend and stored is not None and stored.held:
            # Held by an earlier process: it waits for the reconciliation again.
            event("held again")
            w.held[coid] = Held(job, plan, rid)
            return
        if not job.resend and stored is not None:
            # An order for this signal exists: it may have been sent. Never again; its
            # stored state says what this reservation is settled as.
            existing = outcome_of_existing(stored.state, "exists")
            event(f"order exists: {existing.outcome}")
            self._settle(rid, existing.filled, plan)
            self._decide(job, existing.outcome, existing.reason)
            return
        self._send(job, coid, plan, rid, outcome)

    def _send(self, job: Job, coid: str, plan: OrderPlan, rid: str, outcome: str) -> None:
        w, truth, symbol = self.w, self.exchange.truth, plan.symbol
        stored = w.store.orders.get(coid)
        # 3. no client order id twice: only the same intent again, once the reconciler
        # found that no earlier request of it executed.
        assert stored is None or (job.resend and stored.state == "rejected"), (coid, stored)
        assert not self.exchange.executed.get(coid), f"{coid} executed already"
        # 4. nothing fails open: a view of the Portfolio (fresh enough), a price.
        fetched = self.book.view.fetched_at
        assert fetched is not None, "an order without any Portfolio view"
        if plan.side is Side.BUY:
            assert self.now - fetched <= CONFIG.portfolio_max_age, "BUY on an old view"
            # 5. a stale price never decides.
            assert self._fresh(symbol) is not None, "BUY on a stale or missing price"
        else:
            self._check_sell(job, plan, truth.holdings.get(symbol))
        self.exchange.requests[coid] += 1
        event(f"sent {plan.side} {outcome}")
        w.store.orders[coid] = StoredOrder(
            job.signal.signal_id,
            symbol,
            plan.side,
            plan.quantity,
            "sent",
            self.now,
            exit_key=None if job.exit is None else job.exit.position_key,
            price=plan.reference_price,
        )
        if outcome in EXECUTES:
            self.exchange.execute(
                coid, symbol, plan.side, plan.quantity, plan.reference_price, self.now
            )
        row = w.store.orders[coid]
        if outcome == "filled":
            row.state, row.trader_order_id = "accepted", self._trader_id(coid)
            self._settle(rid, True, plan)
            self._decide(job, "accepted", None)
            self._own_sell(plan, self.now)
        elif outcome == "refused":
            row.state = "rejected"
            self._settle(rid, False, plan)
            self._decide(job, "rejected", Reason.TRADER_REJECTED)
        elif outcome.startswith("5xx"):
            # Held, with its reservation, until the reconciler finds it or not.
            row.state, row.held = "unknown", True
            w.held[coid] = Held(job, plan, rid)
        else:
            row.state = "unknown"
            self._settle(rid, None, plan)
            self._decide(job, "unknown", Reason.ORDER_UNKNOWN)

    def _check_sell(self, job: Job, plan: OrderPlan, holding: TrueHolding | None) -> None:
        truth, symbol = self.exchange.truth, plan.symbol
        # 1. a sell never exceeds what is held.
        assert holding is not None, f"SELL of {symbol}, nothing held"
        limit = min(holding.quantity, truth.free_base(symbol))
        assert plan.quantity <= limit + EPS, (plan.quantity, holding, truth.bases)
        # 2. one sell in flight per holding.
        assert not any(
            h.plan.symbol == symbol and h.plan.side is Side.SELL for h in self.w.held.values()
        ), f"second SELL of {symbol} while one is held"
        if job.exit is not None:
            # 2. a stop sells its own holding only.
            assert job.exit.position_key == holding.key, (job.exit, holding)
            # 5. on a fresh price at or under its stop.
            fresh = self._fresh(symbol)
            assert fresh is not None and fresh <= job.exit.stop + EPS, (fresh, job.exit)

    def _settle(self, rid: str, filled: bool | None, plan: OrderPlan) -> None:
        self.w.settles.append(Settle(rid, filled, plan.symbol, plan.side, self.now))

    def _decide(self, job: Job, outcome: str, reason: str | None) -> None:
        self.w.store.decisions[job.signal.signal_id] = (outcome, reason)
        if job.exit is not None:
            decided = lc.Decided(
                attempt=job.attempt, outcome=lc.ExitOutcome(outcome), reason=reason, detail=""
            )
            self.w.decisions.append((job.exit.position_key, decided))

    def _own_sell(self, plan: OrderPlan, sent_at: float) -> None:
        """The TrailingStop hears that our SELL of the symbol filled: the stops of the
        holdings it knew when the SELL was sent."""
        if plan.side is Side.SELL:
            for key, stop in list(self.w.stops.items()):
                if stop.symbol == plan.symbol and stop.known_since <= sent_at:
                    self._step(key, lc.OwnSellFilled(detail="our SELL"))

    def _deliver_settle(self, settle: Settle) -> None:
        result, _ = self.book.settle(
            settle.reservation_id,
            settle.filled,
            symbol=settle.symbol,
            side=settle.side,
            now=self.now,
        )
        if not settle.reservation_id.startswith(self.book.prefix):
            assert result is SettleResult.UNKNOWN_ID, "a settle of an earlier book took"

    def _settles(self, settle: Settle, signal_id: str) -> bool:
        """Whether ``settle`` settles a reservation made for ``signal_id``."""
        order = self.book.orders.get(settle.reservation_id)
        return order is not None and order.signal_id == signal_id

    def _trader_id(self, coid: str) -> str | None:
        """The id of ``coid``'s fill in the Trader's list of orders."""
        ids = [f"order_{i}" for i, fill in enumerate(self.exchange.fills) if fill[0] == coid]
        return ids[0] if ids else None

    def _verdict(self, coid: str) -> Resolution:
        """The reconciler's verdict on one unknown order, from the Trader's list of the
        orders it executed (since before the first of ours): it must agree with the
        truth whenever it is not "unknown"."""
        orders = self.w.store.orders
        fills = [
            Venue(f"order_{i}", FillSource.TRADER, symbol, side.value, quantity, at)
            for i, (_, symbol, side, quantity, at) in enumerate(self.exchange.fills)
        ]
        settled = [
            OurOrder(c, o.symbol, o.side.value, o.quantity, o.sent_at, o.trader_order_id)
            for c, o in orders.items()
            if o.state == "accepted"
        ]
        # Every unknown order at once, as the Reconciler reads them.
        verdicts = reconcile(
            [
                OurOrder(c, o.symbol, o.side.value, o.quantity, o.sent_at)
                for c, o in sorted(orders.items())
                if o.state == "unknown"
            ],
            fills,
            now=self.now,
            covered_since=START - 3600,
            covered_until=self.now,
            policy=MatchPolicy(),
            settled=settled,
        )
        (verdict,) = [v for v in verdicts if v.client_order_id == coid]
        executed = bool(self.exchange.executed.get(coid))
        event(f"reconciled {verdict.resolution} ({verdict.reason})")
        if verdict.resolution is Resolution.ACCEPTED:
            assert executed, f"{coid} found at the Trader, never executed: {verdict}"
            assert verdict.trader_order_id == self._trader_id(coid), verdict
        elif verdict.resolution is Resolution.REJECTED:
            assert not executed, f"{coid} executed, found missing: {verdict}"
        return verdict.resolution

    def _reconcile(self, coid: str, operator: bool = False) -> None:
        """The reconciler's verdict (or an operator's, from the truth) on an unknown
        order; an ambiguous one stays unknown for an operator."""
        w = self.w
        row = w.store.orders[coid]
        executed = bool(self.exchange.executed.get(coid))
        if not operator and self._verdict(coid) is Resolution.UNKNOWN:
            return
        row.state, row.held = ("accepted" if executed else "rejected"), False
        row.trader_order_id = self._trader_id(coid)
        held = w.held.pop(coid, None)
        if held is None:
            if not executed:
                # The Ledger, which counted it as filled, is told (by the reconciler, or
                # for a held one nobody waits for, by its Validator); after the settle
                # its Validator told it when the answer came, a window earlier: both
                # reach its one mailbox in that order.
                for settle in [s for s in w.settles if self._settles(s, row.signal_id)]:
                    w.settles.remove(settle)
                    self._deliver_settle(settle)
                self.book.not_executed(
                    row.signal_id, symbol=row.symbol, side=row.side, now=self.now
                )
            return
        job = held.job
        if executed:
            self._settle(held.reservation_id, True, held.plan)
            self._decide(job, "accepted", None)
            self._own_sell(held.plan, row.sent_at)
            return
        self._settle(held.reservation_id, False, held.plan)
        if self.now - job.signal.timestamp <= SIGNAL_TIMEOUT:
            w.jobs.append(Job(job.signal, job.exit, job.attempt, resend=True))
        else:
            self._decide(job, "rejected", Reason.TRADER_ERROR)
            # Not sent again: the Validator tells the Ledger (which may have laid it
            # from the store after a restart).
            self.book.not_executed(row.signal_id, symbol=row.symbol, side=row.side, now=self.now)

    # --- the TrailingStop -------------------------------------------------------------

    def _step(self, key: str, stop_event: lc.StopEvent) -> None:
        w = self.w
        holding = w.stops[key]
        life, actions = lc.step(
            holding.life,
            stop_event,
            now=self.now,
            price=self._fresh(holding.symbol),
            stop=holding.stop.stop,
            entry=holding.stop.entry,
            params=LIFE,
        )
        holding.life = life
        for action in actions:
            match action:
                case lc.SendExit(attempt=attempt, price=price):
                    self._exit(holding, attempt, price)
                case lc.ReadOrders():
                    if key not in w.reads:
                        w.reads.append(key)
                case lc.LookUpDecision():
                    w.lookups.append((key, holding.exit_id))
        if life.phase is lc.Phase.CLOSED:
            del w.stops[key]
            w.store.stops.pop(key, None)
        else:
            w.store.stops[key] = holding.record()

    def _exit(self, holding: Holding, attempt: int, price: float) -> None:
        symbol, signal_id = holding.symbol, exit_id(holding.key, attempt)
        event(f"exit {min(attempt, 3)} queued")
        # 5. the TrailingStop decides on a fresh price only.
        assert self._fresh(symbol) == price and price <= holding.stop.stop + EPS
        signal = exit_signal(
            exit_id=signal_id,
            position_key=holding.key,
            symbol=symbol,
            price=price,
            stop=holding.stop.stop,
            rule=holding.stop.rule,
            strategy="+".join(RULES),
            triggered_at=self.now,
        )
        target = ExitTarget(
            position_key=holding.key,
            entry_price=holding.stop.entry,
            quantity=holding.quantity,
            stop=holding.stop.stop,
            price=price,
            price_at=self.w.seen[symbol],
            opened_at=holding.entry_time,
        )
        self.w.jobs.append(Job(signal, target, attempt))

    def _restore_stops(self) -> None:
        """A TrailingStop incarnation: its holdings from their stored records only."""
        w = self.w
        w.stops, w.reads, w.lookups = {}, [], []
        for key, record in list(w.store.stops.items()):
            holding, actions = from_record(dict(record), PARAMS, self.now)
            w.stops[key] = holding
            for action in actions:
                if isinstance(action, lc.ReadOrders):
                    w.reads.append(key)
                elif isinstance(action, lc.LookUpDecision):
                    w.lookups.append((key, holding.exit_id))

    def _signal(self, symbol: str, side: str) -> Signal:
        self.count += 1
        payload = signal_payload(
            symbol,
            side,
            price=self.price[symbol],
            timestamp_ms=int(self.now * 1000),
            consensus_id=f"c{self.count}",
        )
        parsed = parse_signal(payload)
        assert isinstance(parsed, Signal)
        return parsed

    def _read_orders(self, key: str, error: bool) -> None:
        w = self.w
        holding = w.stops.get(key)
        if holding is None:
            return
        if error:
            self._step(key, lc.OrdersRead(orders=(), error="database down"))
            return
        seen = tuple(
            lc.OrderSeen(coid, o.state, holding.attempt_of(o.signal_id))
            for coid, o in sorted(w.store.orders.items())
            if o.exit_key is not None
            and o.symbol == holding.symbol
            and (o.state in lc.UNRESOLVED_ORDER_STATES or holding.attempt_of(o.signal_id))
        )
        self._step(key, lc.OrdersRead(orders=seen))

    def _look_up(self, key: str, signal_id: str) -> None:
        w = self.w
        holding = w.stops.get(key)
        if holding is None:
            return
        stored = w.store.decisions.get(signal_id)
        if stored is None:
            self._step(key, lc.DecisionMissing(attempt=holding.life.attempt))
            return
        outcome, reason = stored
        attempt = holding.attempt_of(signal_id) or holding.life.attempt
        decided = lc.Decided(attempt, lc.ExitOutcome(outcome), reason, "")
        self._step(key, decided)
