"""WhatsApp JIDs: `<user>@s.whatsapp.net` for phone numbers, `@lid` for hidden numbers,
`@g.us` for groups."""

from __future__ import annotations

USER_SERVER = "s.whatsapp.net"
LID_SERVER = "lid"
GROUP_SERVER = "g.us"
# A group's invite link, as WhatsApp shows it (whatsmeow group.go InviteLinkPrefix).
INVITE_LINK_PREFIX = "https://chat.whatsapp.com/"


def phone_to_jid(phone_number: str) -> str:
    digits = "".join(ch for ch in phone_number if ch.isdigit())
    if not digits:
        raise ValueError(f"not a phone number: {phone_number!r}")
    return f"{digits}@{USER_SERVER}"


def jid_user(jid: str) -> str:
    """The user part without device (`1555:12@s.whatsapp.net` → `1555`)."""
    return jid.partition("@")[0].partition(":")[0]


def jid_to_phone(jid: str) -> str:
    """`+<digits>` for a phone-number JID, "" for anything else (a @lid, a group)."""
    if jid.partition("@")[2] != USER_SERVER:
        return ""
    user = jid_user(jid)
    return f"+{user}" if user.isdigit() else ""


def is_lid(jid: str) -> bool:
    return jid.partition("@")[2] == LID_SERVER


def is_group(jid: str) -> bool:
    return jid.partition("@")[2] == GROUP_SERVER


# What a recipient can look like (the API's schema states it): a number with its country code
# (digits, with spaces, dashes or brackets between them), or a JID of a user, a @lid or a group.
RECIPIENT_PATTERN = r"^(\+[0-9][0-9 ()-]{5,30}|[0-9]+(-[0-9]+)?@(s\.whatsapp\.net|lid|g\.us))$"


def recipient_jid(value: str) -> str:
    """A message's `to`: an E.164 number or a JID of a user, a @lid or a group. ValueError says
    what is wrong.

    A number is accepted when its length is possible for its country code (`phonenumbers`), not
    only when phonenumbers knows the range to be assigned: its metadata lags new ranges, and
    WhatsApp is the judge (a number not on WhatsApp fails to send).
    """
    import re

    import phonenumbers

    value = value.strip()
    if "@" in value:
        user, _, server = value.partition("@")
        if server not in (USER_SERVER, LID_SERVER, GROUP_SERVER):
            raise ValueError(f"Unknown JID server {server!r}.")
        if not re.fullmatch(r"[0-9]+(-[0-9]+)?", user):
            raise ValueError("A JID's user part is digits.")
        return f"{user}@{server}"
    if not value.startswith("+"):
        raise ValueError("A phone number needs its country code, e.g. +15550001.")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("Not a phone number.") from None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        raise ValueError(f"Not a possible phone number for +{number.country_code}.")
    return phone_to_jid(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
