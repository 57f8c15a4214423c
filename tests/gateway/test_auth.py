from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from sessions_app.models import Session

pytestmark = pytest.mark.django_db

SESSION = "00000000-0000-0000-0000-000000000001"
WORKER = "00000000-0000-0000-0000-000000000002"
ENDPOINTS = [
    ("get", "/api/v1/sessions"),
    ("post", "/api/v1/sessions"),
    ("get", f"/api/v1/sessions/{SESSION}"),
    ("get", f"/api/v1/sessions/{SESSION}/qr"),
    ("delete", f"/api/v1/sessions/{SESSION}"),
    ("post", f"/api/v1/sessions/{SESSION}/start"),
    ("post", f"/api/v1/sessions/{SESSION}/stop"),
    ("post", f"/api/v1/sessions/{SESSION}/restart"),
    ("post", f"/api/v1/sessions/{SESSION}/logout"),
    ("get", "/api/v1/workers"),
    ("get", f"/api/v1/workers/{WORKER}"),
]
HS_SECRET = "a-test-secret-that-is-long-enough-for-hs256-and-even-for-hs512-too!"


def _rsa_pair() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


RSA_PRIVATE, RSA_PUBLIC = _rsa_pair()


def _claims(**extra: object) -> dict[str, object]:
    return {"sub": "backend", "exp": int(time.time()) + 300, **extra}


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def hs256(settings):
    settings.BACKEND_JWT_SECRET = HS_SECRET
    return settings


@pytest.fixture
def rs256(settings):
    settings.BACKEND_JWT_SECRET = ""
    settings.BACKEND_JWT_PUBLIC_KEY = RSA_PUBLIC
    return settings


@pytest.mark.smoke
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_answers_401_without_credentials(
    anon: APIClient, method: str, path: str
) -> None:
    response = getattr(anon, method)(path)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Api-Key")
    assert response.json()["error"]["code"] == "not_authenticated"
    assert Session.objects.count() == 0


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_answers_401_for_a_wrong_key(method: str, path: str) -> None:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY="abcdefgh.not-the-key")
    response = getattr(client, method)(path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_lets_a_valid_key_through(api: APIClient, method: str, path: str) -> None:
    response = getattr(api, method)(
        path, {"engine": "sandbox"} if method == "post" else None, format="json"
    )
    # The ids in ENDPOINTS do not exist: reaching the view means 404, or 200/201 for the lists.
    expected = {
        ("get", "/api/v1/sessions"): 200,
        ("post", "/api/v1/sessions"): 201,
        ("get", "/api/v1/workers"): 200,
    }.get((method, path), 404)
    assert response.status_code == expected


@pytest.mark.parametrize("key", ["abcdefgh.\x00" + "a" * 31, "ábcdefgh." + "a" * 32, "x" * 5000])
def test_odd_bytes_in_a_key_are_a_401(key: str) -> None:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    response = client.get("/api/v1/sessions")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_it_accepts_the_api_key_authorization_scheme(api_key: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    assert client.get("/api/v1/sessions").status_code == 200


def test_it_refuses_a_revoked_key(api_key: str) -> None:
    APIKey.objects.update(revoked=True)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=api_key)
    assert client.get("/api/v1/sessions").status_code == 401


def test_it_refuses_an_expired_key(make_api_key) -> None:
    key = make_api_key(expiry_date=timezone.now() - timedelta(minutes=1))
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key)
    response = client.get("/api/v1/sessions")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_keys_are_stored_hashed(api_key: str) -> None:
    stored = APIKey.objects.get()
    assert api_key not in stored.hashed_key
    assert api_key.split(".")[1] not in str(stored.__dict__)


def test_it_accepts_an_hs256_token(hs256) -> None:
    token = jwt.encode(_claims(), HS_SECRET, algorithm="HS256")
    assert _bearer(token).get("/api/v1/sessions").status_code == 200


