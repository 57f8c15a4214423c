"""What spares the worker round trips under load: a run of receipts taken as one, NOTIFYs about
sessions a dispatcher is delivering already, and connection checks a moment after their last use."""

from __future__ import annotations

import asyncio
import types
import uuid

import pytest
from django.db import connections

from gateway.core import wake
from sessions_app.models import Session
from workers.engines.base import Disconnected, Receipt
from workers.runtime import db
from workers.runtime import session as session_module
from workers.runtime.dispatcher import Dispatcher
from workers.runtime.session import SessionRunner


def receipt(message_id: str, status: str = "delivered") -> Receipt:
    return Receipt("s", chat="c", message_ids=(message_id,), status=status, timestamp=1.0)


@pytest.mark.asyncio
async def test_a_run_of_queued_receipts_is_taken_together_and_what_follows_is_kept() -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for item in [receipt("b"), receipt("a", "read"), Disconnected("s", reason="x"), receipt("c")]:
        queue.put_nowait(item)
    runner = types.SimpleNamespace(queue=queue)
    receipts, held = await SessionRunner._receipts_after(runner, receipt("a"))  # type: ignore[arg-type]
    assert [(r.message_ids, r.status) for r in receipts] == [
        (("a",), "delivered"),
        (("b",), "delivered"),
        (("a",), "read"),
    ]
    assert isinstance(held, Disconnected)  # handled next, before the receipt behind it
    assert queue.qsize() == 1
    receipts, held = await SessionRunner._receipts_after(runner, queue.get_nowait())  # type: ignore[arg-type]
    assert len(receipts) == 1 and held is None


@pytest.mark.asyncio
async def test_receipts_that_come_a_moment_apart_are_taken_together(monkeypatch) -> None:
    """At 50 messages a second a session's receipts come 10 ms apart: each its own transaction
    unless the first waits a moment for the next; anything else ends the wait at once."""
    monkeypatch.setattr(session_module, "RECEIPT_LINGER_SECONDS", 5.0)
    queue: asyncio.Queue = asyncio.Queue()
    runner = types.SimpleNamespace(queue=queue)
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, queue.put_nowait, receipt("b"))
    loop.call_later(0.02, queue.put_nowait, receipt("a", "read"))
    loop.call_later(0.03, queue.put_nowait, Disconnected("s", reason="x"))
    started = loop.time()
    receipts, held = await SessionRunner._receipts_after(runner, receipt("a"))  # type: ignore[arg-type]
    assert [r.message_ids for r in receipts] == [("a",), ("b",), ("a",)]
    assert isinstance(held, Disconnected) and loop.time() - started < 4  # not the whole linger
    monkeypatch.setattr(session_module, "RECEIPT_LINGER_SECONDS", 0.05)
    loop.call_later(1.0, queue.put_nowait, receipt("c"))  # after the linger: a run of its own
    receipts, held = await SessionRunner._receipts_after(runner, receipt("a"))  # type: ignore[arg-type]
    assert len(receipts) == 1 and held is None and queue.empty()


def test_the_notify_of_a_new_event_names_its_session_and_destinations() -> None:
    session, endpoint = uuid.uuid4(), str(uuid.uuid4())
    payload = wake.webhook_rows(session, [endpoint, None])
    assert wake.webhook_rows_of(payload) == (str(session), [endpoint, None])
    assert wake.webhook_rows_of("") is None
    assert wake.webhook_rows(session, [endpoint] * 101) == ""  # too many to name: look at all
    assert len(wake.webhook_rows(session, [endpoint] * 100)) < 8000  # PostgreSQL's limit


def test_a_dispatcher_is_not_woken_for_events_it_cannot_claim_yet(settings) -> None:
    dispatcher = Dispatcher()
    session, other, endpoint = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    dispatcher.delivering[(None, session)] = 1  # a chain of the session's to the backend

    def woken(payload: str) -> bool:
        dispatcher.wake.clear()
        dispatcher.notified(payload)
        return dispatcher.wake.is_set()

    assert not woken(wake.webhook_rows(session, [None]))  # behind the chain under way
    assert woken(wake.webhook_rows(session, [None, endpoint]))  # the endpoint's row is free
    assert woken(wake.webhook_rows(other, [None]))
    assert woken("")  # a delivery recorded, a release, a replay: look
    dispatcher.delivering[(endpoint, session)] = 1
    assert not woken(wake.webhook_rows(session, [None, endpoint]))


@pytest.mark.django_db(transaction=True)
def test_a_connection_used_a_moment_ago_is_not_checked_again(monkeypatch) -> None:
    wrapper = type(connections["default"])
    assert connections["default"].settings_dict["CONN_HEALTH_CHECKS"]
    checks = []
    is_usable = wrapper.is_usable

    def counted(self) -> bool:
        checks.append(1)
        return is_usable(self)

    monkeypatch.setattr(wrapper, "is_usable", counted)
    step = db._fresh(lambda: Session.objects.exists())
    step()  # the thread's first step: its connection is checked
    first = len(checks)
    step()
    step()
    assert len(checks) == first  # used a moment ago
    db._last_use.at -= db.CHECK_IDLE_SECONDS  # idle for a second
    step()
    assert len(checks) == first + 1
