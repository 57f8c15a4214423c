"""deploy/compose.yaml: valid against the Compose specification (check-jsonschema's vendored copy,
no network), wired as the README says (health checks, start order, distinct workers), and filled by
deploy/env.example, whose placeholders are the only secrets and whose settings the gateway accepts
for production."""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.processes import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ONE_SHOTS = {"bucket", "migrate"}
# The gateway's services and the role each runs.
GATEWAY_ROLES = {
    "migrate": "migrate",
    "web": "web",
    "ws": "ws",
    "worker-1": "worker",
    "worker-2": "worker",
}


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert tool, "check-jsonschema is missing: pip install -r requirements/dev.txt"
    command = [tool, "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def services() -> dict[str, Any]:
    return YAML(typ="safe").load(COMPOSE.read_text())["services"]


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_compose_file_follows_the_specification(tmp_path: Path) -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "compose.yaml"  # the validator does catch a mistake
    broken.write_text(COMPOSE.read_text().replace("service_healthy", "service_ready", 1))
    assert check_jsonschema(broken).returncode == 1


def test_every_service_is_healthy_before_what_needs_it_starts() -> None:
    every = services()
    assert set(every) == {"postgres", "redis", "minio", "proxy", *ONE_SHOTS, *GATEWAY_ROLES}
    for name, service in every.items():
        check = service.get("healthcheck", {})
        if name in ONE_SHOTS:
            assert service.get("restart", "no") == "no", name
        else:
            assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        for needed, how in service.get("depends_on", {}).items():
            expected = (
                "service_completed_successfully" if needed in ONE_SHOTS else "service_healthy"
            )
            assert how == {"condition": expected}, f"{name} on {needed}"
    started_after = {name for name, s in every.items() if "migrate" in s.get("depends_on", {})}
    assert started_after == {"web", "ws", "worker-1", "worker-2"}
    assert set(every["proxy"]["depends_on"]) == {"web", "ws"}


def test_the_gateway_services_are_the_roles_of_one_image_built_from_here() -> None:
    every = services()
    for name, role in GATEWAY_ROLES.items():
        service = every[name]
        assert service["command"] == [role]
        assert service["image"] == every["web"]["image"]
        assert (DEPLOY / service["build"]["context"] / "Dockerfile").is_file()
        assert service["env_file"] == ".env" and service["init"] is True
    hostnames = [every[name].get("hostname") for name in ("worker-1", "worker-2")]
    assert None not in hostnames and len(set(hostnames)) == 2  # run_worker names itself after it
    mount = every["proxy"]["volumes"][0].split(":")
    assert (DEPLOY / mount[0]).resolve() == DEPLOY / "nginx" / "gateway.conf"
    assert mount[1] == "/etc/nginx/conf.d/default.conf"
    assert every["postgres"]["image"].startswith("postgres:16")
    assert every["redis"]["image"].startswith("redis:7")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default}, ${NAME:?error} and $$."""

    def one(match: re.Match) -> str:
        name, kind, fallback = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {fallback}")
        return fallback or ""

    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", one, value).replace("$$", "$")


def test_the_env_file_holds_placeholders_and_everything_the_compose_file_needs() -> None:
    example = env_example()
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required and required <= set(example)
    secret = {n for n in example if re.search(r"PASSWORD|SECRET|KEY$", n)}
    assert secret >= {"POSTGRES_PASSWORD", "SECRET_KEY", "SESSION_ENCRYPTION_KEY"}
    assert {example[name] for name in secret} == {"change-me"}


@pytest.mark.parametrize("https", [False, True])
def test_the_gateway_accepts_the_compose_environment(tmp_path: Path, https: bool) -> None:
    """The environment compose gives a gateway container (the env file, its change-me replaced,
    then the service's own variables) passes `check --deploy`; once HTTPS is there and
    SECURE_SSL_REDIRECT=false deleted, as the README says, without any warning."""
    env = {k: v.replace("change-me", secrets.token_hex(32)) for k, v in env_example().items()}
    env["SESSION_ENCRYPTION_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    if https:
        del env["SECURE_SSL_REDIRECT"]
    gateway = services()["web"]["environment"]
    env.update({name: interpolate(str(value), env) for name, value in gateway.items()})
    env.update(PATH="/usr/bin:/bin", GATEWAY_VAR_DIR=str(tmp_path / "var"))
    check = [sys.executable, "manage.py", "check", "--deploy"]
    if https:
        check += ["--fail-level", "WARNING"]
    result = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("security.W008" in result.stderr) is not https  # SSL redirect off: said, not hidden
