"""neonize.client.NewClient, and beneath it what neonize's Go side (goneonize/main.go) and whatsmeow
do, against `tests/neonize_double/whatsapp.py` in place of WhatsApp's servers.

Each behaviour names its source; BEHAVIOURS.md has the citations in full (file, function, lines).
The ones that shape the gateway most:

- `connect()` blocks for the connection's whole life and returns only after `stop()` (PY
  connect_with_proxy; NZ Neonize → CallbackFunction). A first connect that cannot reach the servers
  raises NeonizeError at once (InitialAutoReconnect is off). Once connected, whatsmeow reconnects
  by itself after a drop (0, 2, 4 … s), dispatching one Disconnected and then Connected.
- A new device gets six QR refs: the first code lives 60 s, each later one 20 s (qrchan.go
  emitQRs); codes reach `event.qr` one at a time on the Go thread; after the last comes "timeout"
  and a Disconnect, and then FetchMe waits for a device id that never comes: `connect()` never
  returns, not even after `stop()`. `stop()` while codes are coming stops them without closing the
  channel: `connect()` never returns either (qrchan.go L109-114).
- Events of a fresh device are held until the QR loop ends (NZ: CallbackFunction starts after it).
- After a scan: PairSuccess (neonize PairStatusEv), stream error 515, a new login (no
  Disconnected), Connected.
- `get_me()` and `get_pn_from_lid()` on a client `stop()` removed (or before `connect()`)
  dereference nil in Go: the process aborts (exit 134). `get_pn_from_lid()` also aborts on a
  device that is not paired.
- The Go side keeps its clients in maps without locks: two calls from different threads at once
  abort the process ("fatal error: concurrent map read and map write"). The double is stricter
  than the race: any overlap aborts.
- `send_message()` learns the message id from the server's ack (no caller-chosen id).
- LoggedOut, StreamReplaced, TemporaryBan and ClientOutdated do not end `connect()`, and nothing
  reconnects after them; no Disconnected follows StreamReplaced.
- Group calls are IQs: their errors are whatsmeow's texts (some wrapped in human errors, the rest
  "info query returned status <code>: <text>"); per-participant refusals of an add or remove are
  in the returned participants' Error, not raised. Group notifications become JoinedGroup (21)
  and GroupInfoEvent (22), and, like group info queries, store the members' LID mappings.
- Contacts and the profile: a user info query (usync) answers the about text, picture id,
  verified business name and devices, and stores the user's LID; the contact store knows push
  names only from messages (and business names from verified names), not from a lookup;
  `set_profile_name` is an app state patch, `set_status_message` a mex mutation (which reads
  the client before any nil check: without a client the process aborts), `set_profile_photo`
  SetGroupPhoto with no JID.
- Polls (msgsecret.go): `build_poll_vote_creation` is a `pollCreationMessage` with a 32-byte
  `messageSecret`; a sent message's secret is stored under the chat and own JID send.go rewrote
  them to (a phone number's chat: its LID, from our LID), a received one's before its event,
  in the store's SQLite file; `decrypt_poll_vote` finds the poll's secret from the vote's key
  and fails with whatsmeow's texts (DecryptPollVoteError).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import random
import re
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from .events import INT_TO_EVENT, Event
from .exc import (
    BuildPollVoteError,
    ContactStoreError,
    ConvertStickerError,
    CreateGroupError,
    DecryptPollVoteError,
    DownloadError,
    GetBlocklistError,
    GetGroupInfoError,
    GetGroupInviteLinkError,
    GetJIDFromStoreError,
    GetJoinedGroupsError,
    GetProfilePictureError,
    GetUserInfoError,
    InviteLinkError,
    IsOnWhatsAppError,
    LeaveGroupError,
    LogoutError,
    MarkReadError,
    NeonizeError,
    PairPhoneError,
    SendAppStateError,
    SendMessageError,
    SendPresenceError,
    SetGroupAnnounceError,
    SetGroupLockedError,
    SetGroupNameError,
    SetGroupPhotoError,
    SetGroupTopicError,
    SetStatusMessageError,
    SubscribePresenceError,
    UpdateBlocklistError,
    UpdateGroupParticipantsError,
)
from .proto import Neonize_pb2 as neonize_proto
from .proto.Neonize_pb2 import (
    JID,
    Device,
    GroupInfo,
    GroupInfoEvent,
    GroupParticipant,
    JoinedGroup,
    MessageInfo,
    SendResponse,
)
from .proto.waCommon.WACommon_pb2 import MessageKey
from .proto.waE2E.WAWebProtobufsE2E_pb2 import (
    AudioMessage,
    ContextInfo,
    DocumentMessage,
    FutureProofMessage,
    ImageMessage,
    Message,
    MessageContextInfo,
    PollCreationMessage,
    PollEncValue,
    PollUpdateMessage,
    PollVoteMessage,
    ProtocolMessage,
    ReactionMessage,
    StickerMessage,
    VideoMessage,
)
from .utils.jid import Jid2String, parse

try:  # the double's directory is on sys.path: it is where this `neonize` is imported from
    import msgsecret
except ImportError:  # imported as tests.neonize_double.neonize
    from tests.neonize_double import msgsecret

# The double's clock: 1.0 is WhatsApp's; tests shorten it.
SCALE = float(os.environ.get("NEONIZE_DOUBLE_TIME_SCALE", "1"))
QR_FIRST, QR_NEXT = 60.0, 20.0  # whatsmeow qrchan.go emitQRs
# whatsmeow keepalive.go: KeepAliveIntervalMin/Max, KeepAliveResponseDeadline, KeepAliveMaxFailTime
KEEPALIVE_MIN, KEEPALIVE_MAX, KEEPALIVE_DEADLINE, KEEPALIVE_MAX_FAIL = 20.0, 30.0, 10.0, 180.0
MEDIA_FIELDS = ("imageMessage", "videoMessage", "audioMessage", "documentMessage", "stickerMessage")
EVENT_BUFFER = 100  # NZ main.go: eventChan := make(chan …, 100)
TEMP_BAN_CODES = {101: 1, 102: 2, 103: 3, 104: 4, 106: 5}  # NZ utils/encoder.go
LOGGED_OUT, MAIN_DEVICE_GONE, UNKNOWN_LOGOUT = 2, 4, 5  # neonize ConnectFailureReason
FAILURE_REASONS = {401: LOGGED_OUT, 403: MAIN_DEVICE_GONE, 406: UNKNOWN_LOGOUT}
GO_ZERO_TIME = -62135596800  # time.Time{}.Unix(): what goneonize encodes for an unset time
INVITE_LINK_PREFIX = "https://chat.whatsapp.com/"  # whatsmeow group.go InviteLinkPrefix
IQ_TIMEOUT = 75.0  # whatsmeow request.go defaultRequestTimeout
MEX_SET_ABOUT = "9152604461510864"  # whatsmeow user.go mutationUpdateTextStatus
NIL_DEREFERENCE = "panic: runtime error: invalid memory address or nil pointer dereference"
HOSTED_SERVERS = {"s.whatsapp.net": "hosted", "lid": "hosted.lid"}  # types/jid.go

_clients: dict[str, _Go] = {}  # NZ main.go: var clients = make(map[string]*whatsmeow.Client)
_access = threading.Lock()
_readers = 0
_writing = False


def _abort(message: str) -> None:
    """A Go panic in the shared library: the whole process dies (SIGABRT, exit code 134)."""
    print(message, file=sys.stderr, flush=True)
    os.abort()


@contextlib.contextmanager
def _maps(*, write: bool = False) -> Iterator[None]:
    """Go's runtime check on its unlocked maps: a write while anyone else reads or writes them is
    `fatal error: concurrent map read and map write` (NZ main.go has no lock around `clients`)."""
    global _readers, _writing
    with _access:
        if _writing or (write and _readers):
            _abort("fatal error: concurrent map read and map write")
        if write:
            _writing = True
        else:
            _readers += 1
    try:
        yield
    finally:
        with _access:
            if write:
                _writing = False
            else:
                _readers -= 1


def _jid_proto(value: str) -> JID:
    return (
        parse(value)
        if value
        else JID(User="", Device=0, Integrator=0, IsEmpty=True, RawAgent=0, Server="")
    )


class _GoError(Exception):
    """A Go error on its way to goneonize's `…ReturnFunction.Error`: its text as Go formats it."""


def _go_jid(jid: JID) -> str:
    """types.JID String() (types/jid.go): `user.agent:device@server`, `user:device@server`,
    `user@server`, the server alone without a user, "" without a server."""
    if not jid.Server:
        return ""
    if jid.RawAgent > 0:
        return f"{jid.User}.{jid.RawAgent}:{jid.Device}@{jid.Server}"
    if jid.Device > 0:
        return f"{jid.User}:{jid.Device}@{jid.Server}"
    return f"{jid.User}@{jid.Server}" if jid.User else jid.Server


