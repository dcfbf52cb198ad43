"""Prometheus metrics of the API (`GET /metrics`, text format).

Requests and their latency per endpoint (the route's pattern, and the method from a fixed set,
so the number of series stays bounded whatever clients send), and what the system knows when
scraped: the live model (`risk_model_info{version="v0003"} 1`) and its F1, the time, outcome
and duration of the newest fullprocess.py run, runs by outcome, failures in a row and the last
success, drift found, alerts not delivered, the number of drifted features, the current clients
and the expected leavers. Label values have no spaces (`no_new_data`), so that alert rules
(`clientrisk/api/prometheus/rules.yml`) match them plainly. The state comes from the
dashboard's facts, read again only when the files they come from change.

Under gunicorn with several workers, each worker counts its own requests; with
PROMETHEUS_MULTIPROC_DIR set (gunicorn.conf.py sets it), the workers share their counts through
files there and any worker answers a scrape with the sum.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from clientrisk.timestamps import parse_utc

# The `_created` series of every counter double what a scrape carries and say nothing here.
disable_created_metrics()

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The methods counted by name; any other a client sends is counted as "other".
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RUN_OUTCOMES = (
    "bootstrapped",
    "no new data",
    "nothing to judge",
    "insufficient data",
    "no drift",
    "redeployed",
    "challenger kept out",
    "too few rows to compare",
    "live model changed",
    "interrupted",
    "failed",
    "busy",
)


class Metrics:
    """The request counters of one app, and the registry a scrape reads."""

    def __init__(self):
        shared = bool(os.environ.get(MULTIPROCESS_ENV))
        own = None if shared else CollectorRegistry()
        self.requests = Counter(
            "risk_api_requests",
            "HTTP requests answered, by endpoint (route), method and status code",
            ["endpoint", "method", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "risk_api_request_duration_seconds",
            "Time to answer a request, by endpoint (route)",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        if shared:
            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry)
        else:
            self.registry = own

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answer. Every label comes from a fixed set (the endpoint is a route or
        "unmatched"): a method a client makes up is counted as "other", a status outside the
        HTTP range as "other", so nothing a client sends adds a series."""
        method = method if method in METHODS else "other"
        status = str(status) if 100 <= status <= 599 else "other"
        self.requests.labels(endpoint, method, status).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self, facts: dict) -> bytes:
        """The text a scrape gets: the request metrics, then the state from `facts`."""
        return generate_latest(self.registry) + generate_latest(_StateRegistry(facts))


class _StateRegistry:
    """What the system knows, as gauges, for one scrape."""

    def __init__(self, facts: dict):
        self.facts = facts

    def collect(self):
        yield from state_metrics(self.facts)


def label_value(text: str) -> str:
    """A label value without spaces (`no new data` -> `no_new_data`), easy to match in rules."""
    return "_".join(str(text).split())


