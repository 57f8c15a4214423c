"""What the API shows across a change of owner: a claim commits its new owner together with
`starting` (never the old owner's `connected` on a worker that has not started the session), and
the sessions of a worker found dead show `reconnecting` / `starting` with the error
`worker_lost` as soon as it is found dead, not only once another worker claims them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from gateway.outbox.models import Event
from sessions_app import services as sessions
from sessions_app.models import Session, SessionEvent
from workers import services as registry
from workers.models import Worker

pytestmark = pytest.mark.django_db


def ghost(name: str = "ghost") -> Worker:
    """A worker whose last heartbeat is an hour old."""
    worker = registry.worker_register(name=name, capacity=10, engines=["sandbox"])
    Worker.objects.filter(pk=worker.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    return worker


def statuses_announced(session: Session) -> list[str]:
    return [
        e.payload["session"]["status"]
        for e in Event.objects.filter(session_id=session.pk, event_type="session.status")
    ]


def test_a_claim_commits_its_owner_and_starting_together(make_session) -> None:
    dead = ghost()
    taken = make_session(
        status="connected",
        desired_state="running",
        worker=dead,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    fresh = make_session(status="stopped", desired_state="running")
    leaving = make_session(
        status="connected",
        desired_state="stopped",
        logout_requested_at=timezone.now(),
    )
    worker = registry.worker_register(name="new", capacity=10, engines=["sandbox"])

    leases = sessions.sessions_claim(worker_id=worker.pk, engines=["sandbox"], limit=10, ttl=30)

    by_id = {lease.session_id: lease for lease in leases}
    assert set(by_id) == {taken.pk, fresh.pk, leaving.pk}
    for session in (taken, fresh):
        row = Session.objects.get(pk=session.pk)
        assert (row.worker_id, row.status) == (worker.pk, "starting")
        assert by_id[session.pk].status == "starting"
        assert statuses_announced(session) == ["starting"]
    reasons = dict(SessionEvent.objects.values_list("session_id", "reason"))
    assert reasons[taken.pk] == "taken over from a lost worker"
    assert reasons[fresh.pk] == "claimed"
    # A logout to carry out is not a start: its status stays until the owner logs it out.
    assert Session.objects.get(pk=leaving.pk).status == "connected"


def test_the_sessions_of_a_dead_worker_show_it_at_once(make_session) -> None:
    dead, alive = ghost(), registry.worker_register(name="alive", capacity=10, engines=[])
    later = timezone.now() + timedelta(minutes=5)  # not claimable yet by anyone
    connected = make_session(status="connected", worker=dead, lease_expires_at=later)
    linking = make_session(status="scan_qr", worker=dead, lease_expires_at=later)
    starting = make_session(status="starting", worker=dead, lease_expires_at=later)
    elsewhere = make_session(status="connected", worker=alive, lease_expires_at=later)

    lost = registry.workers_mark_dead()
    assert lost == [dead.pk]
    assert registry.workers_mark_dead() == []  # marked once
    assert sessions.sessions_of_lost_workers(worker_ids=lost, limit=1) == 1  # in batches
    assert sessions.sessions_of_lost_workers(worker_ids=lost) == 1
    assert sessions.sessions_of_lost_workers(worker_ids=lost) == 0

    shown = {s.pk: s for s in Session.objects.all()}
    assert (shown[connected.pk].status, shown[connected.pk].last_error_code) == (
        "reconnecting",
        "worker_lost",
    )
    assert (shown[linking.pk].status, shown[linking.pk].last_error_code) == (
        "starting",
        "worker_lost",
    )
    assert shown[starting.pk].status == "starting" and not shown[starting.pk].last_error_code
    assert shown[elsewhere.pk].status == "connected"
    assert statuses_announced(connected) == ["reconnecting"]  # its webhook, with the reason
    event = Event.objects.get(session_id=connected.pk)
    assert event.payload["error"]["code"] == "worker_lost"
    # The lease is untouched: only a claim after it runs out moves the session.
    assert shown[connected.pk].worker_id == dead.pk
