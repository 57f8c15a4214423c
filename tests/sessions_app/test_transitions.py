"""The session state machine: the legal changes, and the refusal of everything else."""

from __future__ import annotations

import itertools

import pytest

from sessions_app.models import SessionEvent
from sessions_app.services import IllegalTransition, LeaseLost, session_set_status
from sessions_app.states import SESSION_TRANSITIONS, SessionStatus, session_transition_allowed
from workers.models import Worker

S = SessionStatus
LEGAL = (
    {
        (S.STOPPED, S.STARTING),
        (S.STARTING, S.SCAN_QR),
        (S.STARTING, S.PAIRING),
        (S.STARTING, S.CONNECTED),
        (S.STARTING, S.RECONNECTING),
        (S.STARTING, S.LOGGED_OUT),
        (S.SCAN_QR, S.PAIRING),
        (S.SCAN_QR, S.CONNECTED),
        (S.SCAN_QR, S.STARTING),
        (S.PAIRING, S.SCAN_QR),
        (S.PAIRING, S.CONNECTED),
        (S.PAIRING, S.STARTING),
        (S.CONNECTED, S.RECONNECTING),
        (S.CONNECTED, S.LOGGED_OUT),
        (S.CONNECTED, S.STARTING),
        (S.RECONNECTING, S.CONNECTED),
        (S.RECONNECTING, S.LOGGED_OUT),
        (S.RECONNECTING, S.STARTING),
        (S.LOGGED_OUT, S.STARTING),
        (S.FAILED, S.STARTING),
    }
    | {(s, S.FAILED) for s in S if s != S.FAILED}
    | {(s, S.STOPPED) for s in S if s != S.STOPPED}
)


@pytest.mark.smoke
@pytest.mark.parametrize(("source", "target"), list(itertools.product(S, S)))
def test_the_transition_table(source: str, target: str) -> None:
    assert session_transition_allowed(source, target) is ((source, target) in LEGAL)


def test_every_status_has_a_way_out() -> None:
    assert set(SESSION_TRANSITIONS) == set(S)
    assert all(SESSION_TRANSITIONS[s] for s in S)


@pytest.fixture
def leased(make_session):
    worker = Worker.objects.create(name="w")
    return make_session(status=S.STARTING, worker=worker, lease_epoch=4), worker


@pytest.mark.django_db
def test_set_status_records_the_change(leased) -> None:
    session, worker = leased
    session_set_status(
        session_id=session.id,
        status=S.CONNECTED,
        epoch=4,
        worker_id=worker.id,
        reason="restored",
        phone_number="+15550001",
        jid="15550001@s.whatsapp.net",
    )

    session.refresh_from_db()
    assert (session.status, session.phone_number) == (S.CONNECTED, "+15550001")
    assert session.status_changed_at is not None
    event = SessionEvent.objects.get(session=session)
    assert (event.from_status, event.to_status, event.reason, event.worker) == (
        S.STARTING,
        S.CONNECTED,
        "restored",
        worker,
    )


@pytest.mark.django_db
def test_a_new_qr_code_is_announced_but_is_no_change_of_status(leased) -> None:
    """status_changed_at is when the status last changed: a session showing QR codes for
    ten minutes shows ten minutes there (/metrics' linking age), however often its code rotates."""
    session, _ = leased
    session_set_status(session_id=session.id, status=S.SCAN_QR, epoch=4, qr={"code": "1"})
    session.refresh_from_db()
    since = session.status_changed_at

    session_set_status(session_id=session.id, status=S.SCAN_QR, epoch=4, qr={"code": "2"})

    session.refresh_from_db()
    assert session.status_changed_at == since
    assert SessionEvent.objects.filter(session=session).count() == 1


@pytest.mark.django_db
def test_set_status_refuses_an_illegal_change_and_changes_nothing(leased) -> None:
    session, _ = leased
    session_set_status(session_id=session.id, status=S.LOGGED_OUT, epoch=4)

    with pytest.raises(IllegalTransition, match="logged_out to connected"):
        session_set_status(session_id=session.id, status=S.CONNECTED, epoch=4)

    session.refresh_from_db()
    assert session.status == S.LOGGED_OUT
    assert SessionEvent.objects.filter(session=session).count() == 1


@pytest.mark.django_db
def test_set_status_refuses_a_stale_lease_epoch(leased) -> None:
    session, _ = leased
    with pytest.raises(LeaseLost):
        session_set_status(session_id=session.id, status=S.CONNECTED, epoch=3)
    session.refresh_from_db()
    assert session.status == S.STARTING
    assert not SessionEvent.objects.exists()


@pytest.mark.django_db
def test_setting_the_same_status_records_nothing(leased) -> None:
    session, _ = leased
    session_set_status(session_id=session.id, status=S.STARTING, epoch=4)
    assert not SessionEvent.objects.exists()
