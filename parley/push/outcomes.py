"""How the answers of push services become results, and the one log line a send.

Every sender ends a send here, so the log reads the same for each service. What
each level means for push:

- DEBUG: the service took the notification (the hot path: off on busy nodes).
- INFO: the service says an address is gone; the caller deletes it.
- WARNING: a transient failure (throttled, unavailable, unreachable); the
  caller retries.
- ERROR: the service refused what Parley sent, or Parley's own credentials;
  an operator should look.

A line names the service, the device by a fingerprint of its address, and the
service's status and reason. It never holds the message text, the token of the
address, or a credential.
"""

from __future__ import annotations

import email.utils
import time

import httpx
import structlog

from parley.push import Outcome, PushAddress, PushResult

log = structlog.get_logger(__name__)

_LEVELS = {
    Outcome.DELIVERED: "debug",
    Outcome.GONE: "info",
    Outcome.RETRY: "warning",
    Outcome.REJECTED: "error",
}


def retry_after_s(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a delay or an HTTP date."""
    if not value:
        return None

    value = value.strip()
    if value.isdigit():
        return float(value)

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now_s = time.time() if now_s is None else now_s
    return max(0.0, when.timestamp() - now_s)


def unreachable(error: httpx.RequestError) -> PushResult:
    """The result when no answer came: always worth a retry."""
    reason = "timeout" if isinstance(error, httpx.TimeoutException) else "unreachable"
    return PushResult(Outcome.RETRY, None, reason)


def gone(reason: str) -> PushResult:
    """The result when Parley can tell without asking that an address is useless."""
    return PushResult(Outcome.GONE, None, reason)


def rejected(reason: str) -> PushResult:
    """The result when Parley can tell without asking that the service would refuse."""
    return PushResult(Outcome.REJECTED, None, reason)


def started(client: httpx.AsyncClient | None) -> httpx.AsyncClient:
    """The service's HTTP client; sending before ``start`` is a programming error."""
    if client is None:
        raise RuntimeError("The push service was not started.")
    return client


def logged(service: str, address: PushAddress, result: PushResult) -> PushResult:
    """Log one send at the level its outcome calls for, and return the result."""
    getattr(log, _LEVELS[result.outcome])(
        "push_sent",
        service=service,
        device=address.fingerprint,
        outcome=result.outcome.value,
        status=result.status,
        reason=result.reason,
        retry_after_s=result.retry_after_s,
    )
    return result
