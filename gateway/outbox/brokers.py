"""Message brokers as delivery destinations: NATS JetStream (`nats://`, `tls://`) and RabbitMQ
(`amqp://`, `amqps://`). The dispatcher (workers/runtime/dispatcher.py) calls `BrokerPublisher`
for a claim whose endpoint is a broker, with the same retries, circuit breaker and per-session
order as webhooks: a publish either returns once the broker has durably accepted the message or
raises `BrokerError`, and the dispatcher retries the same event (same id) later.

Subjects (a NATS subject, a RabbitMQ routing key) come from the endpoint's template, default
`wa.{session}.{event}`: `{session}` the session's id, `{external_id}` its external id (`-` when it
has none), `{event}` the event type, whose dots become tokens (`wa.<uuid>.message.received`).
Values are sanitised: only letters, digits, `_` and `-` survive (anything else, dots of an
external id included, becomes `_`), so no value can add tokens or wildcards (`*`, `>`, `#`).
A template begins with a fixed token: a stream covers `<fixed tokens>.>`, never every subject.

NATS JetStream
- The stream (`stream`, default `WHATSAPP`) is created when missing: file storage, the subjects
  of the template, a duplicate window of BROKER_DUPLICATE_WINDOW_SECONDS (15 min by default:
  longer than a claim's hold, so a dispatcher that crashed between the broker's ack and recording
  it publishes a copy the stream drops, and longer than the first retries after an ack lost in an
  outage). No limits are set (age, size): choose them with `nats stream edit`; the gateway never
  changes an existing stream but to add the subjects it lacks (its limits, window and storage
  stay the operator's).
- Every message carries `Nats-Msg-Id: <event id>` (the stream's duplicate detection) and
  `Nats-Expected-Stream` (a subject captured by another stream fails instead of landing there);
  it counts as delivered on the stream's PubAck. Endpoints sharing one stream share its
  duplicate detection: the same event published by two of them is stored once.

RabbitMQ
- A durable topic exchange (`exchange`, default `whatsapp`) is declared; an existing one must be
  a durable topic exchange too (else every publish fails and says so).
- Messages are persistent (delivery mode 2), `message_id` = event id, `content_type`
  application/json, the given headers; the channel uses publisher confirms, and a delivery counts
  only on the broker's ack.
- `mandatory`: a message no queue is bound for is returned by the broker and the publish raises
  `BrokerUnroutable` (a `BrokerError`): an event is never confirmed into the void (for instance
  before the consumers have bound their queues). The broker answered, so it is not a circuit
  failure, but nor is it a rejection (a webhook's 4xx, dead after WEBHOOK_REJECTED_ATTEMPTS): the
  consumers may bind their queues later, so it is retried until WEBHOOK_MAX_AGE; an endpoint's
  event patterns decide what is sent, or an alternate exchange takes the rest.

Connections: one per target per publisher, made on first use, reused, and dropped after any
failure (the next publish connects again). Connecting is bounded (at most 3 s, within the publish
timeout) and the clients never reconnect on their own: retries and backoff are the dispatcher's.
Credentials in a URL never reach a log line or an error text (`redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings

from gateway.core import tracing

logger = logging.getLogger(__name__)


def _quieter(record: logging.LogRecord) -> bool:
    """aiormq logs every refused connection and every close by the broker as an ERROR (with a
    traceback), on top of the BrokerError the dispatcher records and retries: down to DEBUG."""
    if logging.WARNING <= record.levelno < logging.CRITICAL:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _aiormq_log.isEnabledFor(logging.DEBUG)
    return True


_aiormq_log = logging.getLogger("aiormq.connection")
_aiormq_log.addFilter(_quieter)

BROKER_SCHEMES = {"nats": 4222, "tls": 4222, "amqp": 5672, "amqps": 5671}
_KINDS = {"nats": "nats", "tls": "nats", "amqp": "amqp", "amqps": "amqp"}
DEFAULT_SUBJECT = "wa.{session}.{event}"
DEFAULT_STREAM = "WHATSAPP"
DEFAULT_EXCHANGE = "whatsapp"
PLACEHOLDERS = ("session", "external_id", "event")
MAX_TEMPLATE = 128
MAX_EXTERNAL_ID = 64
CONNECT_TIMEOUT = 3.0
# Header names a destination must not receive from an endpoint's own headers: `Nats-*` steer
# JetStream (the message id, expected sequences, roll-ups, TTLs); `CC`/`BCC` steer RabbitMQ's
# routing (sender-selected distribution).
_RESERVED_HEADER = re.compile(r"^(nats-.*|cc|bcc)$", re.IGNORECASE)
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_-]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PIECE = re.compile(r"\{([^{}]*)\}|([A-Za-z0-9_-]+)|(.)", re.DOTALL)
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EXCHANGE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,127}$")


class BrokerError(Exception):
    """A publish that did not end in the broker's durable acceptance (its text is safe to log
    and store: no credentials)."""


class BrokerUnroutable(BrokerError):
    """RabbitMQ returned the message: no queue is bound for its routing key. The broker is up."""


def broker_kind(url: str) -> str | None:
    """`nats`, `amqp`, or None for anything else (a webhook)."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return _KINDS.get(scheme)


