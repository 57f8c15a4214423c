"""The runtime's door to the database: sync, transactional service functions run in a small pool.

Every call first drops connections that died or aged out (`close_old_connections`), so a database
that restarts, or a connection killed under us, costs one failed step and nothing more. A
connection idle for a second or more is also checked before use (CONN_HEALTH_CHECKS, a
`SELECT 1`); one in use in the last second is not: a busy worker made ~19 steps a message, each
paying a round trip for that check (measured with PostgreSQL's statement log), and a connection
that fails under load is dropped by the error it raises (`errors_occurred`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

T = TypeVar("T")
_THREADS = 4
_executor = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="worker-db")
CHECK_IDLE_SECONDS = 1.0
_last_use = threading.local()


def _fresh(function: Callable[..., T]) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        close_old_connections()
        if time.monotonic() - getattr(_last_use, "at", float("-inf")) < CHECK_IDLE_SECONDS:
            # used a moment ago: no SELECT 1 (the flag Django's own check sets; not in its stubs)
            connections["default"].health_check_done = True  # type: ignore[attr-defined]
        try:
            return function(*args, **kwargs)
        finally:
            _last_use.at = time.monotonic()

    return call


async def db(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await sync_to_async(_fresh(function), thread_sensitive=False, executor=_executor)(
        *args, **kwargs
    )


# Snapshots move files to and from storage, which can take seconds: they get threads of their own
# so that lease renewals never wait behind them.
_io_executor = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="worker-io")


async def io(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await sync_to_async(_fresh(function), thread_sensitive=False, executor=_io_executor)(
        *args, **kwargs
    )


# Lease renewals and the heartbeat: a thread (and connection) of their own, so they never queue
# behind the sessions' own steps. Thousands of sessions starting at once queued thousands of
# those in `db`'s pool; a renewal behind them came too late and every session self-fenced.
_lease_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-lease")


async def lease_db(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await sync_to_async(_fresh(function), thread_sensitive=False, executor=_lease_executor)(
        *args, **kwargs
    )


# The heartbeat and the search for dead workers: a thread of their own too, so that renewals
# never wait for them either.
_heartbeat_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-heartbeat")


async def heartbeat_db(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await sync_to_async(
        _fresh(function), thread_sensitive=False, executor=_heartbeat_executor
    )(*args, **kwargs)


async def db_close() -> None:
    """Close the connection of every pool thread (a stopping worker gives its connections back).

    A barrier per pool makes each of its threads run one of the closes."""
    loop = asyncio.get_running_loop()
    for executor, threads in (
        (_executor, _THREADS),
        (_io_executor, _THREADS),
        (_lease_executor, 1),
        (_heartbeat_executor, 1),
    ):
        barrier = threading.Barrier(threads)

        def close(barrier: threading.Barrier = barrier) -> None:
            connections.close_all()
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)

        await asyncio.gather(*(loop.run_in_executor(executor, close) for _ in range(threads)))
