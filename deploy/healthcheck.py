"""The image's health check (its HEALTHCHECK): exit 0 when this container's gateway is healthy.

`http` (web, ws, all): `GET /health` on 127.0.0.1:$PORT answers 200. The request names a host from
ALLOWED_HOSTS: a gateway that answers only to its public name would refuse the probe's (400).
`worker`: `manage.py worker_alive` (the newest worker of this hostname heartbeats within
WORKER_LEASE_SECONDS). Without an argument the role is the container's: `worker` when a
`run_worker` process runs in it, else `http`.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def probe_host() -> str:
    """A name the gateway answers to: the first of ALLOWED_HOSTS (`.example.com` stands for
    example.com and its subdomains; `*` for any)."""
    from gateway.env import env_list

    first = (env_list("ALLOWED_HOSTS") or ["localhost"])[0]
    return "localhost" if first == "*" else first.lstrip(".")


def http_healthy() -> bool:
    url = f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}/health"
    request = urllib.request.Request(url, headers={"Host": probe_host()})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:  # refused, timed out, or an HTTP error status
        return False


def worker_pids() -> list[int]:
    """The `run_worker` processes running here (in a container: in the container)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"run_worker" in cmdline.read_bytes().split(b"\0"):
                pids.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return pids


def worker_healthy() -> bool:
    """`manage.py worker_alive`, the same probe Kubernetes runs."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway.settings")
    import django
    from django.core.management import CommandError, call_command

    django.setup()
    try:
        call_command("worker_alive")
    except CommandError as error:
        print(error, file=sys.stderr)
        return False
    return True


def main(argv: list[str]) -> int:
    role = argv[1] if len(argv) > 1 else ("worker" if worker_pids() else "http")
    checks = {"http": http_healthy, "worker": worker_healthy}
    if role not in checks:
        print(f"usage: healthcheck.py [{'|'.join(checks)}]", file=sys.stderr)
        return 2
    return 0 if checks[role]() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
