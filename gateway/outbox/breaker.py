"""A circuit breaker per destination, shared by every process through the cache (Redis).

Closed: calls go through; `failure_threshold` consecutive failures open it. Open: nothing is
attempted for `cool_down` seconds. Then one process (whoever wins `cache.add`) may probe: success
closes the breaker, failure opens it again. A cache that is down makes the breaker permissive
(calls go through, as if closed): it protects the backend, it must never stop our own work.

Open is a key that the cache expires after `cool_down` (Redis's own clock), never a time one
process wrote for others to compare with theirs: a process whose clock is minutes wrong opens it
for `cool_down`, neither for minutes nor not at all.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(self, target: str, *, failure_threshold: int = 5, cool_down: float = 30) -> None:
        self.target = target
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        digest = hashlib.sha256(target.encode()).hexdigest()[:16]
        self._failures = f"breaker:{digest}:failures"
        self._open = f"breaker:{digest}:open"
        self._probe = f"breaker:{digest}:probe"

    def state(self) -> str:
        """`closed`, `open` or `half_open` (cool-down over, waiting for a probe)."""
        try:
            return self._state_in(cache.get_many([self._failures, self._open]))
        except Exception:  # noqa: BLE001
            return "closed"

    def _state_in(self, values: dict) -> str:
        """The state that the cache's values of this breaker's keys say."""
        if values.get(self._open):
            return "open"
        if (values.get(self._failures) or 0) >= self.failure_threshold:
            return "half_open"  # opened, and the cool-down is over
        return "closed"

    def allow(self) -> bool:
        """May a call be attempted now? In half-open state only one caller gets True."""
        return self._admits(self.state()) != 0

    def _admits(self, state: str) -> int:
        """How many calls may go through in `state`: every one (-1), none (0), or one probe (1)
        for the caller that wins it."""
        if state == "closed":
            return -1
        if state == "open":
            return 0
        try:
            return int(cache.add(self._probe, 1, timeout=max(1, int(self.cool_down))))
        except Exception:  # noqa: BLE001
            return -1

    def success(self) -> None:
        try:
            if (cache.get(self._failures) or 0) >= self.failure_threshold:
                logger.info("circuit closed for %s", self.target)
            cache.delete_many([self._failures, self._open, self._probe])
        except Exception:
            logger.debug("breaker cache unavailable", exc_info=True)

    def failure(self) -> None:
        """One more consecutive failure: at the threshold (or a failed probe, past it) the
        circuit opens for `cool_down`."""
        try:
            cache.add(self._failures, 0, timeout=None)
            failures = cache.incr(self._failures)
            if failures >= self.failure_threshold:
                cache.set(self._open, 1, timeout=max(1, round(self.cool_down)))
                cache.delete(self._probe)
                logger.warning(
                    "circuit open for %s after %s failures; next probe in %ss",
                    self.target,
                    failures,
                    self.cool_down,
                )
        except Exception:
            logger.debug("breaker cache unavailable", exc_info=True)


def admit(breakers: list[CircuitBreaker]) -> dict[str, int]:
    """How many calls each breaker lets through now (`CircuitBreaker._admits`), by target, their
    states read in one round trip for all of them (a dispatcher's claim round). A cache that is
    down lets every call through."""
    distinct = {b.target: b for b in breakers}
    try:
        values = cache.get_many([k for b in distinct.values() for k in (b._failures, b._open)])
    except Exception:  # noqa: BLE001
        return dict.fromkeys(distinct, -1)
    return {
        target: breaker._admits(breaker._state_in(values)) for target, breaker in distinct.items()
    }


def record(results: list[tuple[CircuitBreaker, bool]]) -> None:
    """Many calls' results (success or failure, in order) at once: a run of successes of one
    breaker resets it once."""
    last: dict[str, bool] = {}
    for breaker, ok in results:
        if ok and last.get(breaker.target) is True:
            continue
        last[breaker.target] = ok
        breaker.success() if ok else breaker.failure()


def breaker_for(target: str, endpoint_id: object = None) -> CircuitBreaker:
    """One breaker per destination, shared by all processes: per endpoint for the endpoints made
    through the API (two tenants' endpoints on one host never trip each other), per backend
    (scheme, host and port) for the built-in one."""
    if endpoint_id is not None:
        name = f"endpoint {endpoint_id}"
    else:
        parts = urlsplit(target)
        name = f"{parts.scheme}://{parts.netloc}"
    return CircuitBreaker(
        name,
        failure_threshold=settings.WEBHOOK_BREAKER_FAILURES,
        cool_down=settings.WEBHOOK_BREAKER_COOL_DOWN_SECONDS,
    )


def pending_circuits() -> dict[str, str]:
    """The circuit state of every destination that has deliveries waiting (admin, /metrics)."""
    from gateway.outbox.models import DeliveryStatus, WebhookDelivery

    pending = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)
    targets = set(pending.values_list("target", "endpoint_id").distinct())
    return {b.target: b.state() for b in (breaker_for(t, e) for t, e in targets)}
