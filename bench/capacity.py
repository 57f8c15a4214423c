"""Memory and CPU of one worker holding 1,000 linked sandbox sessions: `make bench`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from fleet import link, sandbox_fleet, setup_database, wait_until

SESSIONS = 1000
WINDOW = 30.0


def proc(pid: int) -> tuple[float, float, int]:
    """(RSS MiB, CPU seconds, threads) of a process, from /proc."""
    status = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    import os

    return (
        int(status["VmRSS"].split()[0]) / 1024,
        ticks / os.sysconf("SC_CLK_TCK"),
        int(status["Threads"]),
    )


def main() -> None:
    setup_database()
    with tempfile.TemporaryDirectory() as tmp:
        fleet = sandbox_fleet(Path(tmp), 30)
        try:
            worker = fleet.worker("capacity", capacity=2000)
            started = time.monotonic()
            from workers.models import Worker

            wait_until(lambda: Worker.objects.filter(name="capacity").exists(), 60, "the worker")
            time.sleep(2)  # settled after start-up (a bench, not a test)
            idle_rss, _, _ = proc(worker.pid)
            link("capacity", SESSIONS)
            linked_in = time.monotonic() - started
            rss, cpu_before, threads = proc(worker.pid)
            time.sleep(WINDOW)  # steady state: lease renewals, heartbeats, snapshot checks
            _, cpu_after, _ = proc(worker.pid)
        finally:
            fleet.stop_all()
    print(
        f"One worker, {SESSIONS} sandbox sessions, WORKER_LEASE_SECONDS=30, "
        "SNAPSHOT_INTERVAL_SECONDS=60\n"
    )
    print("| measure | value |")
    print("| --- | ---: |")
    print(f"| RSS before sessions (MiB) | {idle_rss:.0f} |")
    print(f"| RSS with {SESSIONS} sessions (MiB) | {rss:.0f} |")
    print(f"| per session (KiB) | {(rss - idle_rss) * 1024 / SESSIONS:.0f} |")
    print(f"| threads | {threads} |")
    print(
        f"| CPU in steady state (% of one core) | {100 * (cpu_after - cpu_before) / WINDOW:.1f} |"
    )
    print(f"| time to claim, show QR, link and snapshot all (s) | {linked_in:.0f} |")


if __name__ == "__main__":
    main()
