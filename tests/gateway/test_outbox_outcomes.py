"""The outbox's batches (gateway.outbox.deliveries): a claim takes several of a session's events
in their order, as far as they are due and free; the outcomes of many attempts are written at
once, one UPDATE for the deliveries and one upsert for their usage whatever their number, each
row as its own outcome says, and nothing written over a row that is no longer pending."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from gateway.core.models import UsageCounter
from gateway.outbox import deliveries
from gateway.outbox.deliveries import Outcome, deliveries_claim, deliveries_record
from gateway.outbox.models import WebhookDelivery
from sessions_app.events import events_together, outbox_event
from sessions_app.models import Session

pytestmark = pytest.mark.django_db


def test_a_batch_of_outcomes_is_one_update_and_one_usage_upsert(settings) -> None:
    settings.BACKEND_URL = "http://127.0.0.1:9"
    settings.WEBHOOK_MAX_AGE = 3600
    made = [Session.objects.create(engine="sandbox") for _ in range(12)]
    for session in made:
        with transaction.atomic():
            outbox_event(session, "test.event", "/hooks", n=0)
    chains = deliveries_claim(limit=100, hold_seconds=60)
    assert all(len(chain) == 1 for chain in chains)  # one each unless told
    claims = sorted((chain[0] for chain in chains), key=lambda c: c.id)
    assert len(claims) == 12
    # Past WEBHOOK_MAX_AGE (by the database's clock): its failure makes it dead.
    old = claims[10]
    WebhookDelivery.objects.filter(pk=old.id).update(created_at=Now() - timedelta(hours=2))
    gone = claims[11]  # no longer pending (replayed as dead meanwhile): left as it is
    WebhookDelivery.objects.filter(pk=gone.id).update(status="dead")
    outcomes = [Outcome(c, True, status_code=200, response="ok") for c in claims[:9]]
    outcomes += [
        Outcome(claims[9], False, status_code=503, error="HTTP 503", retry_after=120),
        Outcome(old, False, error="ConnectError"),
        Outcome(gone, True, status_code=200),
    ]

    with CaptureQueriesContext(connection) as queries:
        written = deliveries_record(outcomes)

    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert statements.count("UPDATE") == 1 and statements.count("INSERT") == 1, statements
    assert written == {
        **{c.id: "delivered" for c in claims[:9]},
        claims[9].id: "pending",
        old.id: "dead",
    }
    rows = {row.pk: row for row in WebhookDelivery.objects.all()}
    for claim in claims[:9]:
        row = rows[claim.id]
        assert (row.status, row.attempts, row.last_status_code, row.last_response) == (
            "delivered",
            1,
            200,
            "ok",
        )
        assert row.delivered_at is not None and row.claimed_until is None
    retried = rows[claims[9].id]
    assert (retried.status, retried.attempts, retried.last_error) == ("pending", 1, "HTTP 503")
    assert retried.next_attempt_at >= timezone.now() + timedelta(seconds=115)  # Retry-After
    assert retried.claimed_until is None
    assert (rows[old.id].status, rows[old.id].attempts) == ("dead", 1)
    assert (rows[gone.id].status, rows[gone.id].attempts) == ("dead", 0)  # untouched

    counted = {
        (str(c.session_id), c.metric): c.count
        for c in UsageCounter.objects.filter(metric__startswith="webhooks_")
    }
    assert counted == {
        **{(c.session_id, "webhooks_delivered"): 1 for c in claims[:9]},
        (old.session_id, "webhooks_failed"): 1,
    }


def test_a_claim_takes_a_sessions_next_events_in_order_as_far_as_they_are_free(settings) -> None:
    settings.BACKEND_URL = "http://127.0.0.1:9"
    first, second = (
        Session.objects.create(engine="sandbox"),
        Session.objects.create(engine="sandbox"),
    )
    for n in range(6):
        for session in (first, second):
            with transaction.atomic():
                outbox_event(session, "test.event", "/hooks", n=n)
    rows = {(str(r.session_id), r.sequence): r.pk for r in WebhookDelivery.objects.all()}
    # The second session's 4th event waits for a retry: its chain stops before it.
    WebhookDelivery.objects.filter(pk=rows[(str(second.pk), 4)]).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    chains = deliveries_claim(limit=10, hold_seconds=60, per_session=4)
    got = {chain[0].session_id: [c.id for c in chain] for chain in chains}
    assert got == {
        str(first.pk): [rows[(str(first.pk), n)] for n in (1, 2, 3, 4)],
        str(second.pk): [rows[(str(second.pk), n)] for n in (1, 2, 3)],
    }
    # All claimed: nothing more of those sessions until they are recorded or run out.
    assert deliveries_claim(limit=10, hold_seconds=60, per_session=4) == []
    claimed = WebhookDelivery.objects.filter(claimed_until__gt=timezone.now())
    assert claimed.count() == 7


def test_a_claim_gives_each_endpoint_no_more_sessions_than_its_room(settings) -> None:
    """`per_endpoint` bounds an endpoint's sessions in one claim, `room` overrides it per
    endpoint (0: none); the built-in backend is not bound. What is past it stays unclaimed."""
    from gateway.outbox import endpoints

    settings.BACKEND_URL = "http://127.0.0.1:9"
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    small, large, full = (
        endpoints.endpoint_create(url=f"http://127.0.0.1:{port}/hook") for port in (10, 11, 12)
    )
    made = [Session.objects.create(engine="sandbox") for _ in range(5)]
    for session in made:
        with transaction.atomic():
            outbox_event(session, "test.event", "/hooks", n=0)
    room = {str(large.pk): 4, str(full.pk): 0}
    chains = deliveries_claim(limit=100, hold_seconds=60, per_endpoint=2, room=room)
    claimed = {}
    for chain in chains:
        destination = chain[0].destination.id if chain[0].destination else None
        claimed[destination] = claimed.get(destination, 0) + 1
    assert claimed == {None: 5, str(small.pk): 2, str(large.pk): 4}
    unclaimed = WebhookDelivery.objects.filter(claimed_until__isnull=True)
    assert unclaimed.filter(endpoint=small).count() == 3
    assert unclaimed.filter(endpoint=large).count() == 1
    assert unclaimed.filter(endpoint=full).count() == 5


@pytest.mark.parametrize(
    ("answer", "attempt", "rejected_attempts", "status"),
    [
        (400, 3, 3, "dead"),  # rejected on its 3rd attempt: given up
        (422, 5, 3, "dead"),  # or on a later one (a replay rejected again)
        (404, 2, 2, "dead"),  # as WEBHOOK_REJECTED_ATTEMPTS says
        (400, 1, 3, "pending"),  # not yet
        (400, 2, 3, "pending"),
        *((code, 3, 3, "pending") for code in (408, 409, 425, 429)),  # they ask again later
        (503, 3, 3, "pending"),  # not a rejection: retried until WEBHOOK_MAX_AGE
        (None, 3, 3, "pending"),  # a broker's unroutable (no HTTP code)
        (400, 9, 0, "pending"),  # 0: never given up as a rejection
    ],
)
def test_a_delivery_rejected_on_its_rejected_attempts_th_attempt_is_dead(
    settings, caplog, monkeypatch, answer, attempt, rejected_attempts, status
) -> None:
    # The longest wait its jitter allows (a draw near 0 would be due at once, by the database's
    # clock at the transaction's start, and so not after this process's now).
    monkeypatch.setattr(deliveries.random, "uniform", lambda low, high: high)
    settings.BACKEND_URL = "http://127.0.0.1:9"
    settings.WEBHOOK_MAX_AGE = 3600
    settings.WEBHOOK_REJECTED_ATTEMPTS = rejected_attempts
    session = Session.objects.create(engine="sandbox")
    with transaction.atomic():
        outbox_event(session, "test.event", "/hooks", n=0)
    WebhookDelivery.objects.update(attempts=attempt - 1)  # the attempts before this one
    [[claim]] = deliveries_claim(limit=10, hold_seconds=60)
    error = f"HTTP {answer}" if answer else "unroutable"

    written = deliveries_record([Outcome(claim, False, status_code=answer, error=error)])

    assert written == {claim.id: status}
    row = WebhookDelivery.objects.get()
    assert (row.status, row.attempts, row.last_status_code) == (status, attempt, answer)
    assert row.claimed_until is None
    failed = UsageCounter.objects.filter(session=session, metric="webhooks_failed")
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    if status == "dead":
        assert row.last_error == (
            f"rejected: HTTP {answer} on {attempt} attempts; replay once the receiver accepts it"
        )
        assert failed.get().count == 1
        assert len(logged) == 1 and row.last_error in logged[0]
    else:
        assert row.last_error == error and row.next_attempt_at > timezone.now()
        assert not failed.exists() and not logged


@pytest.mark.parametrize("skew_minutes", [10, -10])
def test_a_dispatcher_with_a_wrong_clock_takes_no_claim_of_another(
    settings, monkeypatch, skew_minutes
) -> None:
    """Claims are judged by the database's clock: a dispatcher whose clock runs ten minutes
    ahead takes nothing another holds (it took every claim, its requests still under way:
    two of a session's events in flight at once); one ten minutes behind writes claims that
    hold for the others too (they ran out at once for them). Its events are due at once."""
    from gateway.outbox import deliveries

    settings.BACKEND_URL = "http://127.0.0.1:9"
    session = Session.objects.create(engine="sandbox")
    real_now = timezone.now

    def skewed() -> object:
        return real_now() + timedelta(minutes=skew_minutes)

    for n in range(2):
        with transaction.atomic():
            outbox_event(session, "test.event", "/hooks", n=n)
    if skew_minutes < 0:  # the one behind claims first, the right one after
        monkeypatch.setattr(deliveries.timezone, "now", skewed)
        first = deliveries_claim(limit=10, hold_seconds=60)
        monkeypatch.setattr(deliveries.timezone, "now", real_now)
    else:  # the right one claims first, the one ahead after
        first = deliveries_claim(limit=10, hold_seconds=60)
        monkeypatch.setattr(deliveries.timezone, "now", skewed)
    assert [len(chain) for chain in first] == [1]
    assert deliveries_claim(limit=10, hold_seconds=60) == []
    # An event made now (by a process with that clock) is due now, for every dispatcher.
    other = Session.objects.create(engine="sandbox")
    with transaction.atomic():
        outbox_event(other, "test.event", "/hooks", n=0)
    monkeypatch.setattr(deliveries.timezone, "now", real_now)
    [[claim]] = deliveries_claim(limit=10, hold_seconds=60)
    assert claim.session_id == str(other.pk)


def test_events_made_together_are_numbered_and_written_at_the_end(settings) -> None:
    """`events_together`: a session's events get their numbers, in order, when it ends (one
    sequence step, one outbox statement); another session's are written at once; what raises
    inside writes nothing."""
    settings.BACKEND_URL = "http://127.0.0.1:9"
    session, other = (Session.objects.create(engine="sandbox") for _ in range(2))
    with transaction.atomic():
        outbox_event(session, "test.event", "/hooks", n=0)
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session.pk)
        with events_together(session):
            first = outbox_event(session, "test.event", "/hooks", n=1)
            elsewhere = outbox_event(other, "test.event", "/hooks", n=0)
            assert first["sequence"] is None and elsewhere["sequence"] == 1
            assert WebhookDelivery.objects.filter(session_id=session.pk).count() == 1
            second = outbox_event(session, "test.event", "/hooks", n=2)
    assert (first["sequence"], second["sequence"]) == (2, 3)
    rows = WebhookDelivery.objects.filter(session_id=session.pk).order_by("sequence")
    assert [(r.sequence, r.payload["n"], r.payload["sequence"]) for r in rows] == [
        (1, 0, 1),
        (2, 1, 2),
        (3, 2, 3),
    ]
    with pytest.raises(RuntimeError), transaction.atomic():
        with events_together(session):
            outbox_event(session, "test.event", "/hooks", n=3)
            raise RuntimeError
    assert WebhookDelivery.objects.filter(session_id=session.pk).count() == 3
    session.refresh_from_db()
    assert session.event_sequence == 3
