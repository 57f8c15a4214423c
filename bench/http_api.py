"""The HTTP request path under wrk (`make bench`, or `scripts/run_tests.py --run`).

The real topology on the test services: the web role's server with 2 processes (gunicorn's sync
workers, as `deploy/entrypoint.sh web` runs it; then granian in WSGI mode on the same app, to
compare), one `run_worker` with one linked sandbox session, pacing and throttling off. wrk (2
threads, 16 connections, HTTP_BENCH_SECONDS each, 8 unless told) against `GET /health`,
`GET /api/v1/workers`, `GET /api/v1/sessions/{id}` and `POST /api/v1/sessions/{id}/messages`
(text), each as a ratio to `/health` on the same server in the same run: the machine is shared and
noisy, the ratios are what compares.

For the POST, after wrk: the messages that reached `sent` against those accepted (once the worker
has drained the queue), and the accept latency at half the POST's wrk rate, from a paced client of
its own (wrk2 is not in Debian): asyncio + httpx sending at a fixed rate, open loop (each request
is timed from when it was due, so a slow answer cannot hide the ones queued behind it).

Debian's `wrk` is installed when missing (scripts/run_tests.py's DEBIAN_PACKAGES, as root).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fleet import percentile, setup_database
from messages import NO_PACING, link

from scripts.run_tests import ensure_debian_packages
from tests.processes import Processes, answers, free_port, wait_until

SECONDS = int(os.environ.get("HTTP_BENCH_SECONDS", "8"))
TO = "+4915123456789"
# wrk's report as one JSON line (its Lua `done` hook): requests, errors, latency in µs.
REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "seconds": %f, "errors": %d, "mean": %f, "p99": %f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency.mean, latency:percentile(99)))
end
"""


def servers(port: int) -> dict[str, list[str]]:
    bind = f"127.0.0.1:{port}"
    return {
        "gunicorn": [sys.executable, "-m", "gunicorn", "gateway.wsgi", "-w", "2", "-b", bind],
        "granian": [
            # One blocking thread per process, like a sync worker: its default is many threads
            # (each with its own database connection: PostgreSQL ran out of connections).
            *(sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "2"),
            *("--blocking-threads", "1"),
            *("--host", "127.0.0.1", "--port", str(port), "--no-ws", "gateway.wsgi:application"),
        ],
    }


