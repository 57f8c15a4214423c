"""Link previews go through the media URL guard: a link to what the gateway must not reach gets
no preview, and the refusal comes before any socket is opened."""

from __future__ import annotations

import socket

import pytest

from messaging.services.preview import link_preview


def test_a_link_the_guard_refuses_gets_no_preview(monkeypatch, settings) -> None:
    settings.MEDIA_FETCH_ALLOWED_NETWORKS = []
    opened = []

    def connect(self, address):  # never reaches the address, even if the guard let it through
        opened.append(address)
        raise ConnectionRefusedError("the test opens no connection")

    monkeypatch.setattr(socket.socket, "connect", connect)
    for text in ("see http://127.0.0.1:9/admin", "or http://[::1]:9/", "http://169.254.169.254/"):
        assert link_preview(text) is None
    assert opened == []


@pytest.mark.parametrize("text", ["no link here", "ftp://example.com/file"])
def test_no_link_no_preview(text: str) -> None:
    assert link_preview(text) is None
