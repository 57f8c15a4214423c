"""The one path from a web process to a running session: a message to the session's control
group on the channel layer, which the worker that runs it (in this process or any other) has
joined. A control (`publish`: sandbox controls) is fire-and-forget; a call (`call`: check numbers,
mark read) waits for the worker's answer, which comes back through the cache. No engine code is
ever imported into a web process."""

from __future__ import annotations

import time
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from gateway.core import tracing
from gateway.core.errors import ApiError, Conflict, ServiceUnavailable
from sessions_app.states import SessionStatus


def control_group(session_id: object) -> str:
    """The channel layer group the worker running `session_id` listens on."""
    return f"controls.{session_id}"


def publish(session_id: object, message: dict[str, Any]) -> None:
    """Send `message` to the session's worker. ServiceUnavailable when the channel layer is down."""
    try:
        async_to_sync(get_channel_layer().group_send)(control_group(session_id), message)
    except Exception as exc:
        raise ServiceUnavailable("The channel layer is unavailable.") from exc


def _key(call_id: str) -> str:
    return f"call:{call_id}"


def call_answer(*, call_id: str, answer: dict[str, Any]) -> None:
    """The worker's side: leave the answer for a minute."""
    cache.set(_key(call_id), answer, timeout=60)


def call(session_id: object, method: str, **arguments: Any) -> dict[str, Any] | None:
    """Publish the call and wait for the answer (`{"ok": …}` or `{"error": {code, message}}`);
    None when no worker answered within WORKER_CALL_SECONDS."""
    call_id = uuid.uuid4().hex
    message = {
        "type": "session.call",
        "call_id": call_id,
        "session_id": str(session_id),
        "method": method,
        "arguments": arguments,
        "trace_context": tracing.context(),  # the worker's span of the call joins this trace
    }
    publish(session_id, message)
    deadline = time.monotonic() + settings.WORKER_CALL_SECONDS
    while time.monotonic() < deadline:
        answer = cache.get(_key(call_id))
        if answer is not None:
            cache.delete(_key(call_id))
            return answer
        time.sleep(0.05)
    return None


# The HTTP status of an engine's refusal, by its code (409 for the others).
ENGINE_ERROR_STATUS = {
    "group_not_found": 404,
    "not_in_group": 404,
    "not_admin": 403,
    "invite_invalid": 422,
    "invite_revoked": 410,
    "invalid_image": 422,
    "not_acceptable": 422,
    "rate_limited": 429,
}


def call_or_raise(session_id: object, method: str, **arguments: Any) -> Any:
    """`call`, with the API's errors: 503 `session_unavailable` when nobody answers; when the
    engine refused, its code with the status `ENGINE_ERROR_STATUS` gives it (409 otherwise)."""
    answer = call(session_id, method, **arguments)
    if answer is None:
        raise ServiceUnavailable(
            "No worker answered for this session; is it connected?", code="session_unavailable"
        )
    if "error" in answer:
        code = answer["error"]["code"]
        raise ApiError(
            answer["error"]["message"], code=code, status=ENGINE_ERROR_STATUS.get(code, 409)
        )
    return answer["ok"]


class SessionNotConnected(Conflict):
    code = "session_not_running"


def session_connected(session: Any) -> None:
    """409 `session_not_running` unless the session is connected (before counting a call
    against a rate limit, so a refused call costs nothing)."""
    if session.status != SessionStatus.CONNECTED:
        raise SessionNotConnected(f"The session is {session.status}; it must be connected.")


def session_call(session: Any, method: str, **arguments: Any) -> Any:
    """`call_or_raise` for a session that must be connected to answer (presence, …): 409
    `session_not_running` at once when it is not."""
    session_connected(session)
    return call_or_raise(session.pk, method, **arguments)
