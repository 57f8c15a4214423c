"""A message's status only moves forward."""

from __future__ import annotations

import itertools

import pytest

from messaging.models import Message
from messaging.states import Direction, MessageStatus, message_status_advances

M = MessageStatus
OUT_LADDER = [M.QUEUED, M.SENDING, M.SENT, M.DELIVERED, M.READ, M.PLAYED]


@pytest.mark.smoke
@pytest.mark.parametrize(("source", "target"), list(itertools.product(M, M)))
def test_outbound_status_only_moves_forward(source: str, target: str) -> None:
    if target == M.REVOKED:  # deleted for everyone: from anywhere but failed, and for good
        expected = source not in (M.FAILED, M.REVOKED)
    elif target == M.FAILED:
        expected = source in (M.QUEUED, M.SENDING)
    elif source in OUT_LADDER and target in OUT_LADDER:
        expected = OUT_LADDER.index(target) > OUT_LADDER.index(source)
    else:
        expected = False
    assert message_status_advances(Direction.OUT, source, target) is expected


def test_a_late_delivered_never_overwrites_read() -> None:
    assert not message_status_advances(Direction.OUT, M.READ, M.DELIVERED)
    assert message_status_advances(Direction.OUT, M.SENT, M.READ)


def test_a_sent_message_cannot_fail_any_more() -> None:
    assert not message_status_advances(Direction.OUT, M.SENT, M.FAILED)
    assert not message_status_advances(Direction.OUT, M.FAILED, M.SENT)


def test_inbound_messages_go_from_received_to_read_only() -> None:
    assert message_status_advances(Direction.IN, M.RECEIVED, M.READ)
    assert message_status_advances(Direction.IN, M.RECEIVED, M.REVOKED)
    for target in set(M) - {M.READ, M.REVOKED}:
        assert not message_status_advances(Direction.IN, M.RECEIVED, target)
    assert not message_status_advances(Direction.IN, M.REVOKED, M.READ)
    assert not message_status_advances(Direction.IN, M.READ, M.RECEIVED)


def test_the_model_asks_the_same_rule() -> None:
    message = Message(direction=Direction.OUT, status=M.READ)
    assert not message.can_advance_to(M.DELIVERED)
    assert message.can_advance_to(M.PLAYED)
