"""The base classes of every API view: DRF's, with the request checked against the published
schema once it is authenticated, allowed and within its rate (gateway.core.contract); and what
views share to read a request's values.

`recipient` lives here, not in gateway.core.jids: the engines use the JIDs module and import no
Django or DRF, which an API error brings."""

from __future__ import annotations

from rest_framework import generics, views

from gateway.core.contract import ContractChecked
from gateway.core.errors import InvalidValue
from gateway.core.jids import is_group, recipient_jid


class ApiView(ContractChecked, views.APIView):
    pass


class ListApiView(ContractChecked, generics.ListAPIView):
    pass


def recipient(value: str, *, no_group: str = "") -> str:
    """A recipient a request names (an E.164 number or a JID, see `recipient_jid`) as its JID;
    422 `validation_error` saying what is wrong otherwise. `no_group`: where only users make sense,
    the message that refuses a group's JID."""
    try:
        jid = recipient_jid(value)
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None
    if no_group and is_group(jid):
        raise InvalidValue(no_group)
    return jid
