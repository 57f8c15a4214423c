"""Per-session send pacing, shared by every process through the cache (Redis in production), so
a session that moves to another worker keeps its pace: a random pause of
SEND_INTERVAL_MIN..MAX_SECONDS after each message, and at most SEND_MAX_PER_MINUTE a minute."""

from __future__ import annotations

import math
import random
import time

from django.conf import settings
from django.core.cache import cache

from gateway.core.throttling import window_count


def _next_key(session_id: object) -> str:
    return f"pace:{session_id}:next"


def _minute_key(session_id: object, minute: int) -> str:
    return f"pace:{session_id}:minute:{minute}"


def pacing_on() -> bool:
    """Whether any pause or limit applies (off: the sender asks the cache nothing)."""
    return bool(settings.SEND_INTERVAL_MAX_SECONDS or settings.SEND_MAX_PER_MINUTE)


def pace_wait_seconds(session_id: object) -> float:
    """How long the session must wait before its next message."""
    now = time.time()
    wait = max(0.0, (cache.get(_next_key(session_id)) or 0) - now)
    if settings.SEND_MAX_PER_MINUTE:
        sent = cache.get(_minute_key(session_id, int(now // 60))) or 0
        if sent >= settings.SEND_MAX_PER_MINUTE:
            wait = max(wait, 60 - now % 60)
    return wait


def pace_sent(session_id: object) -> float:
    """Count a message just sent; returns the pause chosen before the next one."""
    now = time.time()
    pause = random.uniform(settings.SEND_INTERVAL_MIN_SECONDS, settings.SEND_INTERVAL_MAX_SECONDS)  # noqa: S311 - spacing, not secrecy
    if pause:
        cache.set(_next_key(session_id), now + pause, timeout=math.ceil(pause) + 1)
    if settings.SEND_MAX_PER_MINUTE:
        window_count(_minute_key(session_id, int(now // 60)), timeout=120)
    return pause
