"""WebSockets for live session state: `/ws/sessions/<id>/` (a staff member with permission on
sessions, or `?token=` from `POST /api/v1/sessions/<id>/ws-token`) and `/ws/sessions/` (staff).

On connect a consumer joins its group first and reads the current state second, so no change falls
between the two; then it forwards every change. Consumers never write to the database.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from sessions_app.events import session_state
from sessions_app.selectors import session_find
from sessions_app.services import qr
from sessions_app.tokens import ws_token_read

# The close code when a socket opened with a ws-token reaches the token's expiry (4000-4999 are
# the application's own): the link page then says the link has expired.
TOKEN_EXPIRED = 4001


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

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return None


class SessionConsumer(PushConsumer):
    async def connect(self) -> None:
        self.session_id = str(self.scope["url_route"]["kwargs"]["session_id"])
        raw = parse_qs(self.scope.get("query_string", b"").decode()).get("token", [""])[0]
        token = ws_token_read(raw) if raw else None
        if token is not None and token.session_id != self.session_id:
            token = None
        if token is None and not await _staff_may(self.scope, "view"):
            await self.close()  # before accept: the handshake is refused
            return
        # A token is handed out to link the session (the API, or the admin to those who may).
        self.codes = token is not None or await _staff_may(self.scope, "change")
        self.group = f"session.{self.session_id}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        current = await database_sync_to_async(self._current)()
        if current is None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            await self.close()
            return
        await self.accept()
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
            payload["qr"] = {**qr.announced(code), "image": qr.code_image(code)}
        return payload

    async def disconnect(self, code: int) -> None:
        if getattr(self, "expiry", None):
            self.expiry.cancel()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def session_status(self, event: dict[str, Any]) -> None:
        for message in _messages(event["payload"], codes=self.codes):
            await self.send_json(message)


class SessionsConsumer(PushConsumer):
    """Every session's status, for operators' dashboards (staff only)."""

    async def connect(self) -> None:
        if not await _staff_may(self.scope, "view"):
            await self.close()
            return
        await self.channel_layer.group_add("sessions", self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard("sessions", self.channel_name)

    async def session_status(self, event: dict[str, Any]) -> None:
        (status,) = _messages(event["payload"], codes=False)  # codes belong to one session's page
        await self.send_json(status)
