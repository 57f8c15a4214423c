"""Wake-ups: the one module that names the NOTIFY channels, sends them and listens to them.

A change that gives a loop work (a session to claim, a message to send, an event to deliver)
sends a NOTIFY in its transaction; PostgreSQL delivers it on commit, and not at all on rollback.
The loops LISTEN on a connection of their own that is reopened when it drops. NOTIFY is only a
hint (lost while nobody listens): every loop it wakes also polls. Elsewhere than on PostgreSQL
(the embedded SQLite mode) there is nothing to send: the one worker polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)

# Workers: a session wants running, was released, or has a request (payload "").
SESSIONS = "gateway_sessions"
# A session's sender: a message was queued (payload: the session id).
MESSAGES = "gateway_messages"
# Dispatchers: an outbox row is due, or a session's next event was freed. Payload "" (look at
# everything), or a new event's `webhook_rows` (its session and destinations).
WEBHOOKS = "gateway_webhooks"
CHANNELS = (SESSIONS, MESSAGES, WEBHOOKS)


def wake(channel: str, payload: object = "") -> None:
    """NOTIFY `channel` when the current transaction commits (at once outside one)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown wake-up channel {channel!r}")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [channel, str(payload)])


def webhook_rows(session_id: object, destinations: list[str | None]) -> str:
    """The payload of a new event's NOTIFY: its session and the destinations (endpoint ids, ""
    for the backend) it has rows for; "" when too many to name (PostgreSQL takes 8000 bytes)."""
    if len(destinations) > 100:
        return ""
    return f"{session_id} {','.join(d or '' for d in destinations)}"


def webhook_rows_of(payload: str) -> tuple[str, list[str | None]] | None:
    """`webhook_rows` read back; None for "" (or anything else)."""
    session_id, space, destinations = payload.partition(" ")
    if not session_id or not space:
        return None
    return session_id, [d or None for d in destinations.split(",")]


async def listen(handlers: dict[str, Callable[[str], None]], stop: asyncio.Event) -> None:
    """Call `handlers[channel](payload)` for each notification; each handler is also called with
    "" whenever listening (re)starts, for what was missed meanwhile."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
                for channel in handlers:
                    await conn.execute(f"LISTEN {channel}")
                for handler in handlers.values():
                    handler("")
                async for notice in conn.notifies():
                    notified = handlers.get(notice.channel)
                    if notified is not None:
                        notified(notice.payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
