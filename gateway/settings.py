"""Settings for the gateway, read from the environment.

With no environment at all this is the embedded mode: SQLite, an in-memory channel layer, a
local-memory cache and file-system storage under `var/`, so that `make run` works on a fresh
machine. Production is switched on piece by piece: `DATABASE_URL` (PostgreSQL), `REDIS_URL` (cache,
channel layer, rate limits), `S3_BUCKET` (media and auth snapshots in S3-compatible storage). A
PostgreSQL `DATABASE_URL` is what makes an installation "production" for the safety checks in
`gateway/checks.py`.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from corsheaders.defaults import default_headers as default_cors_headers
from django.core.exceptions import ImproperlyConfigured

from gateway.core.logging import log_config
from gateway.env import (
    env_bool,
    env_choice,
    env_int,
    env_json_object,
    env_key32,
    env_list,
    env_origins,
    env_rate,
    env_rsa_public_key,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GATEWAY_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VERSION = "0.1.0"

# Files the gateway writes (the embedded database, media, engine stores with the keys to WhatsApp
# accounts, snapshots, secrets) are its own user's alone: 0600 files in 0700 directories. The
# umask covers what SQLite and neonize create; Django's storage would chmod uploads to 0644.
os.umask(0o077)
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
try:
    VAR_DIR.chmod(0o700)  # what an older version left readable inside is out of reach now
except OSError:  # missing yet (made below, 0700), or another user's: gateway.W006 says so
    pass

# --- Mode ---------------------------------------------------------------------------------------

DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"), secret=True)
PRODUCTION = DATABASE_URL.startswith(("postgres://", "postgresql://"))
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"), secret=True)
_redis_db = urlsplit(REDIS_URL).path.strip("/") if REDIS_URL.startswith("redis") else ""
if _redis_db and not _redis_db.isdigit():
    raise ImproperlyConfigured(
        "Environment variable REDIS_URL: expected a database number as its path "
        "(redis://host:6379/0)."
    )
S3_BUCKET = env_str("S3_BUCKET")


def _local_secret(name: str, nbytes: int) -> str:
    """A random secret kept in `var/` so an embedded install keeps it across restarts.

    Production never gets here: there the secret must come from the environment.
    """
    path = VAR_DIR / name
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    path.touch(mode=0o600)
    path.write_text(value)
    return value


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "Environment variable SECRET_KEY: required when DATABASE_URL points at PostgreSQL "
            "(generate one with `python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
        )
    SECRET_KEY = _local_secret("secret_key", 50)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")
CORS_ALLOWED_ORIGINS = env_origins("CORS_ALLOWED_ORIGINS")
PUBLIC_URL = env_url("PUBLIC_URL").rstrip("/")
CORS_ALLOW_HEADERS = (*default_cors_headers, "x-api-key", "idempotency-key", "x-request-id")
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After"]

# --- Applications -------------------------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "channels",
    "axes",
    "gateway.core",
    "gateway",
    "workers",
    "sessions_app",
    "messaging",
    "groups",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "gateway.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "gateway.core.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "gateway.urls"
WSGI_APPLICATION = "gateway.wsgi.application"
ASGI_APPLICATION = "gateway.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------

if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "db.sqlite3")}
if _db["ENGINE"] == "django.db.backends.postgresql":
    _db["ENGINE"] = "django_prometheus.db.backends.postgresql"
    # A dead server must fail a request or a health check fast, not hang it.
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
elif _db["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker share one process in the embedded mode; WAL and a busy timeout keep SQLite's
    # single writer from failing readers with "database is locked".
    # IMMEDIATE: a transaction takes the write lock when it begins, so one that reads and then
    # writes waits for the lock instead of failing with "database is locked".
    _db.setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and channel layer --------------------------------------------------------------------

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gw",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # Reads must outlast channels_redis's 5 s blocking receive (BZPOPMIN).
                "hosts": [
                    {"address": REDIS_URL, "socket_connect_timeout": 2, "socket_timeout": 15}
                ],
                "prefix": "gw:asgi",
                # A worker has one channel for all its sandbox controls; bursts (linking hundreds
                # of sessions) must not overflow it (the default is 100 and drops the rest).
                "capacity": 5000,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 5000}}
    }

# --- Storage ------------------------------------------------------------------------------------

S3_ENDPOINT_URL = env_url("S3_ENDPOINT_URL")
S3_REGION = env_str("S3_REGION", "us-east-1")
S3_ACCESS_KEY_ID = env_str("S3_ACCESS_KEY_ID")
S3_SECRET_ACCESS_KEY = env_str("S3_SECRET_ACCESS_KEY")
if S3_ENDPOINT_URL and not S3_BUCKET:
    raise ImproperlyConfigured(
        "Environment variable S3_BUCKET: required when S3_ENDPOINT_URL is set."
    )

if S3_BUCKET:
    from botocore.config import Config as _BotoConfig

    _s3 = {
        "bucket_name": S3_BUCKET,
        "endpoint_url": S3_ENDPOINT_URL or None,
        "region_name": S3_REGION,
        "access_key": S3_ACCESS_KEY_ID or None,
        "secret_key": S3_SECRET_ACCESS_KEY or None,
        "default_acl": None,
        "querystring_auth": True,
        "file_overwrite": False,
        # A storage outage must fail a request or a health check in seconds, not minutes.
        "client_config": _BotoConfig(
            s3={"addressing_style": "path" if S3_ENDPOINT_URL else "auto"},
            signature_version="s3v4",
            connect_timeout=3,
            read_timeout=10,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    }
    _s3_backend = "storages.backends.s3.S3Storage"
    # Stored as downloads, with nothing guessed from the name (`x.tar.gz` is not gzip-encoded):
    # a temporary URL says how each file is served (messaging.services.media.response_headers).
    _media_objects = {"ContentType": "application/octet-stream", "ContentDisposition": "attachment"}
    _media = {
        "BACKEND": _s3_backend,
        "OPTIONS": {**_s3, "location": "media", "object_parameters": _media_objects},
    }
    # Auth snapshots are the keys to someone's WhatsApp account: never public, never overwritten.
    _sessions = {"BACKEND": _s3_backend, "OPTIONS": {**_s3, "location": "sessions"}}
else:
    _fs = "django.core.files.storage.FileSystemStorage"
    _media = {
        "BACKEND": _fs,
        "OPTIONS": {"location": str(VAR_DIR / "media"), "base_url": "/media/"},
    }
    _sessions = {
        "BACKEND": _fs,
        "OPTIONS": {
            "location": str(VAR_DIR / "sessions"),
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    }

STORAGES = {
    "default": _media,
    "sessions": _sessions,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"  # `collectstatic` fills it for production web servers
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Without a collected STATIC_ROOT (a fresh checkout), WhiteNoise serves from the apps' own folders.
WHITENOISE_USE_FINDERS = True

# Request bodies: uploads above this go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_JSON_BYTES", 2 * 1024 * 1024, minimum=1024)
# A form's fields: a message's up to 1,024 mentions (a full group) repeat the `mentions` field.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1100

# --- Auth and security --------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Admin logins (django-axes): after ADMIN_LOGIN_FAILURE_LIMIT wrong passwords for one user from
# one address, that pair is locked out for ADMIN_LOGIN_LOCKOUT_MINUTES (429, logged); a success
# clears the count. Per pair, so a stranger cannot lock an operator out from elsewhere (behind a
# proxy only with TRUSTED_PROXY_COUNT set: otherwise everyone shares the proxy's address).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_COOLOFF_TIME = timedelta(
    minutes=env_int("ADMIN_LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "admin/lockout.html"
AXES_CLIENT_IP_CALLABLE = "gateway.core.middleware.client_ip"
# Reverse proxies in front of the gateway that append the client's address to X-Forwarded-For:
# with 0 (no proxy), the connection's own address is the client's and the header is ignored.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0, maximum=10)

X_FRAME_OPTIONS = "DENY"
# Who may embed the link page (CSP frame-ancestors): the gateway itself and these origins;
# by default the browser origins trusted for the API.
LINK_FRAME_ANCESTORS = ["'self'", *(env_origins("LINK_FRAME_ANCESTORS") or CORS_ALLOWED_ORIGINS)]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
# Probes and scrapers reach these over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health(/ready)?$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Preloading is a commitment for the whole domain that only its owner can make; it is opt-in.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# --- REST API -----------------------------------------------------------------------------------

# Seconds a process trusts an API key it verified (looked up by a hash of the presented key) before
# it reads the key from the database again: revoking, expiring, deleting a key or changing its
# scopes or sessions takes effect within this long. 0: every request reads the database.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5, minimum=0, maximum=300)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "gateway.core.auth.ApiKeyAuthentication",
        "gateway.core.auth.BackendJWTAuthentication",
        "gateway.core.auth.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["gateway.core.scopes.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["gateway.core.throttling.ClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "client": env_rate("API_THROTTLE_RATE", "6000/min"),
        # Bulk number checks get numbers banned: a low rate of its own, per client.
        "check_numbers": env_rate("CHECK_NUMBERS_RATE", "10/min"),
    },
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON everywhere; sending a message also takes multipart (a file), nothing takes forms.
    "DEFAULT_PARSER_CLASSES": ["gateway.core.parsers.SafeJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "gateway.core.pagination.CreatedCursorPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "gateway.core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "WhatsApp Gateway API",
    "DESCRIPTION": (
        "Link WhatsApp numbers, send and receive messages, and follow every status change. "
        "Authenticate with `Authorization: Api-Key <key>`, `X-API-Key: <key>` or a bearer JWT "
        'signed by the backend. Every error is `{"error": {"code", "message", "details"}}`.\n\n'
        "This schema is enforced: a request that does not match it (types, required fields, "
        "lengths, patterns, enums) is a 400 `validation_error` naming each field; one that "
        "matches but whose content cannot be accepted (a number that cannot exist, a field the "
        "message's type does not take, a URL the gateway will not fetch) is a 422. Request "
        "bodies are JSON, except a message with a file (multipart). No text may contain NUL "
        "(U+0000) or unpaired surrogates (400)."
    ),
    "VERSION": VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": "sessions_app.states.SessionStatus",
        "WorkerStatusEnum": "workers.states.WorkerStatus",
        "MessageTypeEnum": "messaging.states.MessageType",
        "MessageStatusEnum": "messaging.states.MessageStatus",
        "MessageDirectionEnum": "messaging.states.Direction",
        "SandboxMessageTypeEnum": "sessions_app.sandbox.SANDBOX_RECEIVE_TYPES",
        "SandboxActionEnum": "sessions_app.sandbox.ACTIONS",
        "BlockActionEnum": ["block", "unblock"],
        "UsageGranularityEnum": "gateway.core.usage.GRANULARITIES",
    },
}

BACKEND_JWT_SECRET = env_str("BACKEND_JWT_SECRET")
if BACKEND_JWT_SECRET and len(BACKEND_JWT_SECRET.encode()) < 32:
    raise ImproperlyConfigured(
        "Environment variable BACKEND_JWT_SECRET: expected at least 32 bytes (an HS256 key should "
        "be as long as its hash)."
    )
BACKEND_JWT_PUBLIC_KEY = env_rsa_public_key("BACKEND_JWT_PUBLIC_KEY")
BACKEND_JWT_AUDIENCE = env_str("BACKEND_JWT_AUDIENCE")
BACKEND_JWT_ISSUER = env_str("BACKEND_JWT_ISSUER")

METRICS_TOKEN = env_str("METRICS_TOKEN")
# How long a WebSocket token stays valid: minutes, so the link page can reconnect with it.
WS_TOKEN_SECONDS = env_int("WS_TOKEN_SECONDS", 900, minimum=30, maximum=86400)
# How long the API waits for the worker running a session to answer (pairing codes, number checks,
# mark read) before it says 503.
WORKER_CALL_SECONDS = env_int("WORKER_CALL_SECONDS", 15, minimum=1, maximum=120)
# Pairing codes per session and per phone number (API, link page and admin alike): asking
# WhatsApp for codes in bulk gets numbers banned.
PAIR_CODE_RATE = env_rate("PAIR_CODE_RATE", "5/h")
# Per session (WhatsApp judges the number): creating groups and adding participants in bulk get
# numbers banned; "off" lifts a limit.
GROUP_CREATE_RATE = env_rate("GROUP_CREATE_RATE", "10/h")
GROUP_ADD_RATE = env_rate("GROUP_ADD_RATE", "30/h")
CONTACT_LOOKUP_RATE = env_rate("CONTACT_LOOKUP_RATE", "30/min")
# Group, profile and contact pictures, as uploaded (they are made 640 px JPEGs for WhatsApp).
PICTURE_MAX_BYTES = env_int("PICTURE_MAX_BYTES", 5 * 1024 * 1024, minimum=1024)
# Crash tests only (gateway/core/failpoints.py): "name=exit,…"; off unless set.
GATEWAY_FAILPOINTS = dict(
    item.partition("=")[::2] for item in env_list("GATEWAY_FAILPOINTS") if item.endswith("=exit")
)
if len(GATEWAY_FAILPOINTS) != len(env_list("GATEWAY_FAILPOINTS")):
    raise ImproperlyConfigured("Environment variable GATEWAY_FAILPOINTS: expected name=exit,…")

# --- Gateway behaviour --------------------------------------------------------------------------

BACKEND_URL = env_url("BACKEND_URL").rstrip("/")
BACKEND_TOKEN = env_str("BACKEND_TOKEN")
BACKEND_HEARTBEAT_SECONDS = env_int("BACKEND_HEARTBEAT_SECONDS", 30, minimum=1, maximum=3600)
WEBHOOK_SECRET = env_str("WEBHOOK_SECRET")
# During a rotation: the old secret, so every webhook carries a signature for each.
WEBHOOK_SECRET_PREVIOUS = env_str("WEBHOOK_SECRET_PREVIOUS")
for _name, _secret in [
    ("WEBHOOK_SECRET", WEBHOOK_SECRET),
    ("WEBHOOK_SECRET_PREVIOUS", WEBHOOK_SECRET_PREVIOUS),
]:
    if _secret:
        from standardwebhooks.webhooks import Webhook as _Webhook

        try:
            _Webhook(_secret)
        except Exception:  # noqa: BLE001 - whatever the library refuses
            raise ImproperlyConfigured(
                f"{_name} must be whsec_ and base64: whsec_$(openssl rand -base64 32)."
            ) from None
WEBHOOK_MAX_AGE = env_int("WEBHOOK_MAX_AGE", 24 * 3600, minimum=60)
# A webhook rejected (a 4xx other than 408, 409, 425, 429) on this many attempts is `dead` at
# once: it would hold up its session's later events until WEBHOOK_MAX_AGE. 0: retried like any
# failure.
WEBHOOK_REJECTED_ATTEMPTS = env_int("WEBHOOK_REJECTED_ATTEMPTS", 3, minimum=0)
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1, maximum=120)
# Webhook requests in flight at once per dispatcher (across sessions; one at a time per session).
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", 8, minimum=1, maximum=256)
# Every worker delivers webhooks too (a dispatcher of its own); off, it leaves them to the
# `deliver_webhooks` processes, which then must run (a busy worker's CPU goes to its sessions).
WORKER_DELIVERS_WEBHOOKS = env_bool("WORKER_DELIVERS_WEBHOOKS", True)
WEBHOOK_BREAKER_FAILURES = env_int("WEBHOOK_BREAKER_FAILURES", 5, minimum=1)
WEBHOOK_BREAKER_COOL_DOWN_SECONDS = env_int("WEBHOOK_BREAKER_COOL_DOWN_SECONDS", 30, minimum=1)
# Networks webhook and broker endpoints made through the API may reach although they are not
# public (an internal backend). The built-in BACKEND_URL is the operator's own and never checked.
WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS")
# How long the event log keeps events for `/ws/events/?after=…` to resume from.
EVENT_RETENTION_HOURS = env_int("EVENT_RETENTION_HOURS", 72, minimum=1, maximum=24 * 90)
# Broker endpoints (gateway/outbox/brokers.py): a publish's whole time until the broker's
# acknowledgement (connecting: at most 3 s), and the duplicate window of the NATS JetStream
# streams the gateway creates (a redelivery of the same event id within it is dropped).
BROKER_TIMEOUT_SECONDS = env_int("BROKER_TIMEOUT_SECONDS", 10, minimum=1, maximum=120)
BROKER_DUPLICATE_WINDOW_SECONDS = env_int(
    "BROKER_DUPLICATE_WINDOW_SECONDS", 900, minimum=10, maximum=7 * 24 * 3600
)
SESSION_ENCRYPTION_KEY = env_key32("SESSION_ENCRYPTION_KEY")
if SESSION_ENCRYPTION_KEY is None and not PRODUCTION:
    import base64 as _b64

    SESSION_ENCRYPTION_KEY = _b64.urlsafe_b64decode(
        _local_secret("session_encryption_key", 32) + "=="
    )[:32]
DEFAULT_ENGINE = env_choice("DEFAULT_ENGINE", ("neonize", "sandbox"), "neonize")
SANDBOX_ENABLED = env_bool("SANDBOX_ENABLED", not PRODUCTION)
# The sandbox's clock (workers.engines.sandbox.SandboxTimings), as JSON; tests and demos shorten it,
# e.g. {"qr_first": 5, "qr_next": 5, "delivered_after": 0.2, "read_after": 0.5}.
SANDBOX_TIMINGS = env_json_object("SANDBOX_TIMINGS")
# The simulated WhatsApp servers' state, shared by every process on the machine that runs sandbox
# sessions (by default inside GATEWAY_VAR_DIR).
SANDBOX_DIR = Path(env_str("SANDBOX_DIR", str(VAR_DIR / "sandbox")))
# A connected session's auth state is snapshotted at most this often when it changed (and always
# after linking and on a graceful stop).
SNAPSHOT_INTERVAL_SECONDS = env_int("SNAPSHOT_INTERVAL_SECONDS", 60, minimum=5, maximum=3600)
# A connected session with no event for this long is probed (one round trip to WhatsApp) and
# restarted when the probe gets no answer: a zombie shown connected while nothing arrives.
SESSION_SILENCE_SECONDS = env_int("SESSION_SILENCE_SECONDS", 900, minimum=1, maximum=86400)
# neonize runs in engine host processes of at most this many sessions each (workers.engines.host).
NEONIZE_SESSIONS_PER_HOST = env_int("NEONIZE_SESSIONS_PER_HOST", 20, minimum=1, maximum=500)
WORKER_LEASE_SECONDS = env_int("WORKER_LEASE_SECONDS", 30, minimum=6, maximum=3600)

# --- Messages -----------------------------------------------------------------------------------

_MB = 1024 * 1024
MEDIA_MAX_IMAGE_BYTES = env_int("MEDIA_MAX_IMAGE_BYTES", 5 * _MB, minimum=1024)
MEDIA_MAX_VIDEO_BYTES = env_int("MEDIA_MAX_VIDEO_BYTES", 16 * _MB, minimum=1024)
MEDIA_MAX_AUDIO_BYTES = env_int("MEDIA_MAX_AUDIO_BYTES", 16 * _MB, minimum=1024)
MEDIA_MAX_DOCUMENT_BYTES = env_int("MEDIA_MAX_DOCUMENT_BYTES", 100 * _MB, minimum=1024)
MEDIA_FETCH_TIMEOUT_SECONDS = env_int("MEDIA_FETCH_TIMEOUT_SECONDS", 30, minimum=1, maximum=600)
# Networks `media.url` may reach although they are not public (e.g. an internal file server).
MEDIA_FETCH_ALLOWED_NETWORKS = env_list("MEDIA_FETCH_ALLOWED_NETWORKS")
# The history WhatsApp sends a newly linked device: `off` (none kept), `recent` (the last
# HISTORY_RECENT_DAYS), `full` (all of it).
HISTORY_SYNC = env_choice("HISTORY_SYNC", ("off", "recent", "full"), "recent")
HISTORY_RECENT_DAYS = env_int("HISTORY_RECENT_DAYS", 30, minimum=1, maximum=3650)
# A message its sender deleted for everyone: `keep` its text and media (marked revoked), or `erase`
# them.
REVOKED_CONTENT = env_choice("REVOKED_CONTENT", ("keep", "erase"), "keep")
# How long a temporary media URL (message detail, webhooks) stays valid.
MEDIA_URL_SECONDS = env_int("MEDIA_URL_SECONDS", 24 * 3600, minimum=60, maximum=7 * 24 * 3600)
# Pacing per session, to keep numbers from being banned: a random pause of MIN..MAX seconds
# between two messages, and at most SEND_MAX_PER_MINUTE a minute (0: no cap); shared by every
# process through the cache. SEND_TYPING shows "typing…" before each text message.
SEND_INTERVAL_MIN_SECONDS = env_int("SEND_INTERVAL_MIN_SECONDS", 2, minimum=0, maximum=600)
SEND_INTERVAL_MAX_SECONDS = env_int(
    "SEND_INTERVAL_MAX_SECONDS", 5, minimum=SEND_INTERVAL_MIN_SECONDS, maximum=600
)
SEND_MAX_PER_MINUTE = env_int("SEND_MAX_PER_MINUTE", 30, minimum=0)
SEND_TYPING = env_bool("SEND_TYPING", False)
# Transient send failures are retried (same message id) this many times, with backoff.
SEND_MAX_ATTEMPTS = env_int("SEND_MAX_ATTEMPTS", 5, minimum=1, maximum=50)

# --- Internationalisation -----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging: one JSON object per line, with the request id -------------------------------------

LOG_LEVEL = env_choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
LOGGING = {
    **log_config(LOG_LEVEL),
    "loggers": {
        # Our request log line and our exception log (gateway.core.middleware and .errors) replace
        # Django's own lines, which would say everything twice.
        "django.request": {"level": "CRITICAL"},
        "django.server": {"level": "WARNING"},
        # uvicorn's lines would repeat ours, and its WebSocket lines carry query strings (tokens).
        "uvicorn": {"level": "WARNING"},
    },
}
