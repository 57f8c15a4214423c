"""Failpoints: named places where a process can be made to die, for crash tests.

`GATEWAY_FAILPOINTS=after_claim=exit,during_snapshot_upload=exit` makes the process exit at once
(`os._exit`, no cleanup, like a crash) when it reaches one of those points. Off unless set.

Points: `after_claim` (sessions claimed and committed, nothing started), `during_snapshot_upload`
(snapshot object stored, not yet made latest), `after_send_before_commit`,
`after_webhook_response_before_commit`.
"""

from __future__ import annotations

import logging
import os

from django.conf import settings

logger = logging.getLogger(__name__)
EXIT_CODE = 86


def failpoint(name: str) -> None:
    if settings.GATEWAY_FAILPOINTS.get(name) == "exit":
        logger.critical("failpoint %s: exiting", name)
        logging.shutdown()
        os._exit(EXIT_CODE)
