"""The neonize double's `NewClient` driven as a program using neonize 0.5.2 would: each `Client`
runs one in its own process (importing the double as `neonize`, as in an engine host) and calls
its methods over JSON lines; FakeWhatsApp plays the servers and the other phones.

Arguments are JSON, with these forms for what JSON cannot carry: `jid(...)` (a JID object),
`{"change": "ADD"}` (a ParticipantChange), `member(enum, name)` (a member of an enum of
neonize.utils.enum), `blob(...)` (bytes), `pb(name, **fields)` (a neonize protobuf message) and
`again(value)` (a protobuf object a call or event returned, passed back as it is). Results and
events come back as neonize's protobuf objects."""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.neonize_double.harness import DOUBLE, ROOT, SCALE
from tests.neonize_double.whatsapp import FakeWhatsApp

A, B, C = "+4915100000001", "+4915100000002", "+4915100000003"  # the accounts of sessions/phones
NOT_ON_WHATSAPP = "+4915100000000"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32

# The program in the client's process: it runs one NewClient of the double and answers calls
# (JSON lines on stdin; a dotted method such as `contact.get_contact` reaches an attribute's
# method) and forwards Connected, Message and the group events (JSON lines on stdout).
DRIVER = r"""
import base64, json, sys, threading
from neonize.client import NewClient
from neonize.events import ConnectedEv, GroupInfoEv, JoinedGroupEv, MessageEv
from neonize.proto import Neonize_pb2
from neonize.utils import enum
from neonize.utils.enum import ParticipantChange
from neonize.utils.jid import parse
from google.protobuf.descriptor_pool import Default
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

client = NewClient(sys.argv[1], uuid=sys.argv[2])
MARK = "@@ "  # the double prints too (Login event: …): our lines are marked
out = threading.Lock()

def say(message):
    with out:
        sys.stdout.write(MARK + json.dumps(message) + "\n")
        sys.stdout.flush()

def encode(value):
    if isinstance(value, Message):
        data = base64.b64encode(value.SerializeToString()).decode()
        return {"proto": value.DESCRIPTOR.full_name, "data": data}
    if isinstance(value, (list, tuple)) or type(value).__name__.startswith("Repeated"):
        return [encode(item) for item in value]
    return value

def decode(value):
    if isinstance(value, dict) and "jid" in value:
        return parse(value["jid"])
    if isinstance(value, dict) and "change" in value:
        return ParticipantChange[value["change"]]
    if isinstance(value, dict) and "proto" in value and "data" in value:
        kind = GetMessageClass(Default().FindMessageTypeByName(value["proto"]))
        return kind.FromString(base64.b64decode(value["data"]))
    if isinstance(value, dict) and "proto" in value:
        return getattr(Neonize_pb2, value["proto"])(**value["fields"])
    if isinstance(value, dict) and "enum" in value:
        return getattr(enum, value["enum"])[value["name"]]
    if isinstance(value, dict) and "bytes" in value:
        return base64.b64decode(value["bytes"])
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, dict):
        return {key: decode(item) for key, item in value.items()}
    return value

for code, kind in ((3, ConnectedEv), (17, MessageEv), (21, JoinedGroupEv), (22, GroupInfoEv)):
    client.event(kind)(lambda c, event, code=code: say({"event": code, **encode(event)}))

for line in sys.stdin:
    call = json.loads(line)
    if call["method"] == "connect":
        threading.Thread(target=client.connect, daemon=True).start()
        say({"id": call["id"], "result": None})
        continue
    if call["method"] == "exit":
        import os
        client.stop()
        os._exit(0)
    try:
        target = client
        for name in call["method"].split("."):
            target = getattr(target, name)
        result = target(*decode(call["args"]), **decode(call["kwargs"]))
        say({"id": call["id"], "result": encode(result)})
    except Exception as exc:
        say({"id": call["id"], "error": type(exc).__name__, "message": str(exc)})
"""


def jid(value: str) -> dict:
    """A JID argument (`user@server`)."""
    return {"jid": value}


def blob(data: bytes) -> dict:
    """A bytes argument."""
    return {"bytes": base64.b64encode(data).decode()}


def pb(name: str, **fields: Any) -> dict:
    """An argument that is a neonize protobuf message (Neonize_pb2.`name`)."""
    return {"proto": name, "fields": fields}


