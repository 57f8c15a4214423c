"""The alerts (deploy/prometheus/alerts.yaml) and the dashboard (deploy/grafana/gateway.json):
promtool checks the rules and runs their unit tests; every metric their expressions name is one
/metrics exposes, under that name; and promtool finds nothing to lint in /metrics itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import ROOT

RULES = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "gateway.json"
# Debian's `prometheus` package (scripts/run_tests.py installs it).
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# What in a PromQL expression is not a metric name: aggregations, keywords (a function is told by
# the parenthesis after it).
NOT_METRICS = {
    *("sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk"),
    *("quantile", "count_values", "by", "without", "on", "ignoring", "group_left"),
    *("group_right", "and", "or", "unless", "bool", "offset", "inf", "nan"),
}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    assert shutil.which(PROMTOOL), "promtool is missing: apt-get install prometheus"
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES, input=stdin, capture_output=True, text=True, timeout=120
    )


def rules() -> list[dict]:
    groups = yaml.safe_load((RULES / "alerts.yaml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_panels() -> list[dict]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [p for panel in panels for p in [panel, *panel.get("panels", [])] if p["type"] != "row"]


def expressions() -> dict[str, str]:
    """Every PromQL expression of the rules and the dashboard, by where it is."""
    found = {f"alert {rule['alert']}": rule["expr"] for rule in rules()}
    for panel in dashboard_panels():
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # label values may hold anything
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges ([5m], [$__rate_interval])
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    tokens = re.finditer(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr)
    return {t[1] for t in tokens if not t[2] and t[1].lower() not in NOT_METRICS}


def test_the_name_parser_finds_metrics_and_only_them() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, view) (rate(django_x_bucket{view=~"a(b)"}[5m])))'
        " / max without (instance) (gateway_y) and on (worker) gateway_z > bool 1e3"
    )
    assert metric_names(expr) == {"django_x_bucket", "gateway_y", "gateway_z"}


def test_the_rules_are_valid_and_pass_their_unit_tests() -> None:
    checked = promtool("check", "rules", "alerts.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load((RULES / "alerts.test.yaml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']} never fires in a test"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']} always fires"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_dashboard_asks_for_its_prometheus_and_every_panel_uses_it() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 39
    [variable] = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    panels = dashboard_panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        for source in [panel["datasource"], *(t["datasource"] for t in panel["targets"])]:
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_the_dashboard_expressions_are_valid_promql(tmp_path) -> None:
    """Checked by promtool as recording rules, with Grafana's interval variable filled in."""
    panels = [e for where, e in expressions().items() if where.startswith("panel")]
    rule_file = tmp_path / "dashboard.yaml"
    recorded = [
        {"record": f"dashboard:expression_{n}", "expr": e.replace("$__rate_interval", "1m")}
        for n, e in enumerate(panels)
    ]
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    checked = promtool("check", "rules", str(rule_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def exposed(client: Client, make_session, settings) -> str:
    """/metrics as a scrape sees it with every family holding samples: a live worker with sessions
    and counters, a silent connected session, a pending delivery behind an open circuit, and
    requests served."""
    from django.db import transaction

    from gateway.outbox.breaker import breaker_for
    from sessions_app.events import outbox_event
    from workers.models import Worker

    settings.BACKEND_URL = "http://127.0.0.1:9"
    worker = Worker.objects.create(name="w1")
    session = make_session(status="connected", worker=worker)
    make_session(status="scan_qr", worker=worker)
    worker.stats = {
        "last_event_at": {str(session.pk): time.time() - 60},
        "counters": {"failovers": 1, "messages_sent": 2, "send_latency_seconds": 3.0},
    }
    worker.save()
    with transaction.atomic():
        outbox_event(session, "test.event", "/hook")
    breaker = breaker_for(settings.BACKEND_URL)
    for _ in range(settings.WEBHOOK_BREAKER_FAILURES):
        breaker.failure()
    assert client.get("/health").status_code == 200
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    yield response.content.decode()
    breaker.success()


def test_every_metric_the_dashboard_and_the_alerts_name_is_exposed(exposed: str) -> None:
    samples = {
        sample.name
        for family in text_string_to_metric_families(exposed)
        for sample in family.samples
    }
    named = {where: metric_names(expr) for where, expr in expressions().items()}
    assert all(named.values()), [where for where, names in named.items() if not names]
    missing = {where: names - samples for where, names in named.items() if names - samples}
    assert not missing, missing
    assert 'gateway_webhook_circuit_open{target="http://127.0.0.1:9"} 1.0' in exposed


def test_promtool_finds_nothing_to_lint_in_the_metrics(exposed: str) -> None:
    linted = promtool("check", "metrics", stdin=exposed)
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, "")
