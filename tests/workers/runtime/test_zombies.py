"""No zombie sessions: a session shown connected while nothing arrives is found and restarted."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import SessionEvent
from tests.workers.runtime.test_runtime import linked, session_row, until
from workers.engines.sandbox import SandboxWorld

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def timeline(session) -> list[tuple[str, str]]:
    events = SessionEvent.objects.filter(session=session).order_by("id")
    return list(events.values_list("to_status", "reason"))


async def test_a_silent_session_whose_probe_gets_no_answer_is_restarted(
    start_worker, world: SandboxWorld
) -> None:
    runtime = await start_worker(silence_seconds=0.5)
    session = await linked(runtime)
    connections = len([e for e in world.read_log(str(session.id)) if e["event"] == "connect"])
    await runtime.engines["sandbox"].freeze(str(session.id))  # half-open: looks up, says nothing

    def restarted():
        return [reason for status, reason in timeline(session) if "did not answer" in reason]

    [reason] = await until(restarted, what="the zombie restarted")
    assert reason.startswith("no event for ") and "restarting the connection" in reason
    await until(lambda: session_row(session.id).status == "connected", what="connected again")
    log = world.read_log(str(session.id))
    assert len([e for e in log if e["event"] == "connect"]) == connections + 1  # a new one


async def test_a_silent_session_that_answers_its_probe_is_left_alone(start_worker) -> None:
    runtime = await start_worker(silence_seconds=0.3)
    session = await linked(runtime)
    engine, probes = runtime.engines["sandbox"], []
    probe = engine.probe

    async def counted(session_id: str) -> None:
        probes.append(session_id)
        await probe(session_id)

    engine.probe = counted
    await until(lambda: len(probes) >= 3, what="three probes")
    steps = await sync_to_async(timeline)(session)
    assert [status for status, _ in steps][-1] == "connected"
    assert not [reason for _, reason in steps if "probe" in reason]


@pytest.mark.parametrize(
    ("act", "code", "words"),
    [("ban", "temporary_ban", "the ban ends in 7200 s"), ("outdate", "client_outdated", "405")],
)
async def test_a_ban_or_an_outdated_client_fails_the_session_with_its_reason(
    start_worker, act: str, code: str, words: str
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    engine = runtime.engines["sandbox"]
    await (engine.ban(str(session.id), 7200) if act == "ban" else engine.outdate(str(session.id)))
    row = await until(
        lambda: (row := session_row(session.id)).status == "failed" and row, what="failed"
    )
    assert row.last_error_code == code and words in row.last_error
    steps = await sync_to_async(timeline)(session)
    assert ("failed", code) in steps  # the timeline names it; the session holds its words
