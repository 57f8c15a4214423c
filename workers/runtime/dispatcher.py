"""The webhook dispatcher: delivers the outbox (gateway.outbox.models.WebhookDelivery) to the
built-in backend and to every endpoint (webhooks and brokers).

Runs inside every worker (and `serve`), or alone with `manage.py deliver_webhooks`; any number at
once. Each round claims due deliveries (the oldest pending one of each session for each
destination: in order per session and destination) up to its free slots, and delivers them
concurrently (WEBHOOK_CONCURRENCY).

One endpoint holds at most a quarter of the slots (at least one), so a slow endpoint never holds
up the others; one that answers quickly (every answer of the last minute within FAST_ANSWER
seconds) may use them all, but past its quarter its chains give their slot up after the request
under way as soon as another destination's chain waits for one. (Measured: held to a quarter, a
JetStream endpoint took 171 deliveries/s, two publishes at a time; with every slot, 1,543/s from
a backlog of 20,000 and 13 ms commit → stream at 300 events/s.)

Woken by NOTIFY gateway_webhooks (new rows, and a session's next event freed by a delivery) and
by a poll. A new event of a session whose events this dispatcher is delivering already, to each
of its destinations, wakes nothing: it cannot be claimed before the one under way is recorded,
and that record wakes every dispatcher (measured: one busy session made ~2.5 claim rounds a
delivery, most of them empty, a quarter of the worker's CPU). A circuit breaker per
destination, shared through Redis, stops attempts while it is down; nothing is lost meanwhile.
An endpoint's address is checked again before each request (its name may resolve elsewhere by
now) and the request goes to the checked address.

What costs a round trip is shared: a round's claims are one query, their breakers' states one
read of the cache, and the outcomes of the attempts that finish while one write is under way are
written together by the next one (one UPDATE … FROM (VALUES …), with their usage, and one NOTIFY).
A slot is freed once its request is answered; the row stays pending and claimed until its
outcome is written, so its session's next event cannot be claimed before (in order), and a
dispatcher that dies before the write leaves the claim to run out and the event to be delivered
again (at least once). Connections to the receivers are kept alive (HTTP/1.1), one per slot.

Requests go through aiohttp (measured against httpx on loopback nginx, 8 at a time: 0.19 ms of
CPU a request against 1.4 ms; httpx's pure-Python stack was 85% of a dispatcher's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings
from django.db import connection

from gateway.core import logging as log_context
from gateway.core import tracing, wake
from gateway.core.failpoints import failpoint
from gateway.core.urlguard import UrlRefused, checked_target
from gateway.outbox import brokers, endpoints, stream
from gateway.outbox import deliveries as webhooks
from gateway.outbox.breaker import CircuitBreaker, admit, breaker_for, record
from workers.runtime.db import db, db_close, io

logger = logging.getLogger(__name__)
# How many of a session's events (for one destination) one claim may take, sent one after the
# other: a backlog drains without a claim round between each event and the next.
CHAIN = 16
# How many sessions' chains a dispatcher claims ahead, per slot.
CLAIM_AHEAD = 4
# An endpoint that answers within this many seconds may use every slot; one slower (or that did
# not answer) is held to its share for SLOW_HOLD seconds.
FAST_ANSWER = 0.25
SLOW_HOLD = 60.0


class Dispatcher:
    def __init__(self, *, poll_seconds: float = 2.0) -> None:
        self.poll_seconds = poll_seconds
        self.concurrency = settings.WEBHOOK_CONCURRENCY
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task] = set()  # chains under way, their writes included
        # Requests at once: `concurrency` slots. A round claims ahead of them (a claim costs the
        # same for 4 sessions as for 40), so that a slot never waits for a claim round.
        self.slots = asyncio.Semaphore(self.concurrency)
        self.claim_ahead = self.concurrency * CLAIM_AHEAD
        self.claimed = 0  # chains claimed that have requests still to make
        # Chains claimed per endpoint (so at most as many requests under way), and how many one
        # endpoint keeps while others wait for a slot.
        self.per_endpoint: dict[str, int] = {}
        # Chains waiting for a slot, by destination (endpoint id, None for the backend).
        self.waiting: Counter[str | None] = Counter()
        # (endpoint id or None, session id) of every chain claimed and not yet written.
        self.delivering: Counter[tuple[str | None, str | None]] = Counter()
        # The last claim may have left due rows behind for want of room: a freed slot looks.
        self.starved = False
        self.endpoint_share = max(1, self.concurrency // 4)
        # Endpoint id → the loop time from which it counts as quick (held to its share until
        # then); absent: not answered yet.
        self.quick_from: dict[str, float] = {}
        self.client: aiohttp.ClientSession | None = None
        self.brokers = brokers.BrokerPublisher()
        self.purged_at = 0.0
        # Outcomes waiting for the next write, each with what its delivery waits on.
        self.outcomes: list[tuple[webhooks.Outcome, CircuitBreaker, asyncio.Future]] = []
        self.outcomes_waiting = asyncio.Event()

    def notified(self, payload: str) -> None:
        """A NOTIFY gateway_webhooks: look again, unless it names a new event whose every
        destination is one this dispatcher is delivering that session's events to."""
        rows = wake.webhook_rows_of(payload)
        if rows is not None:
            session_id, destinations = rows
            if all(self.delivering[(d, session_id)] for d in destinations):
                return
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        timeout = settings.WEBHOOK_TIMEOUT_SECONDS
        self.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout, connect=min(3.0, timeout)),
            # A connection kept for every slot.
            connector=aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=30),
            cookie_jar=aiohttp.DummyCookieJar(),  # one receiver's cookies are not another's
        )
        recorder = asyncio.get_running_loop().create_task(self._record())
        try:
            while not stop.is_set():
                claimed = await self._round(hold=timeout * 2 + 5)
                if not claimed or self.claimed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), self.poll_seconds)
                    self.wake.clear()
        finally:
            if self.in_flight:  # let requests under way finish (their claims would run out)
                await asyncio.wait(self.in_flight, timeout=timeout)
            for task in self.in_flight:
                task.cancel()
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            await self.client.close()
            await self.brokers.close()

    async def _round(self, hold: float) -> int:
        free = self.claim_ahead - self.claimed
        # Claim in batches (a claim is one query whatever its size), not a row per finished
        # request.
        if free <= 0 or (self.claimed and free < max(1, self.claim_ahead // 2)):
            self.starved = True
            return 0
        try:
            await self._purge()
            claimed_at = asyncio.get_running_loop().time()  # the claims run out `hold` after
            chains = await db(
                webhooks.deliveries_claim,
                limit=free,
                hold_seconds=hold,
                per_endpoint=self.endpoint_share,
                room=self._room(),
                per_session=CHAIN,
            )
        except Exception:  # the database is away: try again after the poll interval
            logger.warning("webhook claim failed", exc_info=True)
            return 0
        self.starved = len(chains) >= free
        # The last moment a request may begin and still be answered and written in time.
        deadline = claimed_at + hold - settings.WEBHOOK_TIMEOUT_SECONDS - 5
        breakers = [_breaker(chain[0]) for chain in chains]
        admitted = await io(admit, breakers) if chains else {}
        back: list[int] = []  # claimed but not attempted: free for the next claim
        postponed: dict[float, list[int]] = {}
        for chain, breaker in zip(chains, breakers, strict=True):
            endpoint = chain[0].destination.id if chain[0].destination else None
            if not admitted[breaker.target]:  # its circuit is open: again when it may probe
                postponed.setdefault(breaker.cool_down, []).extend(c.id for c in chain)
                continue
            if admitted[breaker.target] == 1:  # a half-open circuit's one probe
                back += [c.id for c in chain[1:]]
                chain = chain[:1]
            admitted[breaker.target] -= 1
            self.claimed += 1
            if endpoint is not None:
                self.per_endpoint[endpoint] = self.per_endpoint.get(endpoint, 0) + 1
            slot = functools.partial(self._slot_free, endpoint=endpoint)
            pair = (endpoint, chain[0].session_id)
            self.delivering[pair] += 1
            task = asyncio.get_running_loop().create_task(
                self._chain(chain, breaker, deadline, slot)
            )
            task.add_done_callback(functools.partial(self._delivered, pair=pair))
            self.in_flight.add(task)
            task.add_done_callback(self._finished)
        if back:
            await db(webhooks.deliveries_release, ids=back)
        for cool_down, ids in postponed.items():
            await db(webhooks.deliveries_postpone, ids=ids, seconds=cool_down)
        return len(chains)

    async def _chain(
        self,
        chain: list[webhooks.Claim],
        breaker: CircuitBreaker,
        deadline: float,
        slot_free: Callable[[], None],
    ) -> None:
        """A session's claimed events for one destination, one after the other in one slot: each
        only once the one before it was delivered, none begun after `deadline` (so that each is
        answered and written before the claims run out). The slot is free once the last request
        is answered (its outcome may still wait for its write: the rows stay claimed meanwhile).
        What is left after a failure is released, and so is what is left of an endpoint's chain
        past its share once another destination's chain waits for a slot (`_yields`)."""
        written, rest = [], []
        destination = chain[0].destination.id if chain[0].destination else None
        try:
            self.waiting[destination] += 1
            try:
                await self.slots.acquire()
            finally:
                self.waiting[destination] -= 1
                if not self.waiting[destination]:
                    del self.waiting[destination]
            try:
                for index, claim in enumerate(chain):
                    if asyncio.get_running_loop().time() > deadline or (
                        index and self._yields(destination)
                    ):
                        rest = chain[index:]
                        break
                    began = asyncio.get_running_loop().time()
                    outcome = await self._deliver(claim)
                    if destination is not None:
                        self._answered(
                            destination, asyncio.get_running_loop().time() - began, outcome
                        )
                    if outcome is not None:
                        written.append(self._recorded(outcome, breaker))
                    if outcome is None or not outcome.delivered:
                        rest = chain[index + 1 :]
                        break
            finally:
                self.slots.release()
        finally:
            slot_free()
        await asyncio.gather(*written)
        if rest:
            await db(webhooks.deliveries_release, ids=[c.id for c in rest])

    def _room(self) -> dict[str, int]:
        """How many more chains each endpoint this dispatcher knows may have: every slot for a
        quick one, its share for the others (and the share for those it does not know)."""
        now = asyncio.get_running_loop().time()
        return {
            endpoint: (
                self.concurrency
                if now >= self.quick_from.get(endpoint, math.inf)
                else self.endpoint_share
            )
            - self.per_endpoint.get(endpoint, 0)
            for endpoint in {*self.per_endpoint, *self.quick_from}
        }

    def _answered(self, endpoint: str, seconds: float, outcome: webhooks.Outcome | None) -> None:
        """Remember how quickly `endpoint` answered (`_room`)."""
        now = asyncio.get_running_loop().time()
        answered = outcome is None or outcome.delivered or outcome.breaker_ok
        if seconds > FAST_ANSWER or not answered:
            self.quick_from[endpoint] = now + SLOW_HOLD
        else:
            self.quick_from.setdefault(endpoint, now)

    def _yields(self, endpoint: str | None) -> bool:
        """Whether a chain of `endpoint` should give its slot up: the endpoint has more than its
        share of chains, and another destination's chain waits for a slot."""
        if endpoint is None or self.per_endpoint.get(endpoint, 0) <= self.endpoint_share:
            return False
        return any(n for other, n in self.waiting.items() if other != endpoint)

    async def _purge(self) -> None:
        """Forget old events from the log, once an hour per dispatcher (a DELETE by date)."""
        now = asyncio.get_running_loop().time()
        if now - self.purged_at >= 3600:
            self.purged_at = now
            await db(stream.events_purge)

    def _slot_free(self, *, endpoint: str | None) -> None:
        self.claimed -= 1
        if self.starved:
            self.wake.set()
        if endpoint is not None:
            self.per_endpoint[endpoint] -= 1
            if not self.per_endpoint[endpoint]:
                del self.per_endpoint[endpoint]

    def _delivered(self, _: asyncio.Task, *, pair: tuple[str | None, str | None]) -> None:
        """A chain's outcomes are written (or failed to be): its session's next events are the
        next claim's."""
        self.delivering[pair] -= 1
        if not self.delivering[pair]:
            del self.delivering[pair]

    def _finished(self, task: asyncio.Task) -> None:
        self.in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("webhook delivery step failed", exc_info=task.exception())

    async def _deliver(self, claim: webhooks.Claim) -> webhooks.Outcome | None:
        """One attempt, in a span that is the child of the event's stored trace context (that of
        the request or the send that caused it); aiohttp's client span under it puts its
        `traceparent` on the request, a broker publish its own on the message."""
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
            return await self._attempt(claim)

    def _recorded(self, outcome: webhooks.Outcome, breaker: CircuitBreaker) -> asyncio.Future:
        """Done once the outcome is written, with others (`_record`); its breaker is told
        then."""
        future = asyncio.get_running_loop().create_future()
        self.outcomes.append((outcome, breaker, future))
        self.outcomes_waiting.set()
        return future

    async def _record(self) -> None:
        """Write what has finished since the last write, in one step, for as long as the
        dispatcher runs. A write that fails fails its deliveries' tasks: their claims run out
        and they are attempted again."""
        while True:
            await self.outcomes_waiting.wait()
            self.outcomes_waiting.clear()
            batch, self.outcomes = self.outcomes, []
            failpoint("after_webhook_response_before_commit")  # answered, nothing written
            try:
                await db(webhooks.deliveries_record, [outcome for outcome, _, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the database is away: told to the deliveries
                for *_, future in batch:
                    future.set_exception(exc)
                continue
            results = [(b, o.delivered or o.breaker_ok) for o, b, _ in batch]
            with contextlib.suppress(Exception):  # the breaker is permissive without its cache
                await io(record, results)
            for *_, future in batch:
                future.set_result(None)

    async def _attempt(self, claim: webhooks.Claim) -> webhooks.Outcome | None:
        """The request (or the publish), and what it came to; None when it is recorded already
        (410 Gone)."""
        destination = claim.destination
        if destination is not None and endpoints.kind_of(destination.url) != "webhook":
            return await self._publish(claim, destination)
        url, headers, server_name = claim.target, {}, None
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
                error = f"{refused.code}: {refused.message}"
                return webhooks.Outcome(claim, False, error=error, breaker_ok=True)
            headers["host"] = host
        assert self.client is not None  # made by run() before any claim
        try:
            async with self.client.post(
                url,
                data=claim.body.encode(),
                headers=headers,
                server_hostname=server_name,
                allow_redirects=False,
            ) as response:
                code, text = response.status, _text(await response.read(), response.charset)
                retry_after = response.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            logger.info("webhook %s to %s: %s", claim.event_type, claim.target, error)
            return webhooks.Outcome(claim, False, error=error[:500])
        logger.info("webhook %s to %s: HTTP %s", claim.event_type, claim.target, code)
        if 200 <= code < 300:
            return webhooks.Outcome(claim, True, status_code=code, response=text)
        if code == 410:  # it answered: the backend is up, the endpoint is gone
            await io(record, [(_breaker(claim), True)])
            await db(webhooks.target_gone, claim=claim, response=text)
            return None
        # The backend being down or overloaded opens the circuit; a 4xx is its verdict on this
        # one request, not a sign it is down (repeated, it is given up: Outcome.rejected).
        return webhooks.Outcome(
            claim,
            False,
            status_code=code,
            response=text,
            error=f"HTTP {code}",
            retry_after=webhooks.retry_after_seconds(retry_after),
            breaker_ok=code < 500 and code != 429,
        )

    async def _publish(
        self, claim: webhooks.Claim, destination: webhooks.Destination
    ) -> webhooks.Outcome:
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
            error = f"{exc.code}: {exc.message}" if isinstance(exc, UrlRefused) else str(exc)
            return webhooks.Outcome(claim, False, error=error[:500], breaker_ok=answered)
        return webhooks.Outcome(claim, True)


def _text(body: bytes, charset: str | None) -> str:
    """What a receiver answered, as text we keep (the first RESPONSE_KEEP characters)."""
    head = body[: webhooks.RESPONSE_KEEP * 4]
    try:
        return head.decode(charset or "utf-8", errors="replace")[: webhooks.RESPONSE_KEEP]
    except LookupError:  # a charset Python does not know
        return head.decode("utf-8", errors="replace")[: webhooks.RESPONSE_KEEP]


def _breaker(claim: webhooks.Claim) -> CircuitBreaker:
    return breaker_for(claim.target, claim.destination.id if claim.destination else None)


async def deliver(stop: asyncio.Event) -> None:
    """A dispatcher on its own (manage.py deliver_webhooks) until `stop`: woken by NOTIFY and by
    a poll; on `stop` the requests under way finish, then the connections close."""
    postgres = connection.vendor == "postgresql"
    dispatcher = Dispatcher(poll_seconds=2.0 if postgres else 0.5)
    listening = (
        asyncio.create_task(wake.listen({wake.WEBHOOKS: dispatcher.notified}, stop))
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