def _go_quote(text: str) -> str:
    """Go's %q of a plain string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atoi(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise ValueError(f"strconv.Atoi: parsing {_go_quote(text)}: invalid syntax")
    return int(text)


def _parse_go_jid(value: str) -> JID:
    """types.ParseJID: ValueError with its error text (the JID parsed so far is lost)."""
    parts = value.split("@")
    if len(parts) == 1:
        return JID(User="", RawAgent=0, Device=0, Integrator=0, Server=parts[0])
    user, server, agent, device = parts[0], parts[1], 0, 0
    try:
        if "." in user:
            dotted = user.split(".")
            if len(dotted) != 2:
                raise ValueError("unexpected number of dots in JID")
            user, ad = dotted
            colon = ad.split(":")
            if len(colon) > 2:
                raise ValueError("unexpected number of colons in JID")
            agent = _atoi(colon[0]) % 256
            if len(colon) == 2:
                device = _atoi(colon[1]) % 65536
        elif ":" in user:
            colon = user.split(":")
            if len(colon) != 2:
                raise ValueError("unexpected number of colons in JID")
            user, device = colon[0], _atoi(colon[1]) % 65536
    except ValueError as exc:
        text = str(exc)
        if text.startswith("strconv."):
            text = f"failed to parse device from JID: {text}"
        raise ValueError(text) from None
    return JID(User=user, RawAgent=agent, Device=device, Integrator=0, Server=server)


# --- groups: whatsmeow's parsing of the servers' nodes (group.go), goneonize's encoding -------
# A node is {"tag", "attrs", "content"} (the servers' XML as whatsmeow's binary decoder gives it).


def _children(node: dict, tag: str | None = None) -> list[dict]:
    content = node.get("content")
    children = content if isinstance(content, list) else []
    return [child for child in children if tag is None or child["tag"] == tag]


def _child(node: dict, tag: str) -> dict | None:
    return next(iter(_children(node, tag)), None)


def _unix(value: Any) -> int:
    """An optional Unix time attribute, as goneonize encodes it (`.Unix()` of zero time.Time
    when absent)."""
    return GO_ZERO_TIME if value is None else int(value)


def _participant(node: dict) -> GroupParticipant:
    """group.go parseParticipant + encoder.go EncodeGroupParticipant: JID as the group names
    them; a @lid JID is the LID and `phone_number` the PN, a phone-number JID the PN and `lid`
    the LID; Error and AddRequest only with an `error` attribute."""
    attrs = node["attrs"]
    jid, role = attrs["jid"], attrs.get("type", "")
    lid = pn = ""
    if jid.endswith("@lid"):
        lid, pn = jid, attrs.get("phone_number", "")
    elif jid.endswith("@s.whatsapp.net"):
        pn, lid = jid, attrs.get("lid", "")
    participant = GroupParticipant(
        JID=_jid_proto(jid), LID=_jid_proto(lid), PhoneNumber=_jid_proto(pn),
        IsAdmin=role in ("admin", "superadmin"), IsSuperAdmin=role == "superadmin",
        DisplayName=attrs.get("display_name", ""), Error=0,
    )  # fmt: skip
    if attrs.get("error"):
        participant.Error = int(attrs["error"])
        request = _child(node, "add_request")
        if request is not None:
            participant.AddRequest.Code = request["attrs"]["code"]
            participant.AddRequest.Expiration = float(request["attrs"]["expiration"])
    return participant


def _group_info(node: dict) -> GroupInfo:
    """group.go parseGroupNode + encoder.go EncodeGroupInfo (every sub-message set; what the
    node lacks is zero: empty JIDs, zero times)."""
    attrs = node["attrs"]
    info = GroupInfo(
        JID=JID(User=attrs["id"], Device=0, Integrator=0, IsEmpty=False, RawAgent=0,
                Server="g.us"),
        OwnerJID=_jid_proto(attrs.get("creator", "")),
        OwnerPN=_jid_proto(attrs.get("creator_pn", "")),
        GroupName=neonize_proto.GroupName(
            Name=attrs.get("subject", ""), NameSetAt=_unix(attrs.get("s_t")),
            NameSetBy=_jid_proto(attrs.get("s_o", "")),
        ),
        GroupTopic=neonize_proto.GroupTopic(
            Topic="", TopicID="", TopicSetAt=GO_ZERO_TIME, TopicSetBy=_jid_proto(""),
            TopicDeleted=False,
        ),
        GroupLocked=neonize_proto.GroupLocked(isLocked=False),
        GroupAnnounce=neonize_proto.GroupAnnounce(
            IsAnnounce=False, AnnounceVersionID=attrs.get("a_v_id", "")
        ),
        GroupEphemeral=neonize_proto.GroupEphemeral(IsEphemeral=False, DisappearingTimer=0),
        GroupIncognito=neonize_proto.GroupIncognito(IsIncognito=False),
        GroupParent=neonize_proto.GroupParent(IsParent=False, DefaultMembershipApprovalMode=""),
        GroupLinkedParent=neonize_proto.GroupLinkedParent(LinkedParentJID=_jid_proto("")),
        GroupIsDefaultSub=neonize_proto.GroupIsDefaultSub(IsDefaultSubGroup=False),
        GroupCreated=float(_unix(attrs.get("creation"))),
        ParticipantVersionID=attrs.get("p_v_id", ""),
    )  # fmt: skip
    for child in _children(node):
        tag, child_attrs = child["tag"], child["attrs"]
        if tag == "participant":
            info.Participants.append(_participant(child))
        elif tag == "description" and (body := _child(child, "body")) is not None:
            info.GroupTopic.Topic = body["content"]
            info.GroupTopic.TopicID = child_attrs["id"]
            info.GroupTopic.TopicSetBy.CopyFrom(_jid_proto(child_attrs.get("participant", "")))
            info.GroupTopic.TopicSetAt = int(child_attrs["t"])
        elif tag == "announcement":
            info.GroupAnnounce.IsAnnounce = True
        elif tag == "locked":
            info.GroupLocked.isLocked = True
    return info


def _info_lid_pairs(info: GroupInfo) -> list[tuple[str, str]]:
    """group.go cacheGroupInfo: a mapping for each participant with both a LID and a PN."""
    return [
        (p.LID.User, p.PhoneNumber.User)
        for p in info.Participants
        if p.LID.User and p.PhoneNumber.User
    ]


def _participant_list(node: dict) -> tuple[list[JID], list[tuple[str, str]]]:
    """group.go parseParticipantList: the JIDs, and the LID mappings their attributes carry."""
    jids, pairs = [], []
    for child in _children(node, "participant"):
        jid = child["attrs"]["jid"]
        jids.append(_jid_proto(jid))
        other = child["attrs"].get("phone_number" if jid.endswith("@lid") else "lid", "")
        if other:
            lid, pn = (jid, other) if jid.endswith("@lid") else (other, jid)
            pairs.append((lid.partition("@")[0], pn.partition("@")[0]))
    return jids, pairs


def _group_notification(node: dict) -> tuple[Any, list[tuple[str, str]]]:
    """group.go parseGroupNotification: a lone `<create>` is a JoinedGroup (parseGroupCreate,
    encoded as goneonize PR #206 does: Type from Type, Sender/SenderPN when present), anything
    else a GroupInfo event (parseGroupChange → EncodeGroupInfoEvent, which has no SenderPN)."""
    attrs = node["attrs"]
    sender = attrs.get("participant", "")
    children = _children(node)
    if len(children) == 1 and children[0]["tag"] == "create":
        create = children[0]
        info = _group_info(_child(create, "group"))
        joined = JoinedGroup(
            Reason=create["attrs"].get("reason", ""),
            Type=create["attrs"].get("type", ""),
            CreateKey=create["attrs"].get("key", ""),
            GroupInfo=info,
        )
        if sender:
            joined.Sender.CopyFrom(_jid_proto(sender))
        if attrs.get("participant_pn"):
            joined.SenderPN.CopyFrom(_jid_proto(attrs["participant_pn"]))
        return joined, _info_lid_pairs(info)
    timestamp = int(attrs["t"])
    event = GroupInfoEvent(
        JID=_jid_proto(attrs["from"]), Notify=attrs.get("notify", ""), Timestamp=timestamp,
        PrevParticipantsVersionID="", ParticipantVersionID="", JoinReason="",
    )  # fmt: skip
    if sender:
        event.Sender.CopyFrom(_jid_proto(sender))
    pairs: list[tuple[str, str]] = []
    lists = {"add": event.Join, "remove": event.Leave, "promote": event.Promote,
             "demote": event.Demote}  # fmt: skip
    for child in children:
        tag, child_attrs = child["tag"], child["attrs"]
        if tag in lists:
            event.PrevParticipantsVersionID = child_attrs.get("prev_v_id", "")
            event.ParticipantVersionID = child_attrs.get("v_id", "")
            if tag == "add":
                event.JoinReason = child_attrs.get("reason", "")
            jids, pairs = _participant_list(child)  # as in group.go, the last list's pairs
            lists[tag].extend(jids)
        elif tag in ("locked", "unlocked"):
            event.Locked.isLocked = tag == "locked"
        elif tag == "subject":
            event.Name.CopyFrom(
                neonize_proto.GroupName(
                    Name=child_attrs["subject"], NameSetAt=int(child_attrs["s_t"]),
                    NameSetBy=_jid_proto(child_attrs.get("s_o", "")),
                )
            )  # fmt: skip
        elif tag == "description":
            body = _child(child, "body")
            event.Topic.CopyFrom(
                neonize_proto.GroupTopic(
                    Topic=body["content"] if body is not None else "",
                    TopicID=child_attrs["id"], TopicSetAt=timestamp,
                    TopicSetBy=_jid_proto(sender), TopicDeleted=_child(child, "delete") is not None,
                )
            )  # fmt: skip
        elif tag in ("announcement", "not_announcement"):
            event.Announce.CopyFrom(
                neonize_proto.GroupAnnounce(
                    IsAnnounce=tag == "announcement", AnnounceVersionID=child_attrs["v_id"]
                )
            )
        elif tag == "invite":
            event.NewInviteLink = INVITE_LINK_PREFIX + child_attrs["code"]
    return event, pairs


class _Store:
    """The device store (whatsmeow sqlstore): a SQLite file, the gateway snapshots it."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS whatsmeow_device (jid TEXT, lid TEXT, push_name TEXT)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS whatsmeow_lid_map (lid TEXT PRIMARY KEY, pn TEXT)"
            )
            # sqlstore store.go: whatsmeow_contacts, one row per JID (as given: PN or LID)
            db.execute(
                "CREATE TABLE IF NOT EXISTS whatsmeow_contacts (their_jid TEXT PRIMARY KEY, "
                "first_name TEXT, full_name TEXT, push_name TEXT, business_name TEXT, "
                "redacted_phone TEXT)"
            )
            # sqlstore upgrades/00-latest-schema.sql: whatsmeow_message_secrets (the secrets of
            # messages others may modify: polls and their votes), in the same file
            db.execute(
                "CREATE TABLE IF NOT EXISTS whatsmeow_message_secrets (our_jid TEXT, "
                "chat_jid TEXT, sender_jid TEXT, message_id TEXT, key BLOB NOT NULL, "
                "PRIMARY KEY (our_jid, chat_jid, sender_jid, message_id))"
            )

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def device(self) -> tuple[str, str, str]:
        with self._db() as db:
            row = db.execute("SELECT jid, lid, push_name FROM whatsmeow_device").fetchone()
        return tuple(row) if row else ("", "", "")

    def save(self, jid: str, lid: str, push_name: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM whatsmeow_device")
            db.execute("INSERT INTO whatsmeow_device VALUES (?, ?, ?)", (jid, lid, push_name))

    def delete(self) -> None:
        """whatsmeow Store.Delete on logout: the device is gone, the file stays."""
        with self._db() as db:
            db.execute("DELETE FROM whatsmeow_device")
            db.execute("DELETE FROM whatsmeow_lid_map")
            db.execute("DELETE FROM whatsmeow_contacts")  # ON DELETE CASCADE from the device
            db.execute("DELETE FROM whatsmeow_message_secrets")  # likewise

    def put_lid(self, lid: str, pn: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO whatsmeow_lid_map VALUES (?, ?)", (lid, pn))

    def lid_for_pn(self, pn: str) -> str:
        with self._db() as db:
            row = db.execute("SELECT lid FROM whatsmeow_lid_map WHERE pn = ?", (pn,)).fetchone()
        return row[0] if row else ""

    def pn_for_lid(self, lid: str) -> str:
        with self._db() as db:
            row = db.execute("SELECT pn FROM whatsmeow_lid_map WHERE lid = ?", (lid,)).fetchone()
        return row[0] if row else ""

    def put_message_secret(
        self, our_jid: str, chat: str, sender: str, message_id: str, secret: bytes
    ) -> None:
        """sqlstore PutMessageSecret: chat and sender ToNonAD; a secret already stored for the
        message stays (ON CONFLICT DO NOTHING)."""
        with self._db() as db:
            db.execute(
                "INSERT INTO whatsmeow_message_secrets VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (our_jid, chat_jid, sender_jid, message_id) DO NOTHING",
                (our_jid, msgsecret.non_ad(chat), msgsecret.non_ad(sender), message_id, secret),
            )

    def message_secret(
        self, our_jid: str, chat: str, sender: str, message_id: str
    ) -> tuple[bytes, str] | None:
        """sqlstore GetMessageSecret (getMsgSecret): the secret and the sender it was stored
        under; chat and sender match as given or as the other JID the LID map pairs them with."""
        with self._db() as db:
            row = db.execute(
                """
                SELECT key, sender_jid FROM whatsmeow_message_secrets
                WHERE our_jid = :our AND (chat_jid = :chat OR chat_jid = (
                    CASE
                        WHEN :chat LIKE '%@lid' THEN (SELECT pn || '@s.whatsapp.net'
                            FROM whatsmeow_lid_map WHERE lid = replace(:chat, '@lid', ''))
                        WHEN :chat LIKE '%@s.whatsapp.net' THEN (SELECT lid || '@lid'
                            FROM whatsmeow_lid_map WHERE pn = replace(:chat, '@s.whatsapp.net', ''))
                    END
                )) AND message_id = :id AND (sender_jid = :sender OR sender_jid = (
                    CASE
                        WHEN :sender LIKE '%@lid' THEN (SELECT pn || '@s.whatsapp.net'
                            FROM whatsmeow_lid_map WHERE lid = replace(:sender, '@lid', ''))
                        WHEN :sender LIKE '%@s.whatsapp.net' THEN (SELECT lid || '@lid'
                            FROM whatsmeow_lid_map
                            WHERE pn = replace(:sender, '@s.whatsapp.net', ''))
                    END
                ))
                """,
                {"our": our_jid, "chat": msgsecret.non_ad(chat), "id": message_id,
                 "sender": msgsecret.non_ad(sender)},
            ).fetchone()  # fmt: skip
        return (bytes(row[0]), row[1]) if row else None

    def contact(self, jid: str) -> neonize_proto.ContactInfo:
        """sqlstore getContact: Found when the JID has a row; NULL columns are ""."""
        with self._db() as db:
            row = db.execute(
                "SELECT first_name, full_name, push_name, business_name, redacted_phone "
                "FROM whatsmeow_contacts WHERE their_jid = ?",
                (jid,),
            ).fetchone()
        first, full, push, business, redacted = (value or "" for value in (row or [None] * 5))
        return neonize_proto.ContactInfo(
            Found=row is not None, FirstName=first, FullName=full, PushName=push,
            BusinessName=business, RedactedPhone=redacted,
        )  # fmt: skip

    def put_contact_name(self, jid: str, column: str, name: str) -> bool:
        """sqlstore PutPushName / PutBusinessName: written only when it differs; whether it
        changed."""
        assert column in ("push_name", "business_name")
        current = self.contact(jid)
        if getattr(current, "PushName" if column == "push_name" else "BusinessName") == name:
            return False
        with self._db() as db:
            db.execute(
                f"INSERT INTO whatsmeow_contacts (their_jid, {column}) VALUES (?, ?) "  # noqa: S608
                f"ON CONFLICT (their_jid) DO UPDATE SET {column} = excluded.{column}",
                (jid, name),
            )
        return True


class _Go:
    """One whatsmeow client and its Neonize() goroutine."""

    def __init__(self, client: NewClient) -> None:
        self.client = client
        self.store = _Store(client.name)
        self.jid, self.lid, self.push_name = self.store.device()
        # The store's session stores (Store.LIDs, Contacts, AppState, …): "new" on a device
        # never paired (nil: using them panics), "device" once loaded or paired (container.go
        # initializeDevice), "deleted" after Store.Delete (NoopStore: ErrDeviceDeleted, except
        # Store.LIDs, which stays the container's).
        self.store_state = "device" if self.jid else "new"
        self.sock: socket.socket | None = None
        self.handshaking: socket.socket | None = None  # dialled, login not answered yet
        self.reader: threading.Thread | None = None
        self.expected_disconnect = False
        self.cancelled = threading.Event()  # the ctx Stop() cancels
        self.events: queue.Queue = queue.Queue(EVENT_BUFFER)
        self.qr: queue.Queue | None = None  # the QR channel while linking
        self.stop_qrs = threading.Event()
        self.pending: dict[int, tuple[threading.Event, dict]] = {}
        self.ids = iter(range(1, 1 << 62))
        self.write_lock = threading.Lock()
        self.reconnect_errors = 0

    # --- the socket to the servers ----------------------------------------------------------

    def _dial(self) -> socket.socket:
        path = os.environ.get("NEONIZE_DOUBLE_SOCKET", "")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise OSError(
                "failed to dial whatsapp web websocket: failed to WebSocket dial: failed to send "
                f'handshake request: Get "https://web.whatsapp.com/ws/chat": {exc}'
            ) from None
        return sock

    def _connect(self) -> dict:
        """whatsmeow Connect(): open the socket, log in; the answer of the login."""
        sock = self._dial()
        self.expected_disconnect = False
        reader = sock.makefile("rb")
        self.reader = threading.Thread(target=self._read, args=(sock, reader), daemon=True)
        self.reader.start()
        # client.go connect(): cli.socket is set once the handshake is done; until then every
        # IQ (PairPhone, …) fails with ErrNotConnected. The login's answer ends the handshake.
        self.handshaking = sock
        try:
            answer = self._rpc("login", sock=sock, uuid=self.client.uuid, jid=self.jid or None)
        finally:
            self.handshaking = None
        if self.expected_disconnect:  # Disconnect() came during the handshake: it closed it
            raise ConnectionError("websocket disconnected before info query returned response")
        self.sock = sock
        return answer

    def media_request(self, **fields: Any) -> dict:
        """download.go: media come over HTTPS from the media servers (mmg.whatsapp.net), not
        over the websocket: one connection per download, so a large one delays nothing else."""
        sock = self._dial()
        try:
            sock.sendall((json.dumps({"req": 0, "op": "download", **fields}) + "\n").encode())
            with sock.makefile("rb") as reader:
                return json.loads(reader.readline())
        finally:
            sock.close()

    def _send_line(self, message: dict, sock: socket.socket | None = None) -> None:
        sock = sock or self.sock
        if sock is None:
            raise ConnectionError("websocket not connected")
        with self.write_lock:
            sock.sendall((json.dumps(message) + "\n").encode())

    def _rpc(
        self, op: str, timeout: float = 30, sock: socket.socket | None = None, **fields: Any
    ) -> dict:
        request_id = next(self.ids)
        done = threading.Event()
        self.pending[request_id] = (done, {})
        try:
            self._send_line({"req": request_id, "op": op, **fields}, sock)
        except OSError:
            self.pending.pop(request_id, None)
            raise ConnectionError("websocket not connected") from None
        if not done.wait(timeout):
            self.pending.pop(request_id, None)
            raise TimeoutError("info query timed out")
        answer = self.pending.pop(request_id)[1]
        if answer.get("closed"):
            raise ConnectionError("websocket disconnected before info query returned response")
        return answer

    def disconnect(self) -> None:
        """whatsmeow Disconnect(): expected, so no Disconnected event (client.go onDisconnect)."""
        self.expected_disconnect = True
        self.stop_qrs.set()
        sock, self.sock = self.sock, None
        self._clear_waiters()  # unlockedDisconnect: clearResponseWaiters(xmlStreamEndNode)
        for open_socket in (sock, self.handshaking):
            if open_socket is not None:
                try:
                    open_socket.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                open_socket.close()

    def _read(self, sock: socket.socket, reader: Any) -> None:
        try:
            for line in reader:
                message = json.loads(line)
                if "res" in message:
                    waiting = self.pending.get(message["res"])
                    if waiting is not None:
                        waiting[1].update(message)
                        waiting[0].set()
                    continue
                self._on_push(message)
        except (OSError, ValueError):
            pass
        # client.go onDisconnect: only the current socket's end clears the response waiters (a
        # socket Disconnect() closed already did; the requests waiting now are the next one's).
        current = self.sock is sock  # not current: Disconnect() closed it, or a new login did
        if current:
            self.sock = None
        if current or sock is self.handshaking:  # a handshake that fails fails at once
            self._clear_waiters()
        if current and not self.expected_disconnect and not self.cancelled.is_set():
            # client.go onDisconnect: an unexpected close → Disconnected, then autoReconnect.
            self._dispatch(neonize_proto.Disconnected(status=True))
            threading.Thread(target=self._auto_reconnect, daemon=True).start()

    def _clear_waiters(self) -> None:
        for done, answer in list(self.pending.values()):
            answer["closed"] = True
            done.set()

    def _auto_reconnect(self) -> None:
        """client.go autoReconnect: (errors * 2 s) between tries; the wait ends with the ctx
        (Stop) and nothing reconnects after an expected disconnect."""
        while not self.expected_disconnect and not self.cancelled.is_set():
            if self.cancelled.wait(self.reconnect_errors * 2 * SCALE) or self.expected_disconnect:
                return
            self.reconnect_errors += 1
            try:
                answer = self._connect()
            except (OSError, ConnectionError, TimeoutError):
                continue
            if self.cancelled.is_set():  # stopped while the handshake ran
                self.disconnect()
                return
            self._after_login(answer)
            return

    def _after_login(self, answer: dict) -> None:
        if answer.get("ok"):
            self.reconnect_errors = 0
            if answer.get("pair_device"):
                self._start_qrs(answer["pair_device"])
            else:
                self._dispatch(neonize_proto.Connected(status=True))  # handleConnectSuccess
                keepalive = threading.Thread(target=self._keepalive, args=(self.sock,), daemon=True)
                keepalive.start()
            return
        failure = answer.get("failure")
        self.expected_disconnect = True  # handleConnectFailure: no reconnect after a failure
        if failure in FAILURE_REASONS:
            self.delete_store()  # connectionevents.go: the store is deleted on a logged-out failure
            self._dispatch(neonize_proto.LoggedOut(OnConnect=True, Reason=FAILURE_REASONS[failure]))
        elif failure == 402:
            code = TEMP_BAN_CODES.get(answer.get("code", 101), 1)
            self._dispatch(neonize_proto.TemporaryBan(Code=code, Expire=answer.get("expire", 0)))
        elif failure == 405:
            self._dispatch(neonize_proto.ClientOutdated())
        self.disconnect()

    def _keepalive(self, sock: socket.socket | None) -> None:
        """whatsmeow keepalive.go keepAliveLoop: a ping every 20-30 s with a 10 s deadline;
        each miss is a KeepAliveTimeout, the first answer after misses a KeepAliveRestored;
        3 minutes without an answer: Disconnect() (no Disconnected event) and autoReconnect."""
        errors, last_success = 0, time.time()
        while self.sock is sock and sock is not None and not self.cancelled.is_set():
            time.sleep(random.uniform(KEEPALIVE_MIN, KEEPALIVE_MAX) * SCALE)  # noqa: S311
            if self.sock is not sock:
                return
            try:
                # Never under a second, however fast the clock: a busy test machine must not
                # miss a ping that the fake servers answered.
                self._rpc("ping", timeout=max(1.0, KEEPALIVE_DEADLINE * SCALE))
            except (ConnectionError, TimeoutError):
                errors += 1
                self._dispatch(
                    neonize_proto.KeepAliveTimeout(ErrorCount=errors, LastSuccess=int(last_success))
                )
                if time.time() - last_success > KEEPALIVE_MAX_FAIL * SCALE and self.sock is sock:
                    self.disconnect()
                    self.expected_disconnect = False
                    threading.Thread(target=self._auto_reconnect, daemon=True).start()
                    return
                continue
            if errors:
                self._dispatch(neonize_proto.KeepAliveRestored())
            errors, last_success = 0, time.time()

    def _on_push(self, message: dict) -> None:
        kind = message.get("push")
        if kind == "pair_success":
            self.jid, self.lid = message["jid"], message.get("lid", "")
            self.store.save(self.jid, self.lid, self.push_name)
            self.store_state = "device"
            if self.lid:
                self.store.put_lid(self.lid.partition("@")[0], self.jid.partition("@")[0])
            self._dispatch(
                neonize_proto.PairStatus(
                    ID=_jid_proto(self.jid), BusinessName="", Platform="android", Status=2
                )
            )
            self.stop_qrs.set()
            if self.qr is not None:
                self.qr.put(("success", None))
                self.qr.put(None)  # the channel closes
        elif kind == "stream_error" and message.get("code") == 515:
            # handleStreamError: Disconnect(), then connect again as the new device (no event).
            def restart() -> None:
                self.disconnect()
                if not self.cancelled.is_set():
                    self._after_login(self._connect())

            threading.Thread(target=restart, daemon=True).start()
        elif kind == "stream_error" and message.get("conflict") == "device_removed":
            self.expected_disconnect = True
            self.delete_store()
            self._dispatch(neonize_proto.LoggedOut(OnConnect=False, Reason=LOGGED_OUT))
            self.disconnect()
        elif kind == "stream_error" and message.get("conflict") == "replaced":
            self.expected_disconnect = True  # so no Disconnected follows (client.go L595-601)
            self._dispatch(neonize_proto.StreamReplaced())
            self.disconnect()
        elif kind == "push_name":
            # appstate.go dispatchAppState, `setting_pushName`: Store.PushName, saved.
            self.apply_push_name(message["name"])
        elif kind == "notification" and message["node"]["attrs"].get("type") == "w:gp2":
            # notification.go handleNotification, "w:gp2": parseGroupNotification, then the
            # LID mappings it found are stored, then the event is dispatched.
            event, lid_pairs = _group_notification(message["node"])
            self._put_lids(lid_pairs)
            self._dispatch(event)
        elif kind in (13, 17, 18, 19, 20, 23, 30):
            event = INT_TO_EVENT[kind].FromString(base64.b64decode(message["event"]))
            if kind == 17:
                self._learn_from_message(event.Info)
                self._store_message_secret(event)
            self._dispatch(event)

    def _put_lids(self, pairs: list[tuple[str, str]]) -> None:
        """Store.LIDs.PutManyLIDMappings: (LID user, phone user) pairs."""
        for lid, pn in pairs:
            self.store.put_lid(lid, pn)

    def delete_store(self) -> None:
        """whatsmeow Store.Delete (store.go): the device row goes, ID is nil, and the session
        stores become NoopStores that fail with ErrDeviceDeleted."""
        self.store.delete()
        self.jid = ""
        self.store_state = "deleted"

    def _store_lid_pn(self, first: JID, second: JID) -> None:
        """client.go StoreLIDPNMapping: a LID and a phone number JID, in either order."""
        pair = {first.Server: first.User, second.Server: second.User}
        if set(pair) == {"lid", "s.whatsapp.net"}:
            self.store.put_lid(pair["lid"], pair["s.whatsapp.net"])

    def alt_jid(self, jid: str) -> str:
        """store.go GetAltJID: a phone number's LID or a LID's phone number, from Store.LIDs."""
        user, _, server = jid.partition("@")
        if server == "s.whatsapp.net":
            lid = self.store.lid_for_pn(user)
            return f"{lid}@lid" if lid else ""
        if server == "lid":
            pn = self.store.pn_for_lid(user)
            return f"{pn}@s.whatsapp.net" if pn else ""
        return ""

    def update_contact_name(self, column: str, user: str, alt: str, name: str) -> None:
        """user.go updatePushName / updateBusinessName: the name under the user's JID and, when
        it changed, under the other JID too (the message's alt JID, else the store's)."""
        if self.store_state != "device":  # NoopStore: the error is only logged
            return
        if self.store.put_contact_name(user, column, name):
            alt = alt or self.alt_jid(user)
            if alt:
                self.store.put_contact_name(alt, column, name)

    def _learn_from_message(self, info: Any) -> None:
        """message.go handleEncryptedMessage, before decrypting: the LID mapping of the sender
        (or recipient), then the sender's verified business name and push name ("-" is none)."""
        source = info.MessageSource
        if source.SenderAlt.User:
            self._store_lid_pn(source.SenderAlt, source.Sender)
        elif source.RecipientAlt.User:
            self._store_lid_pn(source.RecipientAlt, source.Chat)
        alt = f"{source.SenderAlt.User}@{source.SenderAlt.Server}" if source.SenderAlt.User else ""
        business = info.VerifiedName.Details.verifiedName
        if business:  # updateBusinessName(info.Sender, …): the sender as it came
            self.update_contact_name("business_name", Jid2String(source.Sender), alt, business)
        if info.Pushname and info.Pushname != "-":  # updatePushName: user.ToNonAD()
            user = f"{source.Sender.User}@{source.Sender.Server}"
            self.update_contact_name("push_name", user, alt, info.Pushname)

    def _store_message_secret(self, event: Any) -> None:
        """message.go storeMessageSecret, once the message is decrypted and before its event:
        a message with a messageSecret (a contact's poll) has it stored under its chat, sender
        and id (PutMessageSecret; an error is only logged, as a deleted store's is)."""
        raw = event.Raw if event.HasField("Raw") else event.Message
        secret = raw.messageContextInfo.messageSecret
        if secret and self.store_state == "device":
            source = event.Info.MessageSource
            self.store.put_message_secret(
                self.jid, _go_jid(source.Chat), _go_jid(source.Sender), event.Info.ID, secret
            )

    def apply_push_name(self, name: str) -> None:
        """appstate.go dispatchAppState, `setting_pushName`: Store.PushName, saved."""
        self.push_name = name
        self.store.save(self.jid, self.lid, self.push_name)

    def _dispatch(self, event: Any) -> None:
        """whatsmeow dispatchEvent → neonize's handler: only subscribed codes are forwarded;
        the buffer holds 100 and a full one blocks the dispatcher."""
        from .events import EVENT_TO_INT

        code = EVENT_TO_INT[type(event)]
        if code == 0 or code in self.client.event.list_func:
            self.events.put((code, event))

    # --- QR codes (whatsmeow qrchan.go) --------------------------------------------------------

    def _start_qrs(self, refs: list[str]) -> None:
        self.qr = queue.Queue()
        self.stop_qrs.clear()
        threading.Thread(target=self._emit_qrs, args=(refs, self.qr), daemon=True).start()

    def _emit_qrs(self, refs: list[str], channel: queue.Queue) -> None:
        valid = QR_FIRST if len(refs) == 6 else QR_NEXT
        for ref in refs:
            channel.put(("code", f"2@{ref},double,{self.client.uuid}"))
            if self.stop_qrs.wait(valid * SCALE):
                return  # stopQRs / expectedDisconnect: returns without closing the channel
            valid = QR_NEXT
        channel.put(("timeout", None))
        channel.put(None)  # closed
        self.disconnect()

    # --- Neonize() and CallbackFunction (NZ main.go) -------------------------------------------

    def neonize(self) -> str:
        try:
            answer = self._connect()
        except (OSError, ConnectionError, TimeoutError) as exc:
            return str(exc)
        if not self.jid:
            self._after_login(answer)
        else:
            # An existing device: Connect() returns once the socket is up, and the login's
            # outcome (success, or a failure such as 401) arrives after FetchMe has read the
            # device id from the store.
            threading.Timer(0.05, self._after_login, args=(answer,)).start()
        if self.qr is not None:  # a new device: `for evt := range qrChan`
            while (item := self.qr.get()) is not None:
                kind, code = item
                if kind == "code":
                    self.client.event._qr(self.client, code.encode())
                else:
                    print("Login event:", kind, flush=True)
        return self._callback_function()

    def _callback_function(self) -> str:
        while not self.jid:  # FetchMe: `for cli.ID == nil { time.Sleep(100ms) }`, no ctx check
            time.sleep(0.1)
        device = Device(
            JID=_jid_proto(self.jid),
            LID=_jid_proto(self.lid),
            Platform="android",
            BussinessName="",
            PushName=self.push_name,
            Initialized=True,
        )
        self.client.event.execute(0, device)
        while not self.cancelled.is_set():
            try:
                code, event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            self.client.event.execute(code, event)
        return ""


def _client_of(uuid: str) -> _Go | None:
    """`clients[C.GoString(id)]`, as every exported function starts."""
    with _maps():
        return _clients.get(uuid)


class NewClient:
    def __init__(
        self, name: str, jid: JID | None = None, props: Any = None, uuid: str | None = None
    ):
        self.name = name
        self.uuid = uuid or name
        self.event = Event(self)
        self.qr = self.event.qr
        self.contact = ContactStore(self.uuid)  # PY client.py L445
        self.me: Device | None = None
        self.connected = False

    # --- the connection ----------------------------------------------------------------------

    def connect(self) -> None:
        """Blocks for the connection's life (PY connect_with_proxy runs Go's Neonize on a
        non-daemon thread and waits for it); NeonizeError when Neonize returns an error."""
        go = _Go(self)
        with _maps(write=True):
            _clients[self.uuid] = go  # NZ main.go L654, before Connect()
        result: dict[str, str] = {}
        worker = threading.Thread(target=lambda: result.update(error=go.neonize()), daemon=False)
        worker.start()
        worker.join()
        if result.get("error"):
            raise NeonizeError(result["error"])

    def stop(self) -> None:
        """NZ main.go Stop: Disconnect(), delete(clients, id), cancel the ctx."""
        with _maps(write=True):
            go = _clients.pop(self.uuid, None)
        if go is not None:
            go.disconnect()
            go.cancelled.set()

    def disconnect(self) -> None:
        go = _client_of(self.uuid)
        if go is not None:
            go.disconnect()

    def is_connected(self) -> bool:
        go = _client_of(self.uuid)
        return bool(go and go.sock is not None)

    def get_me(self) -> Device:
        go = _client_of(self.uuid)
        if go is None:  # NZ main.go GetMe: clients[id].Store with no nil check
            _abort("panic: runtime error: invalid memory address or nil pointer dereference")
        return Device(
            JID=_jid_proto(go.jid) if go.jid else None,
            LID=_jid_proto(go.lid),
            Platform="android",
            BussinessName="",
            PushName=go.push_name,
            Initialized=bool(go.jid),
        )

    # --- sending -------------------------------------------------------------------------------

    def _connected_go(self, error: type[Exception], nil: str = "client is nil") -> _Go:
        go = _client_of(self.uuid)
        if go is None:
            raise error(nil)
        return go

    def send_message(
        self,
        to: JID | str,
        message: Message | str,
        link_preview: bool = False,
        ghost_mentions: str | None = None,
        mentions_are_lids: bool = False,
        add_msg_secret: bool = False,
    ) -> SendResponse:
        """PY client.py L635-693: with `add_msg_secret`, 32 random bytes go into the message's
        `messageContextInfo.messageSecret` (the caller's Message is changed, as neonize does);
        the SendResponse carries the Message as sent (L692). whatsmeow stores the secret of a
        message that has one (send.go L390 PutMessageSecret: the destination and our own JID
        as send.go has rewritten them, see `_secret_owner`). The double ignores link previews
        and mentions: a str is a `conversation`."""
        go = self._connected_go(SendMessageError)
        if not go.jid:
            raise SendMessageError("the store doesn't contain a device JID")
        if isinstance(message, str):
            message = Message(conversation=message)
        if add_msg_secret:
            message.messageContextInfo.messageSecret = os.urandom(32)
        target = to if isinstance(to, str) else Jid2String(to)
        if ":" in target.partition("@")[0]:
            raise SendMessageError("message recipient must be a user JID with no device part")
        try:
            answer = go._rpc(
                "send",
                to=target,
                message=base64.b64encode(message.SerializeToString()).decode(),
                timeout=75 * SCALE,
            )
        except TimeoutError:
            raise SendMessageError("timed out waiting for message send response") from None
        except ConnectionError as exc:
            raise SendMessageError(str(exc)) from None
        if "error" in answer:
            raise SendMessageError(answer["error"])
        if answer.get("lid") and target.endswith("@s.whatsapp.net"):
            # send.go L329-352: the LID of a phone number, from Store.LIDs or else a usync
            # query (GetUserInfo, which stores it): the double's servers name it in the answer.
            go.store.put_lid(answer["lid"].partition("@")[0], target.partition("@")[0])
        context = message.messageContextInfo if message.HasField("messageContextInfo") else None
        if context is not None and context.HasField("messageSecret"):
            chat, sender = self._secret_owner(go, target, answer)
            go.store.put_message_secret(go.jid, chat, sender, answer["id"], context.messageSecret)
        timings = neonize_proto.MessageDebugTimings(
            Queue=0, Marshal=0, GetParticipants=0, GetDevices=0, GroupEncrypt=0,
            PeerEncrypt=0, Send=0, Resp=0, Retry=0,
        )  # fmt: skip
        return SendResponse(
            Timestamp=answer["t"], ID=answer["id"], ServerID=0, DebugTimings=timings,
            Message=message,
        )  # fmt: skip

    @staticmethod
    def _secret_owner(go: _Go, target: str, answer: dict) -> tuple[str, str]:
        """send.go SendMessage: what `to` and `ownID` are by L390, where the secret is stored.
        A phone number's chat is sent to its LID, from our LID (L329-352); a LID chat from our
        LID (L323-328); a LID-addressed group (all of the double's) from our LID, another group
        from our phone number JID (L296-313); anything else from our phone number JID."""
        server = target.partition("@")[2]
        if server == "s.whatsapp.net":
            return answer.get("lid") or target, go.lid
        if server == "lid" or (server == "g.us" and answer.get("addressing_mode") == "lid"):
            return target, go.lid
        return target, go.jid

    def build_reaction(self, chat: JID, sender: JID, message_id: str, reaction: str) -> Message:
        """whatsmeow BuildReaction/BuildMessageKey (send.go): FromMe when the sender is empty or
        our own user; Participant only outside one-to-one chats."""
        go = _client_of(self.uuid)
        own = {(go.jid or "").partition("@")[0], (go.lid or "").partition("@")[0]} if go else set()
        own.discard("")
        key = MessageKey(fromMe=True, ID=message_id, remoteJID=Jid2String(chat))
        if sender.User and sender.User not in own:
            key.fromMe = False
            if chat.Server not in ("s.whatsapp.net", "lid", "msgr"):
                key.participant = Jid2String(sender)
        return Message(
            reactionMessage=ReactionMessage(
                key=key, text=reaction, senderTimestampMS=int(time.time() * 1000)
            )
        )

    def edit_message(self, chat: JID, message_id: str, new_message: Message) -> SendResponse:
        """PY client.py edit_message: send_message(chat, build_edit(...)); builder.py build_edit
        wraps a ProtocolMessage MESSAGE_EDIT (key fromMe, the id, the chat; the new content;
        timestampMS) in `editedMessage` (a FutureProofMessage)."""
        edit = ProtocolMessage(
            key=MessageKey(fromMe=True, ID=message_id, remoteJID=Jid2String(chat)),
            type=ProtocolMessage.MESSAGE_EDIT,
            editedMessage=new_message,
            timestampMS=int(time.time() * 1000),
        )
        wrapped = Message(editedMessage=FutureProofMessage(message=Message(protocolMessage=edit)))
        return self.send_message(chat, wrapped)

    def revoke_message(self, chat: JID, sender: JID, message_id: str) -> SendResponse:
        """PY client.py revoke_message → build_revoke (builder.py): a ProtocolMessage REVOKE
        whose key is fromMe when `sender` is our own user; someone else's message (a group
        admin's deletion) names them as the key's participant outside one-to-one chats."""
        go = _client_of(self.uuid)
        own = (go.jid or "").partition("@")[0] if go else ""
        key = MessageKey(fromMe=sender.User == own, ID=message_id, remoteJID=Jid2String(chat))
        if sender.User and not key.fromMe and chat.Server != "s.whatsapp.net":
            key.participant = Jid2String(sender)
        revoke = ProtocolMessage(type=ProtocolMessage.REVOKE, key=key)
        return self.send_message(chat, Message(protocolMessage=revoke))

    # --- polls (whatsmeow msgsecret.go; goneonize main.go; neonize client.py) ----------------

    def _make_quoted_message(self, message: Any, reply_privately: bool = False) -> ContextInfo:
        """PY client.py L576-596: the quoted message's own contextInfo is cleared (in place), a
        LID sender replaced by its SenderAlt, the JIDs made non-AD."""
        quoted = next(
            (value for field, value in message.Message.ListFields()
             if field.name.endswith(("Message", "MessageV2", "MessageV3"))
             or field.name == "conversation"),
            None,
        )  # fmt: skip  # utils/message.py get_message_type
        if quoted is not None and not isinstance(quoted, str):
            with contextlib.suppress(Exception):  # neonize only logs a warning
                quoted.contextInfo.Clear()
        source = message.Info.MessageSource
        sender = source.Sender
        if sender.Server == "lid" and source.SenderAlt.ListFields():
            sender = source.SenderAlt

        def non_ad(jid: JID) -> str:
            return Jid2String(JID(User=jid.User, Server=jid.Server, RawAgent=0, Device=0,
                                  Integrator=jid.Integrator))  # fmt: skip

        return ContextInfo(
            stanzaID=message.Info.ID,
            participant=non_ad(sender),
            quotedMessage=message.Message,
            remoteJID=non_ad(source.Chat) if reply_privately else None,
        )

    def build_poll_vote_creation(
        self,
        name: str,
        options: list[str],
        selectable_count: Any,
        quoted: Any = None,
    ) -> Message:
        """PY client.py L849-885 → NZ main.go BuildPollVoteCreation → whatsmeow
        BuildPollCreation (msgsecret.go): a `pollCreationMessage` (not a V2/V3) with the name,
        one option per name and `selectableOptionsCount` the VoteType's value (MULTIPLE 0:
        any number; a count below 0 or above the options is 0), and a new
        `messageContextInfo.messageSecret` of 32 random bytes. BuildPollCreation never reads
        the client: it works before connect() and after stop(). `quoted` goes into the poll's
        contextInfo (PY). Send it with send_message (whatsmeow then stores the secret)."""
        neonize_proto.ArrayString(data=options).SerializeToString()
        count = selectable_count.value  # PY passes `.value`: an int fails here as in neonize
        name = name.split("\x00")[0]  # a C string
        if count < 0 or count > len(options):
            count = 0
        poll = Message(
            pollCreationMessage=PollCreationMessage(
                name=name,
                options=[PollCreationMessage.Option(optionName=option) for option in options],
                selectableOptionsCount=count,
            ),
            messageContextInfo=MessageContextInfo(messageSecret=os.urandom(32)),
        )
        message = _returned(neonize_proto.BuildMessageReturnFunction(Message=poll)).Message
        if quoted:
            message.pollCreationMessage.contextInfo.MergeFrom(self._make_quoted_message(quoted))
        return message

    def build_poll_vote(self, poll_info: MessageInfo, option_names: list[str]) -> Message:
        """PY client.py L887-910 → NZ main.go BuildPollVote → whatsmeow BuildPollVote /
        EncryptPollVote / encryptMsgSecret (msgsecret.go): a `pollUpdateMessage` whose vote is
        a PollVoteMessage of the options' SHA-256 hashes, AES-GCM encrypted with the poll's
        stored secret, the modification sender our phone number JID when the poll's sender is
        a phone number, else our LID; the key is getKeyFromInfo's (the chat, IsFromMe, the id,
        the sender as participant in a group). Errors (BuildPollVoteError): "failed to encrypt
        poll vote: " + "client is nil" / "the store doesn't contain a device JID" / "original
        message secret key not found"."""
        neonize_proto.ArrayString(data=option_names).SerializeToString()
        info = MessageInfo.FromString(poll_info.SerializeToString())
        model = neonize_proto.BuildPollVoteReturnFunction()
        try:
            update = self._encrypt_poll_vote(info, list(option_names))
            model.PollVote.CopyFrom(Message(pollUpdateMessage=update))
        except _GoError as exc:
            model.Error = f"failed to encrypt poll vote: {exc}"
            model.PollVote.CopyFrom(Message())  # BuildPollVote returns the message all the same
        model = _returned(model)
        if model.Error:
            raise BuildPollVoteError(model.Error)
        return model.PollVote

    def _encrypt_poll_vote(self, info: MessageInfo, option_names: list[str]) -> PollUpdateMessage:
        go = _client_of(self.uuid)
        plaintext = PollVoteMessage(
            selectedOptions=msgsecret.hash_options(option_names)
        ).SerializeToString()
        if go is None:
            raise _GoError("client is nil")  # encryptMsgSecret: ErrClientIsNil
        source = info.MessageSource
        own = ""  # getOwnLID, or getOwnID for a phone number's poll: empty without a device
        if go.jid:
            own = go.jid if source.Sender.Server == "s.whatsapp.net" else go.lid
        if not own:
            raise _GoError("the store doesn't contain a device JID")  # ErrNotLoggedIn
        found = go.store.message_secret(
            go.jid, _go_jid(source.Chat), _go_jid(source.Sender), info.ID
        )
        if found is None:
            raise _GoError("original message secret key not found")
        secret, stored_sender = found
        key, additional = msgsecret.secret_key(
            msgsecret.POLL_VOTE, own, info.ID, stored_sender, secret
        )
        iv = os.urandom(msgsecret.IV_SIZE)
        creation_key = MessageKey(  # getKeyFromInfo
            remoteJID=_go_jid(source.Chat), fromMe=source.IsFromMe, ID=info.ID
        )
        if source.IsGroup:
            creation_key.participant = _go_jid(source.Sender)
        return PollUpdateMessage(
            pollCreationMessageKey=creation_key,
            vote=PollEncValue(
                encPayload=msgsecret.encrypt(key, iv, plaintext, additional), encIV=iv
            ),
            senderTimestampMS=int(time.time() * 1000),
        )

    def decrypt_poll_vote(self, message: Any) -> PollVoteMessage:
        """PY client.py L3356-3363 → NZ main.go DecryptPollVote → whatsmeow DecryptPollVote /
        decryptMsgSecret (msgsecret.go): `message` is the vote's MessageEv. The poll's
        original sender comes from the vote's `pollCreationMessageKey` (getOrigSenderFromKey:
        fromMe → the vote's sender; a one-to-one chat → the key's remoteJID; a group → its
        participant), the secret from the store (chat, that sender, the key's id; either JID
        may be the LID map's other one); the key is derived with the vote's sender as the
        modification sender. Returns the PollVoteMessage (`selectedOptions`: SHA-256 hashes of
        the chosen option names; none when the vote was withdrawn). Errors, as
        DecryptPollVoteError: "given message isn't a poll update message", else "failed to
        decrypt poll vote: " + "client is nil" / "failed to parse JID … of original message
        sender: …" / "original message secret key not found" / "failed to get original message
        secret key: invalid use of deleted device" / "failed to decrypt secret message: cipher:
        message authentication failed (sender: …, orig sender: … and …)"."""
        event = neonize_proto.Message.FromString(message.SerializeToString())
        model = neonize_proto.ReturnFunctionWithError()
        try:
            model.PollVoteMessage.CopyFrom(self._decrypt_poll_vote(event))
        except _GoError as exc:
            model.Error = str(exc)
        model = _returned(model)
        if model.Error:
            raise DecryptPollVoteError(model.Error)
        return model.PollVoteMessage

    def _decrypt_poll_vote(self, event: Any) -> PollVoteMessage:
        if not event.Message.HasField("pollUpdateMessage"):
            raise _GoError("given message isn't a poll update message")  # ErrNotPollUpdateMessage
        try:
            plaintext = self._decrypt_msg_secret(event, event.Message.pollUpdateMessage)
        except _GoError as exc:
            raise _GoError(f"failed to decrypt poll vote: {exc}") from None
        try:
            return PollVoteMessage.FromString(plaintext)
        except DecodeError:  # Go's proto.Unmarshal error [INFERRED text]
            raise _GoError(
                "failed to decode poll vote protobuf: proto: cannot parse invalid wire-format data"
            ) from None

    def _decrypt_msg_secret(self, event: Any, update: PollUpdateMessage) -> bytes:
        """msgsecret.go decryptMsgSecret (use case "Poll Vote"), with its orig-sender hack: a
        failed tag is tried again with the sender the secret was stored under."""
        go = _client_of(self.uuid)
        if go is None:
            raise _GoError("client is nil")
        info = event.Info
        key = update.pollCreationMessageKey
        orig_sender = _go_jid(self._orig_sender(info, key))
        if go.store_state == "new":  # Store.MsgSecrets is nil on a device never paired
            _abort(NIL_DEREFERENCE)
        if go.store_state == "deleted":
            raise _GoError(
                "failed to get original message secret key: invalid use of deleted device"
            )
        chat = _go_jid(info.MessageSource.Chat)
        found = go.store.message_secret(go.jid, chat, orig_sender, key.ID)
        if found is None:
            raise _GoError("original message secret key not found")
        secret, stored_sender = found
        sender = _go_jid(info.MessageSource.Sender)
        vote = update.vote

        def attempt(orig: str) -> bytes:
            aes_key, additional = msgsecret.secret_key(
                msgsecret.POLL_VOTE, sender, key.ID, orig, secret
            )
            try:
                return msgsecret.decrypt(aes_key, vote.encIV, vote.encPayload, additional)
            except msgsecret.NonceLengthPanic as exc:  # gcm.Open panics: the process dies
                _abort(str(exc))
                raise

        try:
            return attempt(orig_sender)
        except msgsecret.AuthenticationFailed as exc:
            error = exc
        if orig_sender != stored_sender:
            try:
                return attempt(stored_sender)
            except msgsecret.AuthenticationFailed as exc:
                error = exc
        raise _GoError(
            f"failed to decrypt secret message: {error} (sender: {sender}, orig sender: "
            f"{orig_sender} and {stored_sender})"
        )

    @staticmethod
    def _orig_sender(info: Any, key: MessageKey) -> JID:
        """msgsecret.go getOrigSenderFromKey."""
        if key.fromMe:  # "fromMe always means the poll and vote were sent by the same user"
            return info.MessageSource.Sender
        if info.MessageSource.Chat.Server in ("s.whatsapp.net", "lid"):
            value = key.remoteJID
            try:
                return _parse_go_jid(value)
            except ValueError as exc:
                error = str(exc)
        else:
            value, error = key.participant, ""
            try:
                sender = _parse_go_jid(value)
            except ValueError as exc:
                error = str(exc)
            parts = value.split("@")
            if (parts[1] if len(parts) > 1 else parts[0]) not in ("s.whatsapp.net", "lid"):
                error = "unexpected server"  # replaces a parse error too
            if not error:
                return sender
        raise _GoError(
            f"failed to parse JID {_go_quote(value)} of original message sender: {error}"
        )

    def _upload(self, file: str | bytes) -> tuple[bytes, str, str]:
        import filetype

        data = Path(file).read_bytes() if isinstance(file, str) else file
        go = self._connected_go(SendMessageError)
        try:
            answer = go._rpc("upload", data=base64.b64encode(data).decode())
        except ConnectionError as exc:
            raise SendMessageError(f"failed to upload media: {exc}") from None
        return data, answer["direct_path"], filetype.guess_mime(data) or "application/octet-stream"

    def _media_fields(self, data: bytes, direct_path: str, mimetype: str) -> dict[str, Any]:
        return {
            "URL": "https://mmg.whatsapp.net" + direct_path,
            "directPath": direct_path,
            "mimetype": mimetype,
            "fileLength": len(data),
            "fileSHA256": hashlib.sha256(data).digest(),
            "fileEncSHA256": hashlib.sha256(b"enc" + data).digest(),
            "mediaKey": os.urandom(32),
            "mediaKeyTimestamp": int(time.time()),
        }

    def build_image_message(
        self, file: str | bytes, caption: str | None = None, **_: Any
    ) -> Message:
        data, path, mimetype = self._upload(file)
        fields = self._media_fields(data, path, mimetype)
        return Message(imageMessage=ImageMessage(caption=caption or "", **fields))

    def build_video_message(
        self, file: str | bytes, caption: str | None = None, **_: Any
    ) -> Message:
        data, path, mimetype = self._upload(file)
        fields = self._media_fields(data, path, mimetype)
        return Message(videoMessage=VideoMessage(caption=caption or "", **fields))

    def build_sticker_message(
        self,
        file: str | bytes,
        quoted: Any = None,
        name: str = "",
        packname: str = "",
        crop: bool = False,
        enforce_not_broken: bool = False,
        animated_gif: bool = False,
        passthrough: bool = False,
    ) -> Message:
        """PY client.py build_sticker_message with `passthrough`: the WebP is uploaded as it is
        ("File is not a webp, which is required for passthrough." otherwise), `isAnimated` when
        it has two frames or more (PIL ImageSequence). Without passthrough neonize converts the
        image with PIL/ffmpeg first; the double sends a WebP as it is then too [INFERRED: the
        conversion's output is not modelled]."""
        from io import BytesIO

        from PIL import Image, ImageSequence

        data = Path(file).read_bytes() if isinstance(file, str) else file
        if not data[8:12] == b"WEBP":
            if passthrough:
                raise ConvertStickerError("File is not a webp, which is required for passthrough.")
        animated = False
        if data[8:12] == b"WEBP":
            with Image.open(BytesIO(data)) as image:
                animated = len(ImageSequence.all_frames(image)) > 1
        uploaded, path, _ = self._upload(data)
        fields = self._media_fields(uploaded, path, "image/webp")
        return Message(stickerMessage=StickerMessage(isAnimated=animated, **fields))

    def build_audio_message(self, file: str | bytes, ptt: bool = False, **_: Any) -> Message:
        data, path, mimetype = self._upload(file)
        fields = self._media_fields(data, path, mimetype)
        return Message(audioMessage=AudioMessage(PTT=ptt, **fields))

    def build_document_message(
        self,
        file: str | bytes,
        caption: str | None = None,
        title: str | None = None,
        filename: str | None = None,
        mimetype: str | None = None,
        **_: Any,
    ) -> Message:
        data, path, sniffed = self._upload(file)
        fields = self._media_fields(data, path, mimetype or sniffed)
        return Message(
            documentMessage=DocumentMessage(
                caption=caption or "", title=title or "", fileName=filename or "", **fields
            )
        )

    # --- the rest of what the gateway calls ----------------------------------------------------

    def PairPhone(self, phone: str, show_push_notification: bool, *_: Any, **__: Any) -> str:
        """whatsmeow pair-code.go PairPhone: the number is checked first, then the IQ needs the
        websocket (ErrNotConnected)."""
        go = self._connected_go(
            PairPhoneError,
            "client is nil: ensure client is connected before calling PairPhone, or pass "
            "pairphone to connect()",
        )
        digits = "".join(ch for ch in phone if ch.isdigit())
        if len(digits) <= 6:
            raise PairPhoneError("phone number too short")
        if digits.startswith("0"):
            raise PairPhoneError("international phone number required (must not start with 0)")
        try:
            return go._rpc("pair_phone", phone=digits, timeout=75 * SCALE)["code"]
        except (ConnectionError, TimeoutError) as exc:
            raise PairPhoneError(str(exc)) from None

    def is_on_whatsapp(self, *numbers: str) -> list[Any]:
        if not numbers:
            return []
        go = self._connected_go(IsOnWhatsAppError)
        try:
            answer = go._rpc("usync", numbers=list(numbers))
        except (ConnectionError, TimeoutError) as exc:
            raise IsOnWhatsAppError(f"failed to send usync query: {exc}") from None
        results = [
            neonize_proto.IsOnWhatsAppResponse(
                Query=r["query"], JID=_jid_proto(r["jid"]), IsIn=r["in"]
            )
            for r in answer["results"]
        ]
        if not results:
            raise IsOnWhatsAppError("Function returned nothing.")
        return results

    def mark_read(
        self, *message_ids: str, chat: JID, sender: JID, receipt: Any, timestamp: int | None = None
    ) -> None:
        go = self._connected_go(MarkReadError)
        if not message_ids:
            raise MarkReadError("no message IDs specified")
        try:
            go._rpc(
                "mark_read",
                ids=list(message_ids),
                chat=Jid2String(chat),
                sender=Jid2String(sender),
                type=receipt.value.decode() if isinstance(receipt.value, bytes) else receipt.value,
            )
        except (ConnectionError, TimeoutError) as exc:
            raise MarkReadError(str(exc)) from None

    def _node(self, op: str, error: type[Exception], *, raw: bool = False, **fields: Any) -> None:
        """whatsmeow sendNode: written to the socket, no answer awaited; ErrNotConnected without
        one. neonize returns the Go error's text decoded, except from send_presence (`raw`:
        PY client.py L3320-3322 raises with the bytes as they came)."""
        go = self._connected_go(error)
        try:
            go._send_line({"req": 0, "op": op, **fields})
        except (ConnectionError, OSError):
            message = "websocket not connected"
            raise error(message.encode() if raw else message) from None

    def send_chat_presence(self, jid: JID, state: Any, media: Any) -> None:
        """whatsmeow SendChatPresence (presence.go): `<chatstate to=…><composing|paused/>`, with
        `media` only on composing; neonize passes its enums' values (0/1), which goneonize maps
        by index (utils.go), and raises SendPresenceError (PY client.py send_chat_presence)."""
        self._node(
            "chatstate",
            SendPresenceError,
            jid=Jid2String(jid),
            state=["composing", "paused"][state.value],
            media="audio" if state.value == 0 and media.value == 1 else "",
        )

    def send_presence(self, presence: Any) -> None:
        """whatsmeow SendPresence (presence.go): refused without a push name (ErrNoPushName,
        errors.go); neonize passes Presence's bytes value (PY client.py send_presence)."""
        go = self._connected_go(SendPresenceError)
        if not go.push_name:
            raise SendPresenceError(b"can't send presence without PushName set")
        self._node("presence", SendPresenceError, raw=True, type=presence.value.decode())

    def subscribe_presence(self, jid: JID) -> None:
        """whatsmeow SubscribePresence (presence.go): `<presence type="subscribe" to=…>`; without
        a privacy token it is sent all the same (only logged)."""
        self._node("subscribe", SubscribePresenceError, jid=Jid2String(jid))

    def _blocklist_of(self, answer: dict) -> Any:
        """goneonize EncodeBlocklist: DHash and the JIDs (encoder.go)."""
        return neonize_proto.Blocklist(
            DHash=answer["dhash"], JIDs=[_jid_proto(jid) for jid in answer["jids"]]
        )

    def get_blocklist(self) -> Any:
        """whatsmeow GetBlocklist (user.go): an IQ `blocklist` get; its `<list>` of `<item jid>`
        (@lid JIDs these days). Errors come in GetBlocklistReturnFunction.Error (PY L3114)."""
        go = self._connected_go(GetBlocklistError)
        try:
            answer = go._rpc("blocklist_get")
        except (ConnectionError, TimeoutError) as exc:
            raise GetBlocklistError(str(exc)) from None
        return self._blocklist_of(answer)

    def update_blocklist(self, jid: JID, action: Any) -> Any:
        """whatsmeow UpdateBlocklist (user.go): the item is keyed by the user's LID, taken from
        the store or else from a user info query (which stores the mapping), "no LID found for
        %s from server" when WhatsApp has none; a block also names the phone number (`pn_jid`).
        Returns the list the server answers with."""
        go = self._connected_go(UpdateBlocklistError)
        target = Jid2String(jid)
        try:
            if jid.Server == "s.whatsapp.net":
                lid_user = go.store.lid_for_pn(jid.User)
                if not lid_user:
                    found = go._rpc("user_lid", jid=target)
                    if not found.get("lid"):
                        raise UpdateBlocklistError(f"no LID found for {target} from server")
                    lid_user = found["lid"].partition("@")[0]
                    go.store.put_lid(lid_user, jid.User)
                target = f"{lid_user}@lid"
            answer = go._rpc("blocklist_set", jid=target, action=action.value)
        except (ConnectionError, TimeoutError) as exc:
            raise UpdateBlocklistError(str(exc)) from None
        return self._blocklist_of(answer)

    def download_any(self, message: Message, path: str | None = None) -> bytes | None:
        """whatsmeow DownloadAny: only top-level media; the whole file in memory."""
        media = next(
            (
                getattr(message, f)
                for f in MEDIA_FIELDS
                if message.HasField(f)
            ),
            None,
        )  # fmt: skip
        if media is None:
            raise DownloadError("didn't find any attachments in message")
        go = self._connected_go(DownloadError)
        try:
            answer = go.media_request(direct_path=media.directPath)
        except (OSError, ValueError) as exc:
            raise DownloadError(f"failed to download media: {exc}") from None
        if "error" in answer:
            raise DownloadError(answer["error"])
        data = base64.b64decode(answer["data"])
        if path is not None:
            Path(path).write_bytes(data)
            return None
        return data

    def get_pn_from_lid(self, jid: JID) -> JID:
        """NZ main.go GetPNFromLID: clients[id].Store.LIDs with no nil check (aborts when the
        client is gone or its store was never paired); an unknown LID is an empty JID, no
        error; the answer keeps the input's device (lidmap.go getLIDMapping)."""
        jid.SerializeToString()
        go = _client_of(self.uuid)
        if go is None or go.store_state == "new":
            _abort(NIL_DEREFERENCE)
        if jid.Server != "lid":
            raise GetJIDFromStoreError(
                f"invalid GetPNForLID call with non-LID JID {Jid2String(jid)}"
            )
        pn = go.store.pn_for_lid(jid.User)
        return _store_jid(pn, jid.Device, "s.whatsapp.net")

    def get_lid_from_pn(self, jid: JID) -> JID:
        """NZ main.go GetLIDFromPN (PY client.py L2242), the mirror of get_pn_from_lid:
        lidmap.go GetLIDForPN refuses a JID that is not a phone number's."""
        jid.SerializeToString()
        go = _client_of(self.uuid)
        if go is None or go.store_state == "new":
            _abort(NIL_DEREFERENCE)
        if jid.Server != "s.whatsapp.net":
            raise GetJIDFromStoreError(
                f"invalid GetLIDForPN call with non-PN JID {Jid2String(jid)}"
            )
        lid = go.store.lid_for_pn(jid.User)
        return _store_jid(lid, jid.Device, "lid")

    def logout(self) -> None:
        """whatsmeow Logout: needs the device and the socket; no LoggedOut event after it."""
        go = self._connected_go(LogoutError)
        if not go.jid:
            raise LogoutError("the store doesn't contain a device JID")
        try:
            go._rpc("logout")
        except (ConnectionError, TimeoutError) as exc:
            raise LogoutError(f"error sending logout request: {exc}") from None
        go.disconnect()
        go.delete_store()

    # --- groups (whatsmeow group.go; goneonize main.go; neonize client.py) ---------------------

    def generate_message_id(self) -> str:
        """whatsmeow GenerateMessageID (send.go): "3EB0" and nine bytes of a SHA-256 over the
        time, our own user and random bytes, in upper hex; nil-safe (PY client.py L2022)."""
        go = _client_of(self.uuid)
        data = int(time.time()).to_bytes(8, "big")
        if go is not None and go.jid:
            data += go.jid.partition("@")[0].partition(":")[0].encode() + b"@c.us"
        return "3EB0" + hashlib.sha256(data + os.urandom(16)).hexdigest()[:18].upper()

    def _group_iq(
        self,
        error: type[Exception],
        op: str,
        *,
        go: _Go | None = None,
        wrapped: dict[int, str] | None = None,
        prefix: str = "",
        **fields: Any,
    ) -> tuple[_Go, dict]:
        """sendGroupIQ → sendIQ (request.go): "client is nil" without a client, "websocket not
        connected" without a socket, "info query timed out" after 75 s, and an IQ error as
        "info query returned status <code>: <text>" (errors.go IQError) unless the method
        wraps it in a human error (`wrapped`, group.go wrapIQError)."""
        go = go or _client_of(self.uuid)
        if go is None:
            raise error(prefix + "client is nil")
        try:
            answer = go._rpc(op, timeout=IQ_TIMEOUT * SCALE, **fields)
        except (ConnectionError, TimeoutError) as exc:
            raise error(prefix + str(exc)) from None
        if "error" in answer:
            raise error(prefix + answer["error"])
        code = answer.get("iq_error")
        if code:
            raw = f"info query returned status {code}: {answer['text']}"
            raise error(prefix + (wrapped or {}).get(code, raw))
        return go, answer

    @staticmethod
    def _privacy_tokens(go: _Go | None, error: type[Exception], targets: list[str]) -> None:
        """CreateGroup / UpdateGroupParticipants(add), per participant (group.go): a LID's phone
        number from Store.LIDs (nil without a paired client: the process aborts), then
        ensureTCToken (tctoken.go), ErrNotLoggedIn without a device JID."""
        for target in targets:
            if go is None or not go.jid:
                if target.endswith("@lid"):
                    _abort(
                        "panic: runtime error: invalid memory address or nil pointer dereference"
                    )
                raise error(
                    f"failed to get privacy token for participant {target}: "
                    "the store doesn't contain a device JID"
                )

    def _group_info_of(self, error: type[Exception], target: str, prefix: str = "") -> GroupInfo:
        """whatsmeow getGroupInfo: 404 → ErrGroupNotFound, 403 → ErrNotInGroup; the members' LID
        mappings are stored (cacheGroupInfo, PutManyLIDMappings)."""
        go, answer = self._group_iq(
            error,
            "group_info",
            wrapped={
                404: "that group does not exist",
                403: "you're not participating in that group",
            },
            prefix=prefix,
            jid=target,
        )
        info = _group_info(answer["group"])
        go._put_lids(_info_lid_pairs(info))
        return _returned(neonize_proto.GetGroupInfoReturnFunction(GroupInfo=info)).GroupInfo

    def get_group_info(self, jid: JID) -> GroupInfo:
        """PY client.py L2108: GetGroupInfoReturnFunction, GetGroupInfoError(model.Error)."""
        jid.SerializeToString()  # neonize serialises the JID first: an incomplete one fails here
        return self._group_info_of(GetGroupInfoError, Jid2String(jid))

    def get_joined_groups(self) -> Any:
        """whatsmeow GetJoinedGroups: `<participating>` with participants and descriptions; the
        LID mappings of every group are stored. PY client.py L2887 returns `model.Group`."""
        go, answer = self._group_iq(GetJoinedGroupsError, "group_list")
        infos = [_group_info(node) for node in answer["groups"]]
        for info in infos:
            go._put_lids(_info_lid_pairs(info))
        return _returned(neonize_proto.GetJoinedGroupsReturnFunction(Group=infos)).Group

    def create_group(
        self,
        name: str,
        participants: list[JID] = [],  # noqa: B006 - neonize's own signature
        linked_parent: Any = None,
        group_parent: Any = None,
    ) -> GroupInfo:
        """PY client.py L2836: ReqCreateGroup with CreateKey = generate_message_id(); whatsmeow
        CreateGroup parses the `<group>` of the answer (participants that could not be added
        carry their Error), without storing LID mappings (the create notification does)."""
        request = neonize_proto.ReqCreateGroup(
            name=name, Participants=participants, CreateKey=self.generate_message_id()
        )
        if linked_parent:
            request.GroupLinkedParent.MergeFrom(linked_parent)
        if group_parent:
            request.GroupParent.MergeFrom(group_parent)
        request = neonize_proto.ReqCreateGroup.FromString(request.SerializeToString())
        targets = [f"{p.User}@{p.Server}" for p in request.Participants]  # ToNonAD
        go = _client_of(self.uuid)
        self._privacy_tokens(go, CreateGroupError, targets)
        _, answer = self._group_iq(
            CreateGroupError,
            "group_create",
            go=go,
            name=request.name,
            participants=targets,
            key=request.CreateKey,
        )
        info = _group_info(answer["group"])
        return _returned(neonize_proto.GetGroupInfoReturnFunction(GroupInfo=info)).GroupInfo

    def update_group_participants(
        self, jid: JID, participants_changes: list[JID], action: Any
    ) -> Any:
        """whatsmeow UpdateGroupParticipants: one IQ; WhatsApp answers each participant (Error,
        AddRequest); only the IQ's own failure raises (PY client.py L2787)."""
        jid.SerializeToString()
        neonize_proto.JIDArray(JIDS=participants_changes).SerializeToString()
        targets = [Jid2String(p) for p in participants_changes]
        go = _client_of(self.uuid)
        if action.value == "add":
            self._privacy_tokens(go, UpdateGroupParticipantsError, targets)
        _, answer = self._group_iq(
            UpdateGroupParticipantsError,
            "group_participants",
            go=go,
            jid=Jid2String(jid),
            action=action.value,
            participants=targets,
        )
        result = neonize_proto.UpdateGroupParticipantsReturnFunction(
            participants=[_participant(node) for node in answer["participants"]]
        )
        return _returned(result).participants

    def _set_group(self, error: type[Exception], jid: JID, tag: str, **fields: Any) -> None:
        jid.SerializeToString()
        self._group_iq(error, "group_set", jid=Jid2String(jid), tag=tag, **fields)

    def set_group_name(self, jid: JID, name: str) -> None:
        """whatsmeow SetGroupName: `<subject>`; SetGroupNameError (PY client.py L2178)."""
        self._set_group(SetGroupNameError, jid, "subject", value=name)

    def set_group_topic(self, jid: JID, previous_id: str, new_id: str, topic: str) -> None:
        """whatsmeow SetGroupTopic: without a previous id it asks for the group's info first
        ("failed to get old group info to update topic: …"); without a new id it makes one
        (GenerateMessageID); an empty topic deletes the description."""
        jid.SerializeToString()
        target = Jid2String(jid)
        if not previous_id:
            previous_id = self._group_info_of(
                SetGroupTopicError, target, prefix="failed to get old group info to update topic: "
            ).GroupTopic.TopicID
        new_id = new_id or self.generate_message_id()
        self._set_group(
            SetGroupTopicError, jid, "description", value=topic, id=new_id, prev=previous_id
        )

    def set_group_announce(self, jid: JID, announce: bool) -> None:
        """whatsmeow SetGroupAnnounce: `<announcement>` / `<not_announcement>`."""
        tag = "announcement" if announce else "not_announcement"
        self._set_group(SetGroupAnnounceError, jid, tag)

    def set_group_locked(self, jid: JID, locked: bool) -> None:
        """whatsmeow SetGroupLocked: `<locked>` / `<unlocked>`."""
        self._set_group(SetGroupLockedError, jid, "locked" if locked else "unlocked")

    def set_group_photo(self, jid: JID, file_or_bytes: str | bytes) -> str:
        """whatsmeow SetGroupPhoto: WhatsApp wants a JPEG and answers anything else with 406,
        which whatsmeow reports as ErrInvalidImageFormat; returns the new picture id."""
        data = Path(file_or_bytes).read_bytes() if isinstance(file_or_bytes, str) else file_or_bytes
        jid.SerializeToString()
        _, answer = self._group_iq(
            SetGroupPhotoError,
            "group_photo",
            wrapped={406: "the given data is not a valid image"},
            jid=Jid2String(jid),
            data=base64.b64encode(data).decode(),
        )
        return answer["id"]

    def get_group_invite_link(self, jid: JID, revoke: bool = False) -> str:
        """whatsmeow GetGroupInviteLink: `<invite>` (a set with `revoke`, which makes a new code
        and ends the old one); 401 → ErrGroupInviteLinkUnauthorized, 404 → ErrGroupNotFound,
        403 → ErrNotInGroup."""
        jid.SerializeToString()
        _, answer = self._group_iq(
            GetGroupInviteLinkError,
            "group_invite",
            wrapped={
                401: "you don't have the permission to get the group's invite link",
                404: "that group does not exist",
                403: "you're not participating in that group",
            },
            jid=Jid2String(jid),
            reset=bool(revoke),
        )
        return INVITE_LINK_PREFIX + answer["code"]

    def join_group_with_link(self, code: str) -> JID:
        """whatsmeow JoinGroupWithLink: the code is the link without its prefix and query
        (stripURLPrefix); 410 → ErrInviteLinkRevoked, 406 → ErrInviteLinkInvalid; returns the
        group's JID (PY client.py L2326 raises InviteLinkError)."""
        if code.startswith(INVITE_LINK_PREFIX):
            code = code[len(INVITE_LINK_PREFIX) :]
            if code.find("?") > 0:
                code = code[: code.index("?")]
        _, answer = self._group_iq(
            InviteLinkError,
            "group_join",
            wrapped={
                410: "that group invite link has been revoked",
                406: "that group invite link is not valid",
            },
            code=code,
        )
        result = neonize_proto.JoinGroupWithLinkReturnFunction(Jid=_jid_proto(answer["jid"]))
        return _returned(result).Jid

    def leave_group(self, jid: JID) -> None:
        """whatsmeow LeaveGroup: `<leave><group id=…>` to g.us; the answer's content is not
        looked at, only an IQ error raises LeaveGroupError (PY client.py L2294)."""
        jid.SerializeToString()
        self._group_iq(LeaveGroupError, "group_leave", jid=Jid2String(jid))

    # --- contacts and the profile (whatsmeow user.go, appstate.go; goneonize main.go) --------

    def get_user_info(self, *jid: JID) -> Any:
        """PY client.py L2087 → NZ main.go GetUserInfo → whatsmeow GetUserInfo (user.go): a
        usync query (mode full: business, status, picture, devices, lid). Per user: Status (the
        about text), PictureID, VerifiedName (businesses only), Devices; the LIDs the servers
        name are stored (PutManyLIDMappings), and a business's verified name goes to the
        contact store (updateBusinessName). goneonize ranges over whatsmeow's map, so the
        order is Go's random map order. Errors: GetUserInfoError."""
        jids = list(jid)
        neonize_proto.JIDArray(JIDS=jids).SerializeToString()
        go = _client_of(self.uuid)
        if go is None:
            raise GetUserInfoError("client is nil")  # usync's nil check, not wrapped
        targets = []
        for target in jids:
            if target.Server not in ("c.us", "s.whatsapp.net", "lid"):
                raise GetUserInfoError(f"unknown user server '{target.Server}'")
            targets.append(f"{target.User}@{target.Server}")  # ToNonAD
        _, answer = self._group_iq(
            GetUserInfoError, "user_info", go=go, prefix="failed to send usync query: ",
            jids=targets,
        )  # fmt: skip
        users: dict[str, Any] = {}
        mappings: list[tuple[str, str]] = []
        for node in answer["users"]:
            user_jid = node["attrs"].get("jid", "")
            if node["tag"] != "user" or not user_jid:
                continue
            info, lid = _user_info(node)
            if lid:
                mappings.append((lid, user_jid))
            business = info.VerifiedName.Details.verifiedName
            if business:
                go.update_contact_name("business_name", user_jid, lid, business)
            users[user_jid] = neonize_proto.GetUserInfoSingleReturnFunction(
                JID=_jid_proto(user_jid), UserInfo=info
            )
        if go.store_state == "new":  # Store.LIDs is nil
            _abort(NIL_DEREFERENCE)
        go._put_lids(  # lidmap.go PutManyLIDMappings ignores pairs that are not LID ↔ PN
            [
                (lid.partition("@")[0], pn.partition("@")[0])
                for lid, pn in mappings
                if lid.endswith("@lid") and pn.endswith("@s.whatsapp.net")
            ]
        )
        ordered = list(users.values())
        random.shuffle(ordered)  # NZ: `for jid, info := range user_info`
        return _returned(neonize_proto.GetUserInfoReturnFunction(UsersInfo=ordered)).UsersInfo

    def get_profile_picture(
        self,
        jid: JID,
        extra: Any = neonize_proto.GetProfilePictureParams(),  # noqa: B008 - neonize's own
    ) -> Any:
        """PY client.py L3019 → NZ main.go GetProfilePicture → whatsmeow GetProfilePictureInfo
        (user.go): an IQ `w:profile:picture`; 404 → ErrProfilePictureNotSet, 401 →
        ErrProfilePictureUnauthorized (wrapIQError: the human text); an unchanged picture
        (`extra.ExistingID`) is nil with no error, which goneonize leaves unset, so Python gets
        an empty ProfilePictureInfo. neonize raises GetProfilePictureError with the whole
        GetProfilePictureReturnFunction, not its Error text."""
        jid.SerializeToString()
        extra.SerializeToString()
        model = neonize_proto.GetProfilePictureReturnFunction()

        def failed(text: str) -> GetProfilePictureError:
            model.Error = text
            return GetProfilePictureError(_returned(model))

        go = _client_of(self.uuid)
        if go is None:
            raise failed("client is nil")
        try:
            answer = go._rpc(
                "picture_get", timeout=IQ_TIMEOUT * SCALE, jid=Jid2String(jid),
                type="preview" if extra.Preview else "image", existing_id=extra.ExistingID,
                community=extra.IsCommunity,
            )  # fmt: skip
        except (ConnectionError, TimeoutError) as exc:
            raise failed(str(exc)) from None
        if "error" in answer:
            raise failed(answer["error"])
        code = answer.get("iq_error")
        if code == 401:
            raise failed("the user has hidden their profile picture from you")
        if code == 404:
            raise failed("that user or group does not have a profile picture")
        if code:
            raise failed(f"info query returned status {code}: {answer['text']}")
        picture = answer.get("picture")
        if picture is None:
            if extra.ExistingID:
                return _returned(model).Picture
            raise failed("missing <picture> element in response to profile picture query")
        if picture.get("status") == 304:
            return _returned(model).Picture
        if picture.get("status") == 204:
            raise failed("that user or group does not have a profile picture")
        model.Picture.CopyFrom(
            neonize_proto.ProfilePictureInfo(
                URL=picture.get("url", ""), ID=picture.get("id", ""),
                Type=picture.get("type", ""), DirectPath=picture.get("direct_path", ""),
            )
        )  # fmt: skip
        if picture.get("hash"):
            model.Picture.Hash = base64.b64decode(picture["hash"])
        return _returned(model).Picture

    def set_profile_name(self, name: str) -> str:
        """PY client.py L2231 → NZ main.go SetPushName (the one export that checks the map:
        "client not found") → whatsmeow SendAppState(BuildSettingPushName): a `critical_block`
        patch, then the collection is fetched again and its `setting_pushName` mutation sets
        Store.PushName (appstate.go dispatchAppState), so get_me().PushName is the new name
        when this returns. Errors: SendAppStateError. Returns None."""
        go = _client_of(self.uuid)
        if go is None:
            raise SendAppStateError("client not found")
        if go.store_state == "new":  # Store.AppState is nil on a device never paired
            _abort(NIL_DEREFERENCE)
        if go.store_state == "deleted":
            raise SendAppStateError("invalid use of deleted device")  # ErrDeviceDeleted
        mutation = {"index": ["setting_pushName"], "name": name}
        self._group_iq(
            SendAppStateError, "app_state_send", go=go, collection="critical_block",
            mutations=[mutation],
        )  # fmt: skip
        _, fetched = self._group_iq(
            SendAppStateError, "app_state_fetch", go=go, collection="critical_block",
            prefix="failed to fetch app state after sending update: ",
        )  # fmt: skip
        for change in fetched["mutations"]:
            if change["index"] == ["setting_pushName"]:
                go.apply_push_name(change["name"])
        return None  # type: ignore[return-value]  # neonize returns None despite its hint

    def set_status_message(self, msg: str) -> None:
        """PY client.py L2710 → NZ main.go SetStatusMessage (SetStatusInput{Text}) → whatsmeow
        SetStatusMessage (user.go, a mex mutation since 662b0121, 2026-08-06; no longer the
        `status` IQ). sendMexIQ reads cli.Store (convertQueryID) before sendIQ's nil check:
        without a client the process aborts. The result is not looked at, only a GraphQL error.
        Errors: SetStatusMessageError."""
        go = _client_of(self.uuid)
        if go is None:
            _abort(NIL_DEREFERENCE)
        variables = {"input": {"text": msg, "ephemeral_duration_sec": 0}}
        _, answer = self._group_iq(
            SetStatusMessageError, "mex", go=go, query_id=MEX_SET_ABOUT, variables=variables
        )
        if answer.get("errors"):
            messages = ", ".join(error.get("message", "") for error in answer["errors"])
            raise SetStatusMessageError(f"graphql error: {messages}")

    def set_profile_photo(self, file_or_bytes: str | bytes) -> str:
        """PY client.py L2215 → NZ main.go SetProfilePhoto → whatsmeow SetGroupPhoto with an
        empty JID (no target: our own picture). A non-JPEG is refused with 406, which
        whatsmeow reports as ErrInvalidImageFormat. Returns the new picture id; errors are
        SetGroupPhotoError."""
        data = Path(file_or_bytes).read_bytes() if isinstance(file_or_bytes, str) else file_or_bytes
        _, answer = self._group_iq(
            SetGroupPhotoError, "profile_photo",
            wrapped={406: "the given data is not a valid image"},
            data=base64.b64encode(data).decode(),
        )  # fmt: skip
        result = neonize_proto.SetGroupPhotoReturnFunction(PictureID=answer["id"])
        return _returned(result).PictureID


class ContactStore:
    """PY client.py L203 (`client.contact`) → goneonize contact_store.go → whatsmeow
    Store.Contacts (sqlstore store.go): the device's local contact store."""

    def __init__(self, uuid: str) -> None:
        self.uuid = uuid

    def get_contact(self, user: JID) -> Any:
        """contact_store.go GetContact: `clients[id].Store.Contacts` with no nil check (aborts
        without a client or on a store never paired); the row of exactly this JID (a phone
        number's and a LID's are two rows). Found is False for a user the device never heard
        a name of. Errors: ContactStoreError."""
        user.SerializeToString()
        go = _client_of(self.uuid)
        if go is None or go.store_state == "new":
            _abort(NIL_DEREFERENCE)
        model = neonize_proto.ContactsGetContactReturnFunction()
        if go.store_state == "deleted":
            model.ContactInfo.CopyFrom(neonize_proto.ContactInfo(
                Found=False, FirstName="", FullName="", PushName="", BusinessName="",
                RedactedPhone="",
            ))  # fmt: skip
            model.Error = "invalid use of deleted device"
        else:
            model.ContactInfo.CopyFrom(go.store.contact(Jid2String(user)))
        model = _returned(model)
        if model.Error:
            raise ContactStoreError(model.Error)
        return model.ContactInfo


def _store_jid(user: str, device: int, server: str) -> JID:
    """A JID the LID map answers (the input's device kept), or the empty JID for none."""
    if not user:
        return _jid_proto("")
    return JID(User=user, Device=device, Integrator=0, IsEmpty=False, RawAgent=0, Server=server)


def _user_info(node: dict) -> tuple[Any, str]:
    """user.go GetUserInfo's reading of one `<user>` (parseVerifiedName, parseDeviceList, the
    `lid` tag) + encoder.go EncodeUserInfo: the UserInfo and the LID JID ("" when none)."""
    from .proto.waVnameCert.WAWebProtobufsVnameCert_pb2 import VerifiedNameCertificate

    user_jid = node["attrs"]["jid"]
    user, _, server = user_jid.partition("@")
    info = neonize_proto.UserInfo(Status="", PictureID="")
    business = _child(node, "business")
    verified = _child(business, "verified_name") if business is not None else None
    if verified is not None and isinstance(verified.get("content"), str):
        certificate = VerifiedNameCertificate.FromString(base64.b64decode(verified["content"]))
        info.VerifiedName.Certificate.CopyFrom(certificate)
        info.VerifiedName.Details.ParseFromString(certificate.details)
    status = _child(node, "status")
    if status is not None and isinstance(status.get("content"), str):
        info.Status = status["content"]
    picture = _child(node, "picture")
    if picture is not None:
        info.PictureID = str(picture["attrs"].get("id", ""))
    devices = _child(node, "devices")
    device_list = _child(devices, "device-list") if devices is not None else None
    for device in _children(device_list) if device_list is not None else []:
        if device["tag"] != "device" or "id" not in device["attrs"]:
            continue
        hosted = str(device["attrs"].get("is_hosted", "")).lower() == "true"
        info.Devices.append(
            JID(User=user, Device=int(device["attrs"]["id"]), Integrator=0, IsEmpty=False,
                RawAgent=0, Server=HOSTED_SERVERS.get(server, server) if hosted else server)
        )  # fmt: skip
    lid = _child(node, "lid")
    return info, (str(lid["attrs"].get("val", "")) if lid is not None else "")


def _returned(model: Any) -> Any:
    """What goneonize returns crosses to Python serialised (ProtoReturnV3) and is parsed again
    (`…ReturnFunction.FromString`): a required field left unset would fail here as it does there."""
    return type(model).FromString(model.SerializeToString())
