"""No log line carries a query string (pre-signed S3 credentials, ?token=…) or a media token."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from django.test import Client

from gateway.core.logging import redact

PRESIGNED = (
    "https://s3.example.com/bucket/media/a/b/x.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261201&X-Amz-Signature=deadbeef"
)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the configured JSON handler writes, as it writes it."""
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    try:
        yield stream
    finally:
        handler.setStream(previous)
        logging.getLogger().setLevel(level)


def test_request_lines_lose_their_query_strings(log_lines: io.StringIO) -> None:
    # The dispatcher's line for every request it makes (workers/runtime/dispatcher.py).
    logging.getLogger("workers.runtime.dispatcher").info(
        "webhook %s to %s: HTTP %s", "message.received", PRESIGNED, 200
    )
    line = json.loads(log_lines.getvalue().splitlines()[-1])
    assert "X-Amz-Signature" not in line["message"] and "AKIAEXAMPLE" not in line["message"]
    assert "https://s3.example.com/bucket/media/a/b/x.png?[redacted]" in line["message"]


@pytest.mark.django_db
def test_the_request_log_does_not_keep_media_tokens(log_lines: io.StringIO, client: Client) -> None:
    client.get("/media/eyJuYW1lIjoieCJ9:1tSecret:signature")
    line = json.loads(log_lines.getvalue().splitlines()[-1])
    assert line["message"] == "request" and line["path"] == "/media/[redacted]"
    assert "Secret" not in log_lines.getvalue()


def test_tracebacks_and_fields_are_redacted_too(log_lines: io.StringIO) -> None:
    try:
        raise RuntimeError(f"could not fetch {PRESIGNED}")
    except RuntimeError:
        logging.getLogger("gateway.test").exception("failed", extra={"url": "/link/x/?token=abc"})
    output = log_lines.getvalue()
    assert "deadbeef" not in output and "token=abc" not in output
    assert '"url": "/link/x/?[redacted]"' in output


def test_lines_stay_json_when_a_url_is_quoted(log_lines: io.StringIO) -> None:
    logging.getLogger("gateway.test").warning('fetching "https://x.example/y?sig=1" now')
    line = json.loads(log_lines.getvalue().splitlines()[-1])  # still one valid JSON object
    assert line["message"] == 'fetching "https://x.example/y?[redacted]" now'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /ws/sessions/1/?token=abc.def:ghi", "GET /ws/sessions/1/?[redacted]"),
        ("see https://h/p?q=1#frag", "see https://h/p?[redacted]#frag"),
        ("/media/abc.def:xyz done", "/media/[redacted] done"),
        ("/media/abc.def:xyz/ done", "/media/[redacted]/ done"),
        ("s3://bucket/media/a/b/x.png", "s3://bucket/media/a/b/x.png"),  # a storage path, no token
        ("nothing to hide? no", "nothing to hide? no"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
