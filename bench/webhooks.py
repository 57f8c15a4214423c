"""Webhook delivery (`make bench`, or `scripts/run_tests.py --run`): deliveries a second from a
backlog with 1 and 2 dispatcher processes (`deliver_webhooks`), and the latency from the change's
commit to the receiver with events produced at a steady 100 a second. The receiver is a local
threaded HTTP server answering 200 at once."""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fleet import percentile, setup_database

from tests.processes import Processes, wait_until

SESSIONS = 50
BACKLOG = 2000
STEADY = 500


class Receiver:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.times: list[float] = []
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                at = datetime.fromisoformat(body["occurred_at"]).timestamp()
                receiver.latencies.append((time.time() - at) * 1000)
                receiver.count += 1
                receiver.times.append(time.perf_counter())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def produce(sessions: list, count: int, per_second: float | None = None) -> None:
    from django.db import transaction

    from sessions_app.events import outbox_event

    started = time.monotonic()
    for n in range(count):
        with transaction.atomic():
            outbox_event(sessions[n % len(sessions)], "bench.event", "/api/webhooks/bench", n=n)
        if per_second:
            time.sleep(max(0.0, started + (n + 1) / per_second - time.monotonic()))


def main() -> None:
    receiver = Receiver()
    os.environ["BACKEND_URL"] = receiver.url
    os.environ["WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    setup_database()
    from gateway.outbox.models import WebhookDelivery
    from sessions_app.models import Session

    sessions = [Session.objects.create(engine="sandbox") for _ in range(SESSIONS)]
    rows = []
    for dispatchers in (1, 2):
        WebhookDelivery.objects.all().delete()
        receiver.count, receiver.latencies, receiver.times = 0, [], []
        produce(sessions, BACKLOG)
        with tempfile.TemporaryDirectory() as tmp:
            processes = Processes(Path(tmp), LOG_LEVEL="WARNING")
            try:
                for n in range(dispatchers):
                    processes.start(f"d{n}", "deliver_webhooks")
                wait_until(lambda: receiver.count >= BACKLOG, 300, "the backlog delivered")
                # From the first delivery to the last: the processes' start-up is not counted.
                rate = (BACKLOG - 1) / (receiver.times[BACKLOG - 1] - receiver.times[0])
                receiver.latencies = []
                produce(sessions, STEADY, per_second=100)
                wait_until(lambda: receiver.count >= BACKLOG + STEADY, 120, "the steady events")
                latencies = receiver.latencies
            finally:
                processes.stop_all()
        rows.append((dispatchers, rate, percentile(latencies, 0.5), percentile(latencies, 0.95)))
    print("\n| dispatchers | backlog drained (deliveries/s) | commit → receiver p50 ms | p95 ms |")
    print("|---:|---:|---:|---:|")
    for dispatchers, rate, p50, p95 in rows:
        print(f"| {dispatchers} | {rate:.0f} | {p50:.0f} | {p95:.0f} |")


if __name__ == "__main__":
    main()
