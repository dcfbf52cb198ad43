import os
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import requests
from werkzeug.serving import make_server

import apicalls
from clientrisk.api import client as apicalls_client
from clientrisk.api.app import create_app
from clientrisk.config import PROJECT_DIR
from clientrisk.deployment.modelstore import version_name
from conftest import client_rows, copy_project, run_steps

ENDPOINTS = [
    "GET /health",
    "POST /prediction",
    "GET /scoring",
    "GET /summarystats",
    "GET /diagnostics",
    "GET /openapi.json",
]


@pytest.fixture
def serve(monkeypatch):
    """Serve an app on a free loopback port in this process; yields a function app -> URL."""
    monkeypatch.delenv("RISK_API_TOKEN", raising=False)
    monkeypatch.delenv("RISK_API_URL", raising=False)
    servers = []

    def start(app):
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


def test_writes_every_answer(diagnosed, serve, capsys):
    url = serve(create_app(diagnosed.config_path))
    assert apicalls.main(diagnosed.args("--url", url, "-v")) == 0
    captured = capsys.readouterr()
    assert "6 endpoints" in captured.out
    assert f"DEBUG POST {url}/prediction: 200 in " in captured.err
    text = (diagnosed.root / "models" / "apireturns.txt").read_text()
    for endpoint in ENDPOINTS:
        assert f"## {endpoint} -> 200" in text
    assert '"model_version": "v0001"' in text
    # A size a person reads: the top 20 with reasons, the dependencies and their vulnerabilities.
    assert len(text.splitlines()) < 900
    assert '"... 250 more"' in text  # 300 test rows: the predictions cut at 50


def test_url_and_token_from_the_environment(diagnosed, serve, monkeypatch):
    url = serve(create_app(diagnosed.config_path, token="tok"))
    monkeypatch.setenv("RISK_API_URL", url)
    monkeypatch.setenv("RISK_API_TOKEN", "tok")
    assert apicalls.main(diagnosed.args()) == 0


def test_a_failing_endpoint_is_named_and_its_error_written_in_its_place(diagnosed, serve, capsys):
    url = serve(create_app(diagnosed.config_path))
    (diagnosed.root / "models" / "diagnostics.json").unlink()
    assert apicalls.main(diagnosed.args("--url", url)) == 1
    err = capsys.readouterr().err
    assert "GET /summarystats: 503 no diagnostics yet" in err
    assert "GET /diagnostics: 503" in err
    text = (diagnosed.root / "models" / "apireturns.txt").read_text()
    assert "## GET /summarystats -> 503" in text
    assert "no diagnostics yet" in text
    assert "## GET /scoring -> 200" in text
    assert '"f1":' in text


def test_the_openapi_description_is_checked_not_copied(diagnosed, serve):
    url = serve(create_app(diagnosed.config_path))
    assert apicalls.main(diagnosed.args("--url", url)) == 0
    text = (diagnosed.root / "models" / "apireturns.txt").read_text()
    assert "## GET /openapi.json -> 200\n(answered; not copied here)" in text
    assert '"paths"' not in text


def test_an_api_serving_another_configuration_is_named(diagnosed, serve, tmp_path, capsys):
    """As when the API was started under the practice config and the production run calls it."""
    other = copy_project(diagnosed, tmp_path / "practice")
    url = serve(create_app(other.config_path))
    assert apicalls.main(diagnosed.args("--url", url)) == 1
    err = capsys.readouterr().err
    assert (
        "GET /health: the API serves another configuration (config.json, a config file"
        f" elsewhere), not this run's {diagnosed.config_path}"
    ) in err
    text = (diagnosed.root / "models" / "apireturns.txt").read_text()
    assert "# NOT THIS PROJECT'S API: GET /health: the API serves another configuration" in text


