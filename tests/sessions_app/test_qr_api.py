"""GET /api/v1/sessions/{id}/qr: the current QR code from the cache, as JSON or as a PNG."""

from __future__ import annotations

import base64
import copy
import io
import uuid

import pytest
import zxingcpp
from PIL import Image
from rest_framework.test import APIClient

from sessions_app.services import qr

pytestmark = pytest.mark.django_db


def decode(png: bytes) -> str:
    [result] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return result.text


@pytest.mark.smoke
def test_the_qr_code_as_json(api: APIClient, make_session) -> None:
    session = make_session(status="scan_qr")
    qr.codes_keep(session_id=session.id, codes={"qr": qr.code_made("2@abc,def,ghi", 20)})

    response = api.get(f"/api/v1/sessions/{session.id}/qr")

    assert response.status_code == 200
    body = response.json()
    assert body["code"] == "2@abc,def,ghi"
    assert body["expires_at"] > "2026"
    png = base64.b64decode(body["image"].removeprefix("data:image/png;base64,"))
    assert decode(png) == "2@abc,def,ghi"
    assert response["Cache-Control"] == "no-store"


def test_the_qr_code_as_a_png_decodes_to_the_same_code(api: APIClient, make_session) -> None:
    session = make_session(status="scan_qr")
    qr.codes_keep(session_id=session.id, codes={"qr": qr.code_made("2@png,code", 20)})

    response = api.get(f"/api/v1/sessions/{session.id}/qr", HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert decode(response.content) == "2@png,code"


@pytest.mark.parametrize("accept", ["application/json", "image/png"])
def test_no_qr_code_is_a_409_in_json(api: APIClient, make_session, accept: str) -> None:
    session = make_session(status="connected")
    response = api.get(f"/api/v1/sessions/{session.id}/qr", HTTP_ACCEPT=accept)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "qr_not_available"


def test_an_unknown_session_is_a_404(api: APIClient) -> None:
    assert api.get(f"/api/v1/sessions/{uuid.uuid4()}/qr").status_code == 404


def test_a_cache_that_is_down_is_a_503(api: APIClient, make_session, settings) -> None:
    assert settings.REDIS_URL, "this test needs the Redis configuration of `make test`"
    session = make_session(status="scan_qr")
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = "redis://127.0.0.1:1/0"
    settings.CACHES = caches
    response = api.get(f"/api/v1/sessions/{session.id}/qr")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "cache_unavailable"


def test_many_viewers_of_one_code_cost_one_drawing(api: APIClient, make_session, monkeypatch):
    drawn: list[str] = []
    draw = qr.qr_image
    monkeypatch.setattr(qr, "qr_image", lambda code: drawn.append(code) or draw(code))
    session = make_session(status="scan_qr")
    qr.codes_keep(session_id=session.id, codes={"qr": qr.code_made("2@many,viewers", 20)})
    assert drawn == []  # stored, announced: not drawn until someone asks

    answers = [api.get(f"/api/v1/sessions/{session.id}/qr") for _ in range(5)]
    pngs = [api.get(f"/api/v1/sessions/{session.id}/qr", HTTP_ACCEPT="image/png") for _ in range(5)]

    assert drawn == ["2@many,viewers"]
    images = {a.json()["image"] for a in answers}
    assert len(images) == 1 and {p.content for p in pngs} == {
        base64.b64decode(images.pop().removeprefix("data:image/png;base64,"))
    }
    assert decode(pngs[0].content) == "2@many,viewers"
    qr.codes_keep(session_id=session.id, codes={"qr": qr.code_made("2@the,next", 20)})
    assert decode(
        api.get(f"/api/v1/sessions/{session.id}/qr", HTTP_ACCEPT="image/png").content
    ) == ("2@the,next")
    assert drawn == ["2@many,viewers", "2@the,next"]
