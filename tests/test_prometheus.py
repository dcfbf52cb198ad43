"""The shipped Prometheus alert rules pass promtool's checks and unit tests, and every metric
they watch is one /metrics serves, under Prometheus's naming conventions."""

import re
import shutil
import subprocess

import pytest

import fullprocess
from clientrisk.api.app import create_app
from clientrisk.config import PROJECT_DIR
from conftest import client_rows

RULES_DIR = PROJECT_DIR / "clientrisk" / "api" / "prometheus"
RULES = RULES_DIR / "rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian's `prometheus` package; .ci/run installs it)",
)


@pytest.fixture(autouse=True)
def no_api(monkeypatch):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("RISK_API_TOKEN", raising=False)


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], cwd=RULES_DIR, input=stdin, capture_output=True, text=True, timeout=120
    )


@needs_promtool
def test_the_rules_pass_promtool_check():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


@needs_promtool
def test_the_rules_pass_their_unit_tests():
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def metrics_after_a_drift(project) -> str:
    project.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(project.args()) == 0
    client = create_app(project.config_path, token="").test_client()
    client.get("/health")
    return client.get("/metrics").text


@needs_promtool
def test_the_metrics_follow_prometheus_conventions(diagnosed):
    text = metrics_after_a_drift(diagnosed)
    result = promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning


def test_every_metric_the_rules_watch_is_served(diagnosed):
    text = metrics_after_a_drift(diagnosed)
    served = set(re.findall(r"^(risk_\w+?)(?:\{| )", text, re.M))
    watched = set(re.findall(r"\b(risk_\w+)", RULES.read_text()))
    assert watched, "the rules watch no metric"
    assert watched <= served, sorted(watched - served)


def test_label_values_have_no_spaces(diagnosed):
    text = metrics_after_a_drift(diagnosed)
    values = re.findall(r'="([^"]*)"', text)
    assert values
    assert [value for value in values if " " in value] == []
    assert re.search(r'^risk_model_info\{version="v0002"\} 1\.0$', text, re.M)
    assert re.search(r'^risk_last_run_outcome\{outcome="no_new_data"\} 0\.0$', text, re.M)
