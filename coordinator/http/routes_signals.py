"""Routes of the signals: submit one, read one back as stored, list the decisions."""

from __future__ import annotations

import time
from typing import Any

from bottle import request, response

from coordinator.http.endpoints import Endpoints, fail, query_limit, unavailable
from coordinator.http.facade import CoordinatorApi
from coordinator.http.limits import RateClass, body_of
from coordinator.trading.symbols import is_symbol
from coordinator.trading.validation import AdmissionStatus, Outcome, Reason

__all__ = ["install"]

_OUTCOMES = tuple(Outcome)
_ADMISSION_STATUS: dict[tuple[str, str | None], int] = {
    (AdmissionStatus.DUPLICATE, Reason.DUPLICATE_SIGNAL): 409,
    (AdmissionStatus.REJECTED, Reason.STALE_SIGNAL): 422,
    (AdmissionStatus.REJECTED, Reason.OVERLOADED): 429,
}


def install(endpoint: Endpoints, api: CoordinatorApi, *, max_signal_bytes: int) -> None:
    # Not in the audit trail: every signal is recorded as a signal, with its decision. A
    # body over the limit still reaches the route, cut one byte past it: enough for the
    # intake to record the signal as invalid, with the size the body declared.
    @endpoint(
        "POST",
        "/signals",
        token=True,
        audited=False,
        rate=RateClass.SIGNALS,
        max_body=max_signal_bytes,
        keeps_oversize=True,
    )
    def submit_signal() -> dict[str, Any]:
        received_at, received_mono = time.time(), time.monotonic()
        body_read = body_of(request.environ)
        size = body_read.size
        admission = api.submit_signal(
            body_read.data,
            received_at=received_at,
            received_mono=received_mono,
            total_bytes=size if size > max_signal_bytes else None,
        )
        body: dict[str, Any] = {
            "signal_id": admission.signal_id,
            "status": admission.status,
            "reason": admission.reason,
        }
        if admission.reason == Reason.ROUTING_UNAVAILABLE:
            raise unavailable(
                "the signal was not taken to its symbol's owner (Redis did not answer): "
                "nothing was decided, send it again",
                signal_id=admission.signal_id,
            )
        if admission.errors:
            raise fail(
                413 if size > max_signal_bytes else 400,
                "invalid signal: " + "; ".join(f"{f}: {p}" for f, p in admission.errors),
                signal_id=admission.signal_id,
                errors=[{"field": f, "problem": p} for f, p in admission.errors],
            )
        response.status = _ADMISSION_STATUS.get((admission.status, admission.reason), 202)
        return body

    @endpoint("GET", "/signals/<signal_id>")
    def stored_signal(signal_id: str) -> dict[str, Any]:
        record = api.signal(signal_id)
        if record is None:
            raise fail(404, f"no signal {signal_id!r} is stored")
        return record

    @endpoint("GET", "/decisions")
    def decisions() -> dict[str, Any]:
        symbol = request.query.get("symbol") or None
        outcome = request.query.get("outcome") or None
        if symbol is not None and not is_symbol(symbol):
            raise fail(400, f"symbol {symbol!r} is not a Binance symbol such as BTCUSDC")
        if outcome is not None and outcome not in _OUTCOMES:
            raise fail(400, f"outcome {outcome!r} is not one of {', '.join(_OUTCOMES)}")
        limit = query_limit(50, 1000)
        rows = api.decisions(symbol=symbol, outcome=outcome, limit=limit)
        return {"count": len(rows), "decisions": rows}
