"""Memory and CPU of one worker holding 5,000 linked sandbox sessions (`CAPACITY_SESSIONS`), and
the time to claim, link and snapshot them all: `make bench`."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from fleet import link, proc, sandbox_fleet, setup_database, wait_until

SESSIONS = int(os.environ.get("CAPACITY_SESSIONS", "5000"))
WINDOW = 30.0


def main() -> None:
    setup_database()
    with tempfile.TemporaryDirectory() as tmp:
        fleet = sandbox_fleet(Path(tmp), 30)
        try:
            worker = fleet.worker("capacity", capacity=SESSIONS)
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
            from sessions_app.models import Session, SessionEvent

            # What a worker that cannot keep up shows: its own leases running out under it
            # (self-fenced, claimed again) and sessions that failed.
            log = (Path(tmp) / "capacity.log").read_text(errors="replace")
            fenced = log.count("lease about to expire unrenewed") + log.count("lease not renewed")
            claimed = SessionEvent.objects.filter(to_status="starting").count()
            failed = Session.objects.filter(status="failed").count()
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
    print(f"| starts (claims) for {SESSIONS} sessions | {claimed} |")
    print(f"| leases that ran out under the worker (self-fenced) | {fenced} |")
    print(f"| sessions failed | {failed} |")


if __name__ == "__main__":
    main()
