"""What a worker runs with: its name, capacity and engines, and the periods of its loops."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings


@dataclass
class RuntimeConfig:
    name: str = ""
    capacity: int = 100
    # Sessions claimed and not yet through their first start at most: a worker given thousands
    # at once starts them this many at a time instead of queueing every start together.
    starting: int = 50
    engines: list[str] = field(default_factory=lambda: ["neonize", "sandbox"])
    lease_seconds: float = 30.0
    poll_seconds: float = 2.0
    # How often an idle sender looks at its queue; None: only when woken (NOTIFY, or the worker's
    # sweep of the sessions with work every TTL/3), so idle sessions cost no queries.
    queue_poll_seconds: float | None = None
    snapshot_seconds: float = 60.0
    silence_seconds: float = 900.0
    auth_root: Path = Path("var/auth")
    delivers_webhooks: bool = True  # a dispatcher of its own (WORKER_DELIVERS_WEBHOOKS)

    @classmethod
    def from_settings(cls, **overrides: object) -> RuntimeConfig:
        engines = ["neonize", *(["sandbox"] if settings.SANDBOX_ENABLED else [])]
        values: dict[str, Any] = {
            "lease_seconds": float(settings.WORKER_LEASE_SECONDS),
            "engines": engines,
            "auth_root": settings.VAR_DIR / "auth",
            "snapshot_seconds": float(settings.SNAPSHOT_INTERVAL_SECONDS),
            "silence_seconds": float(settings.SESSION_SILENCE_SECONDS),
            # Without PostgreSQL there is no NOTIFY to wake the worker: poll more often (cheap on
            # the embedded SQLite database, which serves one process).
            "poll_seconds": 2.0 if settings.PRODUCTION else 0.5,
            "queue_poll_seconds": None if settings.PRODUCTION else 0.5,
            "delivers_webhooks": settings.WORKER_DELIVERS_WEBHOOKS,
        }
        values.update({k: v for k, v in overrides.items() if v})
        return cls(**values)
