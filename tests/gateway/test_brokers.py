"""Broker destinations (gateway/outbox/brokers.py) against the real servers, never a double:
the machine's NATS JetStream (TEST_NATS_URL) and RabbitMQ (TEST_AMQP_URL), which `make test`
starts when they are down, and private instances on free ports for what the shared ones must not
suffer (being down, a restart in the middle of a burst). A server that does not answer fails the
tests: nothing here skips."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aio_pika
import nats
import pytest
import pytest_asyncio
from nats.js.api import StorageType, StreamConfig

from gateway.core import tracing
from gateway.outbox.brokers import (
    BROKER_SCHEMES,
    DEFAULT_EXCHANGE,
    DEFAULT_STREAM,
    BrokerError,
    BrokerPublisher,
    BrokerTarget,
    BrokerUnroutable,
    broker_kind,
    redact,
    render_subject,
    stream_subjects,
    subject_covers,
    validate_exchange_name,
    validate_stream_name,
    validate_subject_template,
)

NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_SERVER = "/usr/sbin/nats-server"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # not the wrapper: no `su rabbitmq`


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.05)


# --- Private servers ------------------------------------------------------------------------------


class PrivateNats:
    """`nats-server -js` on a free port, its store in a temporary directory (kept across
    restarts)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.store = workdir / f"nats-{self.port}"
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.store.mkdir(exist_ok=True)
        argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        process = self.process
        wait_for(lambda: process.poll() is None and answers(self.port), 15, "nats-server up")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # a graceful stop, as a restart does
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class PrivateRabbit:
    """A RabbitMQ node of its own (name, ports, config, data and logs in a temporary directory),
    beside the machine's: stopped with SIGTERM (a graceful stop), started again on its data."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = workdir / f"rabbit-{self.port}"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.process: subprocess.Popen | None = None
        self.dir.mkdir()
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.dir / "rabbitmq-env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(self.dir),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"gwtest-{uuid.uuid4().hex[:8]}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(self.dir / "plugins-expand"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP": "/dev/null",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> None:
        log = open(self.dir / "server.out", "ab")
        self.process = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                out = (self.dir / "server.out").read_text(errors="replace")[-2000:]
                raise AssertionError(f"the private RabbitMQ node exited: {out}")
            return answers(self.port)

        wait_for(up, 60, "the private RabbitMQ node up")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the script stops the node gracefully
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Short paths: Erlang and NATS keep sockets and files under it.
    path = Path(tmp_path_factory.mktemp("brokers"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def private_nats(workdir: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(workdir)
    yield server
    server.stop()


@pytest.fixture
def private_rabbit(workdir: Path) -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(workdir)
    yield node
    node.stop()


@pytest_asyncio.fixture
async def publisher() -> AsyncIterator[BrokerPublisher]:
    publisher = BrokerPublisher(timeout=5, duplicate_window=120)
    yield publisher
    await publisher.close()


@contextlib.asynccontextmanager
async def jetstream(url: str = NATS_URL) -> AsyncIterator:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        yield nc.jetstream(timeout=5)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def amqp_channel(url: str = AMQP_URL) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(url, timeout=5)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def stream_messages(js, stream: str) -> list:
    """Every message of `stream`, in order."""
    info = await js.stream_info(stream)
    return [
        await js.get_msg(stream, seq)
        for seq in range(info.state.first_seq, info.state.last_seq + 1)
    ]


def event(session: uuid.UUID, sequence: int, kind: str = "message.received") -> dict:
    return {"id": str(uuid.uuid4()), "event": kind, "session": str(session), "sequence": sequence}


# --- The suite's own check (scripts/check_jetstream.py) -------------------------------------------


def test_the_suite_tells_a_nats_without_jetstream_from_one_with_it(workdir: Path) -> None:
    """`.ci/run` and `make test` check JetStream, not only that the port answers."""
    from scripts.check_jetstream import jetstream_problem

    assert jetstream_problem(NATS_URL) is None  # the machine's, with JetStream
    closed = f"nats://127.0.0.1:{free_port()}"
    assert (
        jetstream_problem(closed, timeout=1) == f"NATS does not answer at {closed} (NoServersError)"
    )
    port = free_port()
    plain = subprocess.Popen(  # no -js
        [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: answers(port), 15, "nats-server up")
        problem = jetstream_problem(f"nats://127.0.0.1:{port}")
        assert problem is not None and "JetStream is not enabled" in problem
        assert "-js" in problem
    finally:
        plain.terminate()
        plain.wait(timeout=15)


# --- Subjects and targets (no server) -------------------------------------------------------------


def test_subject_templates_are_checked() -> None:
    for good in ["wa.{session}.{event}", "tenant-1.{external_id}.{session}.{event}", "wa.all"]:
        validate_subject_template(good)
    for bad, says in [
        ("wa.{sessions}.{event}", "Unknown placeholder {sessions}"),
        ("wa.*.{event}", "'*' is not allowed"),
        ("wa.>", "'>' is not allowed"),
        ("wa.#", "'#' is not allowed"),
        ("wa x.{event}", "' ' is not allowed"),
        ("wa..{event}", "empty token"),
        ("wa.{event}.", "empty token"),
        ("{session}.{event}", "must begin with a fixed token"),
        ("wa.{event}.{event}", "appears twice"),
        ("wa.{event", "'{' is not allowed"),
        ("", "empty"),
        ("wa." + "x" * 200, "longer than"),
    ]:
        with pytest.raises(ValueError) as raised:
            validate_subject_template(bad)
        assert says in str(raised.value), (bad, str(raised.value))


def test_subjects_are_rendered_with_sanitised_values() -> None:
    session = uuid.UUID("0b5c6a4e-7d1f-4a59-9a57-0f1e2d3c4b5a")
    assert (
        render_subject(
            "wa.{session}.{event}", session_id=session, external_id=None, event="message.received"
        )
        == f"wa.{session}.message.received"
    )
    # A value can add neither tokens nor wildcards, whatever it holds.
    assert (
        render_subject(
            "t.{external_id}.{event}",
            session_id=session,
            external_id="shop.>*# é x",
            event="message.received",
        )
        == "t.shop_______x.message.received"
    )
    assert (
        render_subject("t.{external_id}.{session}", session_id=None, external_id="", event="x")
        == "t.-.-"
    )
    assert len(render_subject("t.{external_id}", session_id=None, external_id="a" * 500, event="x"))
    assert (
        render_subject("t.{external_id}", session_id=None, external_id="a" * 500, event="x")
        == "t." + "a" * 64
    )
    assert (
        render_subject("t.{event}", session_id=None, external_id=None, event="a..b.*") == "t.a.b._"
    )


def test_stream_subjects_and_coverage() -> None:
    assert stream_subjects("wa.{session}.{event}") == ("wa.>",)
    assert stream_subjects("acme.wa.x{session}.{event}") == ("acme.wa.>",)
    assert stream_subjects("wa.all") == ("wa.all",)
    assert subject_covers("wa.>", "wa.>")
    assert subject_covers(">", "wa.>")
    assert subject_covers("wa.*.x", "wa.y.x")
    assert subject_covers("wa.>", "wa.a.b")
    assert not subject_covers("wa.*", "wa.>")
    assert not subject_covers("wa.x.>", "wa.>")
    assert not subject_covers("wb.>", "wa.>")
    assert not subject_covers("wa.>", "wa")


def test_targets_kinds_names_and_redaction() -> None:
    assert {"nats", "tls", "amqp", "amqps"} == set(BROKER_SCHEMES)
    assert broker_kind("nats://h:4222") == broker_kind("tls://h") == "nats"
    assert broker_kind("amqp://h") == broker_kind("AMQPS://h") == "amqp"
    assert broker_kind("https://h") is None
    nats_target = BrokerTarget.of("nats://u:pw@h:4222", subject="acme.{session}.{event}")
    assert nats_target == BrokerTarget(
        "nats://u:pw@h:4222", "nats", DEFAULT_STREAM, None, ("acme.>",)
    )
    amqp_target = BrokerTarget.of("amqp://guest:s3cret@h/", exchange="")
    assert amqp_target.exchange == DEFAULT_EXCHANGE and amqp_target.stream is None
    assert len({nats_target, amqp_target, BrokerTarget.of("amqp://guest:s3cret@h/")}) == 2
    assert "s3cret" not in repr(amqp_target) and "guest:***@h" in repr(amqp_target)
    assert redact("amqp://guest:s3cret@h:5672/v") == "amqp://guest:***@h:5672/v"
    assert redact("nats://h:4222") == "nats://h:4222"
    with pytest.raises(ValueError):
        BrokerTarget.of("https://h/")
    validate_stream_name("WHATSAPP_1")
    validate_exchange_name("acme.events:wa")
    for bad in ["a.b", "a b", "a>", "x" * 65]:
        with pytest.raises(ValueError):
            validate_stream_name(bad)
    for bad in ["amq.topic", "a b", "a/b"]:
        with pytest.raises(ValueError):
            validate_exchange_name(bad)


# --- NATS JetStream (the machine's server) --------------------------------------------------------


@pytest_asyncio.fixture
async def nats_stream() -> AsyncIterator[str]:
    name = unique("GWTEST_")
    yield name
    async with jetstream() as js:
        with contextlib.suppress(Exception):
            await js.delete_stream(name)


@pytest.mark.asyncio
async def test_nats_publish_creates_the_stream_and_drops_duplicates(
    publisher: BrokerPublisher, nats_stream: str
) -> None:
    prefix = unique("gwtest")
    template = prefix + ".{session}.{event}"
    target = BrokerTarget.of(NATS_URL, subject=template, stream=nats_stream)
    session = uuid.uuid4()
    body = event(session, 1)
    subject = render_subject(template, session_id=session, external_id="", event="message.received")
    headers = {"webhook-id": body["id"], "X-Tenant": "acme", "Nats-Rollup": "all"}
    for _ in range(2):  # the same event twice (a redelivery): stored once
        await publisher.publish(
            target,
            subject=subject,
            event_id=body["id"],
            body=json.dumps(body).encode(),
            headers=headers,
        )
    async with jetstream() as js:
        info = await js.stream_info(nats_stream)
        assert info.config.subjects == [f"{prefix}.>"]
        assert info.config.storage == StorageType.FILE
        assert info.config.duplicate_window == 120
        [message] = await stream_messages(js, nats_stream)
        assert message.subject == subject == f"{prefix}.{session}.message.received"
        assert json.loads(message.data) == body
        assert message.headers["Nats-Msg-Id"] == body["id"]
        assert message.headers["X-Tenant"] == "acme"
        assert "Nats-Rollup" not in message.headers  # an endpoint's header never steers JetStream

        # A consumer sees it too, with its id.
        sub = await js.pull_subscribe(f"{prefix}.>", durable=None, stream=nats_stream)
        [consumed] = await sub.fetch(1, timeout=5)
        assert consumed.headers["Nats-Msg-Id"] == body["id"] and consumed.subject == subject
        await sub.unsubscribe()


@pytest.mark.asyncio
async def test_nats_reuses_a_stream_and_adds_the_subjects_it_lacks(
    publisher: BrokerPublisher, nats_stream: str
) -> None:
    other, prefix = unique("gwtestother"), unique("gwtest")
    async with jetstream() as js:
        await js.add_stream(
            StreamConfig(
                name=nats_stream,
                subjects=[f"{other}.>"],
                storage=StorageType.MEMORY,
                duplicate_window=30,
            )
        )
        await js.publish(f"{other}.x", b"{}", stream=nats_stream)
    target = BrokerTarget.of(NATS_URL, subject=prefix + ".{event}", stream=nats_stream)
    await publisher.publish(
        target, subject=f"{prefix}.session.status", event_id="e1", body=b"{}", headers={}
    )
    # Another dispatcher (another connection) finds everything in place.
    second = BrokerPublisher(timeout=5)
    try:
        await second.publish(
            target, subject=f"{prefix}.session.status", event_id="e2", body=b"{}", headers={}
        )
    finally:
        await second.close()
    async with jetstream() as js:
        info = await js.stream_info(nats_stream)
    # Reused, its own settings kept: only the missing subjects were added.
    assert info.config.subjects == [f"{other}.>", f"{prefix}.>"]
    assert info.config.storage == StorageType.MEMORY and info.config.duplicate_window == 30
    assert info.state.messages == 3


@pytest.mark.asyncio
async def test_nats_stream_made_again_when_deleted_under_a_connection(
    publisher: BrokerPublisher, nats_stream: str
) -> None:
    prefix = unique("gwtest")
    target = BrokerTarget.of(NATS_URL, subject=prefix + ".{event}", stream=nats_stream)
    await publisher.publish(target, subject=f"{prefix}.a", event_id="e1", body=b"1", headers={})
    async with jetstream() as js:
        await js.delete_stream(nats_stream)
    await publisher.publish(target, subject=f"{prefix}.a", event_id="e2", body=b"2", headers={})
    async with jetstream() as js:
        assert [m.data for m in await stream_messages(js, nats_stream)] == [b"2"]


@pytest.mark.asyncio
async def test_nats_subject_of_another_stream_fails_clearly(
    publisher: BrokerPublisher, nats_stream: str
) -> None:
    prefix, squatter = unique("gwtest"), unique("GWTEST_")
    async with jetstream() as js:
        await js.add_stream(name=squatter, subjects=[f"{prefix}.>"], storage=StorageType.MEMORY)
    try:
        target = BrokerTarget.of(NATS_URL, subject=prefix + ".{event}", stream=nats_stream)
        with pytest.raises(BrokerError, match=nats_stream):
            await publisher.publish(
                target, subject=f"{prefix}.a", event_id="e1", body=b"1", headers={}
            )
    finally:
        async with jetstream() as js:
            await js.delete_stream(squatter)


# --- RabbitMQ (the machine's server) --------------------------------------------------------------


@pytest_asyncio.fixture
async def exchange_name() -> AsyncIterator[str]:
    name = unique("gwtest-")
    yield name
    async with amqp_channel() as channel:
        await channel.exchange_delete(name)


@pytest.mark.asyncio
async def test_amqp_publish_is_persistent_with_its_id_and_routing_key(
    publisher: BrokerPublisher, exchange_name: str
) -> None:
    target = BrokerTarget.of(AMQP_URL, exchange=exchange_name)
    session = uuid.uuid4()
    body = event(session, 7)
    subject = render_subject(
        "wa.{session}.{event}", session_id=session, external_id=None, event=body["event"]
    )
    # Before any queue is bound: the broker returns it, and the delivery does not count.
    with pytest.raises(BrokerUnroutable, match="no queue is bound"):
        await publisher.publish(
            target, subject=subject, event_id=body["id"], body=b"{}", headers={}
        )
    link = publisher._slots[target].link
    async with amqp_channel() as channel:
        exchange = await channel.get_exchange(exchange_name)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="wa.*.message.#")
        await publisher.publish(
            target,
            subject=subject,
            event_id=body["id"],
            body=json.dumps(body).encode(),
            headers={"webhook-id": body["id"], "X-Tenant": "acme", "CC": "elsewhere"},
        )
        assert publisher._slots[target].link is link  # an unroutable message kept the connection
        message = await queue.get(timeout=5)
        assert message is not None
        assert message.routing_key == subject == f"wa.{session}.message.received"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.message_id == body["id"]
        assert message.content_type == "application/json"
        assert message.headers == {"webhook-id": body["id"], "X-Tenant": "acme"}
        assert json.loads(message.body) == body
        await message.ack()
        declared = await channel.declare_exchange(exchange_name, passive=True)
        assert declared.name == exchange_name


# A delivery's span (the dispatcher's, child of the event's stored context): the publish's span is
# its child, and the message carries the publish span's `traceparent` (NATS and AMQP headers).
STORED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def published_in_trace(spans, traceparent: str) -> None:
    [publish, delivery] = spans.get_finished_spans()
    assert publish.parent.span_id == delivery.context.span_id and publish.kind.name == "PRODUCER"
    assert f"{delivery.parent.span_id:016x}" == STORED.split("-")[2]
    trace_id, span_id = f"{publish.context.trace_id:032x}", f"{publish.context.span_id:016x}"
    assert traceparent.split("-")[1:3] == [trace_id, span_id] == [STORED.split("-")[1], span_id]


async def published_in_a_delivery_span(publisher: BrokerPublisher, nats_stream: str):
    """One message published to NATS inside a delivery's span (of STORED), as the stream has it."""
    prefix = unique("gwtest")
    target = BrokerTarget.of(NATS_URL, subject=prefix + ".{session}.{event}", stream=nats_stream)
    with tracing.span("deliver", stored=STORED):
        await publisher.publish(
            target, subject=f"{prefix}.s.e", event_id=str(uuid.uuid4()), body=b"{}", headers={}
        )
    async with jetstream() as js:
        [message] = await stream_messages(js, nats_stream)
    return message


