"""Applies the sandbox controls published by the API (`workers.sandbox`) to this worker's engine.

The listener has one channel on the channel layer and joins the group `sandbox.<session id>` of
each sandbox session this worker runs. It survives the channel layer going away: after an error
it waits, then joins its groups again (a restarted Redis has forgotten them) and goes on.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from workers.engines.base import EngineError
from workers.engines.sandbox import SandboxEngine
from workers.sandbox import control_group

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
        else:
            logger.warning("unknown sandbox control %r", action, extra={"session_id": session_id})
    except EngineError as exc:
        logger.warning(
            "sandbox control %s refused: %s", action, exc, extra={"session_id": session_id}
        )


class SandboxControlListener:
    def __init__(self, engine: SandboxEngine, layer, *, retry_seconds: float = 1.0) -> None:
        self.engine = engine
        self.layer = layer
        self.retry_seconds = retry_seconds
        self.sessions: set[str] = set()
        self.channel = ""

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
                    await apply_sandbox_control(self.engine, receiving.result())
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
