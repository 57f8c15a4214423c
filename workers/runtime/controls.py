"""Commands for this worker's sessions that arrive over the channel layer: sandbox controls
(`sessions_app.sandbox`) and calls that need the session's engine and an answer
(`sessions_app.services.calls`:
check numbers, mark read).

The listener has one channel and joins the group `controls.<session id>` of each session this
worker holds. It survives the channel layer going away: after an error it waits, then joins its
groups again (a restarted Redis has forgotten them) and goes on. A Redis that forgets the groups
without an error (FLUSHALL, or channels_redis expiring a membership after its `group_expiry`)
would leave every control for this worker's sessions sent to nobody: every CHECK_SECONDS the
listener sends itself a canary through a group of its own, and joins all its groups again when
the last one never came back.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import uuid
from collections.abc import Callable

from django.conf import settings

from gateway.core import tracing
from sessions_app.services.calls import call_answer, control_group
from workers.engines.base import Engine, EngineError
from workers.engines.sandbox import SandboxEngine
from workers.runtime.db import io

logger = logging.getLogger(__name__)
# How often the listener checks that the layer still routes its groups to it (one group_send).
CHECK_SECONDS = 3.0
CANARY = "controls.canary"


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
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.engine_for = engine_for
        self.layer = layer
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds
        self.sessions: set[str] = set()
        self.channel = ""
        # The canary's group (this listener's alone) and the canary last sent, until it is back.
        self._canary_group = f"controls.listener.{uuid.uuid4().hex}"
        self._canary = ""
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
        await self._join_all(channel)
        self.channel = channel  # only now: `join` adds to it directly from here on
        self._canary = ""

    async def _join_all(self, channel: str) -> None:
        await self.layer.group_add(self._canary_group, channel)
        added: set[str] = set()
        while missing := self.sessions - added:  # sessions may join while we add
            for session_id in missing:
                await self.layer.group_add(control_group(session_id), channel)
                added.add(session_id)

    async def _check_groups(self) -> None:
        """Join every group again if the last canary never came back (the layer forgot them),
        then send the next one. Raises when the layer is down."""
        if self._canary:
            logger.warning(
                "sandbox controls: the channel layer forgot this worker's groups (flushed?); "
                "joining its %s session groups again",
                len(self.sessions),
            )
            await self._join_all(self.channel)
        self._canary = uuid.uuid4().hex
        await self.layer.group_send(self._canary_group, {"type": CANARY, "token": self._canary})

    def _received(self, message: dict) -> None:
        if message.get("type") != CANARY:
            self._apply_soon(message)
        elif message.get("token") == self._canary:
            self._canary = ""  # back: the layer routes our groups to us

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
        """Receive and apply controls until `stop` is set, checking the groups every
        `check_seconds` meanwhile."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.ensure_future(stop.wait())
        receiving: asyncio.Future | None = None
        check_at = 0.0
        try:
            while not stop.is_set():
                try:
                    if not self.channel:
                        await self._subscribe()
                        check_at = loop.time() + self.check_seconds
                    if receiving is None:
                        receiving = asyncio.ensure_future(self.layer.receive(self.channel))
                    done, _ = await asyncio.wait(
                        {receiving, stopping},
                        timeout=max(0.0, check_at - loop.time()),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if stopping in done:
                        break
                    if receiving in done:
                        message, receiving = receiving.result(), None
                        self._received(message)
                    if loop.time() >= check_at:
                        check_at = loop.time() + self.check_seconds
                        await self._check_groups()
                except Exception:
                    logger.warning(
                        "sandbox controls: channel layer unavailable; retrying", exc_info=True
                    )
                    _dropped(receiving)
                    self.channel, receiving = "", None
                    try:
                        await asyncio.wait_for(stop.wait(), self.retry_seconds)
                    except TimeoutError:
                        pass
        finally:
            stopping.cancel()
            _dropped(receiving)
            for task in list(self._applying):
                task.cancel()
            await asyncio.gather(*self._applying, return_exceptions=True)


def _dropped(receiving: asyncio.Future | None) -> None:
    """A receive given up: cancelled if it runs on, its error retrieved if it failed (so
    asyncio does not log it as never retrieved)."""
    if receiving is None:
        return
    if not receiving.done():
        receiving.cancel()
    elif not receiving.cancelled():
        receiving.exception()
