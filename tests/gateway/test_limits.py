"""Request bodies are bounded at the edge, on both web servers: over the limit is a JSON 413
before the body is read, a large body without credentials leaves memory flat, and a malformed
body gets a JSON error."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework_api_key.models import APIKey

from tests.processes import Processes, answers, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
SESSION = "00000000-0000-0000-0000-000000000000"
UPLOAD_PATH = f"/api/v1/sessions/{SESSION}/messages"
MB = 1024 * 1024


class Server:
    def __init__(self, port: int, pid: int, api_key: str) -> None:
        self.port, self.pid, self.api_key = port, pid, api_key

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def answer_to_head(self, path: str, headers: dict[str, str]) -> tuple[int, str, dict]:
        """Send a POST's head alone (not a byte of its body): the status, content type and JSON
        body of the answer."""
        with self.connect() as sock:
            sock.sendall(request_head("POST", path, headers))
            status, answer_headers, body = read_response(sock)
        return status, answer_headers["content-type"], json.loads(body)


def _worker_pid(master: int) -> int:
    """gunicorn's one worker process, where requests are handled."""
    children = Path(f"/proc/{master}/task/{master}/children")
    return wait_until(lambda: int((children.read_text().split() or [0])[0]), 30, "a worker")


@pytest.fixture(params=["serve", "gunicorn"])
def server(request, tmp_path: Path, test_database_url: str) -> Iterator[Server]:
    processes = Processes(tmp_path, DATABASE_URL=test_database_url, LOG_LEVEL="WARNING")
    port = free_port()
    if request.param == "serve":
        process = processes.start("web", "serve", "--no-worker", "--port", str(port))
    else:
        gunicorn = [sys.executable, "-m", "gunicorn", "gateway.wsgi", "-w", "1", "--timeout", "120"]
        process = processes.run("web", [*gunicorn, "-b", f"127.0.0.1:{port}"])
    wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), 60, f"{request.param}")
    pid = process.pid if request.param == "serve" else _worker_pid(process.pid)
    try:
        yield Server(port, pid, APIKey.objects.create_key(name="limits")[1])
    finally:
        processes.stop_all()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: localhost",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        (  # over the largest media: refused by its length alone
            UPLOAD_PATH,
            {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(102 * MB)},
            413,
            "payload_too_large",
        ),
        (  # JSON has its own limit, on the send path too
            UPLOAD_PATH,
            {"Content-Type": "application/json", "Content-Length": str(3 * MB)},
            413,
            "payload_too_large",
        ),
        (
            "/api/v1/sessions",
            {"Content-Type": "application/json", "Content-Length": str(3 * MB)},
            413,
            "payload_too_large",
        ),
        (  # a chunked body has no length to judge (Django under WSGI would read it as empty)
            UPLOAD_PATH,
            {"Content-Type": "multipart/form-data; boundary=x", "Transfer-Encoding": "chunked"},
            411,
            "length_required",
        ),
    ],
)
def test_a_body_is_refused_by_its_head_before_it_is_sent(
    server: Server, settings, path: str, headers: dict, status: int, code: str
) -> None:
    assert settings.MEDIA_MAX_DOCUMENT_BYTES + MB < 102 * MB  # the first case is over the limit
    answer = server.answer_to_head(path, headers)
    assert answer == (status, "application/json", answer[2])
    assert answer[2]["error"]["code"] == code


def test_a_large_body_without_credentials_leaves_memory_flat(server: Server) -> None:
    size = 60 * MB
    head = (
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    tail = b"\r\n--x--\r\n"
    before = server.rss_mb()
    with server.connect() as sock:
        sock.sendall(
            request_head(
                "POST",
                UPLOAD_PATH,
                {
                    "Content-Type": "multipart/form-data; boundary=x",
                    "Content-Length": str(len(head) + size + len(tail)),
                },
            )
        )
        sock.sendall(head)
        block = bytes(range(256)) * 4096  # 1 MiB
        try:
            for _ in range(60):
                sock.sendall(block)
            sock.sendall(tail)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before the end: nothing of it was wanted
        status, _, body = read_response(sock)
    assert status == 401 and json.loads(body)["error"]["code"] == "not_authenticated"
    assert server.rss_mb() - before < 50


@pytest.mark.parametrize(
    ("path", "content_type", "payload"),
    [
        ("check-numbers", "multipart/form-data; boundary=x", b"--x\r\nbroken"),
        ("migrate", "multipart/form-data; boundary=", b"--\r\n"),
        ("pair-code", "multipart/form-data; boundary=x", b"--x--garbage"),
        ("messages", "multipart/form-data", b"no boundary at all"),
        ("messages", "application/json", b'{"to": '),
    ],
)
def test_a_malformed_body_gets_a_json_error(
    server: Server, make_session, path: str, content_type: str, payload: bytes
) -> None:
    session = make_session(status="connected", desired_state="running", jid="1@s.whatsapp.net")
    with server.connect() as sock:
        sock.sendall(
            request_head(
                "POST",
                f"/api/v1/sessions/{session.pk}/{path}",
                {
                    "Content-Type": content_type,
                    "Content-Length": str(len(payload)),
                    "X-API-Key": server.api_key,
                },
            )
            + payload
        )
        status, headers, body = read_response(sock)
    # Unreadable, read as nothing usable, or a type the endpoint does not take: our JSON, never
    # a bare 400.
    assert status in (400, 415), body
    assert headers["content-type"] == "application/json"
    codes = ("malformed_request", "validation_error", "unsupported_media_type")
    assert json.loads(body)["error"]["code"] in codes
