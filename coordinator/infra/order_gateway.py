"""The Validator's way out to the Trader: the intent claimed before anything is sent
(never sent twice), ``POST /order`` with a 201 that may echo a failed attempt looked up,
and the intents known not to have left (which may go again when the Trader is back)."""

from __future__ import annotations

import logging
from typing import Any

from coordinator.cluster.fencing import LeaseToken
from coordinator.infra.claimed_ahead import ClaimedAhead
from coordinator.infra.intent_claims import Claim, ClaimRequest, ClaimResult, IntentClaims
from coordinator.infra.trader_client import TraderClient, TraderReadError
from coordinator.messages.pipeline import OrderRecord, SubmitSignal
from coordinator.trading.execution import FailedBodies, SendResult, TraderAnswer

__all__ = ["OrderGateway"]

logger = logging.getLogger(__name__)


class OrderGateway:
    """Owned by one Validator and used on its thread only."""

    def __init__(
        self,
        *,
        intents: IntentClaims | None,
        trader: TraderClient | None,
        claimed_ahead: ClaimedAhead | None = None,
    ) -> None:
        self._intents = intents
        self._trader = trader
        self._claimed_ahead = ClaimedAhead() if claimed_ahead is None else claimed_ahead
        self._failed = FailedBodies()
        self._unsent: set[str] = set()

    @property
    def has_trader(self) -> bool:
        return self._trader is not None

    def warm(self) -> list[str]:
        """Open the connections to PostgreSQL (intents) and the Trader now, so the first
        order does not pay for them; what could not be opened."""
        return [
            f"{what}: {error}"
            for what, error in (
                ("intent store", None if self._intents is None else self._intents.warm()),
                ("trader", None if self._trader is None else self._trader.warm()),
            )
            if error is not None
        ]

    def close(self) -> None:
        if self._trader is not None:
            self._trader.close()

    # --- the intent gate -----------------------------------------------------------------

    def claim(self, message: SubmitSignal, intent: OrderRecord) -> Claim:
        """The intent gate. The journal may stand in for PostgreSQL only for a signal
        first seen by this process after PostgreSQL last answered: a re-delivered one,
        or one seen before (its price's time, for an exit), may be there already."""
        if self._intents is None:
            raise RuntimeError("no intent store: orders cannot be claimed")
        return self._intents.claim_many([_request(message, intent)])[0]

    def claim_ahead(self, orders: list[tuple[SubmitSignal, OrderRecord]]) -> int:
        """Claim these intents now, in one batch, before any of them is sent; how many
        were claimed. Each one claimed is taken (``take_claimed_ahead``) when its order
        is sent; any other is claimed again then, and meets the same answer."""
        if self._intents is None:
            raise RuntimeError("no intent store: orders cannot be claimed")
        claims = self._intents.claim_many([_request(m, intent) for m, intent in orders])
        claimed = 0
        for (_, intent), claim in zip(orders, claims, strict=True):
            if claim.result is ClaimResult.CLAIMED:
                self._claimed_ahead.add(intent.client_order_id)
                claimed += 1
        return claimed

    def take_claimed_ahead(self, order_id: str) -> bool:
        """Whether the intent was claimed ahead and not sent (by this incarnation or an
        earlier one): the caller alone may now send its order, without a new claim."""
        return self._claimed_ahead.take(order_id)

    # --- what was not sent -----------------------------------------------------------------

    def not_sent(self, order_id: str) -> None:
        """Known not to have left: the same intent may go later without a new claim."""
        self._unsent.add(order_id)

    def forget(self, order_id: str) -> bool:
        """The intent is sent or closed; whether it was one that had not left."""
        if order_id in self._unsent:
            self._unsent.discard(order_id)
            return True
        return False

    def was_not_sent(self, order_id: str) -> bool:
        return order_id in self._unsent

    # --- POST /order -----------------------------------------------------------------------

    def submit(self, body: dict[str, Any], sent_mono: float) -> TraderAnswer:
        """``POST /order`` once, its answer verified (see ``verified``)."""
        if self._trader is None:
            raise RuntimeError("TRADER_API_URL is not set: nothing can be sent")
        return self.verified(body, self._trader.submit(body), sent_mono)

    def verified(
        self, body: dict[str, Any], answer: TraderAnswer, sent_mono: float
    ) -> TraderAnswer:
        """The answer, or a failure when a 201 is the de-duplicated echo of a failed
        attempt (or cannot be told apart from one)."""
        if self._failed.note(body, answer, sent_mono):
            return answer
        if not self._failed.may_echo(body, answer, sent_mono) or self._trader is None:
            return answer
        assert answer.order_id is not None
        try:
            found = self._trader.order(answer.order_id)
        except TraderReadError as exc:
            error = f"201 with {answer.order_id} could not be verified ({exc})"
        else:
            if found is not None:
                return answer
            error = (
                f"201 with {answer.order_id}, the id of an earlier failed attempt that the "
                "Trader de-duplicated: not executed"
            )
        logger.warning("order of %s: %s", body.get("symbol"), error)
        return TraderAnswer(SendResult.FAILED, None, answer.status_code, error, answer.latency)


def _request(message: SubmitSignal, intent: OrderRecord) -> ClaimRequest:
    first_seen: float | None = None
    if not message.redelivered:
        first_seen = message.received_at
        if message.exit is not None:
            first_seen = min(first_seen, message.exit.price_at)
    # An exit passes the leader's lease; in a cluster, any other order its symbol
    # partition's.
    fence: LeaseToken | None = message.fence if message.exit is None else message.exit.fence
    return ClaimRequest(_intent_dict(intent), first_seen, fence)


def _intent_dict(order: OrderRecord) -> dict[str, Any]:
    return {name: getattr(order, name) for name in OrderRecord.__slots__}
