"""Message throughput and latency (`make bench`, or `scripts/run_tests.py --run`).

1. Accepting: POST /sessions/{id}/messages through gunicorn (2 processes, as in production) from 1
   and 8 concurrent clients, next to GET /sessions/{id} (a trivial authenticated endpoint) on the
   same server in the same run: the ratio is what accepting a message costs beyond auth + routing.
2. Accept → `sent`: one `run_worker` with pacing off; messages queued open loop (through the
   service the API calls) to one session at 50 a second, then to 100 sessions at 5 a second each
   (`MESSAGES_BENCH_SESSIONS`, `MESSAGES_BENCH_SECONDS`); `sent_at - created_at` per message and
   the worker's CPU per message. `--queue-only` skips part 1. With `--dispatcher-apart` the
   worker delivers no webhooks (WORKER_DELIVERS_WEBHOOKS off) and one `deliver_webhooks`
   process delivers them all (its CPU per message is printed too).
3. Inbound: messages injected on the sandbox phone as fast as the control channel takes them;
   messages per second until each is stored with its `message.received` outbox row.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from fleet import Nginx, link, machine_busy, percentile, proc, setup_database

from tests.processes import Processes, answers, free_port, wait_until

SESSIONS = int(os.environ.get("MESSAGES_BENCH_SESSIONS", "100"))
SECONDS = float(os.environ.get("MESSAGES_BENCH_SECONDS", "10"))

NO_PACING = {
    "SEND_INTERVAL_MIN_SECONDS": "0",
    "SEND_INTERVAL_MAX_SECONDS": "0",
    "SEND_MAX_PER_MINUTE": "0",
    "API_THROTTLE_RATE": "off",
    # required with a backend in production, in the Standard Webhooks form
    "WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "LOG_LEVEL": "WARNING",
}


def hammer(url: str, key: str, clients: int, total: int, body: dict | None) -> float:
    """Requests per second for `total` requests over `clients` threads (keep-alive each)."""
    per_client = total // clients
    errors: list[str] = []

    def run() -> None:
        with httpx.Client(headers={"X-API-Key": key}, timeout=30) as client:
            for _ in range(per_client):
                response = client.post(url, json=body) if body is not None else client.get(url)
                if response.status_code >= 300:
                    errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=run) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{len(errors)} errors, e.g. {errors[0]}")
    return per_client * clients / elapsed


def accept_rates(processes: Processes, key: str) -> list[tuple]:
    from sessions_app.models import Session

    session = Session.objects.create(
        engine="sandbox", status="connected", desired_state="stopped", jid="1@s.whatsapp.net"
    )
    # Running and linked as far as the API can tell; no worker runs in this part.
    Session.objects.filter(pk=session.pk).update(desired_state="running")
    port = free_port()
    web = processes.run(
        "gunicorn",
        [sys.executable, "-m", "gunicorn", "gateway.wsgi", "-w", "2", "-b", f"127.0.0.1:{port}"],
    )
    base = f"http://127.0.0.1:{port}/api/v1/sessions/{session.pk}"
    try:
        wait_until(
            lambda: answers(f"http://127.0.0.1:{port}/health") or web.poll() is not None,
            60,
            "gunicorn",
        )
        if web.poll() is not None:
            raise SystemExit("gunicorn exited:\n" + processes.log("gunicorn")[-3000:])
        hammer(base, key, 2, 100, None)  # warm both processes up
        rows = []
        for clients, total in ((1, 500), (8, 2000)):
            trivial = hammer(base, key, clients, total, None)
            accept = hammer(
                base + "/messages", key, clients, total, {"to": "+4915123456789", "text": "bench"}
            )
            rows.append((clients, trivial, accept))
        return rows
    finally:
        web.terminate()
        web.wait(30)
        del processes.processes["gunicorn"]
        Session.objects.filter(pk=session.pk).delete()


def paced_latency(session_ids: list[str], per_second: float, seconds: float) -> tuple:
    """Messages queued through the service (what the API calls after validating), open loop at
    `per_second` a session, round robin: accept → `sent` (`sent_at - created_at`) of each, the
    rate actually offered, and how many were queued. The API's own cost is measured apart
    (`bench/http_api.py`, and part 1 here): this is the queue, from the accepting commit on."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from messaging.models import Message
    from messaging.services import message_send
    from sessions_app.models import Session

    sessions = list(Session.objects.filter(pk__in=session_ids))
    total = round(len(sessions) * per_second * seconds)
    interval = 1 / (len(sessions) * per_second)

    def send(n: int) -> str:
        try:
            return str(
                message_send(
                    session=sessions[n % len(sessions)],
                    to="4915123456789@s.whatsapp.net",
                    type="text",
                    text=f"m{n}",
                    fingerprint="",
                ).message.pk
            )
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for n in range(total):
            delay = started + n * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, n))
        ids = [future.result() for future in futures]
    offered = total / (time.perf_counter() - started)
    wait_until(
        lambda: not Message.objects.filter(pk__in=ids, status__in=["queued", "sending"]).exists(),
        300,
        "every message sent",
    )
    latencies = [
        (m.sent_at - m.created_at).total_seconds() * 1000
        for m in Message.objects.filter(pk__in=ids).exclude(sent_at=None)
    ]
    return latencies, offered, total