@pytest.mark.asyncio
async def test_nats_messages_carry_the_trace(
    spans, publisher: BrokerPublisher, nats_stream: str
) -> None:
    message = await published_in_a_delivery_span(publisher, nats_stream)
    published_in_trace(spans, message.headers["traceparent"])


@pytest.mark.asyncio
async def test_amqp_messages_carry_the_trace(
    spans, publisher: BrokerPublisher, exchange_name: str
) -> None:
    target = BrokerTarget.of(AMQP_URL, exchange=exchange_name)
    async with amqp_channel() as channel:
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="wa.#")
        with tracing.span("deliver", stored=STORED):
            await publisher.publish(
                target, subject="wa.s.e", event_id=str(uuid.uuid4()), body=b"{}", headers={}
            )
        message = await queue.get(timeout=5)
        assert message is not None
        await message.ack()
    published_in_trace(spans, message.headers["traceparent"])


@pytest.mark.asyncio
async def test_without_tracing_broker_messages_carry_no_trace(
    publisher: BrokerPublisher, nats_stream: str
) -> None:
    message = await published_in_a_delivery_span(publisher, nats_stream)
    assert "traceparent" not in (message.headers or {})


@pytest.mark.asyncio
async def test_amqp_exchange_of_another_type_fails_clearly(
    publisher: BrokerPublisher, exchange_name: str
) -> None:
    async with amqp_channel() as channel:
        await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.FANOUT)
    target = BrokerTarget.of(AMQP_URL, exchange=exchange_name)
    with pytest.raises(BrokerError, match="not a durable topic exchange"):
        await publisher.publish(target, subject="wa.x", event_id="e", body=b"{}", headers={})


