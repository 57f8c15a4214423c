"""`python manage.py sandbox ACTION SESSION_ID …`: drive a sandbox session's simulated phone."""

from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.exceptions import APIException

from gateway.core.errors import ApiError
from sessions_app.sandbox import ACTIONS, control_arguments, sandbox_control_send
from sessions_app.selectors import session_get


class Command(BaseCommand):
    help = (
        "Drive a sandbox session's simulated phone: scan (link it), receive (an inbound "
        "message), disconnect, logout (unlink from the phone), replace (another connection)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("session_id")
        parser.add_argument("--phone", default="", help="scan: link as this number (E.164).")
        parser.add_argument("--from", dest="sender", default="", help="receive: sender (E.164).")
        parser.add_argument("--text", default="", help="receive: the text.")
        parser.add_argument("--lid", action="store_true", help="receive: sender hidden as @lid.")
        parser.add_argument(
            "--from-me", action="store_true", help="receive: sent by the phone itself, to --from."
        )
        parser.add_argument("--expire", type=int, default=3600, help="ban: seconds it lasts.")
        parser.add_argument("--mode", default="normal", help="receipts: how they come from now.")
        parser.add_argument(
            "--state", default="available", help="presence: available, typing, … (with --from)."
        )

    def handle(self, *args: object, action: str, session_id: str, **options: object) -> None:
        data = {
            "scan": {"phone_number": options["phone"]},
            "receive": {
                "from": options["sender"],
                "text": options["text"],
                "as_lid": options["lid"],
                "from_me": options["from_me"],
            },
            "ban": {"expire_seconds": options["expire"]},
            "receipts": {"mode": options["mode"]},
            "presence": {"from": options["sender"], "state": options["state"]},
        }.get(action, {})
        try:
            session = session_get(session_id=session_id)
            sandbox_control_send(session=session, action=action, **control_arguments(action, data))
        except ApiError as exc:
            raise CommandError(exc.message) from None
        except APIException as exc:  # the control's arguments did not validate
            raise CommandError(str(exc.detail)) from None
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed id
            raise CommandError(str(exc)) from None
        self.stdout.write(f"sent {action} to sandbox session {session.id}")
