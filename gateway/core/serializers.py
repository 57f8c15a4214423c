"""Output serializers whose fields are built once per class, not on every response.

DRF's ModelSerializer works its fields out from the model (introspection, then a deep copy) each
time one is made, which was a fifth of a `GET /sessions/{id}`. Their fields never depend on the
request here, so the class keeps them and each serializer gets shallow copies to bind (a field's
state is set by `bind`, on the copy); fields with children of their own (lists, nested
serializers) are still deep-copied, as DRF does.
"""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers


class FieldsOnceModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer whose `get_fields()` (not its data) is computed once per class. Only for
    serializers whose fields do not depend on the instance, the context or the request."""

    _fields_once: dict[str, Any]

    def get_fields(self) -> dict[str, Any]:
        fields = type(self).__dict__.get("_fields_once")
        if fields is None:
            fields = super().get_fields()
            type(self)._fields_once = fields
        return {
            name: copy.deepcopy(field) if hasattr(field, "child") else copy.copy(field)
            for name, field in fields.items()
        }
