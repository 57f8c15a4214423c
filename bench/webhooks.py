"""Webhook delivery (`make bench`, or `scripts/run_tests.py --run`), against a receiver that is not
the bottleneck: Debian's nginx answering 200 (`return 200`) on loopback, started here in the
foreground in a temporary prefix. One `deliver_webhooks` process:

- backlog: 20,000 events over 500 sessions, written before the dispatcher starts; deliveries a
  second from the first arrival to the last;
- steady: events produced at 300 a second, each in its own transaction; commit → receiver p50 and
  p99.

nginx records each arrival in its access log (`$msec $http_webhook_id`, buffered, flushed every
second): the arrival times for both runs, and the order check. Each event id is looked up in the
database for its session and sequence: every session's events must have arrived complete and in
sequence order (duplicates are counted: at-least-once allows them, none are expected here).

`--broker nats` delivers to a NATS JetStream endpoint on the machine's server instead (the same
runs; the arrival time of each event is when JetStream stored it, the stream's own timestamp).

`--code DIR` runs the dispatcher from another checkout of the project (e.g. a `git worktree` of an
older commit, on the same database schema) beside this one, for a before/after table in one run:

    scripts/run_tests.py --run .venv/bin/python bench/webhooks.py --code /tmp/before
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from fleet import ROOT, Nginx, percentile, setup_database

from tests.processes import Processes, wait_until

PY_SPY = str(Path(sys.executable).parent / "py-spy")
SESSIONS = 500
BACKLOG = 20_000
STEADY_RATE = 300
STEADY_SECONDS = 15
PRODUCERS = 4
T = TypeVar("T")
NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")


class JetStream:
    """A JetStream endpoint as the receiver: its stream holds what arrived, with the time each
    message was stored."""

    def __init__(self) -> None:
        from gateway.outbox import endpoints

        self.stream, self.prefix = f"BENCH{secrets.token_hex(4)}", f"bench{secrets.token_hex(4)}"
        endpoints.endpoint_create(
            url=NATS_URL, stream=self.stream, subject=f"{self.prefix}.{{session}}.{{event}}"
        )

    def _call(self, work: Callable[[Any], Awaitable[T]]) -> T:
        import nats

        async def call() -> T:
            client = await nats.connect(NATS_URL)
            try:
                return await work(client.jetstream(timeout=30))
            finally:
                await client.close()

        return asyncio.run(call())

    def arrivals(self, expected: int) -> list[tuple[float, str]]:
        async def read(js: Any) -> list[tuple[float, str]]:
            info = await js.stream_info(self.stream)
            assert info.state.messages >= expected, f"{info.state.messages} of {expected} stored"
            rows = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                message = await js.get_msg(self.stream, seq)
                rows.append((message.time.timestamp(), message.headers["Nats-Msg-Id"]))
            return rows

        return self._call(read)

    def clear(self) -> None:
        async def purge(js: Any) -> None:
            with contextlib.suppress(Exception):  # made by the first publish
                await js.purge_stream(self.stream)

        self._call(purge)

    def stop(self) -> None:
        async def delete(js: Any) -> None:
            with contextlib.suppress(Exception):
                await js.delete_stream(self.stream)

        self._call(delete)


def produce(sessions: list, count: int, per_second: float | None = None) -> dict[str, float]:
    """`count` events over `sessions`, round robin, and their commit times by event id: at
    `per_second`, each in its own transaction, from PRODUCERS threads (one connection each, as
    the web processes would), else in transactions of 1,000."""
    from django.db import connections, transaction

    from sessions_app.events import outbox_event

    committed: dict[str, float] = {}
    if not per_second:
        for first in range(0, count, 1000):
            with transaction.atomic():
                ids = [
                    outbox_event(sessions[n % len(sessions)], "bench.event", "/hooks", n=n)["id"]
                    for n in range(first, min(count, first + 1000))
                ]
            committed.update(dict.fromkeys(ids, time.time()))
        return committed
    started, numbers = time.monotonic(), iter(range(count))
    lock = threading.Lock()

    def producer() -> None:
        try:
            while True:
                with lock:
                    n = next(numbers, None)
                if n is None:
                    return
                time.sleep(max(0.0, started + n / per_second - time.monotonic()))  # the pace
                with transaction.atomic():
                    body = outbox_event(sessions[n % len(sessions)], "bench.event", "/hooks", n=n)
                committed[body["id"]] = time.time()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=producer) for _ in range(PRODUCERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return committed


def check_order(arrivals: list[tuple[float, str]], expected: int) -> tuple[int, int]:
    """(sessions out of order or incomplete, duplicate arrivals), from the database's session and
    sequence of each arrived event id."""
    from gateway.outbox.models import WebhookDelivery

    of = {
        str(event_id): (str(session), sequence)
        for event_id, session, sequence in WebhookDelivery.objects.values_list(
            "event_id", "session_id", "sequence"
        )
    }
    seen: dict[str, list[int]] = defaultdict(list)
    duplicates, done = 0, set()
    for _, event_id in arrivals:
        if event_id in done:
            duplicates += 1
            continue
        done.add(event_id)
        session, sequence = of[event_id]
        seen[session].append(sequence)
    assert len(done) == expected, f"{len(done)} of {expected} events arrived"
    wrong = sum(1 for sequences in seen.values() if sequences != sorted(sequences))
    return wrong, duplicates


def run(
    code: Path,
    receiver: Nginx | JetStream,
    sessions: list,
    backlog: int,
    workdir: Path,
    profile: Path | None,
) -> dict:
    from gateway.outbox.models import WebhookDelivery

    WebhookDelivery.objects.all().delete()
    receiver.clear()
    produce(sessions, backlog)
    pending = WebhookDelivery.objects.filter(status="pending")  # read off the partial index
    processes = Processes(workdir, LOG_LEVEL="WARNING")
    try:
        command = [sys.executable, str(code / "manage.py"), "deliver_webhooks"]
        dispatcher = processes.run("dispatcher", command)

        def spy(phase: str) -> subprocess.Popen | None:
            """py-spy's collapsed stacks of the dispatcher, for one phase."""
            if not profile:
                return None
            out = Path(f"{profile}.{phase}.txt")
            spy_args = ["record", "--format", "raw", "-r", "100", "-o", str(out)]
            return subprocess.Popen(
                [PY_SPY, *spy_args, "--pid", str(dispatcher.pid)], stdout=subprocess.DEVNULL
            )

        def unspy(process: subprocess.Popen | None) -> None:
            if process:
                process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
                process.wait(timeout=60)

        spying = spy("backlog")
        wait_until(lambda: not pending.exists(), 900, "the backlog delivered")
        assert WebhookDelivery.objects.filter(status="delivered").count() == backlog
        unspy(spying)
        arrivals = receiver.arrivals(backlog)
        wrong, duplicates = check_order(arrivals, backlog)
        times = sorted(at for at, _ in arrivals)
        rate = (len(times) - 1) / (times[-1] - times[0])

        WebhookDelivery.objects.all().delete()
        receiver.clear()
        steady = STEADY_RATE * STEADY_SECONDS
        spying = spy("steady")
        started = time.monotonic()
        committed = produce(sessions, steady, per_second=STEADY_RATE)
        produced = steady / (time.monotonic() - started)
        wait_until(lambda: not pending.exists(), 300, "the steady events")
        unspy(spying)
        assert WebhookDelivery.objects.filter(status="delivered").count() == steady
        arrivals = receiver.arrivals(steady)
        steady_wrong, steady_duplicates = check_order(arrivals, steady)
        first: dict[str, float] = {}
        for at, event_id in arrivals:
            first.setdefault(event_id, at)
        latencies = [(first[e] - at) * 1000 for e, at in committed.items()]
    finally:
        processes.stop_all()
    return {
        "rate": rate,
        "produced": produced,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "wrong": wrong + steady_wrong,
        "duplicates": duplicates + steady_duplicates,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", type=Path, action="append", default=[], help="another checkout")
    parser.add_argument("--backlog", type=int, default=BACKLOG)
    parser.add_argument("--rounds", type=int, default=1, help="runs of each, alternating")
    parser.add_argument("--profile", type=Path, help="py-spy's raw stacks here (per run: .N)")
    parser.add_argument("--broker", choices=["nats"], help="a broker endpoint instead of nginx")
    args = parser.parse_args()
    codes = [*args.code, ROOT]
    with tempfile.TemporaryDirectory() as tmp:
        receiver: Nginx | JetStream
        if args.broker:
            os.environ["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the broker is on loopback
            setup_database()
            receiver = JetStream()
        else:
            receiver = Nginx(Path(tmp))
            os.environ["BACKEND_URL"] = receiver.url
            # Signed as in production (the signature is part of each delivery's cost).
            secret = base64.b64encode(secrets.token_bytes(32)).decode()
            os.environ["WEBHOOK_SECRET"] = "whsec_" + secret
        try:
            if not args.broker:
                setup_database()
            from sessions_app.models import Session

            sessions = [Session.objects.create(engine="sandbox") for _ in range(SESSIONS)]
            rows = []
            for round_ in range(args.rounds):
                for index, code in enumerate(codes):
                    workdir = Path(tmp) / f"run-{round_}-{index}"
                    workdir.mkdir()
                    profile = args.profile and Path(f"{args.profile}.{round_}.{index}")
                    result = run(code, receiver, sessions, args.backlog, workdir, profile)
                    rows.append((round_ + 1, code, result))
                    print(f"run {round_ + 1} {code}: {result}", file=sys.stderr, flush=True)
        finally:
            receiver.stop()
    print(f"\nreceiver: {'NATS JetStream' if args.broker else 'nginx'}")
    print(
        f"| run | code | backlog {args.backlog:,} / {SESSIONS} sessions (deliveries/s) "
        f"| steady: produced/s (target {STEADY_RATE}) | commit → receiver p50 ms | p99 ms "
        "| sessions out of order "
        "| duplicates |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for round_, code, r in rows:
        name = "this checkout" if code == ROOT else str(code)
        print(
            f"| {round_} | {name} | {r['rate']:.0f} | {r['produced']:.0f} | {r['p50']:.0f} "
            f"| {r['p99']:.0f} "
            f"| {r['wrong']} | {r['duplicates']} |"
        )


if __name__ == "__main__":
    main()
