"""A live worker marks the sessions of a worker it finds dead (sessions_of_lost_workers), even
those it can't take over."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from sessions_app.models import Session
from tests.sessions_app.test_ownership import ghost
from tests.workers.runtime.test_runtime import until

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_a_worker_marks_a_dead_workers_sessions_it_cannot_take(start_worker) -> None:
    """The live worker runs only the sandbox engine: it can't claim the dead one's neonize
    session, which used to show `connected` for ever."""
    dead = await sync_to_async(ghost)()
    session = await sync_to_async(Session.objects.create)(
        engine="neonize",
        status="connected",
        desired_state="running",
        worker=dead,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    await start_worker("w1")
    row = await until(
        lambda: Session.objects.filter(pk=session.pk, status="reconnecting").first(),
        what="the session shown reconnecting",
    )
    assert row.last_error_code == "worker_lost" and row.worker_id == dead.pk
