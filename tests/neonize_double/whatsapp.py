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

Groups live here, shared by every device: the w:g2 IQs are answered with the nodes whatsmeow
parses (group.go), and every change is a w:gp2 notification to each linked device of each
participant (queued for one that is away); `group_event()` is the other phones' doing.

Every number is an account: a linked session's (its push name, about text and picture, as the
session sets them: `profile()`), or a contact's, made up from its digits (on WhatsApp unless it
ends in 0000, a business when it ends in 5555, a picture unless it ends in 8888, the push name
"Contact <last 4 digits>"). User info queries (usync), picture queries, the push name (an app
state patch) and the about text (a mex mutation) are answered as whatsmeow's user.go and
appstate.go read them.

Polls: a contact votes in a session's poll (`poll_vote`) as whatsmeow EncryptPollVote encrypts a
vote with the poll's message secret (`msgsecret.py`); `poll_from` is a contact's poll.
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
# Groups (see BEHAVIOURS.md, "Groups"): the texts of IQ errors (whatsmeow errors.go ErrIQ*).
IQ_ERRORS = {
    400: "bad-request",
    401: "not-authorized",
    403: "forbidden",
    404: "item-not-found",
    406: "not-acceptable",
    409: "conflict",
    410: "gone",
    429: "rate-overlimit",
}
GROUP_ID_BASE = 120363000000000000  # group JIDs look like 120363…@g.us
SUBJECT_MAX = 100  # longer subjects: 406 not-acceptable
ADD_REQUEST_TTL = 3 * 24 * 3600  # an invite-only contact's add request lives three days
NOT_ON_WHATSAPP, INVITE_ONLY = "0000", "9999"  # numbers ending so
ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# Contacts (see BEHAVIOURS.md, "Contacts and the profile"): numbers ending so.
BUSINESS, NO_PICTURE = "5555", "8888"
DEFAULT_ABOUT = "Hey there! I am using WhatsApp."  # a new account's about text
MEX_SET_ABOUT = "9152604461510864"  # whatsmeow user.go mutationUpdateTextStatus
PICTURE_ID_BASE = 1_600_000_000  # a contact's picture id: this plus its last six digits


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
    device_id: int = 0  # its number among the account's devices (the phone is 0)


@dataclass
class Profile:
    """What the servers keep of a linked session's account (by its number), beside the push
    name, which every Device of the account carries."""

    about: str = DEFAULT_ABOUT
    about_at: int = field(default_factory=lambda: int(time.time()))
    picture_id: str = ""  # none until the session sets one


@dataclass
class Group:
    """A group as WhatsApp's servers keep it: shared by every device; members are phone users
    (digits), addressed by their LIDs (a LID-addressed group)."""

    jid: str  # "120363000000000001@g.us"
    subject: str
    owner: str  # the creator's phone user
    created: int
    subject_at: int
    subject_by: str
    description: str = ""
    description_id: str = ""
    description_at: int = 0
    description_by: str = ""
    announce: bool = False
    announce_version: str = ""
    locked: bool = False
    # whatsmeow creates groups with all_member_add (group.go CreateGroup); a phone's, admin_add.
    member_add_mode: str = "admin_add"
    participants: dict[str, str] = field(default_factory=dict)  # phone user → member|admin|…
    invite_code: str = ""
    revoked_codes: set[str] = field(default_factory=set)
    picture_id: str = ""
    participant_version: str = ""


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
        self.groups: dict[str, Group] = {}  # by JID
        self._group_numbers = itertools.count(1)
        self._picture_ids = itertools.count(1_700_000_000)
        # More than `group_rate_limit` metadata queries (group info, joined groups) of a device
        # within `group_rate_window` seconds: 429 rate-overlimit. None: no limit.
        self.group_rate_limit: int | None = None
        self.group_rate_window = 60.0
        self.group_queries: dict[str, int] = {}  # uuid → metadata queries it made (all of them)
        self._group_query_times: dict[str, list[float]] = {}
        self.profiles: dict[str, Profile] = {}  # a linked account's (by phone user)
        self.polls: dict[str, dict] = {}  # contacts' polls (`poll_from`), by id

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
        after = answer.pop("_pushes", [])  # notifications that follow the answer
        connection.push(answer)
        for uuid, push in after:
            self._push(uuid, push)
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
            answer: dict[str, Any] = {"id": message_id, "t": int(time.time())}
            if to.endswith("@s.whatsapp.net"):
                # What whatsmeow learns before it sends to a phone number (send.go: its LID,
                # from the store or a usync query): the double's one send op answers it.
                answer["lid"] = self._lid(user)
            elif to.endswith("@g.us"):
                answer["addressing_mode"] = "lid"  # the group info whatsmeow caches: LID groups
            return answer
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
        if op.startswith("group_"):
            return self._serve_group(device, op, request)
        if op in ("user_info", "picture_get", "profile_photo", "app_state_send",
                  "app_state_fetch", "mex"):  # fmt: skip
            return self._serve_contacts(device, op, request)
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
            others = [d.device_id for d in self._linked_devices({digits}) if d is not device]
            device.device_id = max(others, default=0) + 1
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

    def push_history(
        self, uuid: str, count: int, *, chats: int = 10, days: float = 10.0, chunk: int = 2000
    ) -> None:
        """The phone sends the linked device its history: `count` text messages in `chats`
        one-to-one conversations over the last `days`, in chunks of `chunk` messages, each a
        HistorySync (waHistorySync: conversations of WebMessageInfo, `chunkOrder`, `progress`)
        that whatsmeow dispatches as events.HistorySync (NZ: code 13, `Data`)."""
        from neonize.proto import Neonize_pb2 as N
        from neonize.proto.waCommon import WACommon_pb2 as common
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa
        from neonize.proto.waHistorySync import WAWebProtobufsHistorySync_pb2 as H
        from neonize.proto.waWeb import WAWebProtobufsWeb_pb2 as web

        now = int(time.time())
        for order, start in enumerate(range(0, count, chunk)):
            conversations: dict[str, list] = {}
            for n in range(start, min(count, start + chunk)):
                chat = f"491510{n % chats:07d}@s.whatsapp.net"
                info = web.WebMessageInfo(
                    key=common.MessageKey(remoteJID=chat, fromMe=n % 3 == 0, ID=f"3EBH{n:012d}"),
                    message=wa.Message(conversation=f"history {n}"),
                    messageTimestamp=now - int(days * 86400 * (count - n) / count),
                    pushName="" if n % 3 == 0 else f"Contact {chat[6:13]}",
                )
                conversations.setdefault(chat, []).append(H.HistorySyncMsg(message=info))
            sync = H.HistorySync(
                syncType=H.HistorySync.RECENT,
                chunkOrder=order,
                progress=min(100, round(100 * min(count, start + chunk) / count)),
                conversations=[
                    H.Conversation(ID=chat, messages=items) for chat, items in conversations.items()
                ],
            )
            event = N.HistorySync(Data=sync).SerializeToString()
            self._push(uuid, {"push": 13, "event": base64.b64encode(event).decode()})

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

    # --- groups: WhatsApp's side (w:g2 IQs, w:gp2 notifications) ---------------------------
    #
    # What the servers answer is a node as whatsmeow parses it (group.go parseGroupNode,
    # parseParticipant, parseGroupNotification): {"tag", "attrs", "content"}; the double's
    # client turns it into neonize's protobuf objects as goneonize's encoder.go does.

    def _lid(self, user: str) -> str:
        """The user's LID JID: a linked device's own, else the contact's (the same made-up
        number either way)."""
        for device in self.devices.values():
            if device.lid and device.jid.partition("@")[0] == user:
                return device.lid
        return self.contact_lid(user)

    def _user_of(self, jid: str) -> str:
        """The phone user a JID names (a phone-number JID or a LID), "" when none."""
        user, _, server = jid.partition("@")
        user = user.partition(":")[0]
        if server in ("s.whatsapp.net", "c.us"):
            return user
        if server == "lid" and user.isdigit():
            return self.lids.get(user) or (str(int(user) - 10**14) if int(user) > 10**14 else "")
        return ""

    @staticmethod
    def _digits(phone: str) -> str:
        return "".join(ch for ch in phone if ch.isdigit())

    @staticmethod
    def _token(length: int) -> str:
        return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))

    @staticmethod
    def _iq_error(code: int) -> dict:
        return {"iq_error": code, "text": IQ_ERRORS[code]}

    def _member(self, user: str, role: str = "member", **attrs: Any) -> dict:
        """A `<participant>` of a LID-addressed group: jid the LID, phone_number the PN."""
        node_attrs = {"jid": self._lid(user), "phone_number": f"{user}@s.whatsapp.net"}
        if role != "member":
            node_attrs["type"] = role
        return {"tag": "participant", "attrs": node_attrs | attrs}

    def _group_node(self, group: Group, extra: list[dict] | None = None) -> dict:
        """`<group>` as a group info query, a create and the joined-groups list answer it."""
        owner_lid = self._lid(group.owner)
        children = [self._member(user, role) for user, role in group.participants.items()]
        children += extra or []
        if group.description:
            children.append(
                {
                    "tag": "description",
                    "attrs": {
                        "id": group.description_id,
                        "participant": self._lid(group.description_by),
                        "participant_pn": f"{group.description_by}@s.whatsapp.net",
                        "t": group.description_at,
                    },
                    "content": [{"tag": "body", "attrs": {}, "content": group.description}],
                }
            )
        if group.announce:
            children.append({"tag": "announcement", "attrs": {}})
        if group.locked:
            children.append({"tag": "locked", "attrs": {}})
        children.append({"tag": "member_add_mode", "attrs": {}, "content": group.member_add_mode})
        attrs = {
            "id": group.jid.partition("@")[0],
            "jid": group.jid,
            "creator": owner_lid,
            "creator_pn": f"{group.owner}@s.whatsapp.net",
            "subject": group.subject,
            "s_t": group.subject_at,
            "s_o": self._lid(group.subject_by),
            "s_o_pn": f"{group.subject_by}@s.whatsapp.net",
            "creation": group.created,
            "p_v_id": group.participant_version,
            "size": len(group.participants),
            "addressing_mode": "lid",
        }
        if group.announce_version:
            attrs["a_v_id"] = group.announce_version
        return {"tag": "group", "attrs": attrs, "content": children}

    def _linked_devices(self, users: set[str]) -> list[Device]:
        return [
            device
            for device in self.devices.values()
            if device.jid and not device.removed and device.jid.partition("@")[0] in users
        ]

    def _notification(self, group: Group, author: str, child: dict) -> dict:
        """`<notification type="w:gp2">` from the group, its author as the group names them."""
        attrs = {"type": "w:gp2", "from": group.jid, "t": int(time.time())}
        attrs["addressing_mode"] = "lid"
        if author:
            attrs["participant"] = self._lid(author)
            attrs["participant_pn"] = f"{author}@s.whatsapp.net"
        node = {"tag": "notification", "attrs": attrs, "content": [child]}
        return {"push": "notification", "node": node}

    def _notify(
        self, group: Group, author: str, child: dict, users: set[str]
    ) -> list[tuple[str, dict]]:
        """The notification for every linked device of `users` (w:gp2 goes to each participant,
        the author's own devices included)."""
        message = self._notification(group, author, child)
        return [(device.uuid, message) for device in self._linked_devices(users)]

    def _picture_changed(self, group: Group, author: str) -> list[tuple[str, dict]]:
        """A `<notification type="picture">` with `<set jid author id>` to every participant's
        devices, which whatsmeow dispatches as events.Picture (notification.go
        handlePictureNotification); neonize's Picture (code 23) carries JID, Author, Timestamp
        and Remove, not the id."""
        from neonize.proto import Neonize_pb2 as N

        lid = self._lid(author).partition("@")[0]
        event = N.Picture(
            JID=N.JID(User=group.jid.partition("@")[0], Server="g.us"),
            Author=N.JID(User=lid, Server="lid"),
            Timestamp=int(time.time()),
            Remove=False,
        )
        message = {"push": 23, "event": base64.b64encode(event.SerializePartialToString()).decode()}
        return [(device.uuid, message) for device in self._linked_devices(set(group.participants))]

    def _joined(
        self, group: Group, author: str, users: set[str], **create: str
    ) -> list[tuple[str, dict]]:
        """A `<create>` notification (whatsmeow: events.JoinedGroup) to the devices of `users`:
        type="new" and the key at creation, reason="invite" after a link."""
        attrs = {key: value for key, value in create.items() if value}
        child = {"tag": "create", "attrs": attrs, "content": [self._group_node(group)]}
        return self._notify(group, author, child, users)

    def _participants_change(
        self, group: Group, author: str, tag: str, users: list[str], previous: str, **attrs: str
    ) -> dict:
        return {
            "tag": tag,
            "attrs": {"prev_v_id": previous, "v_id": group.participant_version} | attrs,
            "content": [self._member(user) for user in users],
        }

    def _count_metadata_query(self, device: Device) -> dict | None:
        """A group metadata query: counted; past the rate limit, 429 rate-overlimit."""
        now = time.monotonic()
        self.group_queries[device.uuid] = self.group_queries.get(device.uuid, 0) + 1
        times = [
            t
            for t in self._group_query_times.get(device.uuid, [])
            if now - t < self.group_rate_window
        ]
        times.append(now)
        self._group_query_times[device.uuid] = times
        if self.group_rate_limit is not None and len(times) > self.group_rate_limit:
            return self._iq_error(429)
        return None

    def _new_group(self, creator: str, subject: str, member_add_mode: str, jid: str = "") -> Group:
        now = int(time.time())
        while not jid or jid in self.groups:  # a test may have chosen one of these JIDs
            jid = f"{GROUP_ID_BASE + next(self._group_numbers)}@g.us"
        group = Group(
            jid=jid, subject=subject, owner=creator, created=now, subject_at=now,
            subject_by=creator, member_add_mode=member_add_mode,
            participants={creator: "superadmin"}, invite_code=self._token(22),
            participant_version=self._token(12),
        )  # fmt: skip
        self.groups[jid] = group
        return group

    def _add_answer(
        self, group: Group, user: str, given: str, *, by_link: bool = False
    ) -> dict | None:
        """WhatsApp's per-participant answer to an add (None: added). whatsmeow keeps the code
        in GroupParticipant.Error and the add request beside it (group.go parseParticipant)."""
        if not user or user.endswith(NOT_ON_WHATSAPP):
            jid = f"{user}@s.whatsapp.net" if user else given
            return {"tag": "participant", "attrs": {"jid": jid, "error": 404}}
        if user in group.participants:
            return self._member(user, error=409)
        if user.endswith(INVITE_ONLY) and not by_link:  # their privacy settings: invites only
            request = {
                "tag": "add_request",
                "attrs": {
                    "code": self._token(16),
                    "expiration": int(time.time()) + ADD_REQUEST_TTL,
                },
            }
            return self._member(user, error=403) | {"content": [request]}
        return None

    def _may(self, group: Group, user: str, what: str) -> bool:
        """WhatsApp's rules: settings and removals are the admins'; adding, everyone's in an
        all_member_add group; the info (subject, description, picture), everyone's unless the
        group is locked."""
        role = group.participants.get(user)
        if role is None:
            return False
        if role != "member":
            return True
        if what == "add":
            return group.member_add_mode == "all_member_add"
        return what == "info" and not group.locked

    def _change_participants(
        self, group: Group, author: str, action: str, given: list[str], *, reason: str = ""
    ) -> tuple[list[dict], list[tuple[str, dict]]]:
        """add / remove / promote / demote: the per-participant answers and the notifications."""
        answers: list[dict] = []
        done: list[str] = []
        previous = group.participant_version
        for jid in given:
            user = self._user_of(jid)
            if action == "add":
                refused = self._add_answer(group, user, jid, by_link=reason == "invite")
                if refused is not None:
                    answers.append(refused)
                    continue
                group.participants[user] = "member"
            elif user not in group.participants:
                jid = self._lid(user) if user else jid
                answers.append({"tag": "participant", "attrs": {"jid": jid, "error": 404}})
                continue
            elif action == "remove":
                del group.participants[user]
            else:
                role = group.participants[user]
                if action == "promote" and role == "member":
                    group.participants[user] = "admin"
                elif action == "demote" and role != "member":
                    group.participants[user] = "member"
            done.append(user)
            answers.append(self._member(user))
        if not done:
            return answers, []
        group.participant_version = self._token(12)
        members = set(group.participants)
        if action == "add":
            others = members - set(done)
            pushes = self._joined(group, author, set(done), reason=reason)
            extra = {"reason": reason} if reason else {}
            change = self._participants_change(group, author, "add", done, previous, **extra)
            return answers, pushes + self._notify(group, author, change, others)
        change = self._participants_change(group, author, action, done, previous)
        # The removed get the change too (their Leave), then nothing more of the group.
        audience = members | set(done) if action == "remove" else members
        return answers, self._notify(group, author, change, audience)

    def _set_info(self, group: Group, author: str, tag: str, value: str, **attrs: str) -> list:
        """subject, description, announcement/not_announcement, locked/unlocked."""
        now = int(time.time())
        child: dict = {"tag": tag, "attrs": {}}
        if tag == "subject":
            group.subject, group.subject_at, group.subject_by = value, now, author
            child["attrs"] = {"subject": value, "s_t": now, "s_o": self._lid(author),
                              "s_o_pn": f"{author}@s.whatsapp.net"}  # fmt: skip
        elif tag == "description":
            topic_id = attrs.get("id") or "3EB0" + secrets.token_hex(9).upper()
            group.description, group.description_id = value, topic_id
            group.description_at, group.description_by = now, author
            child["attrs"] = {"id": topic_id}
            child["content"] = (
                [{"tag": "body", "attrs": {}, "content": value}]
                if value
                else [{"tag": "delete", "attrs": {}}]
            )
        elif tag in ("announcement", "not_announcement"):
            group.announce = tag == "announcement"
            group.announce_version = str(now * 1000 + next(self._ids) % 1000)
            child["attrs"] = {"v_id": group.announce_version}
        else:
            group.locked = tag == "locked"
        return self._notify(group, author, child, set(group.participants))

    def _serve_group(self, device: Device, op: str, request: dict) -> dict:
        user = device.jid.partition("@")[0]
        if op == "group_list":
            limited = self._count_metadata_query(device)
            if limited:
                return limited
            groups = [g for g in self.groups.values() if user in g.participants]
            return {"groups": [self._group_node(g) for g in groups]}
        if op == "group_create":
            name = request["name"]
            if len(name) > SUBJECT_MAX:
                return self._iq_error(406)
            group = self._new_group(user, name, "all_member_add")
            failed = []
            for jid in request["participants"]:
                member = self._user_of(jid)
                if member == user:
                    continue  # the creator is in it anyway (whatsmeow ReqCreateGroup doc)
                refused = self._add_answer(group, member, jid)
                if refused is None:
                    group.participants[member] = "member"
                else:
                    failed.append(refused)
            pushes = self._joined(
                group, user, set(group.participants), type="new", key=request["key"]
            )
            return {"group": self._group_node(group, failed), "_pushes": pushes}
        if op == "group_join":
            code = request["code"]
            group = next((g for g in self.groups.values() if g.invite_code == code), None)
            if group is None:
                revoked = any(code in g.revoked_codes for g in self.groups.values())
                return self._iq_error(410 if revoked else 406)
            if user in group.participants:
                return self._iq_error(409)
            _, pushes = self._change_participants(group, user, "add", [device.jid], reason="invite")
            return {"jid": group.jid, "_pushes": pushes}
        group = self.groups.get(request.get("jid", ""))
        if op == "group_info":
            limited = self._count_metadata_query(device)
            if limited:
                return limited
        if group is None:
            return {"ok": True} if op == "group_leave" else self._iq_error(404)
        if op == "group_info":
            if user not in group.participants:
                return self._iq_error(403)
            return {"group": self._group_node(group)}
        if op == "group_leave":
            if user not in group.participants:
                return {"ok": True}
            _, pushes = self._change_participants(group, user, "remove", [device.jid])
            return {"ok": True, "_pushes": pushes}
        if user not in group.participants:
            return self._iq_error(403)
        if op == "group_participants":
            action = request["action"]
            if not self._may(group, user, "add" if action == "add" else "admin"):
                return self._iq_error(403)
            answers, pushes = self._change_participants(
                group, user, action, request["participants"]
            )
            return {"participants": answers, "_pushes": pushes}
        if op == "group_invite":
            if group.participants[user] == "member":
                return self._iq_error(401)
            if request["reset"]:
                group.revoked_codes.add(group.invite_code)
                group.invite_code = self._token(22)
            return {"code": group.invite_code}
        if op == "group_photo":
            if not self._may(group, user, "info"):
                return self._iq_error(403)
            if not base64.b64decode(request["data"]).startswith(b"\xff\xd8\xff"):
                return self._iq_error(406)  # not a JPEG
            group.picture_id = str(next(self._picture_ids))
            return {"id": group.picture_id, "_pushes": self._picture_changed(group, user)}
        if op == "group_set":
            tag = request["tag"]
            if not self._may(group, user, "info" if tag in ("subject", "description") else "admin"):
                return self._iq_error(403)
            if tag == "subject" and len(request.get("value", "")) > SUBJECT_MAX:
                return self._iq_error(406)
            pushes = self._set_info(
                group, user, tag, request.get("value", ""), id=request.get("id", "")
            )
            return {"ok": True, "_pushes": pushes}
        return {"error": f"unknown operation {op}"}

    # --- groups: what the phones do, and what a test reads ---------------------------------

    def group_event(
        self, uuid: str, group: str, action: str, participant: str = "", by: str = "",
        value: str = "",
    ) -> str:  # fmt: skip
        """Someone on the other side (a phone) changes `group`, as the session `uuid` sees it.

        `participant` and `by` are E.164 numbers. `join`: `by` creates the group if it does
        not exist (subject `value` or "Group") and adds the session's account to it (with no
        `by`, the account joins by the group's link); `leave`: `participant` leaves;
        `add`/`remove`/`promote`/`demote`: `by` does it to `participant` (the session's own
        number too); `subject`/`description`: `by` sets it to `value`; `announce`/`locked`: `by`
        sets it to `value` ("true"/"false"). WhatsApp's rules apply: PermissionError (403) when
        `by` may not, ValueError when the change is refused. Returns the group's JID."""
        with self._changed:
            jid, pushes = self._group_event(
                uuid, group, action, self._digits(participant), self._digits(by), value
            )
            self._changed.notify_all()
        for target, push in pushes:
            self._push(target, push)
        return jid

    def _group_event(
        self, uuid: str, jid: str, action: str, target: str, actor: str, value: str
    ) -> tuple[str, list[tuple[str, dict]]]:
        device = self.devices[uuid]
        own = device.jid.partition("@")[0]
        if not own:
            raise ValueError(f"{uuid} is not linked")
        group = self.groups.get(jid)
        if action == "join":
            if group is None:
                if not actor:
                    raise ValueError(f"no group {jid}, and no `by` to create it")
                group = self._new_group(actor, value or "Group", "admin_add", jid)
                group.participants[own] = "member"
                key = "3EB0" + secrets.token_hex(9).upper()
                return group.jid, self._joined(
                    group, actor, set(group.participants), type="new", key=key
                )
            if not actor:  # by the group's link
                if own in group.participants:
                    raise ValueError("info query returned status 409: conflict")
                _, pushes = self._change_participants(
                    group, own, "add", [device.jid], reason="invite"
                )
                return jid, pushes
            action, target = "add", own
        if group is None:
            raise ValueError(f"no group {jid}")
        if action == "leave":
            if target not in group.participants:
                raise ValueError(f"{target} is not in {jid}")
            return jid, self._change_participants(
                group, target, "remove", [f"{target}@s.whatsapp.net"]
            )[1]
        what = {"add": "add", "subject": "info", "description": "info"}.get(action, "admin")
        if not self._may(group, actor, what):
            raise PermissionError("info query returned status 403: forbidden")
        if action in ("add", "remove", "promote", "demote"):
            answers, pushes = self._change_participants(
                group, actor, action, [f"{target}@s.whatsapp.net"]
            )
            refused = [a["attrs"]["error"] for a in answers if "error" in a["attrs"]]
            if refused:
                raise ValueError(f"{target}: WhatsApp answered {refused[0]}")
            return jid, pushes
        tags = {
            "subject": "subject",
            "description": "description",
            "announce": "announcement" if value == "true" else "not_announcement",
            "locked": "locked" if value == "true" else "unlocked",
        }
        if action not in tags:
            raise ValueError(f"unknown group action {action}")
        if action == "subject" and len(value) > SUBJECT_MAX:
            raise ValueError("info query returned status 406: not-acceptable")
        return jid, self._set_info(group, actor, tags[action], value)

    def group(self, jid: str) -> dict:
        """A group as the servers hold it (for tests): participants by phone user → role."""
        with self._lock:
            group = self.groups[jid]
            return {
                "jid": group.jid,
                "subject": group.subject,
                "description": group.description,
                "owner": group.owner,
                "created": group.created,
                "announce": group.announce,
                "locked": group.locked,
                "member_add_mode": group.member_add_mode,
                "participants": dict(group.participants),
                "invite_code": group.invite_code,
                "revoked_codes": set(group.revoked_codes),
                "picture_id": group.picture_id,
            }

    # --- contacts and the profile: WhatsApp's side (usync, w:profile:picture, app state, mex) --
    #
    # Answers are nodes as whatsmeow reads them (user.go GetUserInfo, GetProfilePictureInfo,
    # SetGroupPhoto; appstate.go sendAppState): {"tag", "attrs", "content"}; binary content
    # (a verified name's certificate) travels base64.

    def _account(self, user: str) -> Device | None:
        """The linked session of the account `user` (phone digits), if one is linked."""
        return next(iter(self._linked_devices({user})), None)

    def _profile(self, user: str) -> Profile:
        return self.profiles.setdefault(user, Profile())

    def push_name_of(self, user: str) -> str:
        """The push name `user`'s messages carry: a linked account's own, else the contact's."""
        account = self._account(user)
        return account.push_name if account is not None else f"Contact {user[-4:]}"

    def _contact_picture(self, user: str) -> str:
        """The picture id of `user`'s account ("" without one)."""
        if self._account(user) is not None:
            return self._profile(user).picture_id
        if user.endswith(NO_PICTURE):
            return ""
        return str(PICTURE_ID_BASE + int(user[-6:]))

    @staticmethod
    def _verified_name(user: str) -> dict:
        """`<business><verified_name>`: the certificate, its details serialised inside it
        (user.go parseVerifiedNameContent)."""
        from neonize.proto.waVnameCert import WAWebProtobufsVnameCert_pb2 as vname

        details = vname.VerifiedNameCertificate.Details(
            serial=int(user) % 2**63, issuer="smb:wa", verifiedName=f"Business {user[-4:]}"
        )
        certificate = vname.VerifiedNameCertificate(
            details=details.SerializeToString(),
            signature=hashlib.sha512(user.encode()).digest(),
        )
        content = base64.b64encode(certificate.SerializeToString()).decode()
        verified = {"tag": "verified_name", "attrs": {"v": 1, "verified_level": "unknown"},
                    "content": content}  # fmt: skip
        return {"tag": "business", "attrs": {}, "content": [verified]}

    def _user_node(self, queried: str) -> dict:
        """One `<user>` of a usync answer (mode full: business, status, picture, devices, lid).
        The JID is the one queried; a number not on WhatsApp gets an empty node."""
        user = self._user_of(queried)
        server = queried.partition("@")[2]
        jid = f"{user}@s.whatsapp.net" if server == "c.us" else queried
        node: dict = {"tag": "user", "attrs": {"jid": jid}, "content": []}
        if not user or user.endswith(NOT_ON_WHATSAPP):
            return node  # [INFERRED] nothing WhatsApp knows of it
        account = self._account(user)
        children = node["content"]
        if account is None and user.endswith(BUSINESS):
            children.append(self._verified_name(user))
        profile = self._profile(user) if account is not None else Profile(about_at=0)
        children.append({"tag": "status", "attrs": {"t": profile.about_at},
                         "content": profile.about})  # fmt: skip
        picture = self._contact_picture(user)
        children.append({"tag": "picture", "attrs": {"id": picture} if picture else {}})
        devices = [0] + [d.device_id for d in self._linked_devices({user})]
        device_list = [{"tag": "device", "attrs": {"id": n}} for n in devices]
        children.append({"tag": "devices", "attrs": {},
                         "content": [{"tag": "device-list", "attrs": {},
                                      "content": device_list}]})  # fmt: skip
        if server != "lid":  # a phone number's query learns the LID
            children.append({"tag": "lid", "attrs": {"val": self._lid(user)}})
        return node

    @staticmethod
    def _picture_attrs(picture_id: str, kind: str) -> dict:
        """`<picture>` of a picture query: the CDN's URL and direct path (pps.whatsapp.net)."""
        digest = hashlib.sha256(f"{picture_id}/{kind}".encode()).hexdigest()
        size = "&stp=dst-jpg_s96x96" if kind == "preview" else ""
        direct_path = (
            f"/v/t61.24694-24/{picture_id}_{int(digest[:15], 16)}_n.jpg?ccb=11-4{size}"
            f"&oh=01_{digest[16:56]}&oe={int(time.time()) // 86400 * 86400 + 14 * 86400:X}"
            "&_nc_sid=5e03e0&_nc_cat=1"
        )
        return {"id": picture_id, "url": "https://pps.whatsapp.net" + direct_path,
                "type": kind, "direct_path": direct_path}  # fmt: skip

    def _serve_contacts(self, device: Device, op: str, request: dict) -> dict:
        user = device.jid.partition("@")[0]
        if op == "user_info":
            return {"users": [self._user_node(jid) for jid in request["jids"]]}
        if op == "picture_get":
            target = request["jid"]
            if target.endswith("@g.us"):
                group = self.groups.get(target)
                picture = group.picture_id if group is not None else ""
            else:
                member = self._user_of(target)
                on_whatsapp = member and not member.endswith(NOT_ON_WHATSAPP)
                picture = self._contact_picture(member) if on_whatsapp else ""
            if not picture:
                return self._iq_error(404)  # whatsmeow: ErrProfilePictureNotSet
            if request.get("existing_id") == picture:
                return {"picture": {"status": 304}}  # unchanged: whatsmeow returns nil, nil
            return {"picture": self._picture_attrs(picture, request.get("type") or "image")}
        if op == "profile_photo":
            if not base64.b64decode(request["data"]).startswith(b"\xff\xd8\xff"):
                return self._iq_error(406)  # not a JPEG
            profile = self._profile(user)
            profile.picture_id = str(next(self._picture_ids))
            return {"id": profile.picture_id}
        if op == "app_state_send":
            # A `setting_pushName` mutation: the account's push name, on every device of it;
            # the others fetch the patch (server_sync) and dispatch it, as the sender does.
            pushes = []
            for mutation in request["mutations"]:
                if mutation["index"] == ["setting_pushName"]:
                    for linked in self._linked_devices({user}):
                        linked.push_name = mutation["name"]
                        if linked is not device:
                            pushes.append((linked.uuid, {"push": "push_name",
                                                         "name": mutation["name"]}))  # fmt: skip
            return {"ok": True, "_pushes": pushes}
        if op == "app_state_fetch":
            if request["collection"] != "critical_block":
                return {"mutations": []}
            return {"mutations": [{"index": ["setting_pushName"], "name": device.push_name}]}
        if request["query_id"] != MEX_SET_ABOUT:  # op == "mex"
            return {"data": None, "errors": [{"message": "Unknown query", "code": 400}]}
        profile = self._profile(user)
        profile.about = request["variables"]["input"]["text"] or ""
        profile.about_at = int(time.time())
        return {"data": {"xwa2_text_status_update": {"text": profile.about}}}

    # --- contacts and the profile: what a test does and reads --------------------------------

    def profile(self, uuid: str) -> dict:
        """The linked session's account as the servers hold it: push name, about text and
        picture id ("" without a picture)."""
        with self._lock:
            device = self.devices[uuid]
            user = device.jid.partition("@")[0]
            if not user:
                raise ValueError(f"{uuid} is not linked")
            profile = self._profile(user)
            return {
                "push_name": device.push_name,
                "about": profile.about,
                "picture_id": profile.picture_id,
            }

    def message_from(
        self, uuid: str, phone: str, text: str, *, push_name: str | None = None
    ) -> str:
        """A text from `phone` (E.164) to the session, as WhatsApp delivers a one-to-one
        message: Sender the phone number, SenderAlt its LID (addressing mode pn), and the
        sender's push name (`push_name_of`, unless given); every field goneonize's
        EncodeEventTypesMessage sets (Timestamp in milliseconds: `UnixMilli()`). Returns the
        message's id."""
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

        return self._message_from(
            uuid, self._digits(phone), wa.Message(conversation=text), push_name=push_name
        )

    def _message_from(
        self, uuid: str, user: str, content: Any, *, group: str = "", chat: str = "",
        kind: str = "text", push_name: str | None = None,
    ) -> str:  # fmt: skip
        """A message from the phone user `user` reaches the session: in the one-to-one chat
        (Chat = the sender), or in `group`; `chat` replaces the chat's JID. The sender is the
        phone number JID with its LID as SenderAlt (addressing mode pn)."""
        from neonize.proto import Neonize_pb2 as N

        with self._lock:
            name = self.push_name_of(user) if push_name is None else push_name
            lid = self._lid(user).partition("@")[0]

        def jid(value: str) -> Any:
            user, _, server = value.partition("@")
            return N.JID(User=user, RawAgent=0, Device=0, Integrator=0, Server=server,
                         IsEmpty=not (user or server))  # fmt: skip

        sender = jid(f"{user}@s.whatsapp.net")
        source = N.MessageSource(
            Chat=jid(chat or group) if chat or group else sender, Sender=sender,
            IsFromMe=False, IsGroup=bool(group), AddressingMode=N.PN,
            SenderAlt=jid(f"{lid}@lid"), RecipientAlt=jid(""), BroadcastListOwner=jid(""),
        )  # fmt: skip
        message_id = "3EB0" + secrets.token_hex(9).upper()
        info = N.MessageInfo(
            MessageSource=source, ID=message_id, ServerID=0, Type=kind, Pushname=name,
            Timestamp=int(time.time() * 1000), Category="", Multicast=False, MediaType="",
            Edit="",
        )  # fmt: skip
        event = N.Message(
            Info=info, Message=content, IsEphemeral=False, IsViewOnce=False, IsViewOnceV2=False,
            IsViewOnceV2Extension=False, IsDocumentWithCaption=False, IsLottieSticker=False,
            IsEdit=False, UnavailableRequestID="", RetryCount=0, Raw=content,
        )  # fmt: skip
        self.deliver(uuid, event)
        return message_id

    # --- polls: what the phones do (whatsmeow msgsecret.go, as the phones' WhatsApp does it) --

    def poll_vote(
        self, uuid: str, voter_phone: str, poll_id: str, options: list[str], *, chat: str = "",
        tamper: bool = False,
    ) -> str:  # fmt: skip
        """The contact `voter_phone` (E.164) votes for `options` (option names; none: the
        vote withdrawn) in the poll `poll_id` the session `uuid` sent, in the chat it was sent
        to (or `chat`). What the voter's WhatsApp sends is what whatsmeow EncryptPollVote
        builds for the voter: a `pollUpdateMessage` whose `pollCreationMessageKey` is the poll
        as the voter got it (remoteJID the session's number in a one-to-one chat, the group
        with the session's number as participant in a group; fromMe false; the poll's id),
        whose `vote` is a PollVoteMessage of the options' SHA-256 hashes, AES-256-GCM
        encrypted with the key generateMsgSecretKey derives from the poll's secret (orig
        sender the session's number, modification sender the voter's), and its
        `senderTimestampMS`. `tamper`: encrypted with a wrong key. It reaches the session
        from the voter's number (SenderAlt its LID), in the group for a group's poll. Nothing
        checks the names against the poll (as from a modified client: a name that is no option
        is a hash that matches none), nor their number against its selectableOptionsCount.
        Returns the vote's message id."""
        from neonize.proto.waCommon import WACommon_pb2 as common
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

        from tests.neonize_double import msgsecret

        voter = self._digits(voter_phone)
        with self._lock:
            creator = self.devices[uuid].jid
            sent = next((m for m in self.sent.get(uuid, []) if m["id"] == poll_id), None)
        if sent is None:
            raise ValueError(f"{uuid} sent no message {poll_id}")
        poll = wa.Message.FromString(base64.b64decode(sent["message"]))
        creation = self._poll_creation(poll)
        secret = poll.messageContextInfo.messageSecret
        if creation is None or not secret:
            raise ValueError(f"{poll_id} is not a poll with a message secret")
        where = chat or sent["to"]
        group = where if where.endswith("@g.us") else ""
        key = common.MessageKey(remoteJID=group or creator, fromMe=False, ID=poll_id)
        if group:
            key.participant = creator
        voter_jid = f"{voter}@s.whatsapp.net"
        vote_key, additional = msgsecret.secret_key(
            msgsecret.POLL_VOTE, voter_jid, poll_id, creator, secret
        )
        if tamper:
            vote_key = secrets.token_bytes(32)
        iv = secrets.token_bytes(msgsecret.IV_SIZE)
        plaintext = wa.PollVoteMessage(
            selectedOptions=msgsecret.hash_options(list(options))
        ).SerializeToString()
        update = wa.PollUpdateMessage(
            pollCreationMessageKey=key,
            vote=wa.PollEncValue(
                encPayload=msgsecret.encrypt(vote_key, iv, plaintext, additional), encIV=iv
            ),
            senderTimestampMS=int(time.time() * 1000),
        )
        return self._message_from(
            uuid, voter, wa.Message(pollUpdateMessage=update), group=group,
            chat=chat if not group else "", kind="poll",
        )  # fmt: skip

    def poll_from(
        self, uuid: str, phone: str, name: str, options: list[str], *, selectable: int = 0,
        group: str = "",
    ) -> str:  # fmt: skip
        """A contact (E.164 `phone`) sends the session a poll (whatsmeow BuildPollCreation's
        message: `pollCreationMessage` and a new `messageContextInfo.messageSecret`), in the
        one-to-one chat or in `group`. The servers keep it, so `vote_sent` can read the
        session's votes in it. Returns its id."""
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

        user = self._digits(phone)
        content = wa.Message(
            pollCreationMessage=wa.PollCreationMessage(
                name=name,
                options=[wa.PollCreationMessage.Option(optionName=o) for o in options],
                selectableOptionsCount=selectable,
            ),
            messageContextInfo=wa.MessageContextInfo(messageSecret=secrets.token_bytes(32)),
        )
        poll_id = self._message_from(uuid, user, content, group=group, kind="poll")
        with self._lock:
            self.polls[poll_id] = {"from": user, "chat": group or f"{user}@s.whatsapp.net",
                                   "message": content}  # fmt: skip
        return poll_id

    def vote_sent(self, uuid: str, vote_id: str) -> list[str]:
        """The options (names) of a vote the session sent in a contact's poll (`poll_from`),
        as the poll creator's phone decrypts it (whatsmeow DecryptPollVote: orig sender the
        creator, modification sender the session's account, by its number or its LID)."""
        from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

        from tests.neonize_double import msgsecret

        with self._lock:
            device = self.devices[uuid]
            sent = next((m for m in self.sent.get(uuid, []) if m["id"] == vote_id), None)
        if sent is None:
            raise ValueError(f"{uuid} sent no message {vote_id}")
        update = wa.Message.FromString(base64.b64decode(sent["message"])).pollUpdateMessage
        key = update.pollCreationMessageKey
        poll = self.polls.get(key.ID)
        if poll is None:
            raise ValueError(f"{vote_id} is no vote in a poll of a contact")
        creation = self._poll_creation(poll["message"])
        secret = poll["message"].messageContextInfo.messageSecret
        names = [option.optionName for option in creation.options]
        by_hash = dict(zip(msgsecret.hash_options(names), names, strict=True))
        creator = f"{poll['from']}@s.whatsapp.net"
        for sender in (device.jid, device.lid):
            vote_key, additional = msgsecret.secret_key(
                msgsecret.POLL_VOTE, sender, key.ID, creator, secret
            )
            try:
                plaintext = msgsecret.decrypt(
                    vote_key, update.vote.encIV, update.vote.encPayload, additional
                )
            except msgsecret.AuthenticationFailed:
                continue
            vote = wa.PollVoteMessage.FromString(plaintext)
            return [by_hash.get(digest, digest.hex()) for digest in vote.selectedOptions]
        raise ValueError(f"vote {vote_id} does not decrypt with poll {key.ID}'s secret")

    @staticmethod
    def _poll_creation(message: Any) -> Any:
        """The poll of a message: pollCreationMessage (whatsmeow's), V2 or V3."""
        for field_name in ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3"):
            if message.HasField(field_name):
                return getattr(message, field_name)
        return None
