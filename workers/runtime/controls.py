"""Commands for this worker's sessions that arrive over the channel layer: sandbox controls
(`sessions_app.sandbox`) and calls that need the session's engine and an answer
(`sessions_app.services.calls`:
check numbers, mark read).

The listener has one channel and joins the group `controls.<session id>` of each session this
worker holds. It survives the channel layer going away: after an error it waits, then joins its
groups again (a restarted Redis has forgotten them) and goes on.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import Callable

from django.conf import settings

from gateway.core import tracing
from sessions_app.services.calls import call_answer, control_group
from workers.engines.base import Engine, EngineError
from workers.engines.sandbox import SandboxEngine
from workers.runtime.db import io

logger = logging.getLogger(__name__)


async def apply_sandbox_control(engine: SandboxEngine, message: dict) -> None:
    session_id, action = message["session_id"], message["action"]
    arguments = dict(message.get("arguments") or {})
    try:
        if action == "scan":
            await engine.scan(session_id, arguments.get("phone_number", ""))
        elif action == "receive":
            media = arguments.pop("media_base64", None)
            await engine.receive(
                session_id, media=base64.b64decode(media) if media else None, **arguments
            )
        elif action == "disconnect":
            await engine.drop_connection(session_id)
        elif action == "logout":
            await engine.remote_logout(session_id)
        elif action == "replace":
            await engine.replace(session_id)
        elif action in ("freeze", "outdate"):
            await getattr(engine, action)(session_id)
        elif action == "ban":
            await engine.ban(session_id, **arguments)
        elif action == "receipts":
            await engine.receipts(session_id, **arguments)
        elif action == "presence":
            await engine.presence(session_id, **arguments)
        elif action == "block":
            await engine.block_from_phone(session_id, **arguments)
        elif action == "group_event":
            await engine.group_event(session_id, **arguments)
        elif action == "history":
            await engine.history(session_id, **arguments)
        else:
            logger.warning("unknown sandbox control %r", action, extra={"session_id": session_id})
    except EngineError as exc:
        logger.warning(
            "sandbox control %s refused: %s", action, exc, extra={"session_id": session_id}
        )


# What a call may ask of an engine, with the arguments it takes.
CALLS = {
    "edit_message": ("chat", "wa_message_id", "text", "kind"),
    "revoke_message": ("chat", "wa_message_id", "sender"),
    "check_numbers": ("phone_numbers",),
    "mark_read": ("chat", "message_ids", "sender"),
    "set_presence": ("state",),
    "set_chat_presence": ("chat", "state"),
    "subscribe_presence": ("chat",),
    "blocklist": (),
    "update_blocklist": ("jid", "action"),
    "contact": ("jid",),
    "phone_of_lid": ("lid",),
    "profile": (),
    "update_profile": ("name", "about"),
    "set_profile_picture": ("jpeg_base64",),
    "groups": (),
    "group_info": ("jid",),
    "create_group": ("subject", "participants"),
    "update_group": ("jid", "subject", "description", "announce", "locked"),
    "set_group_picture": ("jid", "jpeg_base64"),
    "update_participants": ("jid", "action", "participants"),
    "group_invite_link": ("jid", "revoke"),
    "join_group": ("link",),
    "leave_group": ("jid",),
}


async def answer_call(engine: Engine, message: dict) -> None:
    """Run one call on the engine and leave its answer where the caller waits for it, in a span
    that joins the trace of the request that made the call (its context travels in the call)."""
    method = message["method"]
    with tracing.span(
        f"engine {method}",
        stored=message.get("trace_context", ""),
        kind=tracing.SpanKind.SERVER,
        attributes={"gateway.engine": engine.name, "gateway.session.id": message["session_id"]},
    ):
        await _answer(engine, message)


async def _answer(engine: Engine, message: dict) -> None:
    method, arguments = message["method"], message.get("arguments") or {}
    try:
        if method not in CALLS:
            raise EngineError(f"unknown call {method!r}", permanent=True, code="unknown_call")
        kwargs = {name: arguments[name] for name in CALLS[method] if name in arguments}
        result = await getattr(engine, method)(message["session_id"], **kwargs)
        if isinstance(result, list):
            result = [dataclasses.asdict(item) for item in result]
        elif dataclasses.is_dataclass(result) and not isinstance(result, type):
            result = dataclasses.asdict(result)
        answer = {"ok": result}
    except EngineError as exc:
        answer = {"error": {"code": exc.code, "message": str(exc)}}
    await io(call_answer, call_id=message["call_id"], answer=answer)


class ControlListener:
    def __init__(
        self,
        engine_for: Callable[[str], Engine | None],
        layer,
        *,
        retry_seconds: float = 1.0,
    ) -> None:
        self.engine_for = engine_for
        self.layer = layer
        self.retry_seconds = retry_seconds
        self.sessions: set[str] = set()
        self.channel = ""
        # Each session's controls in the order they came, sessions side by side: one slow engine
        # call (a number check waiting on WhatsApp) held every other session's up, and thousands
        # of controls at once (a fleet linked by a script) queued until the layer expired them.
        self._last: dict[str, asyncio.Task] = {}
        self._applying: set[asyncio.Task] = set()

    async def join(self, session_id: str) -> None:
        self.sessions.add(session_id)
        if self.channel:
            await self.layer.group_add(control_group(session_id), self.channel)

    async def leave(self, session_id: str) -> None:
        self.sessions.discard(session_id)
        if self.channel:
            await self.layer.group_discard(control_group(session_id), self.channel)

    async def _subscribe(self) -> None:
        # The default prefix, always: channels_redis reads all of a process's channels through one
        # Redis list per prefix under one lock, so a channel of another prefix starves the
        # WebSocket consumers sharing this process (`serve`) until a control arrives.
        channel = await self.layer.new_channel()
        added: set[str] = set()
        while missing := self.sessions - added:  # sessions may join while we add
            for session_id in missing:
                await self.layer.group_add(control_group(session_id), channel)
                added.add(session_id)
        self.channel = channel  # only now: `join` adds to it directly from here on

    async def _apply(self, message: dict) -> None:
        engine = self.engine_for(message.get("session_id", ""))
        if engine is None:  # not ours (any more)
            return
        if message.get("type") == "session.call":
            await answer_call(engine, message)
        elif isinstance(engine, SandboxEngine) and settings.SANDBOX_ENABLED:
            await apply_sandbox_control(engine, message)

    def _apply_soon(self, message: dict) -> None:
        session_id = message.get("session_id", "")
        task = asyncio.get_running_loop().create_task(
            self._apply_after(self._last.get(session_id), message)
        )
        self._last[session_id] = task
        self._applying.add(task)

        def done(task: asyncio.Task) -> None:
            self._applying.discard(task)
            if self._last.get(session_id) is task:
                del self._last[session_id]

        task.add_done_callback(done)

    async def _apply_after(self, previous: asyncio.Task | None, message: dict) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its outcome is its own
        try:
            await self._apply(message)
        except Exception:
            logger.exception("control %s failed", message.get("action") or message.get("method"))

    async def run(self, stop: asyncio.Event) -> None:
        """Receive and apply controls until `stop` is set."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    if not self.channel:
                        await self._subscribe()
                    receiving = asyncio.ensure_future(self.layer.receive(self.channel))
                    done, _ = await asyncio.wait(
                        {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if receiving not in done:
                        receiving.cancel()
                        break
                    self._apply_soon(receiving.result())
                except Exception:
                    logger.warning(
                        "sandbox controls: channel layer unavailable; retrying", exc_info=True
                    )
                    self.channel = ""
                    try:
                        await asyncio.wait_for(stop.wait(), self.retry_seconds)
                    except TimeoutError:
                        pass
        finally:
            stopping.cancel()
            for task in list(self._applying):
                task.cancel()
            await asyncio.gather(*self._applying, return_exceptions=True)