@pytest.mark.asyncio
async def test_credentials_never_in_errors_or_logs(
    publisher: BrokerPublisher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = AMQP_URL.replace("guest:guest@", "guest:Wr0ng-s3cret@")
    closed = f"nats://gw:Wr0ng-s3cret@127.0.0.1:{free_port()}"
    for url in (wrong, closed, f"amqp://gw:Wr0ng-s3cret@127.0.0.1:{free_port()}/"):
        with pytest.raises(BrokerError) as raised:
            await publisher.publish(
                BrokerTarget.of(url), subject="wa.x", event_id="e", body=b"{}", headers={}
            )
        assert "Wr0ng-s3cret" not in str(raised.value)
        assert "***" in str(raised.value), str(raised.value)
    assert "Wr0ng-s3cret" not in caplog.text


# --- Down, silent, back ---------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("scheme", ["nats", "amqp"])
async def test_a_silent_server_times_out(scheme: str) -> None:
    """A server that accepts connections and never speaks: the publish fails on its timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        port = listener.getsockname()[1]
        publisher = BrokerPublisher(timeout=1)
        url = f"{scheme}://guest:guest@127.0.0.1:{port}/"
        started = time.monotonic()
        with pytest.raises(BrokerError):
            await publisher.publish(
                BrokerTarget.of(url), subject="wa.x", event_id="e", body=b"{}", headers={}
            )
        assert time.monotonic() - started < 2.5
        await publisher.close()
    finally:
        listener.close()


@pytest.mark.asyncio
async def test_nats_down_then_back(publisher: BrokerPublisher, private_nats: PrivateNats) -> None:
    target = BrokerTarget.of(private_nats.url, subject="wa.{event}", stream="DOWNBACK")
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"127\.0\.0\.1"):
        await publisher.publish(target, subject="wa.a", event_id="e1", body=b"1", headers={})
    assert time.monotonic() - started < 2
    await asyncio.to_thread(private_nats.start)
    await publisher.publish(target, subject="wa.a", event_id="e1", body=b"1", headers={})
    async with jetstream(private_nats.url) as js:
        assert [m.data for m in await stream_messages(js, "DOWNBACK")] == [b"1"]
    await publisher.close()
    assert publisher._slots == {}


@pytest.mark.asyncio
async def test_amqp_down_then_back(
    publisher: BrokerPublisher, private_rabbit: PrivateRabbit
) -> None:
    target = BrokerTarget.of(private_rabbit.url)
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"127\.0\.0\.1"):
        await publisher.publish(target, subject="wa.a", event_id="e1", body=b"1", headers={})
    assert time.monotonic() - started < 2
    await asyncio.to_thread(private_rabbit.start)
    async with amqp_channel(private_rabbit.url) as channel:
        exchange = await channel.declare_exchange(
            DEFAULT_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="#")
        await publisher.publish(target, subject="wa.a", event_id="e1", body=b"1", headers={})
        message = await queue.get(timeout=5)
        assert message is not None and message.message_id == "e1" and message.body == b"1"


# --- A restart in the middle of a burst -----------------------------------------------------------

SESSIONS, PER_SESSION = 5, 40


async def burst(
    publisher: BrokerPublisher,
    target: BrokerTarget,
    stop: Callable[[], None],
    start: Callable[[], None],
) -> tuple[dict[str, list[str]], int]:
    """SESSIONS sessions of PER_SESSION events each, published as the dispatcher does: one at a
    time per session, the sessions concurrently, an event retried (same id) after a backoff until
    the broker accepts it. Once half of them are accepted the broker is stopped, with publishes
    under way (no session goes past three quarters of its events before that), and started again
    only once every session has met the outage (or finished). Returns each session's event ids in
    order, and how many attempts failed."""
    sessions = {
        str(uuid.uuid4()): [str(uuid.uuid4()) for _ in range(PER_SESSION)] for _ in range(SESSIONS)
    }
    accepted, failures = 0, 0
    half, stopping, met, never = asyncio.Event(), asyncio.Event(), asyncio.Event(), asyncio.Event()
    outage_met: set[str] = set()

    def meets_outage(session: str) -> None:
        outage_met.add(session)
        if len(outage_met) == SESSIONS:
            met.set()

    async def wait(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(never.wait(), seconds)

    async def session_loop(session: str) -> None:
        nonlocal accepted, failures
        for sequence, event_id in enumerate(sessions[session]):
            if sequence == PER_SESSION * 3 // 4:
                await asyncio.wait_for(stopping.wait(), 60)
            body = {"id": event_id, "event": "message.received", "session": session}
            body["sequence"] = sequence
            backoff = 0.05
            while True:
                try:
                    await publisher.publish(
                        target,
                        subject=render_subject(
                            "wa.{session}.{event}",
                            session_id=session,
                            external_id=None,
                            event="message.received",
                        ),
                        event_id=event_id,
                        body=json.dumps(body).encode(),
                        headers={"webhook-id": event_id},
                        timeout=3,
                    )
                    break
                except BrokerError:
                    failures += 1
                    meets_outage(session)
                    await wait(backoff)
                    backoff = min(backoff * 2, 0.5)
            accepted += 1
            if accepted == SESSIONS * PER_SESSION // 2:
                half.set()
            await wait(0.01)  # the pace of a steady stream of events
        meets_outage(session)  # finished (so it will not meet it any more)

    loops = [asyncio.create_task(session_loop(s)) for s in sessions]
    await asyncio.wait_for(half.wait(), 30)
    stopping.set()
    await asyncio.to_thread(stop)
    await asyncio.wait_for(met.wait(), 30)
    await asyncio.to_thread(start)
    await asyncio.wait_for(asyncio.gather(*loops), 60)
    return sessions, failures


def check_received(sessions: dict[str, list[str]], received: list[dict]) -> int:
    """Every event arrived, in order per session once deduplicated on the event id. Returns how
    many copies the dedupe dropped."""
    seen: set[str] = set()
    order: dict[str, list[str]] = {s: [] for s in sessions}
    for body in received:
        if body["id"] in seen:
            continue
        seen.add(body["id"])
        order[body["session"]].append(body["id"])
    assert order == sessions
    return len(received) - len(seen)


@pytest.mark.asyncio
async def test_nats_restart_mid_burst_loses_and_duplicates_nothing(
    publisher: BrokerPublisher, private_nats: PrivateNats
) -> None:
    await asyncio.to_thread(private_nats.start)
    target = BrokerTarget.of(private_nats.url, subject="wa.{session}.{event}")
    sessions, failures = await burst(publisher, target, private_nats.stop, private_nats.start)
    assert failures > 0, "the restart did not happen in the middle of the burst"
    # The restarted server still knows the ids of its window: an event published before the
    # restart, delivered again, is dropped.
    session, first = next(iter(sessions.items()))
    await publisher.publish(
        target,
        subject=f"wa.{session}.message.received",
        event_id=first[0],
        body=b"{}",
        headers={},
    )
    async with jetstream(private_nats.url) as js:
        messages = await stream_messages(js, DEFAULT_STREAM)
    received = [json.loads(m.data) for m in messages]
    assert all(m.headers["Nats-Msg-Id"] == json.loads(m.data)["id"] for m in messages)
    # The stream's duplicate window dropped every redelivery: not even a copy to dedupe.
    assert check_received(sessions, received) == 0


@pytest.mark.asyncio
async def test_amqp_restart_mid_burst_loses_nothing(
    publisher: BrokerPublisher, private_rabbit: PrivateRabbit
) -> None:
    await asyncio.to_thread(private_rabbit.start)
    async with amqp_channel(private_rabbit.url) as channel:
        exchange = await channel.declare_exchange(
            DEFAULT_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue("consumer", durable=True)
        await queue.bind(exchange, routing_key="wa.#")
    target = BrokerTarget.of(private_rabbit.url)
    sessions, failures = await burst(publisher, target, private_rabbit.stop, private_rabbit.start)
    assert failures > 0, "the restart did not happen in the middle of the burst"
    received = []
    async with amqp_channel(private_rabbit.url) as channel:
        queue = await channel.declare_queue("consumer", durable=True)
        while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.message_id == json.loads(message.body)["id"]
            received.append(json.loads(message.body))
    # Confirms lost with the connection may bring a copy: the consumer dedupes on the id.
    check_received(sessions, received)
