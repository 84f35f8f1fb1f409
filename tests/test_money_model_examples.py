"""Examples of the money model (tests/test_money_model.py) found by it: a stop's exit
sent again under its own id over an order answered 5xx without a fill; a sold holding
counted back when the settle window ended with the Portfolio out of reach."""

from __future__ import annotations

from tests.test_money_model import THROUGH, MoneyModel, _Given


def test_a_stop_exit_sent_again_while_its_5xx_order_waits_to_be_sent_again_is_dropped() -> None:
    """Found by this model: an exit answered 5xx without a fill, found not executed (to
    be sent again), then sent again by its stop under its own id, its decision missing;
    that copy, decided unknown, laid a SELL over the view that hid the holding. The
    Validator drops a copy of a signal it holds."""
    model = MoneyModel()
    model.start(cash=200.0, fee_in_base=False, held=["AAAUSDC"])
    model.tick("AAAUSDC", THROUGH, fresh=True, then="5xx_nofill")
    model.exits_stay_possible(fetch_fails=False)
    (copy,) = [j for j in model.w.jobs if j.exit is not None and not j.resend]
    model.validator_runs(_Given(copy), outcome="filled", caught_up=None)  # type: ignore[arg-type]
    model.exits_stay_possible(fetch_fails=False)


def test_an_exit_sent_again_after_a_restart_over_its_order_found_not_executed() -> None:
    """After a restart, the stop's exit sent again under its own id meets the order that
    the reconciler found not executed (nobody waited for it): released, not counted as a
    SELL that would hide the holding (see ``outcome_of_existing``)."""
    model = MoneyModel()
    model.start(cash=200.0, fee_in_base=False, held=["AAAUSDC"])
    model.tick("AAAUSDC", THROUGH, fresh=True, then="5xx_nofill")
    model.crash("process")
    model.portfolio_answers(_Given(model.w.fetches[0]), fails=False, positions=0, balances=0)  # type: ignore[arg-type]
    model.time_passes(20.0, feed=True, stops_fetch=True)
    (coid,) = model.w.store.orders
    model.reconciler_runs(_Given(coid))  # type: ignore[arg-type]
    assert model.w.store.orders[coid].state == "rejected"
    for _ in range(4):
        model.time_passes(20.0, feed=True, stops_fetch=True)
        model.store_answers(False)
    (again,) = model.w.jobs
    assert again.signal.signal_id == model.w.store.orders[coid].signal_id
    model.validator_runs(_Given(again), outcome="filled", caught_up=None)  # type: ignore[arg-type]
    assert model.w.store.decisions[again.signal.signal_id][0] == "rejected"
    model.exits_stay_possible(fetch_fails=False)


def test_a_sold_holding_is_not_counted_back_from_a_view_older_than_the_sale() -> None:
    """Found by this model: the Portfolio not answering for longer than the settle
    window after our SELL filled; the window ended on the view fetched before the sale,
    the holding came back, and a second SELL was sized on it (nothing held). A fill is
    trusted only to a view fetched after it."""
    model = MoneyModel()
    model.start(cash=200.0, fee_in_base=False, held=["BBBUSDC"])
    model.ledger_fetches()  # asked for, never answered
    model.signal("AAAUSDC", "BUY", at_once=False, outcome="filled", caught_up=None)
    model.signal("BBBUSDC", "SELL", at_once=True, outcome="filled", caught_up=None)
    (sold,) = [s for s in model.w.settles if s.symbol == "BBBUSDC"]
    model.settle_arrives(_Given(sold), again=False)  # type: ignore[arg-type]
    for _ in range(3):
        model.time_passes(70.0, feed=False, stops_fetch=False)
    # Checked at the order request: a SELL never exceeds what is held.
    model.signal("BBBUSDC", "SELL", at_once=True, outcome="filled", caught_up=None)


def test_a_sell_after_a_restart_is_not_sized_on_balances_older_than_the_position() -> None:
    """Found by this model (a hunt of 30,000 examples): a stop's exit answered 5xx but
    filled, a BUY of the symbol filled after it, then the process restarted on a view
    whose position showed both and whose balances neither (the base of the holding
    sold). The restore judged the balances by the position: the next SELL was sized on
    the old base, above the new holding less its BUY fee taken in the base asset."""
    model = MoneyModel()
    model.start(cash=200.0, fee_in_base=True, held=["AAAUSDC"])
    model.tick("AAAUSDC", THROUGH, fresh=True, then=None)
    model.signal("AAAUSDC", "BUY", at_once=False, outcome="filled", caught_up=None)
    (exit_job,) = [j for j in model.w.jobs if j.exit is not None]
    model.validator_runs(_Given(exit_job), outcome="5xx_fill", caught_up=None)  # type: ignore[arg-type]
    (buy_job,) = model.w.jobs
    model.validator_runs(_Given(buy_job), outcome="filled", caught_up=(1, 0))  # type: ignore[arg-type]
    assert model.exchange.truth.holdings["AAAUSDC"].key.startswith("AAAUSDC@2.")
    model.crash("process")
    # Checked at the order request: a SELL never exceeds what is held.
    model.signal("AAAUSDC", "SELL", at_once=True, outcome="filled", caught_up=(1, 0))