def state_metrics(facts: dict):
    """Gauges and counters from the dashboard's facts (see dashboard.gather)."""
    live = facts.get("live")
    deployed = GaugeMetricFamily("risk_model_deployed", "1 when a model is live, 0 before")
    deployed.add_metric([], 1 if live else 0)
    yield deployed
    if live:
        info = GaugeMetricFamily(
            "risk_model_info", "The live model, by its version label (always 1)", labels=["version"]
        )
        info.add_metric([label_value(live["version"])], 1)
        yield info
    if live and live["metrics"].get("f1") is not None:
        f1 = GaugeMetricFamily("risk_model_f1", "F1 of the live model on the test data")
        f1.add_metric([], live["metrics"]["f1"])
        yield f1
    runs = facts.get("runs") or []
    if runs:
        newest = runs[0]
        finished = parse_utc(newest["finished_at_utc"])
        when = GaugeMetricFamily(
            "risk_last_run_timestamp_seconds",
            "When the newest fullprocess.py run ended (a repeated quiet run: its latest repeat)",
        )
        when.add_metric([], finished.timestamp() if finished else time.time())
        yield when
        outcome = GaugeMetricFamily(
            "risk_last_run_outcome",
            "Outcome of the newest fullprocess.py run: 1 for its outcome, 0 for the others",
            labels=["outcome"],
        )
        for name in dict.fromkeys((*RUN_OUTCOMES, newest["outcome"])):
            outcome.add_metric([label_value(name)], 1 if name == newest["outcome"] else 0)
        yield outcome
        if newest["seconds_value"] is not None:
            took = GaugeMetricFamily(
                "risk_last_run_duration_seconds", "How long the newest fullprocess.py run took"
            )
            took.add_metric([], newest["seconds_value"])
            yield took
    yield from pipeline_metrics(facts)
    drift = facts.get("drift")
    if drift and drift.get("available"):
        drifted = GaugeMetricFamily(
            "risk_drifted_features", "Features that drifted in the latest batch"
        )
        drifted.add_metric([], len(drift["drifted"]))
        yield drifted
    ranking = facts.get("ranking")
    if ranking:
        clients = GaugeMetricFamily("risk_current_clients", "Current clients on the call list")
        clients.add_metric([], ranking["clients"])
        yield clients
        leavers = GaugeMetricFamily(
            "risk_expected_leavers", "Expected number of leavers among the current clients"
        )
        leavers.add_metric([], ranking["expected"]["expected"])
        yield leavers
        yield from past_list_metrics(ranking.get("past"))


def past_list_metrics(past: dict | None):
    """How the newest past list with an outcome since did, by part (top_20, top_50, top_100,
    whole): its clients with an outcome, who left, the expected count and its interval."""
    if not past:
        return
    parts = [part for part in past["parts"] if part.get("with_outcome")]
    families = {
        "with_outcome": "Clients of the newest past list with an outcome since",
        "left": "Clients of the newest past list who left since",
        "expected": "Leavers the newest past list expected among its clients with an outcome",
        "low": "Low end of the 95 % interval of those expected leavers",
        "high": "High end of the 95 % interval of those expected leavers",
    }
    for key, help_text in families.items():
        family = GaugeMetricFamily(f"risk_past_list_{key}", help_text, labels=["part"])
        for part in parts:
            family.add_metric([_part_label(part)], part[key])
        yield family
    outside = GaugeMetricFamily(
        "risk_past_list_outside_interval",
        "1 when the leavers of a part of the newest past list fell outside what it expected",
        labels=["part"],
    )
    for part in parts:
        outside.add_metric([_part_label(part)], int(part["verdict"] != "as expected"))
    yield outside


def _part_label(part: dict) -> str:
    return f"top_{part['top']}" if part["top"] else "whole"


def pipeline_metrics(facts: dict):
    """What the alert rules watch: runs by outcome, failures in a row, the last success, drift
    found, and alerts a receiver did not take (counted from the history database)."""
    counts = facts.get("counts")
    if not counts:
        return
    runs = CounterMetricFamily(
        "risk_runs",
        "fullprocess.py runs by outcome (quiet repeats counted one by one)",
        labels=["outcome"],
    )
    for name in dict.fromkeys((*RUN_OUTCOMES, *counts["runs"])):
        if name != "running":
            runs.add_metric([label_value(name)], counts["runs"].get(name, 0))
    yield runs
    streak = GaugeMetricFamily(
        "risk_failed_runs_in_a_row",
        "Runs that failed or were interrupted since the last one that did its work",
    )
    streak.add_metric([], counts["failed_in_a_row"])
    yield streak
    ended = parse_utc(facts.get("last_success_at"))
    if ended is not None:
        success = GaugeMetricFamily(
            "risk_last_success_timestamp_seconds",
            "When the newest fullprocess.py run that did its work ended (Unix time)",
        )
        success.add_metric([], ended.timestamp())
        yield success
    drift = CounterMetricFamily(
        "risk_drift_found", "Runs whose drift check found drift (in the model or the features)"
    )
    drift.add_metric([], counts["drift_runs"])
    yield drift
    failures = CounterMetricFamily(
        "risk_alert_delivery_failures", "Alerts that at least one receiver did not take"
    )
    failures.add_metric([], counts["failed_deliveries"])
    yield failures
