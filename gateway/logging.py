"""Correlation ids for log lines.

`bind(request_id=…, session_id=…)` adds fields to every log line written in the current context
(a request, a session's task, a message's send); `ContextFilter` copies them onto each record, and
the JSON formatter writes them out.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_context", default=None
)


def current() -> dict[str, str]:
    return _context.get() or {}


@contextlib.contextmanager
def bind(**fields: str) -> Iterator[None]:
    token = _context.set({**current(), **{k: str(v) for k, v in fields.items()}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True
