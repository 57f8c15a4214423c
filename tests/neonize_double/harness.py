"""The real neonize adapter (its engine hosts, `engine.py`, `translate.py`) over the double:
`neonize_engine(world)` is a HostedEngine whose hosts import `tests/neonize_double/neonize` instead
of the neonize package, and whose whatsmeow talks to `world` (a FakeWhatsApp)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.neonize_double.whatsapp import FakeWhatsApp
from workers.engines.host.client import HostedEngine

DOUBLE = Path(__file__).resolve().parent
ROOT = DOUBLE.parent.parent
# The double's clock against WhatsApp's: a 60 s QR code lasts 60 * SCALE seconds here.
SCALE = 0.02


def double_env(world: FakeWhatsApp, scale: float = SCALE) -> dict[str, str]:
    """What an engine host needs to run on the double."""
    return {
        "PYTHONPATH": os.pathsep.join([str(DOUBLE), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "NEONIZE_DOUBLE_SOCKET": str(world.socket_path),
        "NEONIZE_DOUBLE_TIME_SCALE": str(scale),
        "NEONIZE_QR_FIRST": str(60 * scale),
        "NEONIZE_QR_NEXT": str(20 * scale),
        "NEONIZE_SETTLE": "0.05",
        "NEONIZE_STOP_WAIT": "0.5",
        "NEONIZE_RETRY_FIRST": "0.2",
        "NEONIZE_RETRY_MAX": "1",
    }


def neonize_engine(world: FakeWhatsApp, scale: float = SCALE, **options) -> HostedEngine:
    return HostedEngine(
        "neonize", call_timeout=30, restart_delay=0.2, env=double_env(world, scale), **options
    )
