"""neonize's event objects (protobuf messages) → our engine events.

Pure functions over the protobuf objects' attributes: they import nothing from neonize, so they can
be tested with real neonize event objects built from its protobuf classes, without a connection.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable

from gateway.core.jids import LID_SERVER, USER_SERVER, jid_to_phone
from workers.engines.base import (
    BlockAction,
    Blocked,
    BlocklistChange,
    BlocklistChanged,
    Contact,
    Disconnected,
    Event,
    Group,
    GroupJoined,
    GroupMember,
    GroupParticipantsChanged,
    GroupRole,
    GroupUpdated,
    HistorySynced,
    InboundMedia,
    InboundMessage,
    Location,
    LoggedOut,
    MessageEdited,
    MessageKind,
    MessageReceived,
    MessageRevoked,
    ParticipantAction,
    ParticipantResult,
    ParticipantStatus,
    Poll,
    PollVote,
    Presence,
    Receipt,
    ReceiptStatus,
)

logger = logging.getLogger(__name__)

# whatsmeow's receipt types (neonize.proto.Neonize_pb2.Receipt.ReceiptType): the ones that move an
# outbound message forward. SENDER, RETRY, READ_SELF, … are not about the recipient.
RECEIPT_STATUS: dict[int, ReceiptStatus] = {1: "delivered", 4: "read", 6: "played"}

# ConnectFailureReason values that mean the device was unlinked: the store is worthless.
LOGOUT_REASONS = {2: "logged out", 4: "main device gone", 5: "unknown logout"}
CONNECT_FAILURE_CODES = {3: "temporary_ban", 6: "client_outdated", 7: "bad_user_agent"}
# neonize TempBanReason (whatsmeow events.TempBanReason 101…106), for people.
TEMP_BAN_REASONS = {
    1: "sent to too many people",
    2: "blocked by too many users",
    3: "created too many groups",
    4: "sent too many of the same message",
    5: "broadcast list",
}


def jid_str(jid) -> str:
    """`user@server`, without the device part; "" for an empty JID."""
    if jid is None or not jid.User or getattr(jid, "IsEmpty", False):
        return f"@{jid.Server}" if jid is not None and jid.Server and not jid.User else ""
    return f"{jid.User}@{jid.Server}"


def _unwrap(message):
    """Ephemeral, view-once and documents-with-caption wrap the real content (and an edit, which
    whatsmeow unwraps itself: message.go UnwrapRaw, IsEdit)."""
    for wrapper in (
        "editedMessage",
        "ephemeralMessage",
        "viewOnceMessage",
        "viewOnceMessageV2",
        "viewOnceMessageV2Extension",
        "documentWithCaptionMessage",
    ):
        if message.HasField(wrapper):
            return _unwrap(getattr(message, wrapper).message)
    return message


_MEDIA_FIELDS: dict[str, MessageKind] = {
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}


def _media(field: str, content, message) -> InboundMedia:
    # The media's keys are in the message itself: keeping it lets the host download it later.
    return InboundMedia(
        mime_type=content.mimetype or "application/octet-stream",
        filename=getattr(content, "fileName", "") or "",
        size=content.fileLength or None,
        sha256=content.fileSHA256.hex() if content.fileSHA256 else "",
        ref={"message": base64.b64encode(message.SerializeToString()).decode(), "field": field},
    )


def sender_phone_of(sender: str, sender_alt: str, resolve: Callable[[str], str] | None) -> str:
    """The phone number behind a sender: from its JID, from its alternative JID (whatsmeow sends
    the phone-number JID beside a @lid sender when it knows it), or by asking the store."""
    for jid in (sender, sender_alt):
        if phone := jid_to_phone(jid):
            return phone
    if sender.endswith(f"@{LID_SERVER}") and resolve is not None:
        try:
            return jid_to_phone(resolve(sender))
        except Exception:  # noqa: BLE001 - unresolvable is a normal answer
            logger.debug("could not resolve %s to a phone number", sender)
    return ""


def _text_of(message) -> str:
    """What a message says: its text, or its media's caption."""
    message = _unwrap(message)
    if message.conversation:
        return message.conversation
    if message.HasField("extendedTextMessage"):
        return message.extendedTextMessage.text
    field = next((f for f in _MEDIA_FIELDS if message.HasField(f)), "")
    return getattr(getattr(message, field), "caption", "") if field else ""


