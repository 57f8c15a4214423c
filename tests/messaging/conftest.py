from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone


@pytest.fixture
def held(make_session):
    """A session this test holds with lease epoch 3, as its worker would."""
    return make_session(
        status="connected",
        jid="1@s.whatsapp.net",
        lease_epoch=3,
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )
