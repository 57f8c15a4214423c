"""Partitions: a worker cut off from PostgreSQL while its WhatsApp connections stay up (the
split-brain case). Its database traffic goes through a proxy on loopback (tests/tcp_proxy.py)
that holds everything while cut, as a link that is down does; the simulated WhatsApp servers
(a directory both workers share) stay reachable. The other worker reaches PostgreSQL directly.

What must hold: the cut-off worker closes its connections before its leases can run out
(self-fencing, on its monotonic clock), so that in the servers' log no session ever has two
connections, and none was closed by WhatsApp replacing it with the new owner's; the gap between
the old connection's close and the new one's open is the measured figure."""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from messaging.models import Message
from messaging.services import message_send
from sessions_app.models import Session
from tests.history import check_history
from tests.processes import Processes, wait_until
from tests.tcp_proxy import TcpProxy
from tests.workers.runtime.test_faults import LEASE, assert_one_connection_at_a_time, held_by
from tests.workers.runtime.test_faults import link_all as link_on

pytestmark = pytest.mark.django_db(transaction=True)
# `make chaos` makes the faults longer.
FLAPS = int(os.environ.get("PARTITION_FLAPS", "10"))
SLOW_LEASES = int(os.environ.get("PARTITION_SLOW_LEASES", "3"))


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}"))


def handovers(world, ids: list) -> list[float]:
    """Per session, seconds from the old owner's close to the new owner's open; fails when a
    connection was replaced (two open at once as far as the old owner knew)."""
    gaps = []
    for session_id in ids:
        log = world.read_log(str(session_id))
        replaced = [e for e in log if e.get("reason") == "replaced by another connection"]
        assert replaced == [], (session_id, replaced)
        connects = [e for e in log if e["event"] == "connect"]
        last_a = max(e["at"] for e in log if e["event"] == "disconnect" and e["worker"] == "a")
        first_b = min(e["at"] for e in connects if e["worker"] == "b")
        gaps.append(first_b - last_a)
    return gaps


def untouched(world, ids: list) -> bool:
    """Each session has had one connection, still open, `a`'s."""
    for session_id in ids:
        log = world.read_log(str(session_id))
        connects = [e for e in log if e["event"] == "connect"]
        if [e["worker"] for e in connects] != ["a"] or any(e["event"] == "disconnect" for e in log):
            return False
    return True


@pytest.fixture
def proxy():
    made = []

    def make(upstream: int) -> TcpProxy:
        made.append(TcpProxy(upstream))
        return made[-1]

    yield make
    for each in made:
        each.heal()
        each.close()


def test_a_worker_cut_off_from_postgresql_fences_itself_before_another_takes_over(
    workers: Processes, test_database_url: str, proxy
) -> None:
    database = proxy(urlsplit(test_database_url).port or 5432)
    cut_off = workers.worker("a", DATABASE_URL=through(test_database_url, database.port))
    ids = link_on(workers, "a", 3)
    workers.worker("b")

    database.cut()
    queued = [  # accepted while `a` is cut off: `b` sends them, once each
        message_send(
            session=session,
            to="4915123456789@s.whatsapp.net",
            type="text",
            text=f"during the cut {n}",
            fingerprint="",
        ).message.pk
        for session in Session.objects.filter(pk__in=ids)
        for n in range(2)
    ]
    wait_until(lambda: held_by("b", ids, "connected"), LEASE + 60, "b to take over")
    assert_one_connection_at_a_time(workers.world, ids)
    wait_until(
        lambda: not Message.objects.filter(pk__in=queued, sent_at=None).exists(),
        60,
        "the messages accepted during the cut sent",
    )
    gaps = handovers(workers.world, ids)
    assert all(0 < gap < LEASE + 30 for gap in gaps), gaps

    # Healed, `a` finds it was declared dead: it drops everything and exits, reconnecting
    # nothing and writing nothing.
    epochs = dict(Session.objects.filter(pk__in=ids).values_list("pk", "lease_epoch"))
    database.heal()
    assert cut_off.wait(timeout=60) is not None
    assert "this worker was declared dead" in workers.log("a")
    assert handovers(workers.world, ids) == gaps
    rows = Session.objects.select_related("worker").filter(pk__in=ids)
    assert all(r.worker.name == "b" and r.status == "connected" for r in rows)
    assert dict(rows.values_list("pk", "lease_epoch")) == epochs
    assert check_history(workers.world, ids) == []


def test_a_flapping_link_and_a_slow_one_take_nothing_over(
    workers: Processes, test_database_url: str, proxy
) -> None:
    """Cuts of a second, ten times, then 500 ms more on every round trip for a while: shorter
    than what a lease allows, so `a` keeps every session and `b` never takes one."""
    database = proxy(urlsplit(test_database_url).port or 5432)
    workers.worker("a", DATABASE_URL=through(test_database_url, database.port))
    ids = link_on(workers, "a", 3)
    workers.worker("b")
    for _ in range(FLAPS):
        database.cut()
        time.sleep(1)  # holds the cut open: the fault itself
        database.heal()
        time.sleep(1)
    assert held_by("a", ids, "connected"), workers.log("a")[-4000:]
    assert untouched(workers.world, ids), workers.log("a")[-4000:]
    database.delay = 0.25  # each way
    time.sleep(SLOW_LEASES * LEASE)  # the slow link, for three leases (by default)
    database.delay = 0
    assert held_by("a", ids, "connected"), workers.log("a")[-6000:]
    assert untouched(workers.world, ids)
    assert "lease about to expire" not in workers.log("a")
    assert check_history(workers.world, ids) == []