def inbound_rate(session_id: str, count: int) -> tuple[float, float]:
    """Messages a second: injected (straight onto the channel layer), and stored."""
    from gateway.outbox.models import WebhookDelivery
    from sessions_app.models import Session
    from sessions_app.sandbox import sandbox_control_send

    session = Session.objects.get(pk=session_id)
    started = time.perf_counter()
    for n in range(count):
        sandbox_control_send(
            session=session, action="receive", sender_phone="+4915100000002", text=f"in {n}"
        )
    injected = count / (time.perf_counter() - started)
    wait_until(
        lambda: WebhookDelivery.objects.filter(event_type="message.received").count() >= count,
        300,
        "every inbound message stored",
    )
    return injected, count / (time.perf_counter() - started)


def main() -> None:
    setup_database()
    from rest_framework_api_key.models import APIKey

    key = APIKey.objects.create_key(name="bench")[1]
    with tempfile.TemporaryDirectory() as tmp:
        # Every status change is a webhook to a backend that answers at once (the worker's own
        # dispatcher delivers them: part of what a message costs the worker).
        receiver = Nginx(Path(tmp))
        processes = Processes(
            Path(tmp),
            SANDBOX_TIMINGS=json.dumps({"qr_first": 600}),
            BACKEND_URL=receiver.url,
            **NO_PACING,
        )
        try:
            rates = [] if "--queue-only" in sys.argv else accept_rates(processes, key)
            apart = "--dispatcher-apart" in sys.argv
            worker = processes.worker(
                "worker", capacity=SESSIONS + 1, WORKER_DELIVERS_WEBHOOKS=str(not apart)
            )
            watched = [worker]
            if apart:
                watched.append(processes.start("dispatcher", "deliver_webhooks"))
            ids = link("worker", SESSIONS + 1)
            runs = []
            for label, chosen, rate in (
                ("one session, 50/s", ids[:1], 50.0),
                (f"{SESSIONS} sessions, 5/s each", ids[1:], 5.0),
            ):
                cpu, busy, began = [proc(p.pid)[1] for p in watched], machine_busy(), time.time()
                latencies, offered, total = paced_latency(chosen, rate, SECONDS)
                spent = [proc(p.pid)[1] - c for p, c in zip(watched, cpu, strict=True)]
                cores = (machine_busy() - busy) / (time.time() - began)
                runs.append((label, latencies, offered, total, spent, cores))
            injected, inbound = inbound_rate(ids[0], 500)
        except Exception:
            print(processes.log("worker")[-3000:], file=sys.stderr)
            raise
        finally:
            processes.stop_all()
            receiver.stop()
    if rates:
        print("\n| clients | GET session (req/s) | POST message (req/s) | ratio |")
        print("|---:|---:|---:|---:|")
        for clients, trivial, accept in rates:
            print(f"| {clients} | {trivial:.0f} | {accept:.0f} | {accept / trivial:.2f} |")
    dispatcher = " | dispatcher CPU ms/message" if "--dispatcher-apart" in sys.argv else ""
    print(
        "\n| accept → sent, pacing off | offered/s | sent | p50 ms | p95 ms | p99 ms | max ms "
        f"| worker CPU ms/message{dispatcher} | machine's cores busy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if dispatcher else ""))
    for label, latencies, offered, total, spent, cores in runs:
        cpu = " | ".join(f"{1000 * s / total:.2f}" for s in spent)
        print(
            f"| {label} | {offered:.0f} | {len(latencies)}/{total} "
            f"| {percentile(latencies, 0.5):.1f} | {percentile(latencies, 0.95):.1f} "
            f"| {percentile(latencies, 0.99):.1f} | {max(latencies):.0f} | {cpu} "
            f"| {cores:.2f} of {os.cpu_count()} |"
        )
    print(
        f"\ninbound: {injected:.0f} messages/s injected; {inbound:.0f} messages/s stored, each "
        "with its message.received outbox row"
    )


if __name__ == "__main__":
    main()
