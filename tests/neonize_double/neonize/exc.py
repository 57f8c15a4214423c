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


# Groups (neonize 0.5.2 exc.py L73-133, L335-341): raised with the Go error's text.


class CreateGroupError(NeonizeError):
    pass


class GetGroupInfoError(NeonizeError):
    pass


class GetGroupInviteLinkError(NeonizeError):
    pass


class GetJoinedGroupsError(NeonizeError):
    pass


class InviteLinkError(NeonizeError):
    """Raised by join_group_with_link (PY client.py L2326-2340)."""


class SetGroupPhotoError(NeonizeError):
    pass


class SetGroupAnnounceError(NeonizeError):
    pass


class SetGroupLockedError(NeonizeError):
    pass


class SetGroupTopicError(NeonizeError):
    pass


class UpdateGroupParticipantsError(NeonizeError):
    pass


class LeaveGroupError(NeonizeError):
    pass


class SetGroupNameError(NeonizeError):
    pass


# Contacts and the profile (neonize 0.5.2 exc.py L195-207, L303, L319): raised with the Go
# error's text, except GetProfilePictureError, which PY client.py L3045 raises with the whole
# GetProfilePictureReturnFunction (its str() is the message's text format).


class ContactStoreError(NeonizeError):
    """Raised when a contact store operation fails."""


class GetProfilePictureError(NeonizeError):
    """Raised when retrieving a profile picture fails."""


class GetUserInfoError(NeonizeError):
    """Raised when retrieving user information fails."""


class SendAppStateError(NeonizeError):
    """Raised when sending app state sync fails (set_profile_name)."""


class SetStatusMessageError(NeonizeError):
    """Raised when setting the status/about message fails."""


# Polls (neonize 0.5.2 exc.py L56-65): raised with the Go error's text.


class BuildPollVoteError(NeonizeError):
    """Raised when building a poll vote message fails."""


class BuildPollVoteCreationError(NeonizeError):
    """Raised when building a poll creation message fails."""


class DecryptPollVoteError(NeonizeError):
    """Raised when decrypting a poll vote fails."""


class ConvertStickerError(NeonizeError):
    """Raised when converting an image/video to sticker format fails (PY exc.py L348)."""