def reserved_header(name: str) -> bool:
    """True for a header an endpoint may not set on broker messages (`publish` drops them)."""
    return bool(_RESERVED_HEADER.match(name))


def redact(url: str) -> str:
    """The URL without its password (`amqp://guest:***@host:5672/vhost`)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return parts._replace(netloc=f"{user}:***@{netloc}").geturl()
    except ValueError:
        return "<an unreadable broker URL>"


def _scrub(text: str, url: str) -> str:
    """`text` with the URL's password removed wherever a client library echoed it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    text = text.replace(url, redact(url))
    if password:
        for form in {password, unquote(password), quote(password, safe="")}:
            if form:
                text = text.replace(form, "***")
    return text


# --- Subjects -------------------------------------------------------------------------------------


def _tokens(template: str) -> list[list[tuple[str, str]]]:
    """The template's dot-separated tokens, each a list of ("literal", text) / ("field", name)
    pieces; ValueError for anything else."""
    if not template:
        raise ValueError("The subject template is empty.")
    if len(template) > MAX_TEMPLATE:
        raise ValueError(f"The subject template is longer than {MAX_TEMPLATE} characters.")
    tokens: list[list[tuple[str, str]]] = [[]]
    seen: set[str] = set()
    for match in _PIECE.finditer(template):
        name, literal, other = match.groups()
        if name is not None:
            if name not in PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                raise ValueError(f"Unknown placeholder {{{name}}} in the subject; use {known}.")
            if name in seen:
                raise ValueError(f"{{{name}}} appears twice in the subject.")
            seen.add(name)
            tokens[-1].append(("field", name))
        elif literal is not None:
            tokens[-1].append(("literal", literal))
        elif other == ".":
            tokens.append([])
        else:
            raise ValueError(
                f"{other!r} is not allowed in a subject: tokens are letters, digits, _ and -, "
                "separated by dots, with {session}, {external_id} and {event}."
            )
    if any(not token for token in tokens):
        raise ValueError("The subject has an empty token (a leading, trailing or double dot).")
    if any(kind == "field" for kind, _ in tokens[0]):
        raise ValueError(
            "The subject must begin with a fixed token (e.g. wa.{session}.{event}): a stream "
            "covers its fixed prefix."
        )
    return tokens


def validate_subject_template(template: str) -> None:
    """ValueError(message for the API) unless `template` makes valid NATS subjects and AMQP
    routing keys for every value."""
    _tokens(template)


def _safe(value: str | None, *, limit: int | None = None) -> str:
    cleaned = _UNSAFE.sub("_", value or "")
    if limit is not None:
        cleaned = cleaned[:limit]
    return cleaned or "-"


def render_subject(template: str, *, session_id: Any, external_id: str | None, event: str) -> str:
    """The subject of one event: placeholders replaced by sanitised values (`-` when empty; the
    event type's dots kept as token separators)."""
    values = {
        "session": _safe(str(session_id) if session_id else None),
        "external_id": _safe(external_id, limit=MAX_EXTERNAL_ID),
        "event": ".".join(_safe(part) for part in (event or "").split(".") if part) or "-",
    }
    return ".".join(
        "".join(values[text] if kind == "field" else text for kind, text in token)
        for token in _tokens(template)
    )


def stream_subjects(template: str) -> tuple[str, ...]:
    """The subjects a stream needs for every subject of `template`: its fixed tokens then `>`
    (the template itself when it has no placeholder)."""
    tokens = _tokens(template)
    fixed: list[str] = []
    for token in tokens:
        if any(kind == "field" for kind, _ in token):
            return (".".join(fixed) + ".>",)
        fixed.append("".join(text for _, text in token))
    return (".".join(fixed),)


