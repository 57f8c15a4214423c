"""A WebSocket's groups on the channel layer, joined again while the socket is open.

A Redis that is flushed forgets every group without an error, and channels_redis drops a member
`group_expiry` (a day) after it joined: a socket open past either got no more pushes, and
neither it nor its browser ever knew (a link page stopped showing new QR codes). A consumer's
`Membership` joins its groups again every REJOIN_SECONDS (one ZADD and one EXPIRE a group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

logger = logging.getLogger(__name__)
REJOIN_SECONDS = 30.0


class Membership:
    def __init__(self, layer: Any, channel: str) -> None:
        self.layer, self.channel = layer, channel
        self.groups: list[str] = []
        self._rejoining: asyncio.Task | None = None

    async def join(self, group: str) -> None:
        await self.layer.group_add(group, self.channel)
        self.groups.append(group)
        if self._rejoining is None:
            self._rejoining = asyncio.create_task(self._rejoin())

    async def leave(self) -> None:
        """Stop joining again first (a rejoin after the discard would leave a member behind),
        then leave every group."""
        if self._rejoining is not None:
            self._rejoining.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rejoining
            self._rejoining = None
        groups, self.groups = self.groups, []
        for group in groups:
            await self.layer.group_discard(group, self.channel)

    async def _rejoin(self) -> None:
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                for group in self.groups:
                    await self.layer.group_add(group, self.channel)
            except Exception:  # the layer is down: the socket's own receive fails and closes it
                logger.debug("could not join the socket's groups again", exc_info=True)
