"""neonize's real event objects, built from its protobuf classes, become our events."""

from __future__ import annotations

import pytest
from neonize.exc import SendMessageError
from neonize.proto import Neonize_pb2 as N
from neonize.proto.waCommon import WACommon_pb2 as common
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

from workers.engines.base import Disconnected, LoggedOut
from workers.engines.neonize import translate


def jid(user: str, server: str = "s.whatsapp.net") -> N.JID:
    return N.JID(User=user, Server=server)


def message_event(
    content: wa.Message,
    *,
    sender: N.JID | None = None,
    sender_alt: N.JID | None = None,
    chat: N.JID | None = None,
    group: bool = False,
) -> N.Message:
    sender = sender or jid("15550002")
    source = N.MessageSource(Chat=chat or sender, Sender=sender, IsFromMe=False, IsGroup=group)
    if sender_alt is not None:
        source.SenderAlt.CopyFrom(sender_alt)
    info = N.MessageInfo(MessageSource=source, ID="3EB0ABC", Pushname="Ann", Timestamp=1700000000)
    return N.Message(Info=info, Message=content)


def test_a_text_message() -> None:
    event = translate.translate_message("s1", message_event(wa.Message(conversation="hello")))
    message = event.message
    assert (event.session_id, message.type, message.text) == ("s1", "text", "hello")
    assert (message.wa_message_id, message.chat, message.sender) == (
        "3EB0ABC",
        "15550002@s.whatsapp.net",
        "15550002@s.whatsapp.net",
    )
    assert (message.sender_phone, message.push_name, message.timestamp) == (
        "+15550002",
        "Ann",
        1700000000.0,
    )


def test_a_reply_carries_the_quoted_id() -> None:
    content = wa.Message(
        extendedTextMessage=wa.ExtendedTextMessage(
            text="yes", contextInfo=wa.ContextInfo(stanzaID="QUOTED1")
        )
    )
    message = translate.translate_message("s1", message_event(content)).message
    assert (message.text, message.reply_to) == ("yes", "QUOTED1")


def test_an_image_keeps_what_is_needed_to_download_it() -> None:
    content = wa.Message(
        imageMessage=wa.ImageMessage(
            mimetype="image/jpeg",
            caption="a cat",
            fileLength=1234,
            fileSHA256=b"\x01\x02",
            mediaKey=b"k" * 32,
            directPath="/v/t62/abc",
        )
    )
    message = translate.translate_message("s1", message_event(content)).message
    assert (message.type, message.caption) == ("image", "a cat")
    assert (message.media.mime_type, message.media.size, message.media.sha256) == (
        "image/jpeg",
        1234,
        "0102",
    )
    import base64

    restored = wa.Message.FromString(base64.b64decode(message.media.ref["message"]))
    assert restored.imageMessage.mediaKey == b"k" * 32


@pytest.mark.parametrize(("ptt", "kind"), [(True, "voice"), (False, "audio")])
def test_voice_notes_and_audio(ptt: bool, kind: str) -> None:
    content = wa.Message(audioMessage=wa.AudioMessage(mimetype="audio/ogg; codecs=opus", PTT=ptt))
    assert translate.translate_message("s1", message_event(content)).message.type == kind


def test_documents_video_location_contact_and_reaction() -> None:
    cases = {
        "document": wa.Message(
            documentMessage=wa.DocumentMessage(
                mimetype="application/pdf", fileName="a.pdf", caption="the file"
            )
        ),
        "video": wa.Message(videoMessage=wa.VideoMessage(mimetype="video/mp4")),
        "location": wa.Message(
            locationMessage=wa.LocationMessage(
                degreesLatitude=52.5, degreesLongitude=13.4, name="Berlin"
            )
        ),
        "contact": wa.Message(
            contactMessage=wa.ContactMessage(displayName="Bob", vcard="BEGIN:VCARD\nEND:VCARD")
        ),
        "reaction": wa.Message(
            reactionMessage=wa.ReactionMessage(text="👍", key=common.MessageKey(ID="TARGET1"))
        ),
    }
    results = {
        kind: translate.translate_message("s1", message_event(c)).message
        for kind, c in cases.items()
    }
    assert results["document"].media.filename == "a.pdf"
    assert results["document"].caption == "the file"
    assert results["video"].type == "video"
    assert (results["location"].location.latitude, results["location"].location.name) == (
        52.5,
        "Berlin",
    )
    assert results["contact"].contact.name == "Bob"
    assert (results["reaction"].reaction, results["reaction"].reply_to) == ("👍", "TARGET1")


def test_wrapped_messages_are_unwrapped() -> None:
    content = wa.Message(
        ephemeralMessage=wa.FutureProofMessage(message=wa.Message(conversation="disappearing"))
    )
    assert translate.translate_message("s1", message_event(content)).message.text == "disappearing"


def test_a_lid_sender_gets_its_phone_number_from_sender_alt() -> None:
    event = message_event(
        wa.Message(conversation="hi"), sender=jid("123456789", "lid"), sender_alt=jid("15550003")
    )
    message = translate.translate_message("s1", event).message
    assert message.sender == "123456789@lid"
    assert message.sender_phone == "+15550003"


def test_a_lid_sender_is_resolved_through_the_store_when_needed() -> None:
    event = message_event(wa.Message(conversation="hi"), sender=jid("987654321", "lid"))
    resolved = translate.translate_message(
        "s1", event, resolve_lid=lambda lid: "15550004@s.whatsapp.net"
    ).message
    unresolved = translate.translate_message("s1", event, resolve_lid=lambda lid: "").message
    assert (resolved.sender_phone, unresolved.sender_phone) == ("+15550004", "")


def test_group_messages_name_the_group_and_the_sender() -> None:
    event = message_event(
        wa.Message(conversation="hi all"), chat=jid("1203630", "g.us"), group=True
    )
    message = translate.translate_message("s1", event).message
    assert (message.chat, message.is_group, message.sender_phone) == (
        "1203630@g.us",
        True,
        "+15550002",
    )


def test_protocol_messages_are_not_user_messages() -> None:
    content = wa.Message(protocolMessage=wa.ProtocolMessage())
    assert translate.translate_message("s1", message_event(content)) is None


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("DELIVERED", "delivered"),
        ("READ", "read"),
        ("PLAYED", "played"),
        ("READ_SELF", None),
        ("SENDER", None),
    ],
)
def test_receipts(name: str, status: str | None) -> None:
    event = N.Receipt(
        MessageSource=N.MessageSource(Chat=jid("15550002")),
        MessageIDs=["A", "B"],
        Timestamp=1700000001,
        Type=N.Receipt.ReceiptType.Value(name),
    )
    receipt = translate.translate_receipt("s1", event)
    if status is None:
        assert receipt is None
    else:
        assert (receipt.status, receipt.message_ids, receipt.chat) == (
            status,
            ("A", "B"),
            "15550002@s.whatsapp.net",
        )


def test_the_receipt_table_matches_neonize() -> None:
    for number, status in translate.RECEIPT_STATUS.items():
        assert N.Receipt.ReceiptType.Name(number) == status.upper()
    for number in translate.LOGOUT_REASONS:
        assert N.ConnectFailureReason.Name(number) in {
            "LOGGED_OUT",
            "MAIN_DEVICE_GONE",
            "UNKNOWN_LOGOUT",
        }
    assert N.ConnectFailureReason.Name(3) == "TEMP_BANNED"


def test_logged_out_and_connect_failures() -> None:
    logged_out = translate.translate_logged_out(
        "s1", N.LoggedOut(OnConnect=True, Reason=N.ConnectFailureReason.Value("MAIN_DEVICE_GONE"))
    )
    assert isinstance(logged_out, LoggedOut) and "main device gone" in logged_out.reason

    failure = translate.translate_connect_failure(
        "s1", N.ConnectFailure(Reason=N.ConnectFailureReason.Value("TEMP_BANNED"))
    )
    assert isinstance(failure, Disconnected)
    assert (failure.will_reconnect, failure.code) == (False, "temporary_ban")
    transient = translate.translate_connect_failure(
        "s1", N.ConnectFailure(Reason=N.ConnectFailureReason.Value("SERVICE_UNAVAILABLE"))
    )
    assert transient.will_reconnect
    gone = translate.translate_connect_failure(
        "s1", N.ConnectFailure(Reason=N.ConnectFailureReason.Value("LOGGED_OUT"))
    )
    assert isinstance(gone, LoggedOut)


@pytest.mark.parametrize(
    ("text", "code", "permanent"),
    [
        ("no LID found for 15550000@s.whatsapp.net from server", "not_on_whatsapp", True),
        (
            "failed to get group members: info query returned status 403: forbidden",
            "not_in_group",
            True,
        ),
        ("message recipient must be a user JID with no device part", "bad_recipient", True),
        ("client is nil", "not_started", False),
        ("failed to send message node: websocket not connected", "not_connected", False),
        ("timed out waiting for message send response", "send_timeout", False),
        ("server returned error 479", "server_refused", True),
        ("server returned error 503", "server_busy", False),
        (
            "failed to get user info for 1555@s.whatsapp.net to fill LID cache: "
            "info query timed out",
            "lookup_failed",
            False,
        ),
        ("something new", "send_failed", False),
    ],
)
def test_send_errors_are_told_apart(text: str, code: str, permanent: bool) -> None:
    """whatsmeow's send errors (errors.go, send.go): the message never went (retried by any
    engine), went nowhere for good, or may have gone (failed, never sent twice)."""
    assert translate.send_error(SendMessageError(text)) == (code, permanent)


def test_presence_online_offline_and_an_unknown_last_seen() -> None:
    # neonize encodes an unknown last seen as zero time.Time's Unix() (goneonize encoder.go).
    online = translate.translate_presence(
        "s1", N.Presence(From=jid("15550002"), Unavailable=False, LastSeen=-62135596800)
    )
    assert (online.chat, online.sender, online.state, online.last_seen) == (
        "15550002@s.whatsapp.net",
        "15550002@s.whatsapp.net",
        "available",
        None,
    )
    offline = translate.translate_presence(
        "s1", N.Presence(From=jid("15550002"), Unavailable=True, LastSeen=1700000000)
    )
    assert (offline.state, offline.last_seen) == ("unavailable", 1700000000.0)


@pytest.mark.parametrize(
    ("state", "media", "expected"),
    [
        (N.ChatPresence.COMPOSING, N.ChatPresence.TEXT, "typing"),
        (N.ChatPresence.COMPOSING, N.ChatPresence.AUDIO, "recording"),
        (N.ChatPresence.PAUSED, N.ChatPresence.TEXT, "paused"),
    ],
)
def test_chat_presence_in_a_group_names_the_group_and_who(state, media, expected) -> None:
    source = N.MessageSource(Chat=jid("1203630001", "g.us"), Sender=jid("15550002"), IsGroup=True)
    event = translate.translate_chat_presence(
        "s1", N.ChatPresence(MessageSource=source, State=state, Media=media)
    )
    assert (event.chat, event.sender, event.state) == (
        "1203630001@g.us",
        "15550002@s.whatsapp.net",
        expected,
    )


def test_the_blocklist_names_each_lid_with_its_number_when_known() -> None:
    blocklist = N.Blocklist(DHash="ab", JIDs=[jid("100015550002", "lid"), jid("15550003")])
    known = {"100015550002@lid": "15550002@s.whatsapp.net"}
    blocked = translate.blocked_of(blocklist, lambda lid: known.get(lid, ""))
    assert [(b.jid, b.phone_number) for b in blocked] == [
        ("100015550002@lid", "+15550002"),
        ("15550003@s.whatsapp.net", "+15550003"),
    ]


def test_a_blocklist_change_from_the_phone() -> None:
    change = N.BlocklistChange(
        JID=jid("100015550002", "lid"), BlockAction=N.BlocklistChange.UNBLOCK
    )
    event = N.BlocklistEvent(Action=N.BlocklistEvent.MODIFY, DHASH="b", Changes=[change])
    translated = translate.translate_blocklist("s1", event, lambda lid: "")
    assert translated is not None
    [only] = translated.changes
    assert (only.jid, only.action, only.phone_number) == ("100015550002@lid", "unblock", "")
    assert translate.translate_blocklist("s1", N.BlocklistEvent(DHASH="b")) is None


LID_GROUP = jid("120363000000000001", "g.us")


def group_info() -> N.GroupInfo:
    """A LID-addressed group as whatsmeow parses it: participants' JIDs are @lid, with the
    number beside them (group.go parseParticipant)."""
    return N.GroupInfo(
        JID=LID_GROUP,
        OwnerJID=jid("100000000000001", "lid"),
        OwnerPN=jid("15550001"),
        GroupName=N.GroupName(Name="Team"),
        GroupTopic=N.GroupTopic(Topic="Plans"),
        GroupAnnounce=N.GroupAnnounce(IsAnnounce=True),
        GroupLocked=N.GroupLocked(isLocked=False),
        GroupCreated=1700000000,
        Participants=[
            N.GroupParticipant(
                JID=jid("100000000000001", "lid"),
                LID=jid("100000000000001", "lid"),
                PhoneNumber=jid("15550001"),
                IsAdmin=True,
                IsSuperAdmin=True,
            ),
            N.GroupParticipant(JID=jid("100000000000002", "lid"), IsAdmin=True),
            N.GroupParticipant(JID=jid("15550003")),
        ],
    )


def test_a_group_with_its_roles_and_the_numbers_behind_lids() -> None:
    known = {"100000000000002@lid": "15550002@s.whatsapp.net"}
    group = translate.group_of(group_info(), known.__getitem__)
    assert (group.jid, group.subject, group.description) == (
        "120363000000000001@g.us",
        "Team",
        "Plans",
    )
    assert (group.owner, group.owner_phone, group.created_at) == (
        "100000000000001@lid",
        "+15550001",
        1700000000.0,
    )
    assert (group.announce, group.locked) == (True, False)
    assert [(m.jid, m.phone_number, m.role) for m in group.participants] == [
        ("100000000000001@lid", "+15550001", "superadmin"),
        ("100000000000002@lid", "+15550002", "admin"),  # from the store
        ("15550003@s.whatsapp.net", "+15550003", "member"),
    ]


@pytest.mark.parametrize(
    ("error", "add_request", "status"),
    [
        (0, None, "ok"),
        (
            403,
            N.GroupParticipantAddRequest(Code="AbC123", Expiration=1700259200),
            "invite_required",
        ),
        (403, None, "refused"),
        (404, None, "not_found"),
        (408, None, "recently_left"),
        (409, None, "already_member"),
        (500, None, "failed"),
    ],
)
def test_each_participants_answer(error: int, add_request, status: str) -> None:
    participant = N.GroupParticipant(JID=jid("15550002"), Error=error)
    if add_request is not None:
        participant.AddRequest.CopyFrom(add_request)
    result = translate.participant_result(participant)
    assert (result.jid, result.phone_number, result.status, result.error) == (
        "15550002@s.whatsapp.net",
        "+15550002",
        status,
        error,
    )
    if add_request is not None:
        assert (result.invite_code, result.invite_expires_at) == ("AbC123", 1700259200.0)


def test_a_group_we_created_and_one_we_were_added_to() -> None:
    own = frozenset({"15550009@s.whatsapp.net", "100000000000009@lid"})
    created = N.JoinedGroup(
        Type="new", Sender=jid("100000000000009", "lid"), GroupInfo=group_info()
    )
    joined = translate.translate_joined_group("s1", created, None, own)
    assert (joined.reason, joined.by, joined.group.subject) == (
        "created",
        "100000000000009@lid",
        "Team",
    )
    added = N.JoinedGroup(
        Sender=jid("100000000000001", "lid"), SenderPN=jid("15550001"), GroupInfo=group_info()
    )
    joined = translate.translate_joined_group("s1", added, None, own)
    assert (joined.reason, joined.by_phone) == ("", "+15550001")
    by_link = N.JoinedGroup(Reason="invite", GroupInfo=group_info())
    assert translate.translate_joined_group("s1", by_link, None, own).reason == "invite"


def test_one_group_change_notification_may_carry_several_changes() -> None:
    event = N.GroupInfoEvent(
        JID=LID_GROUP,
        Sender=jid("100000000000001", "lid"),
        Name=N.GroupName(Name="Renamed"),
        Topic=N.GroupTopic(TopicDeleted=True),
        Join=[jid("100000000000002", "lid")],
        Promote=[jid("15550003")],
    )
    known = {
        "100000000000001@lid": "15550001@s.whatsapp.net",
        "100000000000002@lid": "15550002@s.whatsapp.net",
    }
    update, joined, promoted = translate.translate_group_info("s1", event, known.__getitem__)
    assert (update.subject, update.description, update.announce, update.locked) == (
        "Renamed",
        "",  # deleted
        None,
        None,
    )
    assert (update.by, update.by_phone) == ("100000000000001@lid", "+15550001")
    assert (joined.action, [(m.jid, m.phone_number) for m in joined.participants]) == (
        "add",
        [("100000000000002@lid", "+15550002")],
    )
    assert (promoted.action, promoted.participants[0].phone_number) == ("promote", "+15550003")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("GetGroupInfoError: that group does not exist", "group_not_found"),
        ("you're not participating in that group", "not_in_group"),
        ("info query returned status 403: forbidden", "not_admin"),
        ("you don't have the permission to get the group's invite link", "not_admin"),
        ("that group invite link has been revoked", "invite_revoked"),
        ("that group invite link is not valid", "invite_invalid"),
        ("the given data is not a valid image", "invalid_image"),
        ("info query returned status 429: rate-overlimit", "rate_limited"),
        ("info query returned status 409: conflict", "already_member"),
        ("something new", "group_failed"),
    ],
)
def test_query_errors_keep_whatsapps_meaning(text: str, code: str) -> None:
    assert translate.query_error(text) == code


def test_a_groups_new_picture_is_a_group_update_and_a_users_is_not_followed() -> None:
    known = {"100000000000001@lid": "15550001@s.whatsapp.net"}
    event = N.Picture(JID=LID_GROUP, Author=jid("100000000000001", "lid"), Timestamp=1)
    update = translate.translate_picture("s1", event, known.__getitem__)
    assert (update.group, update.picture, update.by_phone) == (
        "120363000000000001@g.us",
        True,
        "+15550001",
    )
    removed = N.Picture(JID=LID_GROUP, Author=jid("15550001"), Remove=True)
    assert translate.translate_picture("s1", removed).picture is False
    assert translate.translate_picture("s1", N.Picture(JID=jid("15550002"))) is None


def test_an_edit_and_a_deletion_for_everyone_name_the_message_they_change() -> None:
    key = common.MessageKey(remoteJID="15550002@s.whatsapp.net", fromMe=False, ID="3EB0OLD")
    edit = wa.ProtocolMessage(
        key=key,
        type=wa.ProtocolMessage.MESSAGE_EDIT,
        editedMessage=wa.Message(extendedTextMessage=wa.ExtendedTextMessage(text="fixed")),
    )
    # whatsmeow unwraps the editedMessage wrapper itself; neonize's older events may keep it.
    for content in (
        wa.Message(protocolMessage=edit),
        wa.Message(editedMessage=wa.FutureProofMessage(message=wa.Message(protocolMessage=edit))),
    ):
        edited = translate.translate_message("s1", message_event(content))
        assert (type(edited).__name__, edited.wa_message_id, edited.text) == (
            "MessageEdited",
            "3EB0OLD",
            "fixed",
        )
        assert (edited.sender, edited.sender_phone) == ("15550002@s.whatsapp.net", "+15550002")
    revoke = wa.Message(protocolMessage=wa.ProtocolMessage(key=key, type=wa.ProtocolMessage.REVOKE))
    revoked = translate.translate_message("s1", message_event(revoke))
    assert (type(revoked).__name__, revoked.wa_message_id) == ("MessageRevoked", "3EB0OLD")
    other = wa.Message(
        protocolMessage=wa.ProtocolMessage(type=wa.ProtocolMessage.EPHEMERAL_SETTING)
    )
    assert translate.translate_message("s1", message_event(other)) is None