def subject_covers(pattern: str, subject: str) -> bool:
    """Does the stream subject `pattern` (with `*` and `>`) take every subject `subject` (itself
    possibly a pattern) stands for?"""
    want, have = subject.split("."), pattern.split(".")
    for index, part in enumerate(have):
        if part == ">":
            return len(want) > index
        if index >= len(want) or want[index] == ">":
            return False
        if part not in ("*", want[index]):
            return False
    return len(want) == len(have)


def validate_stream_name(name: str) -> None:
    if name and not _STREAM_NAME.match(name):
        raise ValueError("A stream name is 1 to 64 letters, digits, _ and -.")


def validate_exchange_name(name: str) -> None:
    if name and (not _EXCHANGE_NAME.match(name) or name.startswith("amq.")):
        raise ValueError(
            "An exchange name is 1 to 127 letters, digits, _ - . and :, not beginning with amq."
        )


# --- Targets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerTarget:
    """Where a broker endpoint publishes: a connection is kept per distinct target."""

    url: str
    kind: str
    stream: str | None = None
    exchange: str | None = None
    # NATS: the subjects the stream must cover (`stream_subjects(template)`).
    subjects: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, url: str, *, subject: str = DEFAULT_SUBJECT, stream: str = "", exchange: str = ""
    ) -> BrokerTarget:
        """The target of an endpoint (its blank stream or exchange take the defaults)."""
        kind = broker_kind(url)
        if kind == "nats":
            return cls(url, kind, stream or DEFAULT_STREAM, None, stream_subjects(subject))
        if kind == "amqp":
            return cls(url, kind, None, exchange or DEFAULT_EXCHANGE)
        raise ValueError(f"{redact(url)} is not a nats://, tls://, amqp:// or amqps:// URL.")

    def __repr__(self) -> str:
        return (
            f"BrokerTarget({redact(self.url)!r}, {self.kind!r}, stream={self.stream!r}, "
            f"exchange={self.exchange!r}, subjects={self.subjects!r})"
        )

    @property
    def shown(self) -> str:
        """The URL as logs and errors show it (no password)."""
        return redact(self.url)


# --- Connections ----------------------------------------------------------------------------------


