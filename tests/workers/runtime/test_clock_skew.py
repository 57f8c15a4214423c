"""Workers whose clocks are minutes wrong: libfaketime (Debian's `faketime`, which `make test`
installs) moves every clock of their processes, the wall clock and the monotonic one, 10 minutes
ahead or behind, under real worker processes (PostgreSQL, Redis, the sandbox engine).

Leases, heartbeats, the dead-worker sweep, webhook retries and the codes the API shows are judged by
the database's clock, Redis's expiry or a clock of one process alone, never by comparing two
processes' clocks: so no session is taken over early and none waits past its lease for a new owner,
a worker behind is not declared dead as it starts, a retry waits what it was told to, and a QR or
pairing code a worker shows is shown by the API.
"""

from __future__ import annotations

import glob
import json
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pytest

from gateway.outbox.models import WebhookDelivery
from sessions_app.models import Session
from tests.history import check_history
from tests.processes import Processes, wait_until
from tests.workers.runtime.test_faults import LEASE, heartbeats_for, held_by, link_all
from tests.workers.runtime.test_redis_faults import linking, pair_code, qr_status
from tests.workers.runtime.test_webhooks import Receiver, new_secret
from workers.models import Worker

pytestmark = pytest.mark.django_db(transaction=True)
SKEW = 600  # seconds
LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


def skewed(seconds: int) -> dict[str, str]:
    """The environment that sets a process's clocks `seconds` off (libfaketime's relative offset:
    they run at the right rate from there)."""
    assert LIBFAKETIME, "libfaketime is missing (Debian's faketime package; make test installs it)"
    return {"LD_PRELOAD": LIBFAKETIME[0], "FAKETIME": f"{seconds:+d}"}


def clock_of(workers: Processes, name: str) -> float:
    """How far worker `name`'s clock is from ours, in seconds, by the time on its log lines: a
    libfaketime that did not take would leave these tests proving nothing."""

    def logged() -> str | None:
        return next((line for line in workers.log(name).splitlines() if line[:1] == "{"), None)

    first = json.loads(wait_until(logged, 30, f"a log line of {name}"))
    written = datetime.strptime(first["time"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return written - time.time()


def started_skewed(workers: Processes, name: str, seconds: int) -> None:
    """Worker `name` with its clocks `seconds` off, checked."""
    workers.worker(name, **skewed(seconds))
    assert abs(clock_of(workers, name) - seconds) < 60


@pytest.fixture
def receiver():
    backend = Receiver(new_secret())
    yield backend
    backend.close()


@pytest.fixture
def workers(tmp_path: Path, test_database_url: str, receiver: Receiver):
    fleet = Processes(
        tmp_path,
        DATABASE_URL=test_database_url,
        SANDBOX_TIMINGS=json.dumps({"qr_first": 120, "qr_next": 120}),
        WORKER_LEASE_SECONDS=str(LEASE),
        BACKEND_URL=f"http://127.0.0.1:{receiver.port}",
        WEBHOOK_SECRET=receiver.secret,
    )
    yield fleet
    fleet.stop_all()


def takeover(workers: Processes, doomed: str, heir: str, ids: list) -> float:
    """SIGKILL worker `doomed`; seconds until `heir` holds all of `ids` connected."""
    workers.processes[doomed].kill()
    killed = time.monotonic()
    wait_until(lambda: held_by(heir, ids, "connected"), LEASE + 30, f"{heir} to take over")
    return time.monotonic() - killed


def test_no_session_is_taken_over_early_or_late_by_a_clock_minutes_wrong(
    workers: Processes,
) -> None:
    started_skewed(workers, "behind", -SKEW)
    ids = link_all(workers, "behind", 3)
    started_skewed(workers, "ahead", SKEW)
    # Its clock 20 minutes past the holder's, the worker ahead sees its leases as they are.
    heartbeats_for("ahead", 2 * LEASE)
    assert Worker.objects.get(name="behind").status == "active"  # not declared dead
    assert held_by("behind", ids, "connected")
    epochs = set(Session.objects.filter(pk__in=ids).values_list("lease_epoch", flat=True))
    assert epochs == {1}  # never claimed again

    # The holder behind dies: its leases run out on time by the database's clock.
    first = takeover(workers, "behind", "ahead", ids)
    assert first < LEASE + 10
    # And the other way round: a worker behind takes over from one ahead on time, not 20 min late.
    started_skewed(workers, "late", -SKEW)
    heartbeats_for("late", LEASE)
    second = takeover(workers, "ahead", "late", ids)
    assert second < LEASE + 10
    print(f"takeovers: from the worker behind {first:.1f}s, from the one ahead {second:.1f}s")
    pending = WebhookDelivery.objects.filter(status="pending")
    wait_until(lambda: not pending.exists(), 30, "every event delivered")
    assert check_history(workers.world, ids, replaced_ok=True) == []


@pytest.mark.parametrize("seconds", [-SKEW, SKEW])
def test_a_skewed_worker_s_codes_show_and_its_retries_wait_what_they_were_told(
    workers: Processes, receiver: Receiver, api, seconds: int
) -> None:
    asked_again: dict[str, list[float]] = defaultdict(list)

    def answer(headers: dict, body: dict) -> tuple[int, dict]:
        """Every event is refused with a 503 the first time, asked again in 2 s."""
        times = asked_again[headers["webhook-id"]]
        times.append(time.monotonic())
        return (503, {"Retry-After": "2"}) if len(times) == 1 else (200, {})

    receiver.answer = answer
    started_skewed(workers, "skewed", seconds)
    session = linking("skewed")

    assert qr_status(api, session) == (200, "")  # the code the worker keeps in Redis
    status, body = pair_code(api, session)
    assert status == 200, body
    # Only a signature that verifies (its timestamp within 5 minutes of ours) is received.
    wait_until(lambda: receiver.received, 30, "an event delivered on its second attempt")
    gaps = [t[1] - t[0] for t in list(asked_again.values()) if len(t) > 1]
    assert gaps and all(2 <= gap < 10 for gap in gaps), gaps
    print(f"retries after Retry-After: 2 came {min(gaps):.1f}-{max(gaps):.1f}s later")
