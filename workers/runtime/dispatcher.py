"""The webhook dispatcher: delivers the outbox (gateway.outbox.models.WebhookDelivery) to the
built-in backend and to every endpoint (webhooks and brokers).

Runs inside every worker (and `serve`), or alone with `manage.py deliver_webhooks`; any number at
once. Each round claims due deliveries (the oldest pending one of each session for each
destination: in order per session and destination) up to its free slots, and delivers them
concurrently (WEBHOOK_CONCURRENCY). One endpoint holds at most a quarter of the slots (at least
one), so a slow endpoint never holds up the others. Woken by NOTIFY gateway_webhooks (new rows,
and a session's next event freed by a delivery) and by a poll. A circuit breaker per
destination, shared through Redis, stops attempts while it is down; nothing is lost meanwhile.
An endpoint's address is checked again before each request (its name may resolve elsewhere by
now) and the request goes to the checked address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import connection
from django.utils import timezone

from gateway.core import logging as log_context
from gateway.core import tracing, wake
from gateway.core.failpoints import failpoint
from gateway.core.urlguard import UrlRefused, checked_target
from gateway.outbox import brokers, endpoints, stream
from gateway.outbox import deliveries as webhooks
from gateway.outbox.breaker import CircuitBreaker, breaker_for
from workers.runtime.db import db, db_close, io

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, *, poll_seconds: float = 2.0) -> None:
        self.poll_seconds = poll_seconds
        self.concurrency = settings.WEBHOOK_CONCURRENCY
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task] = set()
        # Requests under way per endpoint, and how many one endpoint may have.
        self.per_endpoint: dict[str, int] = {}
        self.endpoint_share = max(1, self.concurrency // 4)
        self.client: httpx.AsyncClient | None = None
        self.brokers = brokers.BrokerPublisher()
        self.purged_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        timeout = settings.WEBHOOK_TIMEOUT_SECONDS
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(3.0, timeout)),
            follow_redirects=False,
            trust_env=False,
        )
        try:
            while not stop.is_set():
                claimed = await self._round(hold=timeout * 2 + 5)
                if not claimed or self.in_flight:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), self.poll_seconds)
                    self.wake.clear()
        finally:
            if self.in_flight:  # let requests under way finish (their claims would run out)
                await asyncio.wait(self.in_flight, timeout=timeout)
            for task in self.in_flight:
                task.cancel()
            await self.client.aclose()
            await self.brokers.close()

    async def _round(self, hold: float) -> int:
        free = self.concurrency - len(self.in_flight)
        # Claim in batches (a claim is one query whatever its size), not a row per finished
        # request.
        if free <= 0 or (self.in_flight and free < max(1, self.concurrency // 2)):
            return 0
        busy = frozenset(e for e, n in self.per_endpoint.items() if n >= self.endpoint_share)
        try:
            await self._purge()
            claims = await db(webhooks.deliveries_claim, limit=free, hold_seconds=hold, busy=busy)
        except Exception:  # the database is away: try again after the poll interval
            logger.warning("webhook claim failed", exc_info=True)
            return 0
        over = []
        for claim in claims:
            endpoint = claim.destination.id if claim.destination else None
            if endpoint is not None:
                if self.per_endpoint.get(endpoint, 0) >= self.endpoint_share:
                    over.append(claim.id)  # that endpoint's share is full: back, untried
                    continue
                self.per_endpoint[endpoint] = self.per_endpoint.get(endpoint, 0) + 1
            task = asyncio.get_running_loop().create_task(self._deliver(claim))
            self.in_flight.add(task)
            task.add_done_callback(functools.partial(self._finished, endpoint=endpoint))
        if over:
            await db(webhooks.deliveries_release, ids=over)
        return len(claims) - len(over)

    async def _purge(self) -> None:
        """Forget old events from the log, once an hour per dispatcher (a DELETE by date)."""
        now = asyncio.get_running_loop().time()
        if now - self.purged_at >= 3600:
            self.purged_at = now
            await db(stream.events_purge)

    def _finished(self, task: asyncio.Task, *, endpoint: str | None) -> None:
        self.in_flight.discard(task)
        if endpoint is not None:
            self.per_endpoint[endpoint] -= 1
            if not self.per_endpoint[endpoint]:
                del self.per_endpoint[endpoint]
        self.wake.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error("webhook delivery step failed", exc_info=task.exception())

    async def _deliver(self, claim: webhooks.Claim) -> None:
        """One attempt, in a span that is the child of the event's stored trace context (that of
        the request or the send that caused it); httpx's span under it puts its `traceparent`
        on the request, a broker publish its own on the message."""
        with (
            tracing.span(
                f"deliver {claim.event_type}",
                stored=claim.trace_context,
                kind=tracing.SpanKind.PRODUCER,
                attributes={
                    "gateway.event.id": claim.event_id,
                    "gateway.event.type": claim.event_type,
                    "gateway.session.id": claim.session_id or "",
                    "gateway.delivery.attempt": claim.attempts + 1,
                    "gateway.endpoint.id": claim.destination.id if claim.destination else "backend",
                },
            ),
            log_context.bind(
                delivery_id=str(claim.id),
                event_id=claim.event_id,
                **({"session_id": claim.session_id} if claim.session_id else {}),
            ),
        ):
            await self._attempt(claim)

    async def _attempt(self, claim: webhooks.Claim) -> None:
        destination = claim.destination
        breaker = breaker_for(claim.target, destination.id if destination else None)
        if not await io(breaker.allow):
            until = timezone.now() + timedelta(seconds=breaker.cool_down)
            await db(webhooks.delivery_postponed, delivery_id=claim.id, until=until)
            return
        if destination is not None and endpoints.kind_of(destination.url) != "webhook":
            return await self._publish(claim, destination, breaker)
        url, headers, extensions = claim.target, {}, {}
        if destination is None:
            headers = webhooks.signed_headers(claim.event_id, claim.body)
        else:
            headers = webhooks.signed_headers(
                claim.event_id, claim.body, secrets=destination.secrets, extra=destination.headers
            )
            try:
                url, host, server_name = await checked_target(
                    destination.url, allowed=settings.WEBHOOK_ALLOWED_NETWORKS
                )
            except UrlRefused as refused:
                await self._failed(claim, f"{refused.code}: {refused.message}")
                return
            headers["host"] = host
            extensions = {"sni_hostname": server_name}
        assert self.client is not None  # made by run() before any claim
        try:
            response = await self.client.post(
                url, content=claim.body.encode(), headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            await io(breaker.failure)
            await self._failed(claim, f"{type(exc).__name__}: {exc}"[:500])
            return
        failpoint("after_webhook_response_before_commit")
        code, text = response.status_code, response.text[: webhooks.RESPONSE_KEEP]
        if 200 <= code < 300:
            await io(breaker.success)
            await db(
                webhooks.delivery_succeeded,
                delivery_id=claim.id,
                status_code=code,
                response=text,
                session_id=claim.session_id,
            )
        elif code == 410:
            await io(breaker.success)  # it answered: the backend is up, the endpoint is gone
            await db(webhooks.target_gone, claim=claim, response=text)
        else:
            # The backend being down or overloaded opens the circuit; a 4xx is its verdict on
            # this one request, not a sign it is down.
            await io(breaker.failure if code >= 500 or code == 429 else breaker.success)
            await self._failed(
                claim,
                f"HTTP {code}",
                status_code=code,
                response=text,
                retry_after=webhooks.retry_after_seconds(response.headers.get("retry-after")),
            )

    async def _failed(self, claim: webhooks.Claim, error: str, **answer: Any) -> None:
        """Not delivered: retried later, or dead (webhooks.delivery_failed)."""
        await db(
            webhooks.delivery_failed,
            delivery_id=claim.id,
            created_at=claim.created_at,
            attempts=claim.attempts,
            session_id=claim.session_id,
            error=error,
            **answer,
        )

    async def _publish(
        self, claim: webhooks.Claim, destination: webhooks.Destination, breaker: CircuitBreaker
    ) -> None:
        """A broker endpoint: published with the event id as the message id; delivered once the
        broker acknowledged it (JetStream's PubAck, RabbitMQ's publisher confirm)."""
        target = brokers.BrokerTarget.of(
            destination.url,
            subject=destination.subject,
            stream=destination.stream,
            exchange=destination.exchange,
        )
        subject = brokers.render_subject(
            destination.subject,
            session_id=claim.session_id,
            external_id=claim.external_id,
            event=claim.event_type,
        )
        headers = {
            **dict(destination.headers),
            "webhook-id": claim.event_id,
            "event-type": claim.event_type,
            "session-id": claim.session_id or "",
        }
        try:
            if not self.brokers.connected(target):  # a new connection: where does it go now?
                parts = urlsplit(destination.url)
                await endpoints.broker_host_checked(
                    parts.hostname or "", parts.port or brokers.BROKER_SCHEMES[parts.scheme]
                )
            await self.brokers.publish(
                target,
                subject=subject,
                event_id=claim.event_id,
                body=claim.body.encode(),
                headers=headers,
            )
        except (UrlRefused, brokers.BrokerError) as exc:
            # Unroutable (no queue bound) is the broker's answer, not a sign it is down.
            answered = isinstance(exc, UrlRefused | brokers.BrokerUnroutable)
            await io(breaker.success if answered else breaker.failure)
            error = f"{exc.code}: {exc.message}" if isinstance(exc, UrlRefused) else str(exc)
            await self._failed(claim, error[:500])
            return
        failpoint("after_webhook_response_before_commit")
        await io(breaker.success)
        await db(
            webhooks.delivery_succeeded,
            delivery_id=claim.id,
            status_code=None,
            response="",
            session_id=claim.session_id,
        )


async def deliver(stop: asyncio.Event) -> None:
    """A dispatcher on its own (manage.py deliver_webhooks) until `stop`: woken by NOTIFY and by
    a poll; on `stop` the requests under way finish, then the connections close."""
    postgres = connection.vendor == "postgresql"
    dispatcher = Dispatcher(poll_seconds=2.0 if postgres else 0.5)
    listening = (
        asyncio.create_task(wake.listen({wake.WEBHOOKS: lambda _: dispatcher.wake.set()}, stop))
        if postgres
        else None
    )
    stop_waiting = asyncio.create_task(stop.wait())
    stop_waiting.add_done_callback(lambda _: dispatcher.wake.set())
    try:
        await dispatcher.run(stop)
    finally:
        for task in (listening, stop_waiting):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (listening, stop_waiting) if t), return_exceptions=True)
        await db_close()
