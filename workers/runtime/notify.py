"""LISTEN on PostgreSQL for wake-ups, on a connection of its own that is reopened when it drops.
NOTIFY is only a hint (lost while nobody listens): every loop it wakes also polls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)


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
                    handler = handlers.get(notice.channel)
                    if handler is not None:
                        handler(notice.payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
