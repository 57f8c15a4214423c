"""The worker's storage (S3: auth snapshots and inbound media) as its sessions find it: retried
with backoff while it is down.

The storage is one dependency for all of a worker's sessions: while it is down, every session's
upload fails the same way. So then one attempt is made per retry, after 1 s and twice as late each
time up to `longest`, rather than one per session per period. Measured per attempt: 0.05-0.14 s
against a stopped SeaweedFS (connection refused), 30 s against one that accepts connections and
never answers (read timeouts and retries). One per session was, at 5,000 sessions, 5,000 failures
and warnings every period, and a round that could outlast the outage by hours; a stopping worker
tried every session's snapshot before it let its leases go; inbound media were downloaded from
WhatsApp again at every retry only to be refused. The attempt that succeeds ends the outage, and
what waited for it follows at once (`on_back`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class StorageRetry:
    def __init__(
        self,
        *,
        first: float = 1.0,
        longest: float = 30.0,
        on_back: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first, self.longest = first, longest
        self.on_back = on_back  # called when an attempt succeeds after the storage was down
        self.clock = clock
        self.down_since: float | None = None
        self.delay = 0.0
        self.retry_at = 0.0
        self.failures = 0  # while down

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def due(self) -> bool:
        """Whether an attempt may be made now: always while the storage works; while it is down,
        once its retry is due."""
        return self.down_since is None or self.clock() >= self.retry_at

    def wait(self, period: float) -> float:
        """Seconds until the next attempt of something that tries every `period`: sooner when the
        storage's retry comes first."""
        if self.down_since is None:
            return period
        return max(0.0, min(period, self.retry_at - self.clock()))

    def failed(self, error: object) -> float:
        """An attempt failed for the storage's sake: seconds until the next may be made. A failure
        of an attempt made before the retry was due (another session's, at the same moment) does
        not put the retry off."""
        now = self.clock()
        if self.down_since is None:
            self.down_since, self.delay, self.failures = now, self.first, 0
            self.retry_at = now + self.delay
            logger.warning("storage unavailable (%s); retrying in %.0f s", error, self.delay)
        elif now >= self.retry_at:
            self.delay = min(self.delay * 2, self.longest)
            self.retry_at = now + self.delay
        self.failures += 1
        return self.retry_at - now

    def succeeded(self) -> None:
        """An attempt succeeded: if the storage was down, it is back."""
        if self.down_since is None:
            return
        outage, self.down_since = self.clock() - self.down_since, None
        logger.info(
            "storage back after %.1f s (%s attempts failed meanwhile)", outage, self.failures
        )
        self.on_back()
