"""QR latency: from the engine issuing a QR code to the browser's WebSocket message.

Two processes on the Redis channel layer, as in production: `run_worker` (the sandbox engine; QR
codes rotate every second) and `serve --no-worker` (uvicorn, the WebSocket consumers). Headless
Chromium opens one `/ws/sessions/<id>/?token=…` socket per session, as the link page does, and
records for every pushed `session.qr` message `Date.now()` minus the issue time the sandbox puts
in its codes (same machine, same clock). The path measured: engine event → worker (cache, status
row, commit) → Redis group_send → consumer (uvicorn) → WebSocket → browser. With `--draw` the
page also draws each code as the link page does (gateway/qr-image.js) before it records it: one
tab then draws every session's codes, which a real deployment spreads over its users' browsers.

It also prints the worker's CPU time per code (user + system, from /proc, divided by the codes
the browser got while measuring). Session counts to run: the arguments (default 1 10 25 50 100 250).

`make bench` or
`scripts/run_tests.py --run .venv/bin/python bench/qr_latency.py [--draw] [SESSIONS …]`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from fleet import percentile, setup_database

from tests.processes import Processes, answers, free_port, launch_chromium, wait_until

SAMPLES_PER_SESSION = 12
COLLECT = """([url, sessions, wanted]) => new Promise((resolve) => {
  const samples = [];
  let finished = 0;
  for (const [id, token] of sessions) {
    const socket = new WebSocket(`${url}/ws/sessions/${id}/?token=${token}`);
    let first = true, got = 0;
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "session.qr") return;
      if (first) { first = false; return; }  // the current code on connect, not a push
      if (window.qrImage) qrImage(message.qr.code);  // drawn as the link page draws it
      samples.push(Date.now() - Number(message.qr.code.split(",")[3]));
      if (++got < wanted) return;
      socket.close();
      if (++finished === sessions.length) resolve(samples);
    };
  }
})"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    processes: Processes, url: str, browser, sessions: int, draw: bool
) -> tuple[list[float], float]:
    """The latencies of the pushed codes, and the worker's CPU ms per code meanwhile."""
    from sessions_app.models import Session
    from sessions_app.services import session_create
    from sessions_app.tokens import ws_token_make

    ids = [
        session_create(external_id=f"qr-{sessions}-{n}", engine="sandbox")[0].pk
        for n in range(sessions)
    ]
    wait_until(
        lambda: Session.objects.filter(pk__in=ids, status="scan_qr").count() == sessions,
        120,
        "QR codes",
    )
    # The sockets' origin is the gateway itself; /health's policy (no connect-src) is not the link
    # page's, so the page ignores it.
    page = browser.new_page(bypass_csp=True)
    page.goto(url + "/health")
    for script in ("qrcode.js", "qr-image.js") if draw else ():  # the link page's drawing
        page.add_script_tag(url=f"{url}/static/gateway/{script}")
    worker = processes.processes["worker"].pid
    cpu = cpu_seconds(worker)
    samples = page.evaluate(
        COLLECT,
        [url.replace("http", "ws"), [[str(i), ws_token_make(i)] for i in ids], SAMPLES_PER_SESSION],
    )
    cpu = cpu_seconds(worker) - cpu
    page.close()
    Session.objects.filter(pk__in=ids).update(desired_state="stopped")
    wait_until(  # before the next count: its codes alone
        lambda: not Session.objects.filter(pk__in=ids).exclude(status="stopped").exists(),
        600,
        "the sessions to stop",
    )
    return samples, 1000 * cpu / len(samples)


def main(counts: list[int], draw: bool) -> None:
    from playwright.sync_api import sync_playwright

    setup_database()
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM beside Playwright's sync API
    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        timings = {"qr_first": 1, "qr_next": 1, "qr_rotations": 10_000}
        processes = Processes(Path(tmp), SANDBOX_TIMINGS=json.dumps(timings), LOG_LEVEL="WARNING")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            processes.worker("worker", capacity=1000)
            processes.start("web", "serve", "--no-worker", "--port", str(port))
            wait_until(lambda: answers(url + "/health"), 60, "the web process")
            browser = launch_chromium(playwright)
            for sessions in counts:
                started = time.monotonic()
                samples, cpu = measure(processes, url, browser, sessions, draw)
                rows.append(
                    (
                        sessions,
                        len(samples),
                        percentile(samples, 0.5),
                        percentile(samples, 0.95),
                        max(samples),
                        cpu,
                    )
                )
                took = time.monotonic() - started
                print(f"{sessions} sessions in {took:.0f} s: {rows[-1][2:]}", flush=True)
            browser.close()
        finally:
            processes.stop_all()
    print(
        "\n| sessions rotating QR codes (1/s each) | samples | p50 ms | p95 ms | max ms "
        "| worker CPU ms per code |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for sessions, count, p50, p95, top, cpu in rows:
        print(f"| {sessions} | {count} | {p50:.0f} | {p95:.0f} | {top:.0f} | {cpu:.1f} |")


if __name__ == "__main__":
    counts = [int(n) for n in sys.argv[1:] if n != "--draw"]
    main(counts or [1, 10, 25, 50, 100, 250], draw="--draw" in sys.argv[1:])