def _timestamp(info) -> float:
    return info.Timestamp / 1000 if info.Timestamp > 10**11 else float(info.Timestamp)


def _protocol_event(
    session_id: str, event, content, sender_phone: str
) -> MessageEdited | MessageRevoked | None:
    """An edit (ProtocolMessage MESSAGE_EDIT with the new content) or a deletion for everyone
    (REVOKE) of the message its key names; other protocol messages are not for users."""
    protocol = content.protocolMessage
    if not protocol.key.ID:
        return None  # not about a message (ephemeral settings, key shares, …)
    source = event.Info.MessageSource
    common = {
        "chat": jid_str(source.Chat),
        "sender": jid_str(source.Sender),
        "wa_message_id": protocol.key.ID,
        "timestamp": _timestamp(event.Info),
        "sender_phone": sender_phone,
        "from_me": source.IsFromMe,
    }
    if protocol.type == PROTOCOL_MESSAGE_EDIT:
        return MessageEdited(session_id, text=_text_of(protocol.editedMessage), **common)
    if protocol.type == PROTOCOL_REVOKE:
        return MessageRevoked(session_id, **common)
    return None


# WAWebProtobufsHistorySync.HistorySync.HistorySyncType
HISTORY_SYNC_TYPES = {
    0: "INITIAL_BOOTSTRAP",
    1: "INITIAL_STATUS_V3",
    2: "FULL",
    3: "RECENT",
    4: "PUSH_NAME",
    5: "NON_BLOCKING_DATA",
    6: "ON_DEMAND",
}
HISTORY_BATCH = 500  # messages per HistorySynced event (one engine host line each)


def _parse_jid(value: str):
    from neonize.proto.Neonize_pb2 import JID

    user, _, server = value.partition("@")
    return JID(User=user.partition(":")[0], Server=server)


def translate_history(
    session_id: str,
    event,
    resolve: Callable[[str], str] | None = None,
    own: str = "",
) -> list[HistorySynced]:
    """neonize's `HistorySync` event (whatsmeow events.HistorySync, its Data a
    waHistorySync.HistorySync): each conversation's WebMessageInfo (key, message,
    messageTimestamp, pushName, participant) becomes an InboundMessage as a live one would
    (translate_message), in batches; what is not a user message is left out. `own`: our JID,
    the sender of what we sent."""
    from neonize.proto.Neonize_pb2 import Message, MessageInfo, MessageSource

    data = event.Data
    messages: list[InboundMessage] = []
    for conversation in data.conversations:
        for item in conversation.messages:
            info = item.message
            key = info.key
            chat = key.remoteJID or conversation.ID
            group = chat.endswith("@g.us")
            sender = own if key.fromMe else (key.participant or info.participant) if group else chat
            if not sender or not key.ID:
                continue
            source = MessageSource(
                Chat=_parse_jid(chat),
                Sender=_parse_jid(sender),
                IsFromMe=key.fromMe,
                IsGroup=group,
            )
            live = Message(
                Info=MessageInfo(
                    MessageSource=source,
                    ID=key.ID,
                    Pushname=info.pushName,
                    Timestamp=info.messageTimestamp,
                ),
                Message=info.message,
            )
            translated = translate_message(session_id, live, resolve)
            if isinstance(translated, MessageReceived):
                messages.append(translated.message)
    sync_type = HISTORY_SYNC_TYPES.get(data.syncType, str(data.syncType))
    progress = data.progress if data.HasField("progress") else None
    return [
        HistorySynced(session_id, tuple(messages[i : i + HISTORY_BATCH]), sync_type, progress)
        for i in range(0, len(messages), HISTORY_BATCH)
    ]


# The poll creation messages (whatsmeow BuildPollCreation sends the first; phones send all three).
_POLL_FIELDS = ("pollCreationMessage", "pollCreationMessageV2", "pollCreationMessageV3")


def translate_poll_vote(
    session_id: str,
    event,
    vote,
    resolve: Callable[[str], str] | None = None,
    *,
    error: str = "",
) -> PollVote:
    """A `pollUpdateMessage` (whatsmeow EncryptPollVote): the poll it votes in by its key's
    id, and the decrypted PollVoteMessage's selected options (SHA-256 hashes of their names,
    msgsecret.go HashPollOptions), or the error when it could not be decrypted."""
    info, source = event.Info, event.Info.MessageSource
    sender = jid_str(source.Sender)
    update = event.Message.pollUpdateMessage
    return PollVote(
        session_id,
        chat=jid_str(source.Chat),
        poll_id=update.pollCreationMessageKey.ID,
        voter=sender,
        selected=tuple(option.hex() for option in vote.selectedOptions) if vote else (),
        timestamp=_timestamp(info),
        voter_phone=sender_phone_of(sender, jid_str(source.SenderAlt), resolve),
        from_me=source.IsFromMe,
        error=error[:500],
    )


