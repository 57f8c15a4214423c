"""The base classes of every API view: DRF's, with the request checked against the published
schema once it is authenticated, allowed and within its rate (gateway.core.contract)."""

from __future__ import annotations

from rest_framework import generics, views

from gateway.core.contract import ContractChecked


class ApiView(ContractChecked, views.APIView):
    pass


class ListApiView(ContractChecked, generics.ListAPIView):
    pass
