"""The engine interface, its commands and its events.

An `Engine` drives many sessions of one protocol inside a worker. The runtime calls its commands
with a session id and reads one stream of events from `events()`; every event names its session.
Engines raise one error type, `EngineError`; `permanent=True` means retrying cannot help.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# --- Errors --------------------------------------------------------------------------------------


class EngineError(Exception):
    def __init__(
        self, message: str, *, permanent: bool = False, code: str = "engine_error"
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


# --- Commands ------------------------------------------------------------------------------------

MessageKind = Literal[
    "text",
    "image",
    "video",
    "audio",
    "voice",
    "document",
    "location",
    "contact",
    "reaction",
    "poll",
    "sticker",
]


@dataclass(frozen=True)
class Media:
    """A file to send: its bytes are read from `path` by the engine."""

    path: Path
    mime_type: str
    filename: str = ""


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    name: str = ""
    address: str = ""


@dataclass(frozen=True)
class Contact:
    name: str
    phone_number: str = ""
    vcard: str = ""


@dataclass(frozen=True)
class LinkPreview:
    """What WhatsApp shows under a text's first link: the page's title, description and a small
    JPEG thumbnail (base64, or "")."""

    url: str
    title: str
    description: str = ""
    thumbnail: str = ""


@dataclass(frozen=True)
class Poll:
    question: str
    options: tuple[str, ...]
    multiple: bool = False  # voters may choose several options


@dataclass(frozen=True)
class OutboundMessage:
    """One message to send. `id` is ours: engines that accept a caller-chosen WhatsApp id use it
    (so a retry cannot make a second message); others ignore it."""

    id: str
    to: str  # a JID
    type: MessageKind
    text: str = ""
    caption: str = ""
    media: Media | None = None
    location: Location | None = None
    contact: Contact | None = None
    reaction: str = ""  # the emoji; "" removes a reaction
    reply_to: str = ""  # the WhatsApp id of the message replied or reacted to
    # What WhatsApp keys that message by besides its id (when the gateway knows the message):
    # its sender's JID (a group member, in groups) and whether we sent it; and its text, which
    # a quote carries for the recipient's phone to show.
    reply_to_sender: str = ""
    reply_to_from_me: bool = False
    reply_to_text: str = ""
    # Users named with @ in the text or caption (their JIDs): WhatsApp shows them as mentions.
    mentions: tuple[str, ...] = ()
    poll: Poll | None = None
    preview: LinkPreview | None = None


@dataclass(frozen=True)
class SendResult:
    wa_message_id: str
    timestamp: float
    # A poll's message secret (base64), which votes are encrypted with: kept with the message.
    secret: str = ""


@dataclass(frozen=True)
class NumberCheck:
    phone_number: str
    on_whatsapp: bool
    jid: str = ""


# --- Events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QrCode:
    session_id: str
    code: str
    expires_in: float  # seconds this code stays valid
    type: Literal["qr"] = "qr"


@dataclass(frozen=True)
class PairCode:
    session_id: str
    code: str
    expires_in: float
    type: Literal["pair_code"] = "pair_code"


@dataclass(frozen=True)
class Connected:
    session_id: str
    jid: str
    phone_number: str
    push_name: str = ""
    type: Literal["connected"] = "connected"


@dataclass(frozen=True)
class Disconnected:
    """The connection dropped. `will_reconnect` says whether the engine retries by itself; when it
    does not, `code` says why (e.g. `qr_timeout`, `connect_failed`)."""

    session_id: str
    reason: str = ""
    will_reconnect: bool = True
    code: str = ""
    type: Literal["disconnected"] = "disconnected"


@dataclass(frozen=True)
class LoggedOut:
    """The device was unlinked (from the phone, by WhatsApp, or by `logout`): its store is gone."""

    session_id: str
    reason: str = ""
    type: Literal["logged_out"] = "logged_out"


@dataclass(frozen=True)
class StreamReplaced:
    """Another connection took this session over. The engine has closed its own connection."""

    session_id: str
    type: Literal["stream_replaced"] = "stream_replaced"


@dataclass(frozen=True)
class InboundMedia:
    mime_type: str
    filename: str = ""
    size: int | None = None
    sha256: str = ""
    # Whatever the engine needs to download it later with `Engine.download()`.
    ref: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InboundMessage:
    wa_message_id: str
    chat: str
    sender: str
    type: MessageKind
    timestamp: float
    sender_phone: str = ""  # the phone number behind a @lid sender, when it can be resolved
    push_name: str = ""
    from_me: bool = False
    is_group: bool = False
    text: str = ""
    caption: str = ""
    media: InboundMedia | None = None
    location: Location | None = None
    contact: Contact | None = None
    reaction: str = ""
    reply_to: str = ""
    mentions: tuple[str, ...] = ()  # the users its text or caption mentions (JIDs)
    poll: Poll | None = None


@dataclass(frozen=True)
class MessageReceived:
    session_id: str
    message: InboundMessage
    type: Literal["message_received"] = "message_received"


@dataclass(frozen=True)
class MessageEdited:
    """A message was edited by its sender (a contact, or us from another device): its new
    text (or caption)."""

    session_id: str
    chat: str
    sender: str
    wa_message_id: str  # the edited message's id
    text: str
    timestamp: float
    sender_phone: str = ""
    from_me: bool = False
    type: Literal["message_edited"] = "message_edited"


@dataclass(frozen=True)
class MessageRevoked:
    """A message was deleted for everyone (by its sender, or a group admin: `sender`)."""

    session_id: str
    chat: str
    sender: str
    wa_message_id: str  # the revoked message's id
    timestamp: float
    sender_phone: str = ""
    from_me: bool = False
    type: Literal["message_revoked"] = "message_revoked"


@dataclass(frozen=True)
class HistorySynced:
    """A batch of the history WhatsApp sends a newly linked device (or later, on demand): older
    messages as the phone has them. `sync_type` as WhatsApp names it (INITIAL_BOOTSTRAP,
    RECENT, FULL, …), `progress` in percent when it says."""

    session_id: str
    messages: tuple[InboundMessage, ...]
    sync_type: str = ""
    progress: int | None = None
    type: Literal["history_synced"] = "history_synced"


@dataclass(frozen=True)
class PollVote:
    """Someone voted in a poll (`poll_id`: its WhatsApp id): the options they chose now, as
    WhatsApp sends them, SHA-256 hashes of the option names (hex); none withdraws their vote.
    A vote that cannot be decrypted comes with `error` (and no options)."""

    session_id: str
    chat: str
    poll_id: str
    voter: str
    selected: tuple[str, ...]
    timestamp: float
    voter_phone: str = ""
    from_me: bool = False
    error: str = ""
    type: Literal["poll_vote"] = "poll_vote"


# The linked number's own presence, and what it shows in one chat.
PresenceState = Literal["available", "unavailable"]
ChatState = Literal["typing", "recording", "paused"]


@dataclass(frozen=True)
class Presence:
    """A contact's presence: online or offline (`available`, `unavailable`, with `last_seen`
    when they share it; only for contacts the session subscribed to), or what they do in a chat
    (`typing`, `recording` a voice note, `paused`). `chat` is where (their own JID, or a group);
    `sender` who. WhatsApp sends either only while the session shows itself online, and forgets
    both the online state and the subscriptions when the connection ends."""

    session_id: str
    chat: str
    sender: str
    state: str  # a PresenceState or a ChatState
    last_seen: float | None = None  # Unix time
    sender_phone: str = ""  # the number behind a @lid sender, when it can be resolved
    type: Literal["presence"] = "presence"


BlockAction = Literal["block", "unblock"]


@dataclass(frozen=True)
class Blocked:
    """A blocked contact: its JID as WhatsApp keeps it (often a @lid) and its number when the
    session knows it."""

    jid: str
    phone_number: str = ""


@dataclass(frozen=True)
class BlocklistChange:
    jid: str
    action: BlockAction
    phone_number: str = ""


@dataclass(frozen=True)
class BlocklistChanged:
    """The blocklist changed from another device of the account (the phone)."""

    session_id: str
    changes: tuple[BlocklistChange, ...]
    type: Literal["blocklist"] = "blocklist"


# --- Contacts and the profile ---------------------------------------------------------------------


@dataclass(frozen=True)
class ContactInfo:
    """What WhatsApp tells about a user: their JIDs, whether they are on WhatsApp, their name
    (the push name they chose), about text, picture and whether they are a business."""

    jid: str  # the phone-number JID when known, else the @lid asked about
    lid: str = ""
    phone_number: str = ""
    on_whatsapp: bool = False
    push_name: str = ""
    about: str = ""
    picture_url: str | None = None
    is_business: bool = False


@dataclass(frozen=True)
class Profile:
    """The linked number's own profile."""

    jid: str
    phone_number: str
    name: str  # the push name contacts see
    about: str = ""
    picture_url: str | None = None


# --- Groups ---------------------------------------------------------------------------------------

GroupRole = Literal["member", "admin", "superadmin"]
ParticipantAction = Literal["add", "remove", "promote", "demote"]
# What became of one participant of a change: done, or why not. WhatsApp answers per participant
# with an error code (whatsmeow group.go parseParticipant): 403 with an add request when their
# privacy settings allow only an invite, 403 refused, 404 not found, 408 left the group recently,
# 409 already a member.
ParticipantStatus = Literal[
    "ok", "invite_required", "refused", "not_found", "recently_left", "already_member", "failed"
]


@dataclass(frozen=True)
class GroupMember:
    """A group's participant: their JID as WhatsApp names them (a @lid or a phone-number JID),
    their number when the session knows it, and their role."""

    jid: str
    phone_number: str = ""
    role: GroupRole = "member"


@dataclass(frozen=True)
class Group:
    jid: str  # …@g.us
    subject: str
    description: str = ""
    owner: str = ""  # the creator's JID
    owner_phone: str = ""
    created_at: float | None = None  # Unix time
    announce: bool = False  # only admins send
    locked: bool = False  # only admins edit the group's info
    participants: tuple[GroupMember, ...] = ()


@dataclass(frozen=True)
class ParticipantResult:
    jid: str
    phone_number: str = ""
    status: ParticipantStatus = "ok"
    error: int = 0  # WhatsApp's code when not ok
    invite_code: str = ""  # with invite_required: WhatsApp's code for a group invite message
    invite_expires_at: float | None = None


