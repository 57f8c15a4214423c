"""The fleet's figures on /metrics: per worker (its row, its heartbeat's counters) and linking."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from gateway.core.usage import tally, usage_add
from gateway.metrics import fleet_figures
from sessions_app.models import Session
from workers.models import Worker

pytestmark = pytest.mark.django_db

COUNTERS = {
    "failovers": 2,
    "engine_host_restarts": 1,
    "snapshot_failures": 3,
    "messages_sent": 5,
    "messages_delivered": 4,
    "messages_read": 2,
    "messages_failed": 1,
    "messages_received": 7,
    "send_latency_seconds": 12.5,
    "send_latency_count": 5,
}


def scrape(client: Client) -> dict[tuple[str, frozenset], float]:
    """GET /metrics from loopback: {(sample name, its labels): value}."""
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def heartbeat(worker: Worker, seconds_ago: float) -> None:
    at = timezone.now() - timedelta(seconds=seconds_ago)
    Worker.objects.filter(pk=worker.pk).update(last_heartbeat_at=at)


def test_each_live_worker_shows_its_sessions_capacity_heartbeat_and_counters(
    client: Client, make_session
) -> None:
    w1 = Worker.objects.create(name="w1", capacity=50, stats={"counters": COUNTERS})
    heartbeat(w1, 20)
    Worker.objects.create(name="w2", capacity=10)  # registered, no heartbeat stats yet
    dead = Worker.objects.create(
        name="old", status="dead", stopped_at=timezone.now(), stats={"counters": COUNTERS}
    )
    for _ in range(2):
        make_session(status="connected", worker=w1)
    make_session(status="scan_qr", worker=w1)
    make_session(status="connected", worker=dead)  # its lease ran out: nobody's now
    make_session(status="stopped")

    samples = scrape(client)

    assert value(samples, "gateway_worker_sessions", worker="w1", status="connected") == 2
    assert value(samples, "gateway_worker_sessions", worker="w1", status="scan_qr") == 1
    assert value(samples, "gateway_worker_sessions", worker="w2", status="connected") == 0
    assert value(samples, "gateway_sessions", status="connected") == 3  # the totals stay whole
    assert value(samples, "gateway_worker_capacity", worker="w1") == 50
    assert value(samples, "gateway_worker_capacity", worker="w2") == 10
    assert 20 <= value(samples, "gateway_worker_heartbeat_age_seconds", worker="w1") < 60
    assert value(samples, "gateway_worker_heartbeat_age_seconds", worker="w2") < 20
    assert value(samples, "gateway_failovers_total", worker="w1") == 2
    assert value(samples, "gateway_engine_host_restarts_total", worker="w1") == 1
    assert value(samples, "gateway_snapshot_failures_total", worker="w1") == 3
    assert value(samples, "gateway_failovers_total", worker="w2") == 0
    for direction, outcome, count in [
        ("out", "sent", 5),
        ("out", "delivered", 4),
        ("out", "read", 2),
        ("out", "failed", 1),
        ("in", "received", 7),
    ]:
        labels = {"worker": "w1", "direction": direction, "outcome": outcome}
        assert value(samples, "gateway_messages_total", **labels) == count
    assert value(samples, "gateway_message_send_latency_seconds_sum", worker="w1") == 12.5
    assert value(samples, "gateway_message_send_latency_seconds_count", worker="w1") == 5
    assert not [key for key in samples if ("worker", "old") in key[1]]  # dead: not shown

    # The same numbers as plain data, for the admin home (which shows the dead one too).
    workers = {entry["worker"]: entry for entry in fleet_figures()["worker_list"]}
    assert set(workers) == {"w1", "w2", "old"} and workers["old"]["status"] == "dead"
    assert workers["w1"]["sessions_by_status"]["connected"] == 2
    assert (workers["w1"]["sessions"], workers["w1"]["capacity"]) == (3, 50)
    assert workers["w1"]["counters"] == COUNTERS and workers["w2"]["counters"] == {}
    assert workers["w1"]["id"] == str(w1.pk) and workers["w2"]["status"] == "active"


def test_two_live_workers_of_one_name_are_told_apart(client: Client) -> None:
    first = Worker.objects.create(name="host-1")
    second = Worker.objects.create(name="host-1", status="draining")

    samples = scrape(client)

    ages = {
        dict(labels)["worker"] for name, labels in samples if name.endswith("heartbeat_age_seconds")
    }
    assert ages == {f"host-1 ({str(first.pk)[:8]})", f"host-1 ({str(second.pk)[:8]})"}


def test_the_longest_linking_session_shows_its_age(client: Client, make_session) -> None:
    assert value(scrape(client), "gateway_sessions_linking_oldest_seconds") == 0
    now = timezone.now()
    make_session(status="scan_qr", status_changed_at=now - timedelta(seconds=700))
    make_session(status="pairing", status_changed_at=now - timedelta(seconds=30))
    make_session(status="connected", status_changed_at=now - timedelta(days=3))

    age = value(scrape(client), "gateway_sessions_linking_oldest_seconds")

    assert 700 <= age < 760


def test_the_process_tally_counts_what_was_committed(django_capture_on_commit_callbacks) -> None:
    session = Session.objects.create(engine="sandbox")
    before = tally.figures()

    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            usage_add(session.pk, kind="text", messages_sent=2, messages_received=1)
        with pytest.raises(RuntimeError), transaction.atomic():
            usage_add(session.pk, kind="text", messages_sent=5)
            raise RuntimeError("rolled back: counts nothing")

    after = tally.figures()
    assert after.get("messages_sent", 0) - before.get("messages_sent", 0) == 2
    assert after.get("messages_received", 0) - before.get("messages_received", 0) == 1


def test_silent_sessions_still_show_their_age(client: Client, make_session) -> None:
    worker = Worker.objects.create(name="w")
    session = make_session(status="connected", worker=worker)
    worker.stats = {"last_event_at": {str(session.pk): time.time() - 300}}
    worker.save()

    age = value(
        scrape(client), "gateway_session_last_event_age_seconds", session_id=str(session.pk)
    )

    assert 300 <= age < 360


def test_with_gunicorns_multiprocess_files_the_fleet_figures_stay(
    client: Client, make_session, monkeypatch, tmp_path
) -> None:
    """django-prometheus's own view serves only the processes' files in this mode; ours adds the
    fleet's figures, which come from the database."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    make_session()
    samples = scrape(client)
    assert samples[("gateway_sessions", frozenset({("status", "stopped")}))] >= 1
