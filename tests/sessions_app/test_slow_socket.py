"""A WebSocket client that stops reading `/ws/sessions/` (its TCP window full) while 1,000
status changes happen, against the real ASGI server (`serve --no-worker`) and Redis: whoever
makes the changes (a worker, here the test, through the same service) is never held up, another
client gets every change in order meanwhile, and the slow one, once it reconnects, gets the
current state of every session."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path

import pytest
import websockets.sync.client

from sessions_app.models import Session
from sessions_app.services import session_set_status
from tests.processes import Processes, answers, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
CHANGES = 1_000
SESSIONS = 10


class Reader(threading.Thread):
    """Reads every message of a socket as it comes."""

    def __init__(self, connection: websockets.sync.client.ClientConnection) -> None:
        super().__init__(daemon=True)
        self.socket = connection
        self.messages: list[dict] = []
        self.start()

    def run(self) -> None:
        try:
            for raw in self.socket:
                self.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass


def test_a_client_that_stops_reading_holds_nobody_up(
    tmp_path: Path, test_database_url, make_scoped_key
) -> None:
    processes = Processes(tmp_path, DATABASE_URL=test_database_url, LOG_LEVEL="WARNING")
    port = free_port()
    processes.start("ws", "serve", "--no-worker", "--port", str(port))
    try:
        wait_until(lambda: answers(f"http://127.0.0.1:{port}/health"), 60, "the server")
        made = [
            Session.objects.create(engine="sandbox", status="connected", lease_epoch=1)
            for _ in range(SESSIONS)
        ]
        _, key = make_scoped_key(sessions=made, scopes=["read"])  # these sessions alone
        url = f"ws://127.0.0.1:{port}/ws/sessions/"

        def connect(sock: socket.socket | None = None, **options: object):
            headers = {"X-API-Key": key}
            return websockets.sync.client.connect(
                url, additional_headers=headers, sock=sock, **options
            )

        # Never read, with a 4 KiB receive buffer: its library stops taking frames off the
        # socket after one, and the server's writes to it back up at once.
        tiny = socket.socket()
        tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        tiny.connect(("127.0.0.1", port))
        stack = contextlib.ExitStack()
        slow = stack.enter_context(connect(tiny, max_queue=1, close_timeout=1))
        fast = Reader(stack.enter_context(connect()))
        wait_until(lambda: len(fast.messages) >= SESSIONS, 10, "the current state")

        for n in range(CHANGES):  # each in its own transaction, pushed on commit
            session = made[n % SESSIONS]
            status = "reconnecting" if (n // SESSIONS) % 2 == 0 else "connected"
            session_set_status(session_id=session.pk, status=status, epoch=1)

        changes = lambda: fast.messages[SESSIONS:]  # noqa: E731
        wait_until(lambda: len(changes()) >= CHANGES, 120, "every change on the other socket")
        for session in made:
            sequences = [m["sequence"] for m in changes() if m["session"]["id"] == str(session.pk)]
            assert sequences == sorted(sequences) and len(sequences) == CHANGES // SESSIONS
        fast.socket.close()

        slow.close()  # it reconnects
        again = Reader(stack.enter_context(connect()))
        wait_until(lambda: len(again.messages) >= SESSIONS, 10, "the current state again")
        rows = {str(s.pk): s for s in Session.objects.filter(pk__in=[s.pk for s in made])}
        for message in again.messages[:SESSIONS]:
            row = rows[message["session"]["id"]]
            assert (message["session"]["status"], message["sequence"]) == (
                row.status,
                row.event_sequence,
            )
        stack.close()
    finally:
        processes.stop_all()