def test_an_api_serving_another_live_model_is_named(diagnosed, serve, monkeypatch, capsys):
    url = serve(create_app(diagnosed.config_path))
    # A deployment the API has not picked up, as seen by this run alone.
    seen_here = SimpleNamespace(current_version=lambda folder: 2, version_name=version_name)
    monkeypatch.setattr(apicalls_client, "modelstore", seen_here)
    assert apicalls.main(diagnosed.args("--url", url)) == 1
    assert "the API serves model v0001, while v0002 is live here" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_server_down(diagnosed, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert apicalls.main(diagnosed.args("--url", url)) == 1
    assert f"GET /health: cannot reach {url}/health" in capsys.readouterr().err


def wait_for_health(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited: {server.stdout.read()}")
        try:
            if requests.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or workers still starting
            time.sleep(0.2)
    pytest.fail("gunicorn did not become healthy")


def start_gunicorn(project, *options: str, **settings) -> tuple[subprocess.Popen, str]:
    """gunicorn serving `project` on a free port (its output in `stdout`, as text), with these
    settings written into its config first; (the server, its URL)."""
    import json

    if settings:
        config = json.loads(project.config_path.read_text())
        project.config_path.write_text(json.dumps({**config, **settings}))
    port = free_port()
    env = {**os.environ, "RISK_CONFIG": str(project.config_path)}
    env.pop("RISK_API_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *options, "wsgi:app"],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_gunicorn_serves_the_api_and_picks_up_a_new_deployment(diagnosed):
    server, url = start_gunicorn(diagnosed, "--workers", "2")
    try:
        wait_for_health(url, server)
        assert apicalls.main(diagnosed.args("--url", url)) == 0
        text = (diagnosed.root / "models" / "apireturns.txt").read_text()
        for endpoint in ENDPOINTS:
            assert f"## {endpoint} -> 200" in text
        diagnosed.write_input("more.csv", client_rows(200, seed=11))
        run_steps(diagnosed, "ingestion", "training", "scoring", "deployment")
        record = {"lastmonth_activity": 4, "lastyear_activity": 90, "number_of_employees": 3}
        versions = {
            requests.post(f"{url}/prediction", json={"records": [record]}, timeout=10).json()[
                "model_version"
            ]
            for _ in range(12)
        }
        assert versions == {"v0002"}
        # Both workers' counts reach a scrape, whichever worker answers it: apicalls.py's
        # prediction and the twelve above.
        for _ in range(3):
            metrics = requests.get(f"{url}/metrics", timeout=10).text
            line = 'risk_api_requests_total{endpoint="/prediction",method="POST",status="200"}'
            assert f"{line} 13.0" in metrics, metrics
        assert "Live model v0002" in requests.get(url, timeout=10).text
    finally:
        server.terminate()
        server.wait(timeout=20)
    log = server.stdout.read()
    # gunicorn.conf.py turns the access log on; the app's own lines reach gunicorn's log.
    assert '"POST /prediction HTTP/1.1" 200' in log
    assert '"GET /health HTTP/1.1" 200' in log
    assert "serving model v0002" in log


@pytest.mark.slow
def test_gunicorn_refuses_a_chunked_body_over_the_limit(diagnosed):
    from test_api import csv_body, post_chunked

    server, url = start_gunicorn(diagnosed, api_max_request_bytes=2000)
    try:
        wait_for_health(url, server)
        status, answer = post_chunked(url, csv_body(110))
        assert (status, answer["rows"]) == (200, 110)
        status, answer = post_chunked(url, csv_body(140))
        assert status == 413, answer
        assert answer == {"error": "request body too large: at most 2,000 bytes are accepted"}
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.mark.slow
def test_a_gunicorn_start_that_fails_leaves_no_metrics_folder(diagnosed, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "RISK_CONFIG": str(diagnosed.config_path), "TMPDIR": str(scratch)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = subprocess.run(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert started.returncode != 0
    assert list(scratch.glob("risk-metrics-*")) == []


class SlowClient:
    """A connection that sends a request's head, then its body one byte a second (with a
    Content-Length, or chunked: one chunk of one byte a second)."""

    def __init__(self, url: str, chunked: bool = False):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        framing = "Transfer-Encoding: chunked" if chunked else "Content-Length: 500"
        head = (
            "POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
            f"{framing}\r\n\r\n"
        )
        self.byte = b"1\r\nc\r\n" if chunked else b"c"
        self.sock.sendall(head.encode())
        self.stopped = threading.Event()
        self.sender = threading.Thread(target=self.trickle, daemon=True)
        self.sender.start()

    def trickle(self):
        while not self.stopped.wait(1.0):
            try:
                self.sock.sendall(self.byte)
            except OSError:  # the server closed the connection
                return

    def answer(self) -> bytes:
        """What the server sent back before closing the connection."""
        received = b""
        while chunk := self.sock.recv(4096):
            received += chunk
        return received

    def close(self):
        self.stopped.set()
        self.sock.close()


@pytest.mark.slow
def test_the_shipped_gunicorn_withstands_two_slow_clients(diagnosed):
    # No options: the settings in gunicorn.conf.py are the ones under test.
    server, url = start_gunicorn(diagnosed, api_body_timeout_seconds=4)
    slow = []
    try:
        wait_for_health(url, server)
        slow = [SlowClient(url), SlowClient(url)]
        time.sleep(1.5)
        for _ in range(3):
            started = time.monotonic()
            assert requests.get(f"{url}/health", timeout=2).status_code == 200
            assert time.monotonic() - started < 2
        started = time.monotonic()
        answers = [client.answer() for client in slow]
        assert time.monotonic() - started < 6
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert b"request body not received within 4 s" in answer
        metrics = requests.get(f"{url}/metrics", timeout=5).text
        assert 'risk_api_requests_total{endpoint="/health",method="GET",status="200"}' in metrics
    finally:
        for client in slow:
            client.close()
        server.terminate()
        server.wait(timeout=20)
