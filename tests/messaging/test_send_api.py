"""POST /sessions/{id}/messages: validation, idempotency, uploads, and media.url's SSRF guard.
No worker runs here: messages stay `queued`."""

from __future__ import annotations

import io
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from PIL import Image
from rest_framework.test import APIClient

from gateway.core.urlguard import UrlRefused, address_forbidden
from messaging.models import Message
from messaging.services.fetch import fetch

pytestmark = pytest.mark.django_db
TO = "+4915123456789"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "blue").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def session(make_session):
    return make_session(status="connected", desired_state="running", jid="15550001@s.whatsapp.net")


def url(session) -> str:
    return f"/api/v1/sessions/{session.id}/messages"


@pytest.mark.smoke
def test_a_text_is_queued(api: APIClient, session) -> None:
    response = api.post(url(session), {"to": TO, "text": "hello"}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["chat"] == "4915123456789@s.whatsapp.net"
    assert body["direction"] == "out" and body["type"] == "text" and body["error"] is None


def test_mentions_are_kept_as_jids_in_json_and_in_forms(api: APIClient, session) -> None:
    group = "120363000000000001@g.us"
    body = {"to": group, "text": "hi @4915123456789", "mentions": [TO, TO, "123@lid"]}
    response = api.post(url(session), body, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["mentions"] == ["4915123456789@s.whatsapp.net", "123@lid"]
    form = {
        "to": group,
        "type": "image",
        "caption": "@4915123456789",
        "mentions": [TO, "+4915100000002"],
    }
    form["file"] = SimpleUploadedFile("p.png", png(), "image/png")
    response = api.post(url(session), form, format="multipart")
    assert response.status_code == 202, response.json()
    assert response.json()["mentions"] == [
        "4915123456789@s.whatsapp.net",
        "4915100000002@s.whatsapp.net",
    ]
    assert api.post(url(session), {"to": TO, "text": "x"}, format="json").json()["mentions"] == []
    for bad in (
        {"to": group, "text": "x", "mentions": [group]},  # only users
        {
            "to": TO,
            "type": "location",
            "location": {"latitude": 1, "longitude": 2},
            "mentions": [TO],
        },
    ):
        response = api.post(url(session), bad, format="json")
        assert response.status_code == 422 and "mentions" in response.json()["error"]["details"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "+123", "text": "x"}, "to"),
        ({"to": "4915123456789", "text": "x"}, "to"),  # no country code sign
        ({"to": "1234@example.com", "text": "x"}, "to"),
        ({"to": 4915123456789, "text": "x"}, "to"),  # a number is not text
        ({"to": TO, "text": 5}, "text"),
        ({"to": TO, "type": "gif", "text": "x"}, "type"),
        ({"to": TO, "type": "location", "location": {"latitude": 95, "longitude": 0}}, "location"),
        ({"to": TO, "type": "location", "location": {"latitude": "1", "longitude": 0}}, "location"),
        ({"text": "x"}, "non_field_errors"),  # `to` is required
        ({"to": TO, "type": "image", "media": {"url": "file:///etc/passwd"}}, "media"),
    ],
)
def test_messages_that_do_not_match_the_schema_are_400(
    api: APIClient, session, body, field
) -> None:
    response = api.post(url(session), body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "validation_error"
    assert any(key.startswith(field) for key in response.json()["error"]["details"])
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"to": "+1000000", "text": "x"}, "to"),  # the shape of a number, but not a possible one
        ({"to": TO}, "text"),
        ({"to": TO, "text": "   "}, "text"),
        ({"to": TO, "type": "image"}, "file"),
        (
            {"to": TO, "type": "voice", "media": {"url": "https://e.com/a.ogg"}, "caption": "x"},
            "caption",
        ),
        ({"to": TO, "type": "reaction", "reaction": "👍"}, "reply_to"),
        ({"to": TO, "type": "location"}, "location"),
        ({"to": TO, "type": "contact"}, "contact"),
        ({"to": TO, "type": "text", "text": "x", "media": {"url": "https://e.com/a.png"}}, "file"),
    ],
)
def test_well_formed_messages_that_cannot_be_sent_are_422_with_the_field(
    api: APIClient, session, body, field
) -> None:
    response = api.post(url(session), body, format="json")
    assert response.status_code == 422, response.json()
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["details"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("to", "chat"),
    [
        # Possible for their country code though phonenumbers does not know them as assigned:
        # WhatsApp is the judge of these, not the library's metadata.
        ("+15555550123", "15555550123@s.whatsapp.net"),
        ("+1 555 555 0199", "15555550199@s.whatsapp.net"),
        ("+447700900123", "447700900123@s.whatsapp.net"),
    ],
)
def test_possible_numbers_are_accepted(api: APIClient, session, to: str, chat: str) -> None:
    response = api.post(url(session), {"to": to, "text": "x"}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["chat"] == chat


@pytest.mark.parametrize("to", ["+1555", "+15555550123456", "+999123456789", "+49 12"])
def test_what_cannot_be_a_number_is_refused(api: APIClient, session, to: str) -> None:
    response = api.post(url(session), {"to": to, "text": "x"}, format="json")
    assert response.status_code in (400, 422), response.json()
    assert "to" in response.json()["error"]["details"]
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "stopped", "desired_state": "stopped"}, 409),
        ({"status": "failed", "desired_state": "stopped"}, 409),
        ({"status": "logged_out"}, 409),
        ({"status": "scan_qr"}, 409),  # not linked: nothing could send it
        ({"status": "reconnecting", "jid": "1@s.whatsapp.net"}, 202),  # keeps its queue
        ({"status": "starting", "jid": "1@s.whatsapp.net"}, 202),  # a linked session restarting
    ],
)
def test_only_running_linked_sessions_take_messages(
    api: APIClient, make_session, fields, expected
) -> None:
    session = make_session(**{"desired_state": "running", **fields})
    response = api.post(url(session), {"to": TO, "text": "x"}, format="json")
    assert response.status_code == expected
    if expected == 409:
        assert response.json()["error"]["code"] == "session_not_running"