def member(enum: str, name: str) -> dict:
    """An argument that is a member of an enum of neonize.utils.enum (`VoteType`, …)."""
    return {"enum": enum, "name": name}


def again(value: Any) -> dict:
    """A Neonize_pb2 object a call or an event returned (a MessageEv, a MessageInfo), as an
    argument: serialised whole."""
    data = base64.b64encode(value.SerializeToString()).decode()
    return {"proto": value.DESCRIPTOR.full_name, "data": data}


def proto(value: Any) -> Any:
    """A protobuf object (or a list of them) the driver sent, parsed with neonize's classes."""
    from google.protobuf.descriptor_pool import Default
    from google.protobuf.message_factory import GetMessageClass
    from neonize.proto import Neonize_pb2  # noqa: F401 - its imports fill the descriptor pool

    if isinstance(value, list):
        return [proto(item) for item in value]
    if isinstance(value, dict) and "proto" in value:
        kind = GetMessageClass(Default().FindMessageTypeByName(value["proto"]))
        return kind.FromString(base64.b64decode(value["data"]))
    return value


def pn(phone: str) -> str:
    return f"{phone.lstrip('+')}@s.whatsapp.net"


def lid(phone: str) -> str:
    return FakeWhatsApp.contact_lid(phone.lstrip("+"))


def text(value: Any) -> str:
    """A JID object as `user@server`."""
    return f"{value.User}@{value.Server}" if value.User else ""


class CallFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


class Client:
    """A NewClient of the double in its own process (as in an engine host), running DRIVER."""

    def __init__(self, world: FakeWhatsApp, directory: Path, uuid: str) -> None:
        self.world, self.uuid = world, uuid
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join([str(DOUBLE), str(ROOT)]),
            "NEONIZE_DOUBLE_SOCKET": str(world.socket_path),
            "NEONIZE_DOUBLE_TIME_SCALE": str(SCALE),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(directory / f"{uuid}.sqlite3"), uuid],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self.answers: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.ids = iter(range(1, 1 << 30))
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.startswith("@@ "):
                continue  # the double's own prints
            message = json.loads(line[3:])
            (self.events if "event" in message else self.answers).put(message)

    def _read_errors(self) -> None:
        """Keeps the process's stderr (for `dies_calling`) and passes it on, so that a failing
        test still shows it (and a full pipe never blocks the process)."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)
            if sys.__stderr__ is not None:
                sys.__stderr__.write(line)
                sys.__stderr__.flush()

    def _send(self, method: str, args: tuple = (), kwargs: dict | None = None) -> int:
        assert self.process.stdin is not None
        call_id = next(self.ids)
        request = {"id": call_id, "method": method, "args": list(args), "kwargs": kwargs or {}}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return call_id

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        call_id = self._send(method, args, kwargs)
        answer = self.answers.get(timeout=30)
        assert answer["id"] == call_id
        if "error" in answer:
            raise CallFailed(answer["error"], answer["message"])
        return proto(answer["result"])

    def fails(self, method: str, *args: Any, **kwargs: Any) -> CallFailed:
        """Calls `method`, which must raise: what it raised."""
        with pytest.raises(CallFailed) as failed:
            self.call(method, *args, **kwargs)
        return failed.value

    def dies_calling(self, method: str, *args: Any) -> tuple[int, str]:
        """Calls `method`, which must kill the process (a Go panic): its exit code and stderr."""
        self._send(method, args)
        code = self.process.wait(timeout=20)
        self._errors.join(timeout=10)
        return code, "".join(self.stderr)

    def event(self, code: int | None = None, timeout: float = 10) -> Any:
        """The next event (of `code`), skipping others."""
        while True:
            message = self.events.get(timeout=timeout)
            if code is None or message["event"] == code:
                return proto(message)

    def no_event(self, wait: float = 0.5) -> None:
        try:
            message = self.events.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected event {message['event']}: {proto(message)}")

    def link(self, phone: str) -> Client:
        self.call("connect")
        self.world.wait(lambda: any(u == self.uuid for u, _, _ in self.world.logins))
        self.world.scan(self.uuid, phone)
        self.event(3)  # Connected
        return self

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send("exit")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
