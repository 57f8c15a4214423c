"""`deploy/nginx/gateway.conf`, the proxy of deploy/compose.yaml: checked by `nginx -t` and run (by
Debian's nginx, in the foreground, in a temporary prefix) in front of the real `web` and `ws` roles
of tests/deploy/conftest.py. The committed file is what runs; only its addresses are replaced:
the `listen` line and the upstreams' `server` lines (compose's service names do not resolve here).
The wrapper stands in for the nginx image's own nginx.conf, which includes the file in `http`."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets.sync.client

from gateway.core.limits import max_body_bytes
from tests.deploy.conftest import Stack, http
from tests.processes import ROOT, answers, free_port, wait_until

NGINX = "/usr/sbin/nginx"
CONF = ROOT / "deploy" / "nginx" / "gateway.conf"


def rendered(text: str, replacements: dict[str, str]) -> str:
    for committed, local in replacements.items():
        assert text.count(committed) == 1, f"{committed!r} is no longer in {CONF.name}"
        text = text.replace(committed, local)
    return text


class Proxy:
    def __init__(self, prefix: Path, port: int) -> None:
        self.prefix, self.port = prefix, port
        self.main = prefix / "nginx.conf"

    def command(self, *args: str) -> list[str]:
        return [NGINX, "-p", str(self.prefix), "-c", str(self.main), "-e", "logs/error.log", *args]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"


@pytest.fixture(scope="module")
def proxy(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    prefix = tmp_path_factory.mktemp("nginx")
    (prefix / "logs").mkdir()
    proxy = Proxy(prefix, free_port())
    (prefix / "gateway.conf").write_text(
        rendered(
            CONF.read_text(),
            {
                "listen 80;": f"listen 127.0.0.1:{proxy.port};",
                "server web:8000;": f"server 127.0.0.1:{stack.ports['web']};",
                "server ws:8000;": f"server 127.0.0.1:{stack.ports['ws']};",
            },
        )
    )
    temp = " ".join(f"{kind}_temp_path {prefix}/{kind};" for kind in TEMP_PATHS)
    proxy.main.write_text(
        f"pid {prefix}/nginx.pid;\n"
        # The workers of a root master would run as nobody, who may not enter pytest's directory.
        "user root;\n"
        "events {}\n"
        f"http {{ access_log {prefix}/logs/access.log; {temp} include {prefix}/gateway.conf; }}\n"
    )
    checked = subprocess.run(proxy.command("-t"), capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "syntax is ok" in checked.stderr
    process = subprocess.Popen(proxy.command("-g", "daemon off;"), stderr=subprocess.PIPE)
    try:
        wait_until(lambda: process.poll() is not None or answers(proxy.url("/")), 30, "nginx")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield proxy
    finally:
        process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
        process.wait(timeout=30)


TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def test_the_api_goes_to_web_under_the_clients_host(stack: Stack, proxy: Proxy) -> None:
    created = http(
        proxy.url("/api/v1/sessions"),
        "POST",
        key=stack.api_key,
        body={"engine": "sandbox", "start": False},
        host=proxy.host,
    )
    assert created[0] == 201, created
    session = http(
        proxy.url(f"/api/v1/sessions/{created[1]['id']}"), key=stack.api_key, host=proxy.host
    )
    assert session[0] == 200 and session[1]["id"] == created[1]["id"]
    assert http(proxy.url("/health"), host=proxy.host)[0] == 200


def test_a_session_socket_goes_to_ws_and_passes_the_origin_check(
    stack: Stack, proxy: Proxy
) -> None:
    """The browser's case: an Origin, which the gateway compares with the Host it was sent (its
    port included) and the scheme in X-Forwarded-Proto."""
    status, session = http(
        proxy.url("/api/v1/sessions"),
        "POST",
        key=stack.api_key,
        body={"engine": "sandbox", "start": False},
        host=proxy.host,
    )
    assert status == 201
    url = f"ws://{proxy.host}/ws/sessions/{session['id']}/"
    headers = {"X-API-Key": stack.api_key}
    origin = f"http://{proxy.host}"
    with websockets.sync.client.connect(url, additional_headers=headers, origin=origin) as ws:
        state = json.loads(ws.recv(timeout=10))
    assert state["type"] == "session.status"
    assert state["session"]["id"] == session["id"]
    with pytest.raises(websockets.InvalidStatus) as refused:  # another origin: refused
        websockets.sync.client.connect(url, additional_headers=headers, origin="http://evil.test")
    assert refused.value.response.status_code == 403


def test_metrics_through_the_proxy_ask_for_the_token(stack: Stack, proxy: Proxy) -> None:
    """The proxy adds X-Forwarded-For: a caller through it is not taken for loopback."""
    assert http(stack.url("web", "/metrics"), host="localhost")[0] == 200
    status, body = http(proxy.url("/metrics"), host=proxy.host)
    assert status == 403 and body["error"]["code"] == "permission_denied"


def test_bodies_up_to_the_gateways_largest_reach_it_larger_get_a_json_413(proxy: Proxy) -> None:
    limit = re.search(r"client_max_body_size (\d+)m;", CONF.read_text())
    assert limit is not None
    largest = max_body_bytes("/api/v1/sessions/x/messages", "multipart/form-data; boundary=x")
    assert int(limit.group(1)) * 1024 * 1024 >= largest  # the gateway judges all it may take
    head = (
        "POST /api/v1/sessions/x/messages HTTP/1.1\r\n"
        f"Host: {proxy.host}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {int(limit.group(1)) * 1024 * 1024 + 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(head.encode())  # the head alone: refused before any of the body is sent
        answer = b""
        while b'"details"' not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"application/json" in answer and b'"code": "payload_too_large"' in answer
