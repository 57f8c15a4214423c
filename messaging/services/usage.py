"""What messages add to the usage counters (gateway.core.usage), counted in the transaction that
moved them, so a rollback counts nothing and each step counts once:

- an outbound message sent through the gateway counts `sent` (with its media bytes),
  `delivered` and `read` the first time its status reaches each (a `read` receipt that comes
  first counts `delivered` too: a read message was delivered), or `failed`; messages the phone
  itself sent are not the gateway's and count nothing;
- an inbound message counts `received` once (inbound_store stores it once), its media bytes when
  they are stored. The history WhatsApp sends after linking is not counted.

A message sent also adds the time from its acceptance to WhatsApp's `sent` to this process's
tally (`send_latency_seconds`, `send_latency_count`: /metrics shows their rate as the mean).
"""

from __future__ import annotations

from gateway.core.usage import tally, usage_add
from messaging.models import Message
from messaging.states import Direction, MessageStatus

M = MessageStatus
_RANK: dict[str, int] = {
    M.QUEUED: 0,
    M.SENDING: 1,
    M.SENT: 2,
    M.DELIVERED: 3,
    M.READ: 4,
    M.PLAYED: 5,
}


def count_outbound(message: Message, before: str) -> None:
    """Count the step `message` made from status `before` to the one it has now."""
    if message.direction != Direction.OUT or message.sending_at is None:
        return  # never taken from the gateway's queue: sent from the phone itself
    if message.status == M.FAILED:
        if before != M.FAILED:
            usage_add(message.session_id, kind=message.type, messages_failed=1)
        return
    was, now = _RANK.get(before, -1), _RANK.get(message.status, -1)
    if was < 0 or now <= was:
        return

    def reached(status: str) -> int:
        return int(was < _RANK[status] <= now)

    if reached(M.SENT) and message.sent_at is not None:
        latency = (message.sent_at - message.created_at).total_seconds()
        tally.add(send_latency_seconds=max(0.0, latency), send_latency_count=1)
    usage_add(
        message.session_id,
        kind=message.type,
        messages_sent=reached(M.SENT),
        media_bytes_sent=(message.media_size or 0) * reached(M.SENT),
        messages_delivered=reached(M.DELIVERED),
        messages_read=reached(M.READ),
    )


def count_received(message: Message) -> None:
    if message.direction == Direction.IN:
        usage_add(message.session_id, kind=message.type, messages_received=1)


def count_media_received(message: Message, size: int) -> None:
    if message.direction == Direction.IN:
        usage_add(message.session_id, kind=message.type, media_bytes_received=size)