def wrk(url: str, key: str, script: Path, body: dict | None = None) -> dict:
    lua = REPORT
    if body is not None:
        lua += f"wrk.method = 'POST'\nwrk.body = {json.dumps(json.dumps(body))}\n"
        lua += "wrk.headers['Content-Type'] = 'application/json'\n"
    script.write_text(lua)
    command = ["wrk", "-t2", "-c16", f"-d{SECONDS}s", "--timeout", "10s", "-s", str(script)]
    command += ["-H", f"X-API-Key: {key}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("WRK "))
    report = json.loads(line[4:])
    return {**report, "rate": report["requests"] / report["seconds"]}


async def paced(url: str, key: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Accept latencies (ms) of POSTs sent at `rate` a second, each timed from when it was due;
    and how many were not accepted."""
    latencies: list[float] = []
    refused = []
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(headers={"X-API-Key": key}, limits=limits, timeout=30) as client:

        async def one(due: float, n: int) -> None:
            response = await client.post(url, json={"to": TO, "text": f"paced {n}"})
            if response.status_code != 202:
                refused.append(response.status_code)
            latencies.append((time.perf_counter() - due) * 1000)

        loop_start, tasks = time.perf_counter(), []
        for n in range(int(rate * seconds)):
            due = loop_start + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(due, n)))
        await asyncio.gather(*tasks)
    return latencies, len(refused)


def drained(session_id: str) -> tuple[int, int, float]:
    """(accepted, sent, seconds to drain) once nothing of the session is queued or sending."""
    from messaging.models import Message

    started = time.perf_counter()
    messages = Message.objects.filter(session_id=session_id)
    wait_until(
        lambda: not messages.filter(status__in=["queued", "sending"]).exists(), 600, "the queue"
    )
    sent = messages.exclude(sent_at=None).count()  # sent, and maybe delivered or read since
    return messages.count(), sent, time.perf_counter() - started


def measure(processes: Processes, name: str, key: str, session_id: str, tmp: Path) -> dict:
    port = free_port()
    server = processes.run(name, servers(port)[name])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: answers(f"{base}/health") or server.poll() is not None, 180, f"{name} to answer"
        )
        if server.poll() is not None:
            raise SystemExit(f"{name} exited:\n" + processes.log(name)[-3000:])
        script = tmp / "wrk.lua"
        session = f"{base}/api/v1/sessions/{session_id}"
        rows = {}
        for label, url in (
            ("GET /health", f"{base}/health"),
            ("GET /api/v1/workers", f"{base}/api/v1/workers"),
            ("GET /api/v1/sessions/{id}", session),
        ):
            wrk(url, key, script)  # warm up every process on this path
            rows[label] = wrk(url, key, script)
        post = f"{session}/messages"
        rows["POST /api/v1/sessions/{id}/messages"] = wrk(
            post, key, script, {"to": TO, "text": "b"}
        )
        accepted, sent, drain = drained(session_id)
        half = rows["POST /api/v1/sessions/{id}/messages"]["rate"] / 2
        latencies, refused = asyncio.run(paced(post, key, half, SECONDS))
        total_accepted, total_sent, _ = drained(session_id)
        return {
            "rows": rows,
            "accepted": accepted,
            "sent": sent,
            "drain": drain,
            "half": half,
            "paced": latencies,
            "refused": refused,
            "total": (total_accepted, total_sent),
        }
    finally:
        server.terminate()
        server.wait(30)
        del processes.processes[name]


def table(name: str, result: dict) -> None:
    rows = result["rows"]
    health = rows["GET /health"]["rate"]
    print(f"\n{name}, 2 processes; wrk -t2 -c16 -d{SECONDS}s\n", flush=True)
    print("| request | req/s | mean latency ms | p99 ms | errors | ratio to `/health` |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, row in rows.items():
        print(
            f"| `{label}` | {row['rate']:,.0f} | {row['mean'] / 1000:.1f} | "
            f"{row['p99'] / 1000:.1f} | {row['errors']} | {row['rate'] / health:.2f} |"
        )
    latencies = result["paced"]
    print(
        f"\nPOST under wrk: {result['accepted']} accepted, {result['sent']} reached `sent` "
        f"(queue drained {result['drain']:.1f} s after wrk ended). Paced at half that rate "
        f"({result['half']:.0f}/s for {SECONDS} s, open loop): accept p50 "
        f"{percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
        f"({result['refused']} not accepted); "
        f"all sent: {result['total'][1]} of {result['total'][0]}.",
        flush=True,
    )


def main() -> None:
    ensure_debian_packages()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed")
    setup_database()
    from rest_framework_api_key.models import APIKey

    key = APIKey.objects.create_key(name="bench")[1]
    only = os.environ.get("HTTP_BENCH_SERVERS", "gunicorn,granian").split(",")
    with tempfile.TemporaryDirectory() as tmp:
        processes = Processes(Path(tmp), SANDBOX_TIMINGS=json.dumps({"qr_first": 600}), **NO_PACING)
        try:
            processes.worker("worker", capacity=10)
            port = free_port()
            processes.run("web", servers(port)["gunicorn"])  # to link the session
            wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), 180, "the web process")
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30
            ) as api:
                session_id = link(processes, api)
            processes.processes.pop("web").terminate()
            for name in only:  # each table as soon as it is measured
                table(name, measure(processes, name, key, session_id, Path(tmp)))
        finally:
            processes.stop_all()


if __name__ == "__main__":
    main()
