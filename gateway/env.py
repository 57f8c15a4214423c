"""Fail-loud readers for settings that come from the environment.

Every reader names the variable in its error, so a malformed value stops the start with a message an
operator can act on. Secret values are never echoed back.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _fail(name: str, expected: str, value: str | None = None, *, secret: bool = False) -> None:
    if value is not None and "@" in value and "://" in value:
        # A URL may carry a password in its user part: show it without.
        scheme, _, rest = value.partition("://")
        value = f"{scheme}://…@{rest.rpartition('@')[2]}"
    shown = "" if secret or value is None else f", got {value!r}"
    raise ImproperlyConfigured(f"Environment variable {name}: expected {expected}{shown}.")


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    _fail(name, "one of true/false/1/0/yes/no/on/off", value)
    raise AssertionError  # unreachable, for type checkers


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        _fail(name, "an integer", value)
        raise
    if minimum is not None and number < minimum:
        _fail(name, f"an integer >= {minimum}", value)
    if maximum is not None and number > maximum:
        _fail(name, f"an integer <= {maximum}", value)
    return number


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        _fail(name, "one of " + ", ".join(choices), value)
    return value


def _check_url(name: str, value: str, schemes: tuple[str, ...], *, secret: bool = False) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        _fail(name, "a URL", value, secret=secret)
        raise
    # Only file-like schemes (sqlite:///path, unix:///socket) may go without a host.
    needs_host = parts.scheme not in ("sqlite", "unix")
    if parts.scheme not in schemes or (needs_host and not parts.hostname):
        expected = "a URL starting with " + " or ".join(f"{s}://" for s in schemes)
        _fail(name, expected + (" and naming a host" if needs_host else ""), value, secret=secret)
    return value


def env_url(
    name: str,
    schemes: tuple[str, ...] = ("http", "https"),
    default: str = "",
    *,
    secret: bool = False,
) -> str:
    """A URL with one of `schemes`, or `default` when unset. `secret` URLs may carry passwords."""
    value = _raw(name)
    if value is None:
        return default
    return _check_url(name, value, schemes, secret=secret)


def env_origins(name: str) -> list[str]:
    """A comma-separated list of origins such as `https://app.example.com`."""
    origins = env_list(name)
    for origin in origins:
        _check_url(name, origin, ("http", "https"))
        if urlsplit(origin).path not in ("", "/"):
            _fail(name, "origins without a path (scheme://host[:port])", origin)
    return [origin.rstrip("/") for origin in origins]


def env_key32(name: str) -> bytes | None:
    """A 32-byte key given as base64 (standard or URL-safe), or None when unset."""
    value = _raw(name)
    if value is None:
        return None
    try:
        key = base64.urlsafe_b64decode(value.replace("+", "-").replace("/", "_") + "==")
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        _fail(
            name, "32 random bytes encoded as base64 (e.g. `openssl rand -base64 32`)", secret=True
        )
    return key


def env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate such as `100/s`, `6000/min`; `off` disables it."""
    value = _raw(name) or default
    if value.lower() in ("off", "none", "0"):
        return None
    count, _, period = value.partition("/")
    if not count.isdigit() or not period or period[0] not in "smhd":
        _fail(name, "a rate such as 100/s, 6000/min, 1000/h, or off", value)
    return value


def env_rsa_public_key(name: str) -> str:
    """An RSA public key in PEM (SubjectPublicKeyInfo or PKCS#1); `\\n` may stand for newlines.
    Loaded once here so that a damaged key stops the start instead of failing every request."""
    value = env_str(name).replace("\\n", "\n")
    if not value:
        return ""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(value.encode())
    except ValueError:
        key = None
    if not isinstance(key, RSAPublicKey):
        _fail(
            name,
            "an RSA public key in PEM (-----BEGIN PUBLIC KEY----- …); newlines may be "
            "written as \\n",
        )
    return value


def env_json_object(name: str) -> dict:
    """A JSON object, or {} when unset."""
    value = _raw(name)
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        _fail(name, "a JSON object", value)
    return parsed


def documented_variables(env_example: Path) -> list[str]:
    """The variable names `.env.example` documents (`NAME=` or `# NAME=` at a line's start): the
    list of everything the gateway reads, used to give tests and `make test` a clean environment."""
    names = []
    for line in env_example.read_text().splitlines():
        name, equals, _ = line.lstrip("# ").partition("=")
        if equals and name.isidentifier() and name.isupper():
            names.append(name)
    return names
