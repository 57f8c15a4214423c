"""Network namespaces with only loopback, for whatever must not reach beyond this machine (an
SSRF refusal, real neonize dialling web.whatsapp.com): nothing sent in one leaves it.

`namespace()` makes one (root: CI runs as root); `in_namespace(name, *command)` runs a command
in it; `offline()` moves the calling thread into one, so every process it starts meanwhile (an
engine host) lives there, and moves it back after.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

CLONE_NEWNET = 0x40000000


def in_namespace(name: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", name, *command]


@contextlib.contextmanager
def namespace(prefix: str = "gw-test") -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.fail("this test needs root for its network namespace (CI runs as root)")
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(in_namespace(name, "ip", "link", "set", "lo", "up"), check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path) as target:
        if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns {path}: {os.strerror(error)}")


@contextlib.contextmanager
def offline() -> Iterator[str]:
    """This thread, and what it starts, in a namespace with only loopback. Sockets it opens
    meanwhile are in there too: no database or Redis on 127.0.0.1 (use them before or after)."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        with namespace("gw-offline") as name:
            _setns(f"/run/netns/{name}")
            try:
                yield name
            finally:
                _setns(f"/proc/self/fd/{original}")
    finally:
        os.close(original)