class _NatsLink:
    def __init__(self, target: BrokerTarget, window: float) -> None:
        self.target = target
        self.window = window
        self.nc: Any = None
        self.js: Any = None
        # Set when the connection goes: the publishes waiting for their acks fail at once (the
        # client itself would leave them waiting until their timeout).
        self.lost = asyncio.Event()
        self.closing = False
        self.last_error = ""

    @property
    def alive(self) -> bool:
        return self.nc is not None and self.nc.is_connected and not self.lost.is_set()

    async def open(self, connect_timeout: float, timeout: float) -> None:
        import nats
        from nats.errors import NoServersError

        shown = self.target.shown

        async def error_cb(exc: Exception) -> None:
            self.last_error = _scrub(f"{type(exc).__name__}: {exc}", self.url)
            logger.debug("NATS %s: %s", shown, self.last_error)

        async def disconnected_cb() -> None:
            if not self.lost.is_set() and not self.closing:
                logger.info("NATS connection to %s lost", shown)
            self.lost.set()

        self.nc = nats.NATS()
        try:
            await self.nc.connect(
                servers=[self.target.url],
                name=f"whatsapp-gateway/{settings.VERSION}",
                connect_timeout=max(1, round(connect_timeout)),
                # The client never reconnects on its own: a lost connection fails the publishes
                # under way and the next publish connects again (the dispatcher's retries).
                allow_reconnect=False,
                max_reconnect_attempts=1,  # 0 would mean "forever" while connecting
                reconnect_time_wait=0,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                closed_cb=disconnected_cb,
            )
        except NoServersError:
            raise BrokerError(
                f"nats {shown}: cannot connect ({self.last_error or 'no server answered'})"
            ) from None
        self.js = self.nc.jetstream(timeout=timeout)
        await self.ensure_stream()

    @property
    def url(self) -> str:
        return self.target.url

    async def ensure_stream(self) -> None:
        """Create the stream, or add to an existing one the subjects it lacks."""
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import BadRequestError, NotFoundError

        name, wanted = self.target.stream, list(self.target.subjects)
        assert name
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            config = StreamConfig(
                name=name,
                subjects=wanted,
                storage=StorageType.FILE,
                duplicate_window=self.window,
                description="WhatsApp gateway events",
            )
            try:
                await self.js.add_stream(config)
                logger.info("NATS stream %s created on %s for %s", name, self.target.shown, wanted)
                return
            except BadRequestError as exc:
                if exc.err_code != 10058:  # "stream name already in use": another made it
                    raise BrokerError(
                        f"NATS stream {name} could not be created: {exc.description}"
                    ) from None
            info = await self.js.stream_info(name)
        have = list(info.config.subjects or [])
        missing = [s for s in wanted if not any(subject_covers(p, s) for p in have)]
        if missing:
            try:
                await self.js.update_stream(info.config.evolve(subjects=have + missing))
            except BadRequestError as exc:
                raise BrokerError(
                    f"NATS stream {name} exists without the subjects {missing} and could not "
                    f"take them: {exc.description}"
                ) from None
            logger.info("NATS stream %s now also covers %s", name, missing)

    async def publish(
        self, *, subject: str, event_id: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> None:
        from nats.js.errors import APIError, NoStreamResponseError

        sent = {k: v for k, v in headers.items() if not reserved_header(k)}
        sent["Nats-Msg-Id"] = event_id
        for attempt in (1, 2):
            try:
                await self._unless_lost(
                    self.js.publish(
                        subject,
                        body,
                        timeout=timeout,
                        stream=self.target.stream,
                        headers=dict(sent),
                    )
                )
                return
            except NoStreamResponseError:
                # No stream takes the subject (deleted, or its subjects edited): make it again.
                if attempt == 2:
                    raise BrokerError(
                        f"no NATS stream takes {subject} on {self.target.shown}"
                    ) from None
                await self.ensure_stream()
            except APIError as exc:
                raise BrokerError(
                    f"NATS refused {subject} on {self.target.shown}: {exc.description} "
                    f"(code {exc.err_code})"
                ) from None

    async def _unless_lost(self, call: Any) -> Any:
        task = asyncio.ensure_future(call)
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            raise BrokerError(f"the connection to {self.target.shown} was lost before the ack")
        finally:
            for pending in (task, lost):
                if not pending.done():
                    pending.cancel()

    async def close(self) -> None:
        self.closing = True
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


class _AmqpLink:
    def __init__(self, target: BrokerTarget) -> None:
        self.target = target
        self.connection: Any = None
        self.channel: Any = None
        self.exchange: Any = None

    @property
    def alive(self) -> bool:
        return (
            self.connection is not None
            and not self.connection.is_closed
            and self.channel is not None
            and not self.channel.is_closed
        )

    async def open(self, connect_timeout: float, timeout: float) -> None:
        import aio_pika
        from aio_pika.exceptions import ChannelPreconditionFailed

        # A plain connection (not connect_robust): it never reconnects on its own.
        self.connection = await aio_pika.connect(
            self.target.url,
            timeout=connect_timeout,
            client_properties={"connection_name": f"whatsapp-gateway/{settings.VERSION}"},
        )
        self.channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            self.exchange = await self.channel.declare_exchange(
                self.target.exchange, aio_pika.ExchangeType.TOPIC, durable=True, timeout=timeout
            )
        except ChannelPreconditionFailed as exc:
            raise BrokerError(
                f"RabbitMQ exchange {self.target.exchange} on {self.target.shown} exists but is "
                f"not a durable topic exchange: {exc}"
            ) from None

    async def publish(
        self, *, subject: str, event_id: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> None:
        import aio_pika
        from aio_pika.exceptions import DeliveryError, PublishError

        message = aio_pika.Message(
            body,
            headers={k: v for k, v in headers.items() if not reserved_header(k)},
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event_id,
            timestamp=datetime.now(UTC),
            app_id="whatsapp-gateway",
        )
        try:
            await self.exchange.publish(
                message, routing_key=subject, mandatory=True, timeout=timeout
            )
        except PublishError as exc:
            reason = getattr(getattr(exc.message, "delivery", None), "reply_text", "returned")
            raise BrokerUnroutable(
                f"RabbitMQ returned {subject}: no queue is bound for it on exchange "
                f"{self.target.exchange} ({reason})"
            ) from None
        except DeliveryError:
            raise BrokerError(f"RabbitMQ refused {subject} on {self.target.shown} (nack)") from None

    async def close(self) -> None:
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()


@dataclass
class _Slot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    link: _NatsLink | _AmqpLink | None = None


class BrokerPublisher:
    """Publishes events to brokers: one per dispatcher, one connection per target."""

    def __init__(
        self,
        *,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        duplicate_window: float | None = None,
    ) -> None:
        self.timeout = float(timeout or settings.BROKER_TIMEOUT_SECONDS)
        self.connect_timeout = min(
            CONNECT_TIMEOUT, self.timeout, connect_timeout or CONNECT_TIMEOUT
        )
        self.duplicate_window = float(duplicate_window or settings.BROKER_DUPLICATE_WINDOW_SECONDS)
        self._slots: dict[BrokerTarget, _Slot] = {}
        self._closing: set[asyncio.Task] = set()

    def connected(self, target: BrokerTarget) -> bool:
        """Whether a publish to `target` would use a connection already open."""
        slot = self._slots.get(target)
        return slot is not None and slot.link is not None and slot.link.alive

    async def publish(
        self,
        target: BrokerTarget,
        *,
        subject: str,
        event_id: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float | None = None,
    ) -> None:
        """Return once the broker has durably accepted the message; BrokerError otherwise. With
        tracing on, in a span whose `traceparent` (and `tracestate`) the message carries."""
        with tracing.span(
            f"publish {subject}",
            kind=tracing.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats" if target.kind == "nats" else "rabbitmq",
                "messaging.destination.name": subject,
                "messaging.message.id": event_id,
            },
        ):
            await self._publish(
                target,
                subject=subject,
                event_id=event_id,
                body=body,
                headers={**headers, **tracing.headers()},
                timeout=timeout,
            )

    async def _publish(
        self,
        target: BrokerTarget,
        *,
        subject: str,
        event_id: str,
        body: bytes,
        headers: dict[str, str],
        timeout: float | None,
    ) -> None:
        timeout = float(timeout or self.timeout)
        slot = self._slots.setdefault(target, _Slot())
        link: _NatsLink | _AmqpLink | None = None
        try:
            async with asyncio.timeout(timeout):
                link = await self._connected(target, slot, timeout)
                await link.publish(
                    subject=subject, event_id=event_id, body=body, headers=headers, timeout=timeout
                )
            return
        except BrokerUnroutable:
            raise  # the broker is there and answered: the connection stays
        except BrokerError as exc:
            error = exc
        except TimeoutError:
            error = BrokerError(
                f"{target.kind} {target.shown}: no {'ack' if link else 'connection'} "
                f"within {timeout:g}s"
            )
        except Exception as exc:  # noqa: BLE001 - whatever the client raised, as one error
            error = BrokerError(
                _scrub(f"{target.kind} {target.shown}: {type(exc).__name__}: {exc}", target.url)
            )
        self._drop(slot, link)
        raise error

    async def _connected(
        self, target: BrokerTarget, slot: _Slot, timeout: float
    ) -> _NatsLink | _AmqpLink:
        async with slot.lock:  # publishes waiting for the same target share one connection
            if slot.link is not None and slot.link.alive:
                return slot.link
            self._drop(slot, slot.link)
            link: _NatsLink | _AmqpLink = (
                _NatsLink(target, self.duplicate_window)
                if target.kind == "nats"
                else _AmqpLink(target)
            )
            try:
                await link.open(self.connect_timeout, timeout)
            except BaseException:
                self._close_later(link)
                raise
            slot.link = link
            logger.debug("connected to %s %s", target.kind, target.shown)
            return link

    def _drop(self, slot: _Slot, link: _NatsLink | _AmqpLink | None) -> None:
        """Forget `link` if it is still the slot's (a concurrent publish may have replaced it
        already), and close it."""
        if link is None:
            return
        if slot.link is link:
            slot.link = None
        self._close_later(link)

    def _close_later(self, link: _NatsLink | _AmqpLink) -> None:
        task = asyncio.get_running_loop().create_task(self._close(link))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, link: _NatsLink | _AmqpLink) -> None:
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(link.close(), self.connect_timeout)

    async def close(self) -> None:
        """Close every connection (the dispatcher's shutdown)."""
        links = [slot.link for slot in self._slots.values() if slot.link is not None]
        self._slots.clear()
        for link in links:
            self._close_later(link)
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=self.connect_timeout + 1)