def test_it_accepts_an_rs256_token(rs256) -> None:
    token = jwt.encode(_claims(), RSA_PRIVATE, algorithm="RS256")
    assert _bearer(token).get("/api/v1/sessions").status_code == 200


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda: jwt.encode({"sub": "backend"}, HS_SECRET, algorithm="HS256"), id="no-exp"
        ),
        pytest.param(
            lambda: jwt.encode(_claims(exp=int(time.time()) - 60), HS_SECRET, algorithm="HS256"),
            id="expired",
        ),
        pytest.param(
            lambda: jwt.encode(
                _claims(), "another-secret-another-secret-another", algorithm="HS256"
            ),
            id="wrong-secret",
        ),
        pytest.param(lambda: jwt.encode(_claims(), None, algorithm="none"), id="alg-none"),
        pytest.param(lambda: jwt.encode(_claims(), HS_SECRET, algorithm="HS512"), id="hs512"),
        pytest.param(lambda: "not.a.token", id="garbage"),
        pytest.param(
            lambda: jwt.encode(
                _claims(exp=str(int(time.time()) + 300)), HS_SECRET, algorithm="HS256"
            ),
            id="string-exp",
        ),
        pytest.param(
            lambda: jwt.encode(_claims(exp=True), HS_SECRET, algorithm="HS256"), id="boolean-exp"
        ),
        pytest.param(
            lambda: jwt.encode(_claims(nbf="0"), HS_SECRET, algorithm="HS256"), id="string-nbf"
        ),
        pytest.param(
            lambda: jwt.encode(_claims(), RSA_PRIVATE, algorithm="RS256"),
            id="rs256-without-public-key",
        ),
    ],
)
def test_it_refuses_bad_hs256_tokens(hs256, make_token) -> None:
    response = _bearer(make_token()).get("/api/v1/sessions")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("also_hs256", [False, True])
def test_it_refuses_algorithm_confusion(rs256, also_hs256: bool) -> None:
    """An HS256 token "signed" with the RS256 public key as its secret must not pass, also when an
    HS256 secret is configured beside the public key."""
    if also_hs256:
        rs256.BACKEND_JWT_SECRET = HS_SECRET
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(_claims()).encode())
    signature = hmac.new(RSA_PUBLIC.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    token = f"{header}.{payload}.{b64(signature.digest())}"

    response = _bearer(token).get("/api/v1/sessions")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({"aud": "gateway", "iss": "backend"}, True),
        ({"aud": "someone-else", "iss": "backend"}, False),
        ({"aud": "gateway", "iss": "impostor"}, False),
        ({}, False),
    ],
)
def test_it_checks_audience_and_issuer_when_set(hs256, claims: dict, ok: bool) -> None:
    hs256.BACKEND_JWT_AUDIENCE = "gateway"
    hs256.BACKEND_JWT_ISSUER = "backend"
    token = jwt.encode(_claims(**claims), HS_SECRET, algorithm="HS256")
    assert (_bearer(token).get("/api/v1/sessions").status_code == 200) is ok


def test_bearer_tokens_are_refused_when_not_configured(settings) -> None:
    settings.BACKEND_JWT_SECRET = ""
    settings.BACKEND_JWT_PUBLIC_KEY = ""
    token = jwt.encode(_claims(), HS_SECRET, algorithm="HS256")
    response = _bearer(token).get("/api/v1/sessions")
    assert response.status_code == 401
    assert "not configured" in response.json()["error"]["message"]


def test_a_logged_in_staff_member_may_use_the_api(staff_user, client) -> None:
    client.force_login(staff_user)
    assert client.get("/api/v1/sessions").status_code == 200


def test_a_logged_in_user_who_is_not_staff_may_not(django_user_model, client) -> None:
    user = django_user_model.objects.create_user("plain", password="a-long-test-password")
    client.force_login(user)
    assert client.get("/api/v1/sessions").status_code == 401


def test_staff_need_the_admins_permissions_on_sessions(django_user_model) -> None:
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(
        "viewer", password="a-long-test-password", is_staff=True
    )
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/v1/sessions").status_code == 403
    user.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="sessions_app")
    )
    client.force_login(django_user_model.objects.get(pk=user.pk))
    assert client.get("/api/v1/sessions").status_code == 200
    response = client.post("/api/v1/sessions", {"engine": "sandbox"}, format="json")
    assert response.status_code == 403
    assert Session.objects.count() == 0


def test_staff_sessions_need_the_csrf_token_to_write(staff_user) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post("/api/v1/sessions", {"engine": "sandbox"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_rate_limits_are_counted_per_key(settings, make_api_key) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"client": "3/min"},
    }
    first, second = APIClient(), APIClient()
    first.credentials(HTTP_X_API_KEY=make_api_key("one"))
    second.credentials(HTTP_X_API_KEY=make_api_key("two"))

    codes = [first.get("/api/v1/sessions").status_code for _ in range(4)]
    limited = first.get("/api/v1/sessions")

    assert codes == [200, 200, 200, 429]
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 0 < int(limited["Retry-After"]) <= 60
    assert second.get("/api/v1/sessions").status_code == 200


def test_unknown_session_ids_are_404_not_401_once_authenticated(api: APIClient) -> None:
    assert api.get(f"/api/v1/sessions/{uuid.uuid4()}").status_code == 404
