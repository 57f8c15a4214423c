"""Settings come from the environment; malformed values stop the start naming the variable."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from gateway import env

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_VARS = set(env.documented_variables(ROOT / ".env.example"))
POSTGRES = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gateway")


def run(args: list[str], tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in GATEWAY_VARS}
    environment.update({"GATEWAY_VAR_DIR": str(tmp_path / "var"), **variables})
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess:
    return run(
        ["-c", "import django; django.setup()"],
        tmp_path,
        DJANGO_SETTINGS_MODULE="gateway.settings",
        **variables,
    )


def production(**overrides: str) -> dict[str, str]:
    """What an operator sets for a production install."""
    return {
        "DATABASE_URL": POSTGRES,
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
        "S3_BUCKET": "gateway",
        "S3_ENDPOINT_URL": "https://s3.example.com",
        "S3_ACCESS_KEY_ID": "id",
        "S3_SECRET_ACCESS_KEY": "secret",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "SESSION_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "ALLOWED_HOSTS": "gateway.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://gateway.example.com",
        "PUBLIC_URL": "https://gateway.example.com",
        "BACKEND_URL": "https://backend.example.com",
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        **overrides,
    }


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("WORKER_LEASE_SECONDS", "thirty"),
        ("WORKER_LEASE_SECONDS", "2"),
        ("BACKEND_HEARTBEAT_SECONDS", "0"),
        ("DATABASE_URL", "mysql://root@localhost/gateway"),
        ("REDIS_URL", "localhost:6379"),
        ("BACKEND_URL", "backend.example.com"),
        ("PUBLIC_URL", "ftp://gateway.example.com"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example.com/path"),
        ("SESSION_ENCRYPTION_KEY", "too-short"),
        ("DEFAULT_ENGINE", "baileys"),
        ("SANDBOX_ENABLED", "sometimes"),
        ("API_THROTTLE_RATE", "fast"),
        ("BACKEND_JWT_PUBLIC_KEY", "not a pem"),
        ("S3_ENDPOINT_URL", "s3.example.com"),
        ("PUBLIC_URL", "https:gateway.example.com"),
        ("BACKEND_URL", "http:/backend"),
        ("REDIS_URL", "redis://127.0.0.1:6379/notanint"),
        ("WORKER_LEASE_SECONDS", "100000000000000000000000"),
        ("BACKEND_JWT_SECRET", "short"),
        (
            "BACKEND_JWT_PUBLIC_KEY",
            "-----BEGIN PUBLIC KEY-----\\nMIIBIjANBgkqhkiG9w0B\\n-----END PUBLIC KEY-----",
        ),
    ],
)
def test_a_malformed_value_stops_the_start_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = start(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert f"Environment variable {variable}" in result.stderr


def test_an_s3_endpoint_needs_a_bucket(tmp_path: Path) -> None:
    result = start(tmp_path, S3_ENDPOINT_URL="http://127.0.0.1:9000")
    assert result.returncode != 0
    assert "Environment variable S3_BUCKET: required when S3_ENDPOINT_URL is set" in result.stderr


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    result = start(tmp_path, SESSION_ENCRYPTION_KEY="hunter2-not-base64-32-bytes")
    assert result.returncode != 0
    assert "hunter2" not in result.stderr


def test_passwords_in_urls_are_not_echoed_in_errors(tmp_path: Path) -> None:
    result = start(tmp_path, BACKEND_URL="ftp://user:hunter2@backend.example.com")
    assert result.returncode != 0
    assert "Environment variable BACKEND_URL" in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize("encoding", ["spki", "pkcs1"])
def test_rsa_public_keys_are_accepted_in_both_pem_forms(tmp_path: Path, encoding: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo
        if encoding == "spki"
        else serialization.PublicFormat.PKCS1,
    ).decode()
    result = start(tmp_path, BACKEND_JWT_PUBLIC_KEY=pem.replace("\n", "\\n"))
    assert result.returncode == 0, result.stderr


def test_web_servers_refuse_to_serve_with_a_serious_problem(tmp_path: Path) -> None:
    """gunicorn and uvicorn run no system checks; the WSGI and ASGI modules run ours."""
    for module in ("gateway.wsgi", "gateway.asgi"):
        result = run(["-c", f"import {module}"], tmp_path, **production(DEBUG="true"))
        assert result.returncode != 0
        assert "gateway.E001" in result.stderr
        assert run(["-c", f"import {module}"], tmp_path, **production()).returncode == 0


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    result = start(tmp_path, DATABASE_URL=POSTGRES)
    assert result.returncode != 0
    assert "Environment variable SECRET_KEY" in result.stderr


def test_the_embedded_mode_starts_with_no_environment_and_keeps_its_secrets(tmp_path: Path) -> None:
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECRET_KEY, s.DATABASES['default']['ENGINE'], s.SANDBOX_ENABLED, "
        "s.STORAGES['default']['BACKEND'], s.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    first = run(["-c", script], tmp_path, DJANGO_SETTINGS_MODULE="gateway.settings")
    second = run(["-c", script], tmp_path, DJANGO_SETTINGS_MODULE="gateway.settings")

    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    key, engine, sandbox, storage, layer = first.stdout.split()
    assert len(key) >= 50
    assert engine == "django.db.backends.sqlite3"
    assert sandbox == "True"
    assert storage.endswith("FileSystemStorage")
    assert layer.endswith("InMemoryChannelLayer")
    assert oct((tmp_path / "var" / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_production_switches_come_from_the_environment(tmp_path: Path) -> None:
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.PRODUCTION, s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'],"
        " s.STORAGES['sessions']['BACKEND'], s.SANDBOX_ENABLED, s.SESSION_COOKIE_SECURE)"
    )
    result = run(
        ["-c", script], tmp_path, DJANGO_SETTINGS_MODULE="gateway.settings", **production()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "True",
        "django_prometheus.db.backends.postgresql",
        "django.core.cache.backends.redis.RedisCache",
        "storages.backends.s3.S3Storage",
        "False",
        "True",
    ]


def test_check_deploy_passes_in_a_production_like_environment(tmp_path: Path) -> None:
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, **production()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"DEBUG": "true"}, "gateway.E001"),
        ({"SESSION_ENCRYPTION_KEY": ""}, "gateway.E002"),
        ({"WEBHOOK_SECRET": ""}, "gateway.E003"),
        ({"BACKEND_URL": "http://backend.example.com"}, "gateway.W001"),
        ({"SANDBOX_ENABLED": "true"}, "gateway.W002"),
        ({"REDIS_URL": ""}, "gateway.W003"),
        ({"S3_BUCKET": "", "S3_ENDPOINT_URL": ""}, "gateway.W004"),
        ({"PUBLIC_URL": ""}, "gateway.W005"),
    ],
)
def test_check_flags_dangerous_combinations(
    tmp_path: Path, overrides: dict[str, str], check_id: str
) -> None:
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        **production(**overrides),
    )
    assert result.returncode != 0
    assert check_id in result.stderr


@pytest.mark.smoke
def test_every_variable_the_settings_read_is_documented() -> None:
    source = (ROOT / "gateway" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', source))
    assert read, "the pattern found nothing: the test would pass vacuously"
    assert read - GATEWAY_VARS == set()
    readme = (ROOT / "README.md").read_text()
    assert [name for name in sorted(read) if f"`{name}`" not in readme] == []


@pytest.mark.smoke
class TestEnvReaders:
    def test_booleans(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for value, expected in [
            ("true", True),
            ("1", True),
            ("On", True),
            ("no", False),
            ("0", False),
        ]:
            monkeypatch.setenv("X_FLAG", value)
            assert env.env_bool("X_FLAG", not expected) is expected
        monkeypatch.delenv("X_FLAG")
        assert env.env_bool("X_FLAG", True) is True

    def test_integers_with_bounds(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("X_INT", " 42 ")
        assert env.env_int("X_INT", 1, minimum=1) == 42
        monkeypatch.setenv("X_INT", "0")
        with pytest.raises(ImproperlyConfigured, match="X_INT: expected an integer >= 1"):
            env.env_int("X_INT", 1, minimum=1)

    def test_lists_and_origins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("X_LIST", "a.example.com, b.example.com,,")
        assert env.env_list("X_LIST") == ["a.example.com", "b.example.com"]
        monkeypatch.setenv("X_ORIGINS", "https://a.example.com/, http://localhost:3000")
        assert env.env_origins("X_ORIGINS") == ["https://a.example.com", "http://localhost:3000"]

    def test_keys_accept_both_base64_alphabets(self, monkeypatch: pytest.MonkeyPatch) -> None:
        raw = bytes(range(250, 256)) + secrets.token_bytes(26)
        monkeypatch.setenv("X_KEY", base64.b64encode(raw).decode())
        assert env.env_key32("X_KEY") == raw
        monkeypatch.setenv("X_KEY", base64.urlsafe_b64encode(raw).decode().rstrip("="))
        assert env.env_key32("X_KEY") == raw

    def test_rates(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("X_RATE", "off")
        assert env.env_rate("X_RATE", "10/s") is None
        monkeypatch.delenv("X_RATE")
        assert env.env_rate("X_RATE", "10/s") == "10/s"


def test_a_var_directory_others_can_read_is_flagged(tmp_path: Path, settings) -> None:
    """When the gateway cannot make it 0700 itself (another user owns it), the checks say so."""
    from gateway.checks import check_settings

    open_dir = tmp_path / "var"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    settings.VAR_DIR = open_dir
    assert "gateway.W006" in [problem.id for problem in check_settings(None)]
    open_dir.chmod(0o700)
    assert "gateway.W006" not in [problem.id for problem in check_settings(None)]
