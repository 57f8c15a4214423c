"""The Dockerfile and the entrypoint script pass their linters (hadolint, with ShellCheck on every
RUN; ShellCheck on the script, as POSIX sh): any finding of any severity fails. No container
engine runs here; what the image runs is tested on the host by test_entrypoint.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import ROOT

BIN = Path(sys.executable).parent


def lint(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    path = shutil.which(tool, path=str(BIN))
    assert path, f"{tool} is missing: pip install -r requirements/dev.txt"
    return subprocess.run([path, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def hadolint(dockerfile: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    config = str(ROOT / ".hadolint.yaml")
    return lint(
        "hadolint", "--config", config, "--no-color", "--failure-threshold", "style",
        str(dockerfile), cwd=cwd,
    )  # fmt: skip


def test_the_dockerfile_has_no_finding() -> None:
    result = hadolint(ROOT / "Dockerfile")
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("FROM python:latest", "DL3007"),  # an unpinned base
        ("FROM python:3.11.17-slim-bookworm\nRUN pip install django", "DL3013"),
        ("FROM python:3.11.17-slim-bookworm\nRUN echo a\nRUN echo b", "DL3059"),  # info
        # style, the lowest severity, which hadolint's default threshold lets pass
        ("FROM python:3.11.17-slim-bookworm\nLABEL Foo_Bar=1", "DL3048"),
    ],
)
def test_a_finding_fails(tmp_path: Path, line: str, rule: str) -> None:
    (tmp_path / "Dockerfile").write_text(line + "\n")
    result = hadolint(tmp_path / "Dockerfile", cwd=tmp_path)
    assert result.returncode == 1 and rule in result.stdout


def test_the_image_is_pinned_multi_stage_and_not_root() -> None:
    """What hadolint does not require of a Dockerfile, this project does."""
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11." in text and "-slim-bookworm\n" in text
    assert text.count("FROM ${PYTHON_IMAGE}") == 2
    assert "USER 10001:10001" in text and "STOPSIGNAL SIGTERM" in text
    assert 'CMD ["python", "/app/deploy/healthcheck.py"]' in text and "curl" not in text
    assert 'ENTRYPOINT ["/app/deploy/entrypoint.sh"]' in text and 'CMD ["all"]' in text
    final = text.split("FROM ${PYTHON_IMAGE}\n")[1]
    assert "ffmpeg" in final and not any(tool in final for tool in ("gcc", "build-essential"))


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", "**/.env", "**/__pycache__", ".pytest_cache"} <= ignored


def test_the_entrypoint_is_posix_sh_without_finding() -> None:
    result = lint("shellcheck", "--shell=sh", "--severity=style", "deploy/entrypoint.sh")
    assert (result.returncode, result.stdout) == (0, "")
