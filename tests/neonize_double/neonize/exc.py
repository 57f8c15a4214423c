"""neonize/exc.py: the exceptions the gateway meets (all NeonizeError, as in neonize 0.5.2)."""


class NeonizeError(Exception):
    pass


class UnsupportedEvent(NeonizeError):
    pass


class SendMessageError(NeonizeError):
    pass


class PairPhoneError(NeonizeError):
    pass


class LogoutError(NeonizeError):
    pass


class IsOnWhatsAppError(NeonizeError):
    pass


class MarkReadError(NeonizeError):
    pass


class DownloadError(NeonizeError):
    pass


class GetJIDFromStoreError(NeonizeError):
    pass


class SendPresenceError(NeonizeError):
    """neonize 0.5.2 exc.py: raised by send_presence and send_chat_presence alike."""


class SubscribePresenceError(NeonizeError):
    pass


class GetBlocklistError(NeonizeError):
    pass


class UpdateBlocklistError(NeonizeError):
    pass