@dataclass(frozen=True)
class GroupCreated:
    group: Group
    participants: tuple[ParticipantResult, ...]


@dataclass(frozen=True)
class GroupJoined:
    """The session is in a new group: it created it, joined by a link, or was added (`by`)."""

    session_id: str
    group: Group
    by: str = ""
    by_phone: str = ""
    reason: str = ""  # "created", "invite" (a link), "" (added by `by`)
    type: Literal["group_joined"] = "group_joined"


@dataclass(frozen=True)
class GroupUpdated:
    """A group's info changed (by `by`): the fields that changed are not None."""

    session_id: str
    group: str
    by: str = ""
    by_phone: str = ""
    subject: str | None = None
    description: str | None = None
    announce: bool | None = None
    locked: bool | None = None
    picture: bool | None = None  # True: a new picture, False: removed
    type: Literal["group_updated"] = "group_updated"


@dataclass(frozen=True)
class GroupParticipantsChanged:
    """Participants were added, removed (or left), promoted or demoted (by `by`)."""

    session_id: str
    group: str
    action: ParticipantAction
    participants: tuple[GroupMember, ...]
    by: str = ""
    by_phone: str = ""
    type: Literal["group_participants"] = "group_participants"


ReceiptStatus = Literal["delivered", "read", "played"]


@dataclass(frozen=True)
class Receipt:
    session_id: str
    chat: str
    message_ids: tuple[str, ...]
    status: ReceiptStatus
    timestamp: float
    type: Literal["receipt"] = "receipt"


