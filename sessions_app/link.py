"""The link page: what the backend sends its end user to (or embeds) to link a phone.

`/link/<session id>/?token=…` with a token from `POST /api/v1/sessions/{id}/ws-token`. The page
(templates/link/page.html, no outside assets) follows the session over its WebSocket: the live QR
with a countdown, a pairing code instead, and "Linked as +…" at the end.
"""

from __future__ import annotations

import json
import re
import uuid

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from gateway.core.errors import ApiError, error_body, error_response
from sessions_app import services
from sessions_app.models import Session
from sessions_app.selectors import session_find
from sessions_app.tokens import ws_token_session


def _session_for(request: HttpRequest, session_id: uuid.UUID) -> Session | None:
    token = request.GET.get("token", "")
    if not token or ws_token_session(token) != str(session_id):
        return None
    return session_find(session_id=session_id)


@require_GET
@xframe_options_exempt  # the backend may embed the page in its own front end
def link_page(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = _session_for(request, session_id)
    if session is None:
        return render(request, "link/invalid.html", status=403)
    response = render(
        request,
        "link/page.html",
        {
            "session_id": str(session.pk),
            "token": request.GET["token"],
            "status": session.status,
            "phone_number": session.phone_number,
        },
    )
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response


@csrf_exempt  # authenticated by the token in the URL, not by cookies
@require_POST
def link_pair_code(request: HttpRequest, session_id: uuid.UUID) -> JsonResponse:
    """The page's "link with phone number instead": the same as the API's pair-code."""
    session = _session_for(request, session_id)
    if session is None:
        return JsonResponse(
            error_body("invalid_token", "This link is not valid any more."), status=403
        )
    return pair_code_response(session, request.body)


def pair_code_response(session: Session, body: bytes) -> JsonResponse:
    """`{"phone_number": "+…"}` in, the pairing code out (the link page's and the admin's form)."""
    try:
        phone = str(json.loads(body or b"{}").get("phone_number", "")).strip()
    except (ValueError, AttributeError):
        phone = ""
    if not re.match(services.E164, phone):
        return JsonResponse(
            error_body(
                "validation_error", "Enter the number with its country code, e.g. +15550001."
            ),
            status=400,
        )
    try:
        code = services.session_pair_code(session=session, phone_number=phone)
    except services.NotLinking:  # in words for the person linking (no status names)
        return error_response(services.NotLinking("This session is not waiting to be linked."))
    except services.PairCodeUnavailable:
        return error_response(services.PairCodeUnavailable("No code came in time; try again."))
    except ApiError as exc:
        return error_response(exc)
    return JsonResponse({"code": code["code"], "expires_at": code["expires_at"]})
