"""Memory and threads of the engines: `python bench/engines.py` (a few minutes).

- sandbox: 1, 50 and 500 linked sessions in one process (the worker's own);
- neonize: 1, 20 and 100 sessions started offline (WhatsApp is out of reach here, so each one is
  a live client retrying its connection) in engine hosts of 20 sessions each; memory is the worker
  plus all its hosts.

Each row runs in a fresh process so that rows do not share memory; a neonize row runs in a
network namespace with only loopback, so its dials of web.whatsapp.com (and their DNS queries)
never leave the machine (root: CI runs as root). Prints a Markdown table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import netns  # noqa: E402


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS in MiB, threads) of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


async def sandbox_row(count: int) -> dict:
    from workers.engines.base import Connected, QrCode
    from workers.engines.sandbox import SandboxEngine, SandboxWorld

    before, _ = proc_status(os.getpid())
    with tempfile.TemporaryDirectory() as tmp:
        engine = SandboxEngine(SandboxWorld(Path(tmp) / "world"), worker="bench")
        started = time.monotonic()
        for number in range(count):
            await engine.start(f"s{number}", Path(tmp) / f"s{number}")
        qr = 0
        async for event in engine.events():
            qr += isinstance(event, QrCode)
            if qr == count:
                break
        for number in range(count):
            await engine.scan(f"s{number}", f"+1555{number:07d}")
        connected = 0
        async for event in engine.events():
            connected += isinstance(event, Connected)
            if connected == count:
                break
        seconds = time.monotonic() - started
        rss, threads = proc_status(os.getpid())
        await engine.close()
    return {
        "engine": "sandbox",
        "sessions": count,
        "processes": 1,
        "rss_mib": rss,
        "added_mib": rss - before,
        "threads": threads,
        "seconds": seconds,
    }


async def neonize_row(count: int) -> dict:
    from workers.engines.base import Disconnected
    from workers.engines.host.client import HostedEngine

    before, _ = proc_status(os.getpid())
    with tempfile.TemporaryDirectory() as tmp:
        engine = HostedEngine(
            "neonize",
            sessions_per_host=20,
            call_timeout=120,
            env={"NEONIZE_RETRY_FIRST": "5", "NEONIZE_RETRY_MAX": "60", "LOG_LEVEL": "ERROR"},
        )
        started = time.monotonic()
        await asyncio.gather(*(engine.start(f"s{n}", Path(tmp) / f"s{n}") for n in range(count)))
        failed: set[str] = set()
        async for event in engine.events():  # every session has tried (and failed) to connect
            if isinstance(event, Disconnected):
                failed.add(event.session_id)
            if len(failed) == count:
                break
        seconds = time.monotonic() - started
        worker_rss, worker_threads = proc_status(os.getpid())
        hosts = [proc_status(pid) for pid in engine.host_pids()]
        await engine.close()
    return {
        "engine": "neonize (offline)",
        "sessions": count,
        "processes": 1 + len(hosts),
        "rss_mib": worker_rss + sum(h[0] for h in hosts),
        "added_mib": worker_rss - before + sum(h[0] for h in hosts),
        "threads": worker_threads + sum(h[1] for h in hosts),
        "seconds": seconds,
    }


ROWS = [
    ("sandbox", 1),
    ("sandbox", 50),
    ("sandbox", 500),
    ("neonize", 1),
    ("neonize", 20),
    ("neonize", 100),
]


def main() -> None:
    if len(sys.argv) == 3:  # one row, in this fresh process
        kind, count = sys.argv[1], int(sys.argv[2])
        row = asyncio.run(sandbox_row(count) if kind == "sandbox" else neonize_row(count))
        print(json.dumps(row))
        return
    print(
        "| engine | sessions | processes | RSS total (MiB) | added by sessions (MiB) "
        "| threads | start time (s) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind, count in ROWS:
        with contextlib.ExitStack() as stack:
            command = [sys.executable, __file__, kind, str(count)]
            if kind == "neonize":
                command = netns.in_namespace(stack.enter_context(netns.namespace()), *command)
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode or not lines:
            print(f"| {kind} | {count} | failed: {result.stderr.strip()[-200:]} |||||")
            continue
        row = json.loads(lines[-1])
        print(
            f"| {row['engine']} | {row['sessions']} | {row['processes']} | "
            f"{row['rss_mib']:.0f} | {row['added_mib']:.0f} | {row['threads']} | "
            f"{row['seconds']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