# waE2E ProtocolMessage.Type
PROTOCOL_REVOKE, PROTOCOL_MESSAGE_EDIT = 0, 14


def translate_message(
    session_id: str,
    event,
    resolve_lid: Callable[[str], str] | None = None,
) -> MessageReceived | MessageEdited | MessageRevoked | None:
    """A neonize `Message` event as `MessageReceived` (an edit or a deletion for everyone as
    `MessageEdited` / `MessageRevoked`), or None for what is not a user message (other protocol
    messages, polls, stickers, …)."""
    info, source = event.Info, event.Info.MessageSource
    sender, chat = jid_str(source.Sender), jid_str(source.Chat)
    content = _unwrap(event.Message)
    if content.HasField("protocolMessage"):
        phone = sender_phone_of(sender, jid_str(source.SenderAlt), resolve_lid)
        return _protocol_event(session_id, event, content, phone)
    fields: dict = {}
    reply_to = ""
    kind: MessageKind
    if content.conversation:
        kind, fields["text"] = "text", content.conversation
    elif content.HasField("extendedTextMessage"):
        kind, fields["text"] = "text", content.extendedTextMessage.text
        reply_to = content.extendedTextMessage.contextInfo.stanzaID
        fields["mentions"] = tuple(content.extendedTextMessage.contextInfo.mentionedJID)
    elif field := next((f for f in _MEDIA_FIELDS if content.HasField(f)), ""):
        media = getattr(content, field)
        kind = _MEDIA_FIELDS[field]
        if field == "audioMessage" and media.PTT:
            kind = "voice"
        fields["caption"] = getattr(media, "caption", "") or ""
        fields["media"] = _media(field, media, content)
        reply_to = media.contextInfo.stanzaID
        fields["mentions"] = tuple(media.contextInfo.mentionedJID)
    elif content.HasField("locationMessage"):
        location = content.locationMessage
        kind = "location"
        fields["location"] = Location(
            location.degreesLatitude, location.degreesLongitude, location.name, location.address
        )
    elif content.HasField("contactMessage"):
        kind = "contact"
        fields["contact"] = Contact(
            content.contactMessage.displayName, vcard=content.contactMessage.vcard
        )
    elif poll := next((f for f in _POLL_FIELDS if content.HasField(f)), ""):
        created = getattr(content, poll)
        kind = "poll"
        fields["poll"] = Poll(
            created.name,
            tuple(option.optionName for option in created.options),
            multiple=created.selectableOptionsCount != 1,
        )
    elif content.HasField("reactionMessage"):
        kind = "reaction"
        fields["reaction"] = content.reactionMessage.text
        reply_to = content.reactionMessage.key.ID
    else:
        return None
    message = InboundMessage(
        wa_message_id=info.ID,
        chat=chat,
        sender=sender,
        type=kind,
        timestamp=_timestamp(info),
        sender_phone=sender_phone_of(sender, jid_str(source.SenderAlt), resolve_lid),
        push_name=info.Pushname,
        from_me=source.IsFromMe,
        is_group=source.IsGroup,
        reply_to=reply_to,
        **fields,
    )
    return MessageReceived(session_id, message)


def translate_receipt(session_id: str, event) -> Receipt | None:
    status = RECEIPT_STATUS.get(event.Type)
    if status is None or not event.MessageIDs:
        return None
    return Receipt(
        session_id,
        chat=jid_str(event.MessageSource.Chat),
        message_ids=tuple(event.MessageIDs),
        status=status,
        timestamp=event.Timestamp / 1000 if event.Timestamp > 10**11 else float(event.Timestamp),
    )


def translate_presence(
    session_id: str, event, resolve: Callable[[str], str] | None = None
) -> Presence:
    """neonize's `Presence` (whatsmeow events.Presence, presence.go handlePresence): From,
    Unavailable, LastSeen. neonize encodes an unknown last-seen (zero time.Time) as its Unix time,
    -62135596800 (goneonize utils/encoder.go EncodePresence): anything not after 1970 is none."""
    who = jid_str(event.From)
    last_seen = float(event.LastSeen) if event.LastSeen > 0 else None
    state = "unavailable" if event.Unavailable else "available"
    phone = sender_phone_of(who, "", resolve)
    return Presence(
        session_id, chat=who, sender=who, state=state, last_seen=last_seen, sender_phone=phone
    )


# neonize's ChatPresence.State (1 COMPOSING, 2 PAUSED) and .Media (1 TEXT, 2 AUDIO).
CHAT_PRESENCE_PAUSED, CHAT_PRESENCE_MEDIA_AUDIO = 2, 2


def translate_chat_presence(
    session_id: str, event, resolve: Callable[[str], str] | None = None
) -> Presence:
    """neonize's `ChatPresence` (whatsmeow events.ChatPresence, presence.go handleChatState):
    composing with audio media is recording a voice note."""
    source = event.MessageSource
    if event.State == CHAT_PRESENCE_PAUSED:
        state = "paused"
    else:
        state = "recording" if event.Media == CHAT_PRESENCE_MEDIA_AUDIO else "typing"
    sender = jid_str(source.Sender)
    return Presence(
        session_id,
        chat=jid_str(source.Chat),
        sender=sender,
        state=state,
        sender_phone=sender_phone_of(sender, jid_str(source.SenderAlt), resolve),
    )


def blocked_of(blocklist, resolve: Callable[[str], str] | None = None) -> list[Blocked]:
    """neonize's `Blocklist` (DHash, JIDs; goneonize encoder.go EncodeBlocklist): the JIDs as
    WhatsApp keeps them, mostly @lid, with the number where the session knows it."""
    return [
        Blocked(jid_str(jid), sender_phone_of(jid_str(jid), "", resolve)) for jid in blocklist.JIDs
    ]


# neonize's BlocklistChange.BlockAction (1 BLOCK, 2 UNBLOCK; encoder.go EncodeBlocklistChange).
BLOCK_ACTIONS: dict[int, BlockAction] = {1: "block", 2: "unblock"}


def translate_blocklist(
    session_id: str, event, resolve: Callable[[str], str] | None = None
) -> BlocklistChanged | None:
    """neonize's `BlocklistEvent` (whatsmeow events.Blocklist from an account_sync notification,
    notification.go handleBlocklist): Action, DHASH, PrevDHash, Changes."""
    changes = tuple(
        BlocklistChange(
            jid=jid_str(change.JID),
            action=BLOCK_ACTIONS[change.BlockAction],
            phone_number=sender_phone_of(jid_str(change.JID), "", resolve),
        )
        for change in event.Changes
        if change.BlockAction in BLOCK_ACTIONS
    )
    return BlocklistChanged(session_id, changes=changes) if changes else None


# --- Groups (whatsmeow types/group.go GroupInfo, GroupParticipant; goneonize encoder.go) --------


def member_of(participant, resolve: Callable[[str], str] | None = None) -> GroupMember:
    """neonize's `GroupParticipant`: JID (a @lid in LID-addressed groups) with PhoneNumber and
    LID beside it (whatsmeow group.go parseParticipant), IsAdmin, IsSuperAdmin."""
    jid = jid_str(participant.JID)
    role: GroupRole = (
        "superadmin" if participant.IsSuperAdmin else "admin" if participant.IsAdmin else "member"
    )
    return GroupMember(jid, sender_phone_of(jid, jid_str(participant.PhoneNumber), resolve), role)


def group_of(info, resolve: Callable[[str], str] | None = None) -> Group:
    """neonize's `GroupInfo` (whatsmeow parseGroupNode): the name, topic, announce and locked
    sub-messages, the owner (with OwnerPN), the creation time (Unix seconds)."""
    owner = jid_str(info.OwnerJID)
    return Group(
        jid=jid_str(info.JID),
        subject=info.GroupName.Name,
        description=info.GroupTopic.Topic,
        owner=owner,
        owner_phone=sender_phone_of(owner, jid_str(info.OwnerPN), resolve) if owner else "",
        created_at=float(info.GroupCreated) or None,
        announce=info.GroupAnnounce.IsAnnounce,
        locked=info.GroupLocked.isLocked,
        participants=tuple(member_of(p, resolve) for p in info.Participants),
    )


# WhatsApp's per-participant answers to an add/remove/promote/demote (and to a create), in the
# `error` attribute whatsmeow parses into GroupParticipant.Error (group.go parseParticipant).
PARTICIPANT_ERRORS: dict[int, ParticipantStatus] = {
    403: "refused",
    404: "not_found",
    408: "recently_left",
    409: "already_member",
}


def participant_result(participant, resolve: Callable[[str], str] | None = None):
    """One participant's outcome: a 403 with an AddRequest means their privacy settings allow
    only an invite (its code and expiry come with it)."""
    member = member_of(participant, resolve)
    code = participant.Error
    if not code or code == 200:
        return ParticipantResult(member.jid, member.phone_number)
    if code == 403 and participant.AddRequest.Code:
        return ParticipantResult(
            member.jid,
            member.phone_number,
            status="invite_required",
            error=code,
            invite_code=participant.AddRequest.Code,
            invite_expires_at=float(participant.AddRequest.Expiration) or None,
        )
    return ParticipantResult(
        member.jid, member.phone_number, status=PARTICIPANT_ERRORS.get(code, "failed"), error=code
    )


def translate_joined_group(
    session_id: str,
    event,
    resolve: Callable[[str], str] | None = None,
    own: frozenset[str] = frozenset(),
) -> GroupJoined:
    """neonize's `JoinedGroup` (whatsmeow events.JoinedGroup): Reason "invite" when we used a
    link, Type "new" for a new group, Sender/SenderPN who created it or added us (`own`: our
    JIDs, to tell a group we created)."""
    by = jid_str(event.Sender)
    reason = "invite" if event.Reason == "invite" else ""
    if event.Type == "new" and by in own:
        reason = "created"
    return GroupJoined(
        session_id,
        group=group_of(event.GroupInfo, resolve),
        by=by,
        by_phone=sender_phone_of(by, jid_str(event.SenderPN), resolve) if by else "",
        reason=reason,
    )


_PARTICIPANT_LISTS: tuple[tuple[str, ParticipantAction], ...] = (
    ("Join", "add"),
    ("Leave", "remove"),
    ("Promote", "promote"),
    ("Demote", "demote"),
)


def translate_group_info(
    session_id: str, event, resolve: Callable[[str], str] | None = None
) -> list[Event]:
    """neonize's `GroupInfoEvent` (whatsmeow parseGroupChange): one change notification may
    carry several changes; each becomes its own event (the info first, then who joined, left,
    was promoted or demoted). neonize's event has no SenderPN: the author's number comes from
    the store, where whatsmeow keeps the group's LID mappings."""
    group = jid_str(event.JID)
    by = jid_str(event.Sender)
    by_phone = sender_phone_of(by, "", resolve) if by else ""
    translated: list[Event] = []
    update = GroupUpdated(
        session_id,
        group,
        by=by,
        by_phone=by_phone,
        subject=event.Name.Name if event.HasField("Name") else None,
        description=(
            ("" if event.Topic.TopicDeleted else event.Topic.Topic)
            if event.HasField("Topic")
            else None
        ),
        announce=event.Announce.IsAnnounce if event.HasField("Announce") else None,
        locked=event.Locked.isLocked if event.HasField("Locked") else None,
    )
    if (update.subject, update.description, update.announce, update.locked) != (None,) * 4:
        translated.append(update)
    for field, action in _PARTICIPANT_LISTS:
        jids = [jid_str(jid) for jid in getattr(event, field)]
        if jids:
            members = tuple(GroupMember(j, sender_phone_of(j, "", resolve)) for j in jids)
            translated.append(
                GroupParticipantsChanged(
                    session_id, group, action, members, by=by, by_phone=by_phone
                )
            )
    return translated


def translate_picture(
    session_id: str, event, resolve: Callable[[str], str] | None = None
) -> GroupUpdated | None:
    """neonize's `Picture` (whatsmeow events.Picture from a `picture` notification): a group's
    picture set or removed becomes a group update; users' pictures are not followed."""
    group = jid_str(event.JID)
    if not group.endswith("@g.us"):
        return None
    by = jid_str(event.Author)
    by_phone = sender_phone_of(by, "", resolve) if by else ""
    return GroupUpdated(session_id, group, by=by, by_phone=by_phone, picture=not event.Remove)


# whatsmeow's errors of queries (groups, users; errors.go, group.go wraps IQ errors into them) by
# their text.
QUERY_ERRORS = (
    ("that group does not exist", "group_not_found"),
    ("status 404: item-not-found", "group_not_found"),
    ("you're not participating in that group", "not_in_group"),
    ("you don't have the permission to get the group's invite link", "not_admin"),
    ("status 403: forbidden", "not_admin"),
    ("status 401: not-authorized", "not_admin"),
    ("that group invite link has been revoked", "invite_revoked"),
    ("that group invite link is not valid", "invite_invalid"),
    ("the given data is not a valid image", "invalid_image"),
    ("status 429: rate-overlimit", "rate_limited"),
    ("status 406: not-acceptable", "not_acceptable"),
    ("status 409: conflict", "already_member"),
    ("websocket not connected", "not_connected"),
    ("info query timed out", "timed_out"),
)


def query_error(text: str, default: str = "group_failed") -> str:
    """The gateway's code for a query's error text (`default` when unknown)."""
    for fragment, code in QUERY_ERRORS:
        if fragment in text:
            return code
    return default


def translate_logged_out(session_id: str, event) -> LoggedOut:
    reason = LOGOUT_REASONS.get(event.Reason, f"reason {event.Reason}")
    return LoggedOut(session_id, reason=f"{reason} (on connect)" if event.OnConnect else reason)


def translate_connect_failure(session_id: str, event) -> LoggedOut | Disconnected:
    if event.Reason in LOGOUT_REASONS:
        return LoggedOut(session_id, reason=LOGOUT_REASONS[event.Reason])
    code = CONNECT_FAILURE_CODES.get(event.Reason)
    if code:
        return Disconnected(
            session_id, reason=event.Message or code, will_reconnect=False, code=code
        )
    return Disconnected(session_id, reason=event.Message or "connect failure", will_reconnect=True)


def translate_temporary_ban(session_id: str, event) -> Disconnected:
    """whatsmeow TemporaryBan (a `<failure reason=402>` at login): `Expire` is in seconds."""
    reason = TEMP_BAN_REASONS.get(event.Code, f"code {event.Code}")
    return Disconnected(
        session_id,
        reason=f"temporarily banned ({reason}); the ban ends in {event.Expire} s",
        will_reconnect=False,
        code="temporary_ban",
    )


def translate_client_outdated(session_id: str) -> Disconnected:
    """whatsmeow ClientOutdated (a `<failure reason=405>`): this neonize is too old for WhatsApp."""
    return Disconnected(
        session_id,
        reason="WhatsApp refuses this client version (405): update neonize",
        will_reconnect=False,
        code="client_outdated",
    )


def is_phone_jid(jid: str) -> bool:
    return jid.endswith(f"@{USER_SERVER}")


# whatsmeow's send errors (errors.go, send.go SendMessage) by the text neonize raises them with:
# (fragment, code, permanent). Codes the runtime knows never reached WhatsApp (not_connected,
# not_started, lookup_failed, upload_failed, server_busy) are retried on any engine; the others
# fail the message (a retry after "timed out waiting" could deliver it twice).
SEND_ERRORS = (
    ("no LID found for", "not_on_whatsapp", True),
    ("message recipient must be a user JID", "bad_recipient", True),
    ("can't send message to unknown server", "bad_recipient", True),
    ("broadcast lists is not yet supported", "bad_recipient", True),
    ("failed to get group members", "not_in_group", True),
    ("the store doesn't contain a device JID", "not_linked", True),
    ("client is nil", "not_started", False),
    ("timed out waiting for message send response", "send_timeout", False),
    ("disconnected before message send returned", "send_interrupted", False),
    ("websocket not connected", "not_connected", False),
    ("failed to upload", "upload_failed", False),
    ("failed to get LID for", "lookup_failed", False),
    ("failed to get user info", "lookup_failed", False),
    ("info query timed out", "lookup_failed", False),
)
SERVER_BUSY = {"429", "500", "503"}


def send_error(exc: Exception) -> tuple[str, bool]:
    """(code, permanent) for an exception neonize raised from a send."""
    text = str(exc)
    if "server returned error" in text:
        busy = text.rsplit(" ", 1)[-1] in SERVER_BUSY
        return ("server_busy", False) if busy else ("server_refused", True)
    for fragment, code, permanent in SEND_ERRORS:
        if fragment in text:
            return code, permanent
    return "send_failed", False
