"""The database's clock as seen from this process: the clock that leases, claims and retries are
judged by, and the one to stamp what other machines check against theirs (a webhook's signed
`webhook-timestamp`: receivers refuse one minutes off, as Standard Webhooks' replay protection
asks). A machine whose clock is minutes wrong then still sends webhooks that verify.

`now()` never queries: it adds the offset last measured (0 until then) to this process's clock.
`refresh()` measures it again, one `SELECT now()` at most every REFRESH_SECONDS, from a thread that
may use the ORM (a dispatcher's claim round). On SQLite (one process, one machine) it is always 0.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta

from django.db import connection
from django.utils import timezone

REFRESH_SECONDS = 30

_offset = 0.0  # seconds to add to this process's clock
_measured_at = -math.inf  # monotonic


def now() -> datetime:
    return timezone.now() + timedelta(seconds=_offset)


def refresh() -> None:
    global _offset, _measured_at
    if connection.vendor != "postgresql" or time.monotonic() - _measured_at < REFRESH_SECONDS:
        return
    with connection.cursor() as cursor:
        before = time.time()
        cursor.execute("SELECT now()")
        database = cursor.fetchone()[0]
        after = time.time()
    _offset, _measured_at = database.timestamp() - (before + after) / 2, time.monotonic()
