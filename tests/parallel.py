"""Loaded before Django's settings (`-p tests.parallel`, pyproject.toml): under pytest-xdist each
worker gets its own Redis database, as pytest-django gives each its own PostgreSQL database
(`test_gateway_gw0`, `test_gateway_gw1`…). Tests clear the cache between them; one worker's clear
must not empty what another's test is using. Worker N uses REDIS_URL's database number minus N.
"""

from __future__ import annotations

import os

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_url = os.environ.get("REDIS_URL", "")
if _worker.startswith("gw") and _url.startswith("redis"):
    _base, _, _db = _url.rpartition("/")
    _number = int(_db or 0) - int(_worker[2:])
    if _number < 0:
        raise SystemExit(f"REDIS_URL {_url}: too few Redis databases below it for {_worker}")
    os.environ["REDIS_URL"] = f"{_base}/{_number}"
