"""The live event stream, `/ws/events/`: every event the webhooks carry, to API clients, resumable.

Authentication: an API key or a backend JWT in a header (`X-API-Key`, `Authorization: Api-Key …`
or `Authorization: Bearer …`), or, for browsers, in a subprotocol beside `events`
(`["events", "api-key.<key>"]`, `["events", "bearer.<jwt>"]`); never in the query string. The
caller sees only the sessions its key may see, and needs the `read` scope.

Filters: `?sessions=<id>,<id>` and `?events=message.*,session.status`. Resume: `?after=<event id>`
replays from the event log (`Event`, kept EVENT_RETENTION_HOURS) what came after that event, then
goes live. Nothing is missed: the socket joins the live group before it reads the log, the live
events that arrive meanwhile wait and are sent after the replay without repeats, and a live event
whose session's sequence jumps (a push lost on the channel layer) is preceded by the missing ones
from the log. The log is ordered by insertion, not commit: so that an event committed a moment
after the one given is not missed, a replay also repeats the events of RESUME_GRACE before it
(dedupe on `id`, as with webhooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from gateway.core.auth import socket_client
from gateway.core.membership import Membership
from gateway.outbox.endpoints import matches
from gateway.outbox.models import Event

logger = logging.getLogger(__name__)
GROUP = "events"
SUBPROTOCOL = "events"
RESUME_GRACE = timedelta(seconds=10)
REPLAY_BATCH = 500
BAD_REQUEST, AFTER_UNKNOWN = 4400, 4404
# Up while any stream is open (refreshed by each); producers push only then.
LISTENING, LISTENING_SECONDS = "events:listening", 60


def publish(*bodies: dict[str, Any]) -> None:
    """After commit, best effort, and only while a stream is open somewhere (a push costs a few
    milliseconds, a look at the flag a cache read): a channel layer that is down costs the live
    push only (the streams fill the gap from the log when the session's next event arrives)."""
    try:
        if not cache.get(LISTENING, False):
            return
        layer = get_channel_layer()
        for body in bodies:
            async_to_sync(layer.group_send)(GROUP, {"type": "event.new", "event": body})
    except Exception:
        logger.warning("event stream push failed", exc_info=True)


async def _listening(stop: asyncio.Event) -> None:
    """Keep the flag up while this socket is open (set before it joins the group, so no event
    committed after its replay's read is left unpushed)."""
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await sync_to_async(cache.set)(LISTENING, True, LISTENING_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), LISTENING_SECONDS / 3)


def events_purge() -> int:
    """Forget the events older than EVENT_RETENTION_HOURS (what a stream can no longer resume)."""
    cutoff = timezone.now() - timedelta(hours=settings.EVENT_RETENTION_HOURS)
    return Event.objects.filter(created_at__lt=cutoff).delete()[0]


