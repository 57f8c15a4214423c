"""Stopping a worker ends every loop, even one that lost its cancellation once (Python 3.11's
asyncio.wait_for swallows a cancellation that arrives as its future completes)."""

from __future__ import annotations

import asyncio

import pytest

from workers.runtime.worker import cancel_all

pytestmark = pytest.mark.asyncio


async def test_a_loop_that_swallowed_one_cancellation_still_ends() -> None:
    swallowed = asyncio.Event()

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()  # as wait_for does when the wait finished at the same moment

    async def fails() -> None:
        raise RuntimeError("a loop that died on its own")

    tasks = [asyncio.create_task(loop()), asyncio.create_task(fails())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all(tasks), 10)
    assert swallowed.is_set() and all(task.done() for task in tasks)
