"""Stopping a long-running loop cleanly: SIGTERM and SIGINT only set an event that every loop
of the process watches."""

from __future__ import annotations

import asyncio
import signal


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """`stop` (a new event by default), set on SIGTERM or SIGINT. Call inside the running loop."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