def test_an_unknown_session_is_a_404(api: APIClient) -> None:
    response = api.post(
        "/api/v1/sessions/00000000-0000-0000-0000-000000000000/messages",
        {"to": TO, "text": "x"},
        format="json",
    )
    assert response.status_code == 404


def test_idempotency_key_checks(api: APIClient, session) -> None:
    body = {"to": TO, "text": "x"}
    first = api.post(url(session), body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post(url(session), body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["idempotency_key"] == "k1"
    changed = api.post(
        url(session), {**body, "to": "+4915123456780"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert changed.status_code == 422
    too_long = api.post(url(session), body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert too_long.status_code == 400
    assert Message.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicates_make_one_row(api_key: str, make_session) -> None:
    session = make_session(status="connected", desired_state="running", jid="1@s.whatsapp.net")

    def send(_: int) -> tuple[int, str]:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=api_key)
        try:
            response = client.post(
                url(session),
                {"to": TO, "text": "once"},
                format="json",
                HTTP_IDEMPOTENCY_KEY="race",
            )
            return response.status_code, response.json()["id"]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(send, range(20)))
    assert Message.objects.filter(session=session).count() == 1
    assert len({message_id for _, message_id in results}) == 1
    assert sorted(code for code, _ in results) == [200] * 19 + [202]


# --- uploads --------------------------------------------------------------------------------------


def send_file(api, session, kind: str, content: bytes, name: str, mime: str, **extra):
    data = {"to": TO, "type": kind, "file": SimpleUploadedFile(name, content, mime), **extra}
    return api.post(url(session), data, format="multipart")


def test_an_upload_is_stored_with_its_type_size_and_hash(api: APIClient, session) -> None:
    import hashlib

    response = send_file(
        api, session, "image", png(), "../../../etc/passwd.png", "image/png", caption="blue"
    )
    assert response.status_code == 202, response.json()
    media = response.json()["media"]
    assert media["mime_type"] == "image/png" and media["size"] == len(png())
    assert media["sha256"] == hashlib.sha256(png()).hexdigest()
    assert media["filename"] == "passwd.png"  # no path from the client's name
    message = Message.objects.get()
    assert ".." not in message.media.name and message.media.name.endswith("/passwd.png")
    with default_storage.open(message.media.name) as stored:
        assert stored.read() == png()


def test_bytes_that_are_not_the_declared_type_are_415(api: APIClient, session) -> None:
    response = send_file(api, session, "image", b"MZ\x90\x00 not a picture", "x.png", "image/png")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    pdf_named_png = send_file(api, session, "document", png(), "invoice.pdf", "application/pdf")
    assert pdf_named_png.status_code == 415
    assert not Message.objects.exists()


def test_oversize_uploads_are_413(api: APIClient, session, settings) -> None:
    settings.MEDIA_MAX_IMAGE_BYTES = 1024
    big = png() + bytes(2048)
    response = send_file(api, session, "image", big, "big.png", "image/png")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert not Message.objects.exists()


# --- media.url and the SSRF guard -----------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b:1::a9fe:a9fe",
        "2002:7f00:1::1",
        "2002:a00:1::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        # Forms Python's is_global gets wrong, and IANA special-purpose blocks.
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:0:127.0.0.1",  # IPv4-translated
        "::ffff:0:8.8.8.8",
        "fec0::1",  # site-local
        "192.0.0.8",  # IPv4 dummy address
        "192.0.0.9",  # PCP anycast (globally reachable, still special)
        "198.18.0.1",  # benchmarking
        "192.88.99.1",
        "100::1",  # discard-only
        "2001:2::1",  # benchmarking
        "2001:db8::1",
        "3fff::1",
        "5f00::1",
        "2620:4f:8000::1",
        "64:ff9b:1::808:808",  # local-use NAT64, even for a public IPv4 address
        "::ffff:192.0.0.8",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    assert address_forbidden(ipaddress.ip_address(address))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to make an internet socket fails the test: a refusal must come before one."""
    original = socket.socket.__init__

    def refuse(self, family=-1, *args, **kwargs) -> None:
        if family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError("a socket was opened for a refused address")
        original(self, family, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "__init__", refuse)


@pytest.mark.parametrize("media_url", ["http://[x/", "http://[::1:80/", "http://h:99999999/"])
def test_an_unparsable_url_is_refused_not_a_500(no_network: None, media_url: str) -> None:
    with pytest.raises(UrlRefused) as refused:
        fetch(media_url, max_bytes=1024)
    assert refused.value.code == "url_invalid"


def redirect_to(location: str):
    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.end_headers()

    return redirect


def send_from(api, session, host: str, respond, path: str = "/x.png"):
    """Send an image whose `media.url` is served by `respond` on `host`: (response, server)."""
    server = Target(host, respond)
    try:
        return send_url(api, session, f"{server.url}{path}"), server
    finally:
        server.close()


def test_a_redirect_to_an_unparsable_url_is_refused(
    api: APIClient, session, allowed_host: str
) -> None:
    response, _ = send_from(api, session, allowed_host, redirect_to("http://[bad"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "url_invalid"


@pytest.mark.parametrize(
    "media_url",
    [
        "http://[::127.0.0.1]/x.png",
        "http://[::ffff:0:127.0.0.1]/x.png",
        "http://[fec0::1]/x.png",
        "http://192.0.0.8/x.png",
        "http://198.18.0.1/x.png",
        "http://[2001:db8::1]:8080/x.png",
        "http://[64:ff9b:1::a9fe:a9fe]/latest/meta-data",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_refused_addresses_are_refused_before_any_socket_exists(
    no_network: None, media_url: str
) -> None:
    with pytest.raises(UrlRefused) as refused:
        fetch(media_url, max_bytes=1024)
    assert refused.value.code == "url_forbidden"


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not address_forbidden(ipaddress.ip_address(address))


class Target:
    """An HTTP server that counts the connections it sees."""

    def __init__(self, host: str, respond) -> None:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                respond(self)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def verify_request(self, request, client_address) -> bool:
                target.connections += 1
                return True

        self.connections = 0
        self.server = Server((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_png(handler: BaseHTTPRequestHandler) -> None:
    body = png()
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def loopback_target() -> Iterator[Target]:
    target = Target("127.0.0.1", serve_png)
    yield target
    target.close()


def send_url(api, session, media_url: str, kind: str = "image"):
    return api.post(
        url(session), {"to": TO, "type": kind, "media": {"url": media_url}}, format="json"
    )


@pytest.mark.parametrize(
    "template",
    [
        "{url}/x.png",
        "http://localhost:{port}/x.png",  # a name resolving to loopback
        "http://[::ffff:127.0.0.1]:{port}/x.png",
        "http://2130706433:{port}/x.png",  # 127.0.0.1 as one number
        "http://0x7f.0.0.1:{port}/x.png",
    ],
)
def test_media_urls_to_our_own_network_are_refused_without_a_connection(
    api: APIClient, session, loopback_target: Target, template: str
) -> None:
    port = loopback_target.url.rsplit(":", 1)[1]
    response = send_url(api, session, template.format(url=loopback_target.url, port=port))
    assert response.status_code == 422, response.json()
    assert response.json()["error"]["code"] == "url_forbidden"
    assert loopback_target.connections == 0
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("media_url", "code"),
    [
        ("http://user:secret@example.com/x.png", "url_credentials"),
        ("http://no-such-host.invalid/x.png", "url_unresolvable"),
    ],
)
def test_other_refusals_have_codes(
    api: APIClient, session, media_url: str, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unresolvable(host: str, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)  # no DNS query leaves the machine
    response = send_url(api, session, media_url)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code


@pytest.fixture
def allowed_host(settings) -> str:
    """127.0.0.2 stands for a public server: the operator allowed it."""
    settings.MEDIA_FETCH_ALLOWED_NETWORKS = ["127.0.0.2/32"]
    return "127.0.0.2"


def test_a_media_url_is_fetched_and_stored(api: APIClient, session, allowed_host: str) -> None:
    server = Target(allowed_host, serve_png)
    try:
        response = send_url(api, session, f"{server.url}/pictures/red.png")
    finally:
        server.close()
    assert response.status_code == 202, response.json()
    assert response.json()["media"]["filename"] == "red.png"
    assert response.json()["media"]["size"] == len(png())


def test_a_redirect_to_loopback_is_refused_before_connecting(
    api: APIClient, session, allowed_host: str, loopback_target: Target
) -> None:
    secret = f"{loopback_target.url}/secret.png"
    response, redirector = send_from(api, session, allowed_host, redirect_to(secret))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "url_forbidden"
    assert redirector.connections == 1 and loopback_target.connections == 0


def test_a_media_url_too_large_is_413(api: APIClient, session, allowed_host, settings) -> None:
    settings.MEDIA_MAX_IMAGE_BYTES = 1024

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.end_headers()  # no Content-Length: the size shows only while reading
        for _ in range(64):
            handler.wfile.write(bytes(1024))

    server = Target(allowed_host, endless)
    try:
        response = send_url(api, session, f"{server.url}/big.png")
    finally:
        server.close()
    assert response.status_code == 413
    assert not Message.objects.exists()


def test_one_deadline_covers_a_server_that_trickles_headers(
    api: APIClient, session, allowed_host, settings
) -> None:
    """A server sending one header line at a time, forever: each read is quick, the whole is not."""
    settings.MEDIA_FETCH_TIMEOUT_SECONDS = 1
    stop = threading.Event()

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.flush_headers()  # the status line (send_response only buffers it)
        while not stop.wait(0.2):
            try:
                handler.wfile.write(b"X-Trickle: 1\r\n")
                handler.wfile.flush()
            except OSError:
                return

    server = Target(allowed_host, trickle)
    started = time.monotonic()
    try:
        response = send_url(api, session, f"{server.url}/slow.png")
    finally:
        stop.set()
        server.close()
    assert response.status_code == 422, response.json()
    assert response.json()["error"]["code"] == "url_timeout"
    assert time.monotonic() - started < 30  # it ended; before the fix it never did
    assert not Message.objects.exists()


def test_one_deadline_covers_every_redirect(
    api: APIClient, session, allowed_host, settings
) -> None:
    """Five hops that each fit the budget do not get a budget each."""
    settings.MEDIA_FETCH_TIMEOUT_SECONDS = 1
    hops = []

    def slow_redirect(handler: BaseHTTPRequestHandler) -> None:
        hops.append(handler.path)
        time.sleep(0.4)  # the server's own pace, not the test waiting for something
        if len(hops) >= 5:
            serve_png(handler)
            return
        handler.send_response(302)
        handler.send_header("Location", f"/hop-{len(hops)}.png")
        handler.end_headers()

    server = Target(allowed_host, slow_redirect)
    try:
        response = send_url(api, session, f"{server.url}/hop-0.png")
    finally:
        server.close()
    assert response.status_code == 422, response.json()
    assert response.json()["error"]["code"] == "url_timeout"
    assert len(hops) < 5


def test_stickers_are_webp_within_whatsapps_limits(api: APIClient, session) -> None:
    import os

    def webp(frames: int, side: int) -> bytes:
        images = [
            Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)) for _ in range(frames)
        ]
        out = io.BytesIO()
        images[0].save(out, "WEBP", lossless=True, save_all=frames > 1, append_images=images[1:])
        return out.getvalue()

    def send(content: bytes, name: str = "s.webp", content_type: str = "image/webp"):
        file = SimpleUploadedFile(name, content, content_type=content_type)
        return api.post(
            url(session), {"to": TO, "type": "sticker", "file": file}, format="multipart"
        )

    assert send(webp(1, 64)).status_code == 202
    assert send(png(), "s.png", "image/png").status_code == 415  # a sticker is a WebP
    large = webp(1, 300)  # noise does not compress: well over 100 KB
    assert 100 * 1024 < len(large) < 500 * 1024
    response = send(large)
    assert response.status_code == 413 and "static sticker" in response.json()["error"]["message"]
    animated = webp(2, 150)
    assert 100 * 1024 < len(animated) < 500 * 1024
    assert send(animated).status_code == 202  # animated stickers may have up to 500 KB
