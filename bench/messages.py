"""Message throughput and latency (`make bench`, or `scripts/run_tests.py --run`).

1. Accepting: POST /sessions/{id}/messages through gunicorn (2 processes, as in production) from 1
   and 8 concurrent clients, next to GET /sessions/{id} (a trivial authenticated endpoint) on the
   same server in the same run: the ratio is what accepting a message costs beyond auth + routing.
2. Accept → `sent`: one `run_worker` with pacing off; messages posted one at a time, 20 a second;
   `sent_at - created_at` per message.
3. Inbound: messages injected on the sandbox phone as fast as the control channel takes them;
   messages per second until each is stored with its `message.received` outbox row.
"""

from __future__ import annotations

import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from fleet import percentile, setup_database

from tests.processes import Processes, answers, free_port, wait_until

NO_PACING = {
    "SEND_INTERVAL_MIN_SECONDS": "0",
    "SEND_INTERVAL_MAX_SECONDS": "0",
    "SEND_MAX_PER_MINUTE": "0",
    "API_THROTTLE_RATE": "off",
    "BACKEND_URL": "http://127.0.0.1:9",  # outbox rows are written; nobody takes them
    "WEBHOOK_SECRET": secrets.token_urlsafe(32),  # required with a backend in production
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


def link(processes: Processes, api: httpx.Client) -> str:
    from sessions_app.models import Session

    session_id = api.post("/api/v1/sessions", json={"engine": "sandbox"}).json()["id"]
    wait_until(
        lambda: Session.objects.filter(pk=session_id, status="scan_qr").exists(), 60, "a QR code"
    )
    api.post(f"/api/v1/sandbox/sessions/{session_id}/scan", json={"phone_number": "+15550001"})
    wait_until(
        lambda: Session.objects.filter(pk=session_id, status="connected").exists(), 60, "linked"
    )
    return session_id


def send_latency(api: httpx.Client, session_id: str, count: int) -> list[float]:
    from messaging.models import Message

    ids = []
    for n in range(count):
        response = api.post(
            f"/api/v1/sessions/{session_id}/messages",
            json={"to": "+4915123456789", "text": f"m{n}"},
        )
        ids.append(response.json()["id"])
        time.sleep(0.05)
    wait_until(
        lambda: not Message.objects.filter(pk__in=ids, status__in=["queued", "sending"]).exists(),
        120,
        "every message sent",
    )
    return [
        (m.sent_at - m.created_at).total_seconds() * 1000
        for m in Message.objects.filter(pk__in=ids).exclude(sent_at=None)
    ]


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
        processes = Processes(Path(tmp), SANDBOX_TIMINGS=json.dumps({"qr_first": 600}), **NO_PACING)
        try:
            rates = accept_rates(processes, key)
            port = free_port()
            processes.worker("worker", capacity=10)
            processes.start("web", "serve", "--no-worker", "--port", str(port))
            wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), 60, "the web process")
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30
            ) as api:
                session_id = link(processes, api)
                latencies = send_latency(api, session_id, 300)
                injected, inbound = inbound_rate(session_id, 500)
        finally:
            processes.stop_all()
    print("\n| clients | GET session (req/s) | POST message (req/s) | ratio |")
    print("|---:|---:|---:|---:|")
    for clients, trivial, accept in rates:
        print(f"| {clients} | {trivial:.0f} | {accept:.0f} | {accept / trivial:.2f} |")
    print("\n| accept → sent, pacing off | messages | p50 ms | p95 ms | p99 ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| one session, 20/s | {len(latencies)} | {percentile(latencies, 0.5):.0f} | "
        f"{percentile(latencies, 0.95):.0f} | {percentile(latencies, 0.99):.0f} | "
        f"{statistics.mean(latencies):.0f} |"
    )
    print(
        f"\ninbound: {injected:.0f} messages/s injected; {inbound:.0f} messages/s stored, each "
        "with its message.received outbox row"
    )


if __name__ == "__main__":
    main()
