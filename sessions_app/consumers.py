"""WebSockets for live session state: `/ws/sessions/<id>/` (a staff member with permission on
sessions, `?token=` from `POST /api/v1/sessions/<id>/ws-token`, or an API key or backend JWT) and
`/ws/sessions/` (staff, or an API key or JWT: only the sessions it may see).

Keys and JWTs come in headers or subprotocols (`["sessions", "api-key.<key>"]`,
gateway.core.auth.socket_client) and are held to their scopes (gateway/core/scopes.py): `read` to
open a socket, a session they may see (another is refused, like an unknown one), `control` for the
QR and pairing codes.

On connect a consumer joins its group first and reads the current state second (`/ws/sessions/`:
of every session it may see), so no change falls between the two; then it forwards every change,
each with its session's `sequence` (a change may come twice: keep the highest), joining its group
again every so often (a flushed Redis forgets it: gateway.core.membership). A client that could
not keep up (the channel layer holds up to CHANNEL_LAYERS' capacity of messages for a socket, for
a minute, then drops what comes for it: a slow client never holds up a worker) gets the current
state again by reconnecting. Consumers never write to the database.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from gateway.core.auth import ApiClient, socket_client
from gateway.core.membership import Membership
from sessions_app.events import session_state
from sessions_app.models import Session
from sessions_app.selectors import session_find, sessions_visible
from sessions_app.services import qr
from sessions_app.tokens import ws_token_read

# The close code when a socket opened with a ws-token reaches the token's expiry (4000-4999 are
# the application's own): the link page then says the link has expired.
TOKEN_EXPIRED = 4001
SUBPROTOCOL = "sessions"  # answered when offered (beside a credential subprotocol)


@database_sync_to_async
def _staff_may(scope: dict[str, Any], action: str) -> bool:
    """Whether the scope's staff user may `action` ("view", "change") sessions. has_perm reads the
    user's groups and permissions from the database: never on the loop."""
    user = scope.get("user")
    return bool(
        user
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(f"sessions_app.{action}_session")
    )


def _messages(payload: dict[str, Any], *, codes: bool) -> list[dict[str, Any]]:
    """A `session.status` event as what browsers get: the status, then its QR or pairing code
    when `codes` (whoever can scan a QR code can link a phone: that is a change)."""
    messages = [
        {
            "type": "session.status",
            **{k: v for k, v in payload.items() if k not in ("qr", "pair_code")},
        }
    ]
    if not codes:
        return messages
    if payload.get("qr"):
        messages.append({"type": "session.qr", "session": payload["session"], "qr": payload["qr"]})
    if payload.get("pair_code"):
        messages.append(
            {
                "type": "session.pair_code",
                "session": payload["session"],
                "pair_code": payload["pair_code"],
            }
        )
    return messages


class PushConsumer(AsyncJsonWebsocketConsumer):
    """The server speaks, browsers listen: whatever a client sends (JSON or not) is ignored."""

    client: ApiClient | None = None
    membership: Membership | None = None

    async def join(self, group: str) -> None:
        if self.membership is None:
            self.membership = Membership(self.channel_layer, self.channel_name)
        await self.membership.join(group)

    async def leave(self) -> None:
        if self.membership is not None:
            await self.membership.leave()

    async def authenticate(self) -> bool:
        """Sets `client` from a key or JWT in the handshake: False when it may not read."""
        self.client = await database_sync_to_async(socket_client)(self.scope)
        return self.client is None or self.client.allows("read")

    async def accept_socket(self) -> None:
        offered = self.scope.get("subprotocols") or []
        await self.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return None


class SessionConsumer(PushConsumer):
    async def connect(self) -> None:
        self.session_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        raw = parse_qs(self.scope.get("query_string", b"").decode()).get("token", [""])[0]
        token = ws_token_read(raw) if raw else None
        if token is not None and token.session_id != self.session_id:
            token = None
        if not await self.authenticate() or (
            self.client is not None and not await self.client.amay_see(self.session_id)
        ):
            await self.close()  # before accept: the handshake is refused
            return
        if token is None and self.client is None and not await _staff_may(self.scope, "view"):
            await self.close()
            return
        # A token is handed out to link the session (the API, or the admin to those who may).
        if token is not None:
            self.codes = True
        elif self.client is not None:
            self.codes = self.client.allows("control")
        else:
            self.codes = await _staff_may(self.scope, "change")
        await self.join(f"session.{self.session_id}")
        current = await database_sync_to_async(self._current)()
        if current is None:
            await self.leave()
            await self.close()
            return
        await self.accept_socket()
        if token is not None:  # a staff member's socket lives as long as their login
            self.expiry = asyncio.create_task(self._close_at(token.expires_at))
        for message in _messages(current, codes=self.codes):
            await self.send_json(message)

    async def _close_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.close(code=TOKEN_EXPIRED)

    def _current(self) -> dict[str, Any] | None:
        session = session_find(session_id=self.session_id)
        if session is None:
            return None
        payload: dict[str, Any] = {
            "event": "session.status",
            "sequence": session.event_sequence,
            **session_state(session),
        }
        code = qr.code_get(session_id=session.pk, kind="qr")
        if code is not None:
            payload["qr"] = qr.announced(code)  # the text, as pushes carry it
        return payload

    async def disconnect(self, code: int) -> None:
        if getattr(self, "expiry", None):
            self.expiry.cancel()
        await self.leave()

    async def session_status(self, event: dict[str, Any]) -> None:
        for message in _messages(event["payload"], codes=self.codes):
            await self.send_json(message)


class SessionsConsumer(PushConsumer):
    """Every session's status, for operators' dashboards (staff), or the sessions a key or JWT
    may see."""

    async def connect(self) -> None:
        if not await self.authenticate() or (
            self.client is None and not await _staff_may(self.scope, "view")
        ):
            await self.close()
            return
        await self.join("sessions")
        await self.accept_socket()
        for payload in await database_sync_to_async(self._current)():
            await self.send_json(_messages(payload, codes=False)[0])

    def _current(self) -> list[dict[str, Any]]:
        """The status of every session this client may see, oldest session first."""
        fields = ["external_id", "status", "phone_number", "worker_id", "event_sequence"]
        sessions = sessions_visible(Session.objects.all(), self.client)
        return [
            {"event": "session.status", "sequence": s.event_sequence, **session_state(s)}
            for s in sessions.only(*fields, "last_error", "last_error_code").order_by(
                "created_at", "id"
            )
        ]

    async def disconnect(self, code: int) -> None:
        await self.leave()

    async def session_status(self, event: dict[str, Any]) -> None:
        (status,) = _messages(event["payload"], codes=False)  # codes belong to one session's page
        if self.client is not None and not await self.client.amay_see(status["session"]["id"]):
            return
        await self.send_json(status)
