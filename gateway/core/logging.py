"""Correlation ids for log lines, and what log lines must never carry.

`bind(request_id=…, session_id=…)` adds fields to every log line written in the current context
(a request, a session's task, a message's send); `ContextFilter` copies them onto each record, and
the JSON formatter writes them out. When a span is current (tracing on, gateway.core.tracing), its
`trace_id` and `span_id` (hex, as trace viewers show them) are added too. `log_config` is the one
logging configuration of every process: Django's (settings.LOGGING) and the engine hosts', which
never set up Django.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_context", default=None
)


def current() -> dict[str, str]:
    return _context.get() or {}


def unbound() -> contextvars.Context:
    """A copy of the current context without its log fields, for a task that outlives the one
    that starts it and is about something else (an engine host started for one session's start
    serves many sessions)."""
    context = contextvars.copy_context()
    context.run(_context.set, None)
    return context


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
        # Tracing off: the API's current span is the invalid one, and this is one lookup.
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = trace.format_trace_id(span.trace_id)
            record.span_id = trace.format_span_id(span.span_id)
        return True


# A URL's or path's query string (pre-signed S3 credentials, ?token=…), and a signed token in a
# path (`/media/<token>` opens a file for MEDIA_URL_SECONDS; Django's signed values hold colons).
_QUERY = re.compile(r"""(/[^\s"'<>?]*)\?[^\s"'<>#]+""")
_MEDIA_TOKEN = re.compile(r"""(/media/)[^\s"'/?#]*:[^\s"'/?#]*""")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    return _MEDIA_TOKEN.sub(rf"\g<1>{REDACTED}", _QUERY.sub(rf"\g<1>?{REDACTED}", text))


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


class RedactingJsonFormatter(JsonFormatter):
    """One JSON object per line, with query strings and media tokens taken out of every field
    before it is serialised: the message (the dispatcher logs every URL it posts to), our fields
    (`path`) and the traceback."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return _redacted(super().process_log_record(log_data))


def log_config(level: str) -> dict[str, Any]:
    """JSON lines on stderr, with the bound fields and without query strings or media tokens."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {
            "json": {
                "()": RedactingJsonFormatter,
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            }
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }
