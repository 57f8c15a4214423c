"""Every write about a message goes through here, by concern:

- `send`: accepting an outbound message (the API), idempotently;
- `queue`: the send queue of the session's owner (next message, outcomes, recovery, receipts);
- `inbound`: received messages and their media (the session's owner);
- `actions`: edits, deletions for everyone and reactions (ours through the API, the other side's
  from the session's owner).

Each status change leaves through `messaging.events` in the same transaction. The names below
are the app's door; import them from here.
"""

from messaging.services.actions import (
    EditWindowPassed,
    MessageSending,
    NotEditable,
    NotRevocable,
    RevokeWindowPassed,
    inbound_edited,
    inbound_revoked,
    message_edit,
    message_revoke,
    poll_vote_record,
    reaction_record,
)
from messaging.services.inbound import (
    NotInbound,
    Received,
    chat_read,
    history_store,
    inbound_media_stored,
    inbound_store,
    media_pending,
    message_read,
)
from messaging.services.queue import (
    NextSend,
    SendJob,
    message_next,
    message_send_error,
    message_sent,
    messages_recover,
    receipts_apply,
    sessions_with_work,
    wa_message_id_for,
)
from messaging.services.send import (
    Accepted,
    IdempotencyConflict,
    SessionNotRunning,
    Upload,
    message_send,
    session_accepts_messages,
)

__all__ = [
    "Accepted",
    "EditWindowPassed",
    "IdempotencyConflict",
    "MessageSending",
    "NextSend",
    "NotEditable",
    "NotInbound",
    "NotRevocable",
    "Received",
    "RevokeWindowPassed",
    "SendJob",
    "SessionNotRunning",
    "Upload",
    "chat_read",
    "history_store",
    "inbound_edited",
    "inbound_media_stored",
    "inbound_revoked",
    "inbound_store",
    "media_pending",
    "message_edit",
    "message_next",
    "message_read",
    "message_revoke",
    "message_send",
    "message_send_error",
    "message_sent",
    "messages_recover",
    "poll_vote_record",
    "reaction_record",
    "receipts_apply",
    "session_accepts_messages",
    "sessions_with_work",
    "wa_message_id_for",
]