def _session_of(body: dict[str, Any]) -> str | None:
    session = body.get("session")
    return str(session["id"]) if isinstance(session, dict) and session.get("id") else None


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.client = await database_sync_to_async(socket_client)(self.scope)
        offered = self.scope.get("subprotocols") or []
        if (
            self.client is None
            or not self.client.allows("read")
            or (offered and SUBPROTOCOL not in offered)
        ):
            await self.close()  # before accept: the handshake is refused (403)
            return
        self.last: dict[str, int] = {}  # each session's last sequence seen (sent or not)
        self.sent: set[str] = set()  # ids sent during the replay, so the live ones don't repeat
        self.waiting: list[dict[str, Any]] | None = []  # live events held during the replay
        with contextlib.suppress(Exception):
            await sync_to_async(cache.set)(LISTENING, True, LISTENING_SECONDS)
        self.closed = asyncio.Event()
        self.flag = asyncio.create_task(_listening(self.closed))
        self.membership = Membership(self.channel_layer, self.channel_name)
        await self.membership.join(GROUP)  # and again every so often: a flushed Redis forgot it
        await self.accept(subprotocol=SUBPROTOCOL if offered else None)
        try:
            query = parse_qs(self.scope.get("query_string", b"").decode())
            self.sessions = self._ids(query.get("sessions", [""])[0])
            self.patterns = [p for p in query.get("events", [""])[0].split(",") if p] or ["*"]
            after = query.get("after", [""])[0]
            if after:
                await self._replay(after)
        except _Refused as refused:
            await self.send_json({"type": "error", "error": refused.error})
            await self.close(code=refused.close_code)
            return
        waiting, self.waiting = self.waiting or [], None
        for body in waiting:
            if body["id"] not in self.sent:
                await self._forward(body)
        self.sent.clear()

    @staticmethod
    def _ids(value: str) -> set[str] | None:
        if not value:
            return None
        try:
            return {str(uuid.UUID(v)) for v in value.split(",") if v}
        except ValueError:
            raise _Refused("invalid", "`sessions` takes session ids, comma-separated.") from None

    async def _visible(self, session_id: str | None) -> bool:
        if session_id is None:
            return False
        if self.sessions is not None and session_id not in self.sessions:
            return False
        return await self.client.amay_see(session_id)

    async def _replay(self, after: str) -> None:
        try:
            after_id = uuid.UUID(after)
        except ValueError:
            raise _Refused("invalid", "`after` takes an event id.") from None
        anchor = await database_sync_to_async(Event.objects.filter(event_id=after_id).first)()
        if anchor is not None and not (
            anchor.session_id and await self.client.amay_see(str(anchor.session_id))
        ):
            anchor = None  # another tenant's event is as unknown as one that never was
        if anchor is None:
            raise _Refused(
                "event_unknown",
                "No such event in the log (events are kept EVENT_RETENTION_HOURS): read the "
                "current state from the API, then connect without `after`.",
                close_code=AFTER_UNKNOWN,
            )
        position = 0
        while True:
            batch = await database_sync_to_async(self._batch)(anchor, position)
            if not batch:
                return
            for row in batch:
                position = row.pk
                await self._forward(row.payload, replaying=True)

    def _batch(self, anchor: Event, position: int) -> list[Event]:
        grace = Q(pk__lt=anchor.pk, created_at__gte=anchor.created_at - RESUME_GRACE)
        rows = Event.objects.filter(Q(pk__gt=anchor.pk) | grace).filter(pk__gt=position)
        if anchor.session_id:  # the anchor's own session resumes exactly after it
            rows = rows.exclude(session_id=anchor.session_id, sequence__lte=anchor.sequence)
        if self.sessions is not None:
            rows = rows.filter(session_id__in=list(self.sessions))
        return list(rows.order_by("pk")[:REPLAY_BATCH])

    async def _forward(self, body: dict[str, Any], *, replaying: bool = False) -> None:
        session = _session_of(body)
        if not await self._visible(session):
            return
        assert session is not None
        sequence = int(body.get("sequence") or 0)
        last = self.last.get(session)
        if not replaying and last is not None:
            if sequence <= last:
                return  # already sent (replayed, or a push that came twice)
            if sequence > last + 1:  # pushes were lost: the log has them
                missing = await database_sync_to_async(self._missing)(session, last, sequence)
                for earlier in missing:
                    await self._send(earlier)
        self.last[session] = max(sequence, last or 0)
        await self._send(body)
        if replaying:
            self.sent.add(body["id"])

    def _missing(self, session: str, last: int, sequence: int) -> list[dict[str, Any]]:
        rows = Event.objects.filter(
            session_id=session, sequence__gt=last, sequence__lt=sequence
        ).order_by("sequence")
        return [row.payload for row in rows]

    async def _send(self, body: dict[str, Any]) -> None:
        if matches(self.patterns, body["event"]):
            await self.send_json(body)

    async def event_new(self, message: dict[str, Any]) -> None:
        if self.waiting is not None:
            self.waiting.append(message["event"])
            return
        await self._forward(message["event"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return None  # the server speaks; what clients send is ignored

    async def disconnect(self, code: int) -> None:
        if getattr(self, "flag", None):
            self.closed.set()
            await self.flag
        if getattr(self, "membership", None):
            await self.membership.leave()


class _Refused(Exception):
    def __init__(self, code: str, message: str, *, close_code: int = BAD_REQUEST) -> None:
        self.error = {"code": code, "message": message}
        self.close_code = close_code
