"""Shared by the worker benchmarks: a bench database, worker processes, linking sandbox sessions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")

from tests.processes import Processes, answers, free_port, wait_until  # noqa: E402

NGINX = "/usr/sbin/nginx"


def setup_database() -> None:
    """A fresh database for the run (`gateway_bench`), migrated."""
    import psycopg

    url = urlsplit(os.environ["DATABASE_URL"])
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()


def sandbox_fleet(workdir: Path, lease: int) -> Processes:
    """Sandbox workers whose QR codes never expire during a run."""
    return Processes(
        workdir,
        WORKER_LEASE_SECONDS=str(lease),
        SANDBOX_TIMINGS='{"qr_first": 600, "qr_next": 600}',
        LOG_LEVEL="WARNING",
    )


def count(name: str, status: str) -> int:
    from sessions_app.models import Session

    return Session.objects.filter(worker__name=name, status=status).count()


SCAN_BATCH = 250


def link(worker: str, number: int) -> list:
    """Create `number` sandbox sessions, let `worker` claim them, scan them, wait for snapshots."""
    from sessions_app import services
    from sessions_app.models import Session
    from sessions_app.sandbox import sandbox_control_send

    timeout = max(300, number / 10)  # 5,000 sessions may take minutes on 2 cores
    ids = [services.session_create(external_id=None, engine="sandbox")[0].pk for _ in range(number)]
    wait_until(lambda: count(worker, "scan_qr") == number, timeout, "QR codes")
    # Scanned a batch at a time, as people scan codes: thousands of scans sent at once wait in
    # the channel layer behind the worker's QR rotations, and channels_redis drops what has
    # waited 60 s (its `expiry`).
    for index, session in enumerate(Session.objects.filter(pk__in=ids)):
        sandbox_control_send(session=session, action="scan", phone_number=f"+1555{index:07d}")
        if (index + 1) % SCAN_BATCH == 0:
            wait_until(lambda i=index: count(worker, "connected") > i, timeout, "a batch linked")
    wait_until(lambda: count(worker, "connected") == number, timeout, "links")
    wait_until(
        lambda: Session.objects.filter(pk__in=ids).exclude(snapshot_key="").count() == number,
        timeout,
        "snapshots",
    )
    return ids


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process), from /proc/stat:
    what a run costs beyond the processes it watches (PostgreSQL, the load generator, …)."""
    ticks = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def proc(pid: int) -> tuple[float, float, int]:
    """(RSS MiB, CPU seconds, threads) of a process, from /proc."""
    status = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return (
        int(status["VmRSS"].split()[0]) / 1024,
        ticks / os.sysconf("SC_CLK_TCK"),
        int(status["Threads"]),
    )


class Nginx:
    """nginx answering 200 to everything, logging each request's arrival and `webhook-id`."""

    def __init__(self, prefix: Path) -> None:
        self.prefix, self.port = prefix, free_port()
        self.log = prefix / "arrivals.log"
        temp = " ".join(
            f"{kind}_temp_path {prefix}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            f"pid {prefix}/nginx.pid;\n"
            "user root;\n"
            "worker_processes 1;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            f"  {temp}\n"
            "  log_format arrival '$msec $http_webhook_id';\n"
            f"  access_log {self.log} arrival buffer=256k flush=1s;\n"
            "  keepalive_requests 1000000;\n"
            f"  server {{ listen 127.0.0.1:{self.port}; location / {{ return 200; }} }}\n"
            "}\n"
        )
        self.url = f"http://127.0.0.1:{self.port}"
        command = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
        self.process = subprocess.Popen(
            [*command, "-e", str(prefix / "error.log"), "-g", "daemon off;"]
        )
        wait_until(lambda: self.process.poll() is not None or answers(self.url), 30, "nginx")
        assert self.process.poll() is None, (prefix / "error.log").read_text()

    def arrivals(self, expected: int) -> list[tuple[float, str]]:
        """(time, webhook-id) of every request, in the order they were answered, once the log
        holds `expected` distinct ids (nginx flushes it within a second)."""

        def read() -> list[tuple[float, str]]:
            rows = []
            for line in self.log.read_text().splitlines():
                at, event_id = line.split(" ", 1)
                if event_id != "-":
                    rows.append((float(at), event_id))
            return rows

        return wait_until(
            lambda: (rows := read()) and len({e for _, e in rows}) >= expected and rows,
            30,
            "nginx's access log",
        )

    def clear(self) -> None:
        self.log.write_text("")  # nginx appends (O_APPEND): it writes on from the start

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        self.process.wait(timeout=30)
