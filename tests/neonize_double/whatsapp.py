"""WhatsApp's side for the neonize double: its servers and the phones behind them.

A `FakeWhatsApp` runs in the test process and listens on a Unix socket; the double's clients (in
engine host processes) connect to it as whatsmeow connects to `web.whatsapp.com`: one connection
per `connect()`, JSON lines both ways. A test drives the phones: scan a QR code, type a pairing
code, send a message, read one, unlink the device, take the session over, ban it.

What travels is what whatsmeow gets from the real servers (see BEHAVIOURS.md): `pair-device` with
six refs (pair.go handlePairDevice), `pair-success` then stream error 515 (pair.go
handlePairSuccess, connectionevents.go handleStreamError), `<success>` (handleConnectSuccess),
`<failure reason=…>` at login (handleConnectFailure: 401/403/406 logged out, 402 banned, 405
outdated), stream errors 401 `device_removed` and `replaced`, and the acks of sends (send.go).
Events (messages, receipts) carry neonize's own protobuf objects, serialised.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import secrets
import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Refs in a pair-device IQ: six, so the first QR code lives 60 s (whatsmeow qrchan.go emitQRs).
QR_REFS = 6


@dataclass
class Device:
    """A linked device as the servers know it."""

    uuid: str
    jid: str = ""  # "15550001@s.whatsapp.net" once linked
    lid: str = ""
    push_name: str = ""
    removed: bool = False  # unlinked from the phone: the next login fails with 401
    ban: tuple[int, int] | None = None  # (code, expire seconds): the next login fails with 402
    outdated: bool = False  # the next login fails with 405
    offline: list[dict] = field(default_factory=list)  # pushes waiting for a connection
    # Presence, per connection: shown online (`<presence type="available">`), and whose online
    # status it asked for; a new login starts without either.
    available: bool = False
    subscribed: set[str] = field(default_factory=set)
    push_name_synced: bool = False  # the first app state sync after pairing carried the name
    blocked: list[str] = field(default_factory=list)  # the account's blocklist (@lid JIDs)


class _Connection(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        world = self.server.world
        self.uuid = ""
        self.lock = threading.Lock()
        self.frozen = False  # half-open: what is sent is never answered, nothing is pushed
        if world.outage:  # the network is down: the connection ends at once
            return
        try:
            for line in self.rfile:
                request = json.loads(line)
                if not self.frozen:
                    world._request(self, request)
        except (OSError, ValueError):
            pass
        finally:
            world._gone(self)

    def push(self, message: dict) -> bool:
        try:
            with self.lock:
                self.wfile.write((json.dumps(message) + "\n").encode())
                self.wfile.flush()
            return True
        except (OSError, ValueError):  # the connection is gone (ValueError: its file is closed)
            return False

    def hung_up(self, wait: float = 0.0) -> bool:
        """Whether the client closed its end, watching up to `wait` seconds for it."""
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([self.request], [], [], max(0.0, remaining))
            if readable:
                try:
                    if self.request.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except OSError:
                    return True
                time.sleep(max(0.0, deadline - time.monotonic()))  # data, not a hang-up
                return False
            if remaining <= 0:
                return False

    def close(self) -> None:
        try:
            self.request.shutdown(2)
        except OSError:
            pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    world: FakeWhatsApp


class FakeWhatsApp:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.socket_path = directory / "whatsapp.sock"
        self.devices: dict[str, Device] = {}
        self.connections: dict[str, _Connection] = {}
        self.phones: dict[str, list[dict]] = {}  # what each phone number received
        self.reads: list[dict] = []  # read receipts sessions sent
        # What sessions showed: (uuid, "presence", available|unavailable) or (uuid, chat, state).
        self.presences: list[tuple[str, str, str]] = []
        self.media: dict[str, bytes] = {}
        self.lids: dict[str, str] = {}  # lid user → phone user
        self.pair_codes: dict[str, str] = {}  # uuid → the phone the code was asked for
        self.logins: list[tuple[str, str, float]] = []  # (uuid, "qr" | jid, when)
        # uuids whose login reached the servers; of those, whose client hung up before the answer
        self.dialled: list[str] = []
        self.abandoned: list[str] = []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._server = _Server(str(self.socket_path), _Connection)
        self._server.world = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._ids = itertools.count(1)
        self.handshake_delay = 0.0  # seconds before a login is answered
        self.outage = False  # True: every new connection is closed at once
        self.sent: dict[str, list[dict]] = {}  # uuid → what that device sent, in order
        # Seconds after a send until the recipient's phone sends `delivered`, then `read` (None:
        # no receipts unless a test sends them with `receipt()`).
        self.receipts_after: tuple[float, float] | None = None
        # normal | missing | duplicated | out_of_order | after_reconnect (the sandbox's modes)
        self.receipt_mode = "normal"

    def start(self) -> FakeWhatsApp:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for connection in list(self.connections.values()):
                connection.close()

    # --- the servers' side of a connection ---------------------------------------------------

    def _request(self, connection: _Connection, request: dict) -> None:
        op = request.get("op")
        answer: dict[str, Any] = {"res": request.get("req")}
        # The handshake takes `handshake_delay` (a slow network). A client that hangs up first
        # never sends its ClientFinish, which carries the device's credentials (WM handshake.go
        # doHandshake): the servers cannot tie that socket to the device, so it replaces no
        # other connection of it.
        if op == "login":
            with self._changed:
                self.dialled.append(request["uuid"])
                self._changed.notify_all()
        if op == "login" and connection.hung_up(wait=self.handshake_delay):
            with self._changed:
                self.abandoned.append(request["uuid"])
                self._changed.notify_all()
            return
        with self._changed:
            if op == "login":
                self._login(connection, request, answer)
            else:
                device = self.devices.get(connection.uuid)
                answer |= self._serve(device, op, request)
            self._changed.notify_all()
        connection.push(answer)
        with self._lock:
            pending = []
            device = self.devices.get(connection.uuid)
            if op == "login" and answer.get("ok") and device and device.jid and not device.removed:
                device.available, device.subscribed = False, set()
                pending, device.offline = device.offline, []
                if not device.push_name_synced:
                    # The first app state sync after pairing carries the account's push name
                    # (whatsmeow appstate.go `setting_pushName`); whatsmeow keeps it in its store.
                    device.push_name_synced = True
                    pending.insert(0, {"push": "push_name", "name": device.push_name})
        for push in pending:
            connection.push(push)

    def _login(self, connection: _Connection, request: dict, answer: dict) -> None:
        uuid, jid = request["uuid"], request.get("jid") or ""
        device = self.devices.setdefault(uuid, Device(uuid))
        connection.uuid = uuid
        self.logins.append((uuid, jid or "qr", time.monotonic()))
        if jid and jid != device.jid:
            device = self.devices[uuid] = Device(uuid)  # a store the servers never linked
            answer |= {"ok": False, "failure": 401}
        elif device.removed and jid:
            # The unlinked device's credentials are refused; a store without a device pairs anew
            # (whatsmeow shows QR codes), and the record stays unlinked until a phone scans.
            answer |= {"ok": False, "failure": 401}
        elif device.ban is not None:
            answer |= {"ok": False, "failure": 402, "code": device.ban[0], "expire": device.ban[1]}
        elif device.outdated:
            answer |= {"ok": False, "failure": 405}
        else:
            previous = self.connections.get(uuid)
            self.connections[uuid] = connection
            if previous is not None and previous is not connection:
                # One connection per device: a second one replaces the first (stream conflict).
                previous.push({"push": "stream_error", "conflict": "replaced"})
            answer["ok"] = True
            if not jid:
                answer["pair_device"] = [secrets.token_urlsafe(12) for _ in range(QR_REFS)]

    def _serve(self, device: Device | None, op: str, request: dict) -> dict:
        if op == "download":  # the media servers: no login on this connection
            data = self.media.get(request["direct_path"])
            if data is None:
                return {"error": "download failed with status code 404"}
            return {"data": base64.b64encode(data).decode()}
        if device is None or (not device.jid and op not in ("pair_phone", "upload")):
            return {"error": "not logged in"}
        if op == "send":
            to = request["to"]
            user = to.partition("@")[0]
            if to.endswith("@s.whatsapp.net") and user.endswith("0000"):
                return {"error": f"no LID found for {to} from server"}
            message_id = "3EB0" + secrets.token_hex(9).upper()
            received = {
                "id": message_id,
                "from": device.jid,
                "to": to,
                "message": request["message"],
                "at": time.time(),
            }
            self.phones.setdefault(to, []).append(received)
            self.sent.setdefault(device.uuid, []).append(received)
            if self.receipts_after is not None:
                for status, delay in self._receipt_plan():
                    timer = threading.Timer(
                        delay, self._receipt_for, args=(device.uuid, to, message_id, status)
                    )
                    timer.daemon = True
                    timer.start()
            return {"id": message_id, "t": int(time.time())}
        if op == "pair_phone":
            self.pair_codes[device.uuid if device else ""] = request["phone"]
            code = secrets.token_hex(4).upper()
            return {"code": f"{code[:4]}-{code[4:]}"}
        if op == "usync":
            return {
                "results": [
                    {
                        "query": n,
                        "jid": f"{n.lstrip('+')}@s.whatsapp.net",
                        "in": not n.endswith("0000"),
                    }
                    for n in request["numbers"]
                ]
            }
        if op == "mark_read":
            self.reads.append({k: request[k] for k in ("ids", "chat", "sender", "type")})
            return {"ok": True}
        if op == "presence":  # our own: available or unavailable
            device.available = request["type"] == "available"
            self.presences.append((device.uuid, "presence", request["type"]))
            return {"ok": True}
        if op == "chatstate":
            state = "recording" if request["media"] == "audio" else request["state"]
            state = "typing" if state == "composing" else state
            self.presences.append((device.uuid, request["jid"], state))
            return {"ok": True}
        if op == "subscribe":
            device.subscribed.add(request["jid"])
            self.presences.append((device.uuid, "subscribe", request["jid"]))
            return {"ok": True}
        if op == "ping":
            return {"ok": True}
        if op == "user_lid":  # a user info query (usync): WhatsApp users have a LID
            user = request["jid"].partition("@")[0]
            return {"lid": "" if user.endswith("0000") else self.contact_lid(user)}
        if op == "blocklist_get":
            return self._blocklist(device)
        if op == "blocklist_set":
            self._block(device, request["jid"], request["action"])
            return self._blocklist(device)
        if op == "upload":
            data = base64.b64decode(request["data"])
            path = "/v/" + hashlib.sha256(data).hexdigest()
            self.media[path] = data
            return {"direct_path": path}
        if op == "logout":
            device.removed = True
            return {"ok": True}
        return {"error": f"unknown operation {op}"}

    def _gone(self, connection: _Connection) -> None:
        with self._changed:
            if self.connections.get(connection.uuid) is connection:
                del self.connections[connection.uuid]
            self._changed.notify_all()

    # --- what a test does, as the phone or as WhatsApp -----------------------------------------

    def wait(self, predicate: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        """Wait until `predicate()` (called under the lock) is true; its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out waiting for {what or predicate}")
                self._changed.wait(left)
            return result

    def connected(self, uuid: str) -> bool:
        with self._lock:
            return uuid in self.connections

    def _push(self, uuid: str, message: dict, *, queue: bool = True) -> bool:
        with self._lock:
            connection = self.connections.get(uuid)
            device = self.devices.get(uuid)
            if connection is None or connection.frozen:
                if queue and device is not None:
                    device.offline.append(message)
                return False
        return connection.push(message)

    def scan(self, uuid: str, phone_number: str, push_name: str = "") -> str:
        """The phone scans the session's QR code (or types its pairing code): pair-success, then
        the stream error 515 that makes the client log in again as the new device."""
        digits = "".join(ch for ch in phone_number if ch.isdigit())
        jid = f"{digits}@s.whatsapp.net"
        with self._lock:
            device = self.devices[uuid]
            device.jid, device.push_name, device.removed = (
                jid,
                push_name or f"Phone {digits}",
                False,
            )
            device.lid = f"{int(digits) + 10**14}@lid"
            self.lids[device.lid.partition("@")[0]] = digits
        self._push(uuid, {"push": "pair_success", "jid": jid, "lid": device.lid}, queue=False)
        self._push(uuid, {"push": "stream_error", "code": 515}, queue=False)
        return jid

    def deliver(self, uuid: str, event: Any) -> None:
        """An inbound message (neonize's `Message` event object) reaches the device."""
        self._push(
            uuid, {"push": 17, "event": base64.b64encode(event.SerializePartialToString()).decode()}
        )

    def presence(
        self,
        uuid: str,
        sender_phone: str,
        state: str,
        *,
        group: str = "",
        last_seen: int | None = None,
    ) -> bool:
        """A contact comes online or goes offline (`<presence from=… type=… last=…>`: only to a
        device that subscribed to them), or types, records or stops in a chat (`<chatstate>`, to
        the chat's members); either only to a device that shows itself online (whatsmeow
        events.go, Presence and ChatPresence docs). Returns whether it was pushed."""
        from neonize.proto import Neonize_pb2 as N

        sender = N.JID(User=sender_phone.lstrip("+"), Server="s.whatsapp.net")
        sender_jid = f"{sender.User}@{sender.Server}"
        device = self.devices[uuid]
        if not device.available:  # whatsmeow events.go: none unless marked online
            return False
        if state in ("available", "unavailable"):
            if sender_jid not in device.subscribed:
                return False
            # Unknown last seen: neonize encodes zero time.Time's Unix() (encoder.go).
            event = N.Presence(
                From=sender,
                Unavailable=state == "unavailable",
                LastSeen=last_seen if last_seen is not None else -62135596800,
            )
            code = 20
        else:
            chat = N.JID(User=group.partition("@")[0], Server="g.us") if group else sender
            source = N.MessageSource(Chat=chat, Sender=sender, IsGroup=bool(group))
            event = N.ChatPresence(
                MessageSource=source,
                State=N.ChatPresence.PAUSED if state == "paused" else N.ChatPresence.COMPOSING,
                Media=N.ChatPresence.AUDIO if state == "recording" else N.ChatPresence.TEXT,
            )
            code = 19
        message = {
            "push": code,
            "event": base64.b64encode(event.SerializePartialToString()).decode(),
        }
        return self._push(uuid, message, queue=False)  # presence is never replayed later

    @staticmethod
    def contact_lid(user: str) -> str:
        """A contact's LID, made up as for devices."""
        return f"{int(user) + 10**14}@lid"

    @staticmethod
    def _blocklist(device: Device) -> dict:
        digest = hashlib.sha256("\n".join(device.blocked).encode()).hexdigest()[:16]
        return {"dhash": digest, "jids": list(device.blocked)}

    @staticmethod
    def _block(device: Device, jid: str, action: str) -> None:
        device.blocked = [j for j in device.blocked if j != jid]
        if action == "block":
            device.blocked.append(jid)

    def block_from_phone(self, uuid: str, phone_number: str, action: str) -> None:
        """The account's phone blocks or unblocks a contact: an account_sync notification with a
        `<blocklist>` child reaches the device (whatsmeow notification.go handleBlocklist)."""
        from neonize.proto import Neonize_pb2 as N

        lid = self.contact_lid(phone_number.lstrip("+"))
        with self._lock:
            device = self.devices[uuid]
            previous = self._blocklist(device)["dhash"]
            self._block(device, lid, action)
            digest = self._blocklist(device)["dhash"]
        change = N.BlocklistChange(
            JID=N.JID(User=lid.partition("@")[0], Server="lid"),
            BlockAction=N.BlocklistChange.BLOCK if action == "block" else N.BlocklistChange.UNBLOCK,
        )
        event = N.BlocklistEvent(
            Action=N.BlocklistEvent.MODIFY, DHASH=digest, PrevDHash=previous, Changes=[change]
        )
        self._push(
            uuid, {"push": 30, "event": base64.b64encode(event.SerializePartialToString()).decode()}
        )

    def receipt(self, uuid: str, event: Any) -> None:
        """A receipt (neonize's `Receipt` event object) reaches the device."""
        self._push(
            uuid, {"push": 18, "event": base64.b64encode(event.SerializePartialToString()).decode()}
        )

    def _receipt_plan(self) -> list[tuple[str, float]]:
        """The receipts a send gets, and when, by `receipt_mode` (as the sandbox's modes)."""
        assert self.receipts_after is not None
        plan = list(zip(("DELIVERED", "READ"), self.receipts_after, strict=True))
        if self.receipt_mode == "missing":  # the recipient turned read receipts off
            return plan[:1]
        if self.receipt_mode == "duplicated":
            return [step for step in plan for _ in range(2)]
        if self.receipt_mode == "out_of_order":
            return [("READ", plan[0][1]), ("DELIVERED", plan[1][1])]
        return plan

    def _receipt_for(self, uuid: str, chat: str, message_id: str, status: str) -> None:
        from neonize.proto import Neonize_pb2 as N

        user, _, server = chat.partition("@")
        push = self.receipt if self.receipt_mode != "after_reconnect" else self.receipt_later
        push(
            uuid,
            N.Receipt(
                MessageSource=N.MessageSource(Chat=N.JID(User=user, Server=server)),
                MessageIDs=[message_id],
                Timestamp=int(time.time()),
                Type=N.Receipt.ReceiptType.Value(status),
            ),
        )

    def receipt_later(self, uuid: str, event: Any) -> None:
        """A receipt held by the servers until the device's next login."""
        with self._lock:
            self.devices[uuid].offline.append(
                {"push": 18, "event": base64.b64encode(event.SerializePartialToString()).decode()}
            )

    def unlink(self, uuid: str) -> None:
        """The phone removes the linked device: stream error 401 device_removed while connected,
        `<failure reason=401>` at the next login otherwise."""
        with self._lock:
            self.devices[uuid].removed = True
        self._push(
            uuid, {"push": "stream_error", "code": 401, "conflict": "device_removed"}, queue=False
        )

    def replace(self, uuid: str) -> None:
        """Another connection takes the session: stream error `replaced`."""
        self._push(uuid, {"push": "stream_error", "conflict": "replaced"}, queue=False)

    def ban(self, uuid: str, code: int = 101, expire: int = 3600) -> None:
        """The number is banned for `expire` seconds: the servers close the connection and refuse
        the next login with `<failure reason=402>`."""
        with self._lock:
            self.devices[uuid].ban = (code, expire)
            connection = self.connections.get(uuid)
        if connection is not None:
            connection.close()

    def outdate(self, uuid: str) -> None:
        """This client version is too old: the next login fails with `<failure reason=405>`."""
        with self._lock:
            self.devices[uuid].outdated = True
            connection = self.connections.get(uuid)
        if connection is not None:
            connection.close()

    def freeze(self, uuid: str, frozen: bool = True) -> None:
        """The session's connection goes half-open (a zombie): requests go unanswered and
        nothing is pushed, without the socket closing. `frozen=False` brings it back."""
        with self._lock:
            connection = self.connections.get(uuid)
            if connection is not None:
                connection.frozen = frozen
        if not frozen and connection is not None:
            with self._lock:
                pending, self.devices[uuid].offline = self.devices[uuid].offline, []
            for push in pending:
                connection.push(push)

    def drop(self, uuid: str) -> None:
        """The network drops the connection (whatsmeow reconnects by itself)."""
        with self._lock:
            connection = self.connections.get(uuid)
        if connection is not None:
            connection.close()

    def received(self, jid: str) -> list[dict]:
        with self._lock:
            return list(self.phones.get(jid, []))
