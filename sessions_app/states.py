"""A session's states and the one table of legal status changes (the state machine). Plain
values: the runtime and the API use them without touching the model."""

from __future__ import annotations

from django.db import models


class SessionStatus(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    STARTING = "starting", "Starting"
    SCAN_QR = "scan_qr", "Waiting for QR scan"
    PAIRING = "pairing", "Waiting for pairing code"
    CONNECTED = "connected", "Connected"
    RECONNECTING = "reconnecting", "Reconnecting"
    LOGGED_OUT = "logged_out", "Logged out"
    FAILED = "failed", "Failed"


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Engine(models.TextChoices):
    NEONIZE = "neonize", "neonize (WhatsApp Web multi-device)"
    SANDBOX = "sandbox", "sandbox (simulated WhatsApp)"


S = SessionStatus

# The one place that says which status changes are legal. `failed` and `stopped` can be reached from
# any other status (an unrecoverable error; desired_state=stopped); everything else follows the
# lifecycle in docs/architecture.md. A QR rotating inside `scan_qr` is not a status change.
SESSION_TRANSITIONS: dict[str, frozenset[str]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.SCAN_QR, S.PAIRING, S.CONNECTED, S.RECONNECTING, S.LOGGED_OUT}),
    S.SCAN_QR: frozenset({S.PAIRING, S.CONNECTED, S.STARTING}),
    S.PAIRING: frozenset({S.SCAN_QR, S.CONNECTED, S.STARTING}),
    S.CONNECTED: frozenset({S.RECONNECTING, S.LOGGED_OUT, S.STARTING}),
    S.RECONNECTING: frozenset({S.CONNECTED, S.LOGGED_OUT, S.STARTING}),
    S.LOGGED_OUT: frozenset({S.STARTING}),
    S.FAILED: frozenset({S.STARTING}),
}
_FROM_ANY: frozenset[str] = frozenset({S.FAILED, S.STOPPED})
for _source in SESSION_TRANSITIONS:
    SESSION_TRANSITIONS[_source] |= _FROM_ANY - {_source}


def session_transition_allowed(source: str, target: str) -> bool:
    return target in SESSION_TRANSITIONS.get(source, frozenset())
