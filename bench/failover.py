"""Failover and handover times of workers: `make bench` (or `scripts/run_tests.py --run`).

For 50 and 200 linked sandbox sessions:
- failover: worker a is SIGKILLed with worker b running; time from the kill until each session is
  connected again on b (through its encrypted snapshot: each worker has its own directory);
- handover: worker b gets SIGTERM with worker c running; time until each is connected on c.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

from fleet import count, link, percentile, sandbox_fleet, setup_database, wait_until

LEASE = 10


def reconnect_times(ids: list, worker: str, since: float) -> list[float]:
    from sessions_app.models import SessionEvent

    times = {}
    for session_id, at in SessionEvent.objects.filter(
        session_id__in=ids, to_status="connected", worker__name=worker
    ).values_list("session_id", "created_at"):
        times[session_id] = min(times.get(session_id, 1e18), at.timestamp() - since)
    return list(times.values())


def run(sessions: int) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fleet = sandbox_fleet(Path(tmp), LEASE)
        try:
            first = fleet.worker(f"a{sessions}", capacity=2000)
            ids = link(f"a{sessions}", sessions)
            fleet.worker(f"b{sessions}", capacity=2000)
            killed = time.time()
            os.kill(first.pid, signal.SIGKILL)
            wait_until(
                lambda: (
                    count(f"b{sessions}", "connected") == sessions
                    and len(reconnect_times(ids, f"b{sessions}", killed)) == sessions
                ),
                LEASE + 300,
                "failover",
            )
            times = reconnect_times(ids, f"b{sessions}", killed)
            rows.append(
                (
                    "failover (SIGKILL)",
                    sessions,
                    percentile(times, 0.5),
                    percentile(times, 0.95),
                    max(times),
                )
            )
            fleet.worker(f"c{sessions}", capacity=2000)
            time.sleep(2)  # let c register before b goes (a bench, not a test)
            stopped = time.time()
            fleet.processes[f"b{sessions}"].send_signal(signal.SIGTERM)
            wait_until(
                lambda: len(reconnect_times(ids, f"c{sessions}", stopped)) == sessions,
                300,
                "handover",
            )
            times = reconnect_times(ids, f"c{sessions}", stopped)
            rows.append(
                (
                    "handover (SIGTERM)",
                    sessions,
                    percentile(times, 0.5),
                    percentile(times, 0.95),
                    max(times),
                )
            )
        finally:
            fleet.stop_all()
            from sessions_app.models import Session

            Session.objects.all().delete()  # the next round starts from nothing
    return rows


def main() -> None:
    setup_database()
    print(
        f"WORKER_LEASE_SECONDS={LEASE}, sandbox engine, PostgreSQL + Redis + SeaweedFS S3, "
        "each worker with its own directory\n"
    )
    print("| event | sessions | p50 (s) | p95 (s) | all (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for sessions in (50, 200):
        for name, number, p50, p95, worst in run(sessions):
            print(f"| {name} | {number} | {p50:.1f} | {p95:.1f} | {worst:.1f} |", flush=True)


if __name__ == "__main__":
    main()