Event = (
    QrCode
    | PairCode
    | Connected
    | Disconnected
    | LoggedOut
    | StreamReplaced
    | MessageReceived
    | MessageEdited
    | MessageRevoked
    | PollVote
    | HistorySynced
    | Receipt
    | Presence
    | BlocklistChanged
    | GroupJoined
    | GroupUpdated
    | GroupParticipantsChanged
)


def started_session(sessions: dict, session_id: str, *, connected: bool = False):
    """An engine's record of a started session (anything with a `state`): `not_started`
    (permanent) when there is none, `not_connected` when `connected` is asked and it is not."""
    session = sessions.get(session_id)
    if session is None:
        raise EngineError(
            f"session {session_id} is not started", permanent=True, code="not_started"
        )
    if connected and session.state != "connected":
        raise EngineError(f"session {session_id} is not connected", code="not_connected")
    return session


def spawn_into(tasks: set[asyncio.Task], coroutine) -> asyncio.Task:
    """Start `coroutine` as a task kept in `tasks` (a session's) until it is done, so closing the
    session can cancel it."""
    task = asyncio.get_running_loop().create_task(coroutine)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


# --- The interface -------------------------------------------------------------------------------


class Engine(abc.ABC):
    """Drives the sessions of one protocol in one worker.

    Commands for a session that is not started raise `EngineError(permanent=True,
    code="not_started")`. `start` returns once the connection attempt is under way; what happens
    next arrives as events.
    """

    name: str = ""
    #: True when `send` uses `OutboundMessage.id` as the WhatsApp message id.
    accepts_message_ids: bool = False

    def __init__(self) -> None:
        self._events: asyncio.Queue[Event] = asyncio.Queue()

    async def events(self) -> AsyncIterator[Event]:
        while True:
            yield await self._events.get()

    def emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    def host_restarts(self) -> int:
        """How many of the engine's processes died and were started again (engines that run
        their sessions in host processes; none here)."""
        return 0

    @abc.abstractmethod
    async def start(self, session_id: str, auth_dir: Path) -> None:
        """Connect from the store in `auth_dir`, or begin linking (QR codes) when it has none."""

    @abc.abstractmethod
    async def stop(self, session_id: str) -> None:
        """Disconnect and keep the store, so a later start needs no new QR scan."""

    @abc.abstractmethod
    async def logout(self, session_id: str) -> None:
        """Unlink the device on WhatsApp and delete the store; emits `LoggedOut`."""

    @abc.abstractmethod
    async def send(self, session_id: str, message: OutboundMessage) -> SendResult: ...

    @abc.abstractmethod
    async def edit_message(
        self, session_id: str, chat: str, wa_message_id: str, text: str, kind: str = "text"
    ) -> SendResult:
        """Edit a message of ours in `chat`: a text's text, or the caption of an image, video
        or document (`kind`). WhatsApp allows it for 15 minutes."""

    @abc.abstractmethod
    async def revoke_message(
        self, session_id: str, chat: str, wa_message_id: str, sender: str = ""
    ) -> SendResult:
        """Delete a message for everyone: ours (`sender` "") or, as a group admin, `sender`'s."""

    @abc.abstractmethod
    async def request_pair_code(self, session_id: str, phone_number: str) -> str:
        """Link by pairing code instead of QR: returns the code the user types on the phone."""

    @abc.abstractmethod
    async def check_numbers(
        self, session_id: str, phone_numbers: list[str]
    ) -> list[NumberCheck]: ...

    @abc.abstractmethod
    async def mark_read(
        self, session_id: str, chat: str, message_ids: list[str], sender: str = ""
    ) -> None: ...

    @abc.abstractmethod
    async def set_presence(self, session_id: str, state: PresenceState) -> None:
        """Show the linked number online or offline to its contacts."""

    @abc.abstractmethod
    async def set_chat_presence(self, session_id: str, chat: str, state: ChatState) -> None:
        """Show `typing`, `recording` (a voice note) or neither (`paused`) in `chat`."""

    @abc.abstractmethod
    async def subscribe_presence(self, session_id: str, chat: str) -> None:
        """Ask for `chat`'s (a user's) online/offline changes: they come as `Presence` events."""

    @abc.abstractmethod
    async def blocklist(self, session_id: str) -> list[Blocked]:
        """Who the account has blocked."""

    @abc.abstractmethod
    async def update_blocklist(
        self, session_id: str, jid: str, action: BlockAction
    ) -> list[Blocked]:
        """Block or unblock `jid` (a user's JID); returns the blocklist after the change."""

    @abc.abstractmethod
    async def contact(self, session_id: str, jid: str) -> ContactInfo:
        """Look a user up (a phone-number JID or a @lid): one query to WhatsApp, so callers
        rate-limit it."""

    @abc.abstractmethod
    async def phone_of_lid(self, session_id: str, lid: str) -> str:
        """The E.164 number behind a @lid as the session knows it, or "" when it does not."""

    @abc.abstractmethod
    async def profile(self, session_id: str) -> Profile:
        """The linked number's name, about text and picture."""

    @abc.abstractmethod
    async def update_profile(
        self, session_id: str, *, name: str | None = None, about: str | None = None
    ) -> Profile:
        """Change the push name and/or the about text (what is not None)."""

    @abc.abstractmethod
    async def set_profile_picture(self, session_id: str, jpeg_base64: str) -> str:
        """Set the number's picture (a JPEG, base64); returns WhatsApp's picture id."""

    # Groups. WhatsApp answers frequent metadata queries with rate-overlimit (and bans follow):
    # `groups` and `group_info` are for refreshing a cache, never for each message.

    @abc.abstractmethod
    async def groups(self, session_id: str) -> list[Group]:
        """The groups the account is in, with their participants."""

    @abc.abstractmethod
    async def group_info(self, session_id: str, jid: str) -> Group:
        """One group; `group_not_found` / `not_in_group` when the session cannot see it."""

    @abc.abstractmethod
    async def create_group(
        self, session_id: str, subject: str, participants: list[str]
    ) -> GroupCreated:
        """A new group with the session as its super admin and `participants` (user JIDs)."""

    @abc.abstractmethod
    async def update_group(
        self,
        session_id: str,
        jid: str,
        *,
        subject: str | None = None,
        description: str | None = None,
        announce: bool | None = None,
        locked: bool | None = None,
    ) -> Group:
        """Change what is not None; returns the group after the change. `not_admin` when WhatsApp
        refuses."""

    @abc.abstractmethod
    async def set_group_picture(self, session_id: str, jid: str, jpeg_base64: str) -> str:
        """Set the group's picture (a JPEG, base64); returns WhatsApp's picture id."""

    @abc.abstractmethod
    async def update_participants(
        self, session_id: str, jid: str, action: ParticipantAction, participants: list[str]
    ) -> list[ParticipantResult]:
        """Add, remove, promote or demote `participants` (user JIDs): a result for each."""

    @abc.abstractmethod
    async def group_invite_link(self, session_id: str, jid: str, revoke: bool = False) -> str:
        """The group's invite link (https://chat.whatsapp.com/<code>); `revoke` makes a new one
        and the old one stops working."""

    @abc.abstractmethod
    async def join_group(self, session_id: str, link: str) -> str:
        """Join by an invite link (or its code); returns the group's JID. `invite_revoked`,
        `invite_invalid` when WhatsApp refuses the link."""

    @abc.abstractmethod
    async def leave_group(self, session_id: str, jid: str) -> None:
        """Leave the group (it stays on WhatsApp for the others)."""

    @abc.abstractmethod
    async def download(self, session_id: str, media: InboundMedia, into: Path) -> int:
        """Write the media's bytes to the file `into` (never through an event or a pipe, so
        memory stays bounded whatever its size); returns their count."""

    @abc.abstractmethod
    async def probe(self, session_id: str) -> None:
        """A round trip to WhatsApp on the session's connection (a session silent for long may
        be a zombie: shown connected, receiving nothing). Raises `EngineError` without answer."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every session (keeping their stores) and release the engine's resources."""
