"""The dashboard (`GET /`) and the metrics endpoint (`GET /metrics`), as a browser, a manager
and Prometheus see them."""

import json
import re
import shutil
import subprocess
import threading

import pandas as pd
import pytest
from werkzeug.serving import make_server

import fullprocess
from clientrisk.api.app import create_app
from clientrisk.deployment import modelstore
from clientrisk.history.database import open_history
from clientrisk.model import training
from conftest import client_rows, run_steps


@pytest.fixture(autouse=True)
def no_api(monkeypatch):
    monkeypatch.setenv("RISK_API_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("RISK_API_TOKEN", raising=False)


def page(project, token="") -> str:
    response = create_app(project.config_path, token=token).test_client().get("/")
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    return response.get_data(as_text=True)


def text_of(html: str) -> str:
    """The words on the page, without tags, white space folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def section(html: str, name: str) -> str:
    """The page's `<section id=name>`, as HTML."""
    return re.search(rf'<section id="{name}">.*?</section>', html, re.S).group(0)


def ranking_summary(project) -> dict:
    return json.loads((project.root / "models" / "ranking.json").read_text())


def test_before_the_first_run_the_page_says_what_to_do(project):
    words = text_of(page(project))
    assert "Nothing is deployed yet" in words
    assert str(project.input_dir) in words
    assert "python fullprocess.py --config" in words
    assert "No run recorded yet" in words
    # Looking changes nothing: no history database is made by the page.
    assert not (project.root / "ingesteddata" / "history.db").exists()


def test_after_a_bootstrap_the_page_shows_the_model_the_call_list_and_the_run(project):
    assert fullprocess.main(project.args()) == 0
    html = page(project)
    words = text_of(html)
    manifest = modelstore.current_deployment(project.root / "production_deployment").manifest
    assert "Live model v0001" in words
    assert "bootstrap: nothing was deployed" in words
    assert f"{manifest['metrics']['f1']:.3f}" in words
    summary = ranking_summary(project)
    top = summary["top"][0]
    row = re.search(r'<table id="call-list">.*?</table>', html, re.S).group(0)
    assert row.count("<tr>") == 1 + min(20, summary["clients"])
    assert top["corporation"] in row
    assert top["reasons"][0]["reason"] in text_of(row)
    assert f"{summary['clients']:,} current clients" in words
    assert "bootstrapped" in words
    assert "The first ranking" in words
    assert 'href="/riskranking.csv"' in html
    assert "<svg" in html  # the score history


def test_the_whole_call_list_downloads_as_csv(diagnosed):
    response = create_app(diagnosed.config_path, token="").test_client().get("/riskranking.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.data == (diagnosed.root / "models" / "riskranking.csv").read_bytes()


def test_after_a_drift_run_the_page_shows_the_new_model_its_history_and_the_drift(diagnosed):
    app = create_app(diagnosed.config_path, token="")
    client = app.test_client()
    before = client.get("/").get_data(as_text=True)
    assert "Live model v0001" in before
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    html = client.get("/").get_data(as_text=True)  # the same app: its cached page is renewed
    words = text_of(html)
    assert "Live model v0002" in words
    assert "model drift on drifted.csv" in words
    assert "redeployed" in words
    drift = section(html, "drift")
    assert "lastyear_activity drifted" in text_of(drift)
    scores = section(html, "scores")
    assert scores.count("<polyline") == 2  # one line per deployed model
    assert scores.count("stroke-dasharray") == 2  # both deployments marked


def test_a_challenger_kept_out_is_shown_beside_the_live_model(diagnosed, worse_challengers):
    assert "No retrained model has been kept out" in text_of(page(diagnosed))
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    html = page(diagnosed)
    model = text_of(section(html, "model"))
    assert "Live model v0001" in model
    assert "A retrained model was kept out" in model
    assert "challenger kept out" in text_of(html)  # the run's outcome
    scores = section(html, "scores")
    assert "kept out: F1" in scores  # its score drawn apart, as a cross


def test_a_failed_run_stands_out(diagnosed):
    with open_history(diagnosed.root / "ingesteddata" / "history.db") as history:
        history.finish_run(
            None,
            {
                "started_at": "2026-11-21T03:00:00Z",
                "finished_at": "2026-11-21T03:00:02Z",
                "outcome": "failed",
                "reason": "testdata.csv: cannot read",
                "seconds": 2.0,
            },
        )
    html = page(diagnosed)
    failed = re.search(r'<tr class="failed">.*?</tr>', html, re.S).group(0)
    assert "testdata.csv: cannot read" in failed
    assert "badge bad" in failed


def test_the_page_never_loads_or_fits_a_model(diagnosed, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the dashboard must not touch a model")

    monkeypatch.setattr(training, "fit_model", refuse)
    monkeypatch.setattr(modelstore, "load_model", refuse)
    assert "Live model v0001" in text_of(page(diagnosed))


def test_a_damaged_file_is_named_on_the_page_not_an_error_page(diagnosed):
    (diagnosed.root / "models" / "ranking.json").write_text("{not json")
    words = text_of(page(diagnosed))
    assert "ranking.json cannot be read" in words
    assert "Live model v0001" in words


def csrf_field(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found.group(1)


def sign_in(client, token: str, **kwargs):
    form = client.get("/", **kwargs).get_data(as_text=True)
    return client.post("/signin", data={"token": token, "csrf_token": csrf_field(form)}, **kwargs)


def sign_out(client):
    html = client.get("/").get_data(as_text=True)
    return client.post("/signout", data={"csrf_token": csrf_field(html)})


@pytest.fixture
def token_app(diagnosed):
    return create_app(diagnosed.config_path, token="s3cret")


def test_with_a_token_the_page_asks_for_it_once(token_app, diagnosed):
    client = token_app.test_client()
    first = client.get("/")
    assert first.status_code == 401
    assert 'name="token"' in first.get_data(as_text=True)
    assert 'id="call-list"' not in first.get_data(as_text=True)
    assert client.get("/riskranking.csv").status_code == 401
    wrong = sign_in(client, "guess")
    assert wrong.status_code == 401
    assert "That is not the token" in wrong.get_data(as_text=True)
    right = sign_in(client, "s3cret")
    assert right.status_code == 303
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Max-Age=28800" in cookie  # a working day, not a month
    html = client.get("/").get_data(as_text=True)
    assert 'id="call-list"' in html
    assert "Sign out" in html
    assert client.get("/riskranking.csv").status_code == 200
    # A session opened with another token is worth nothing once the token changes.
    other = create_app(diagnosed.config_path, token="other").test_client()
    other.set_cookie("risk_session", client.get_cookie("risk_session").value)
    assert other.get("/").status_code == 401
    assert client.get("/").status_code == 401


def test_the_cookie_holds_nothing_derived_from_the_token(token_app, diagnosed):
    import hashlib

    values = []
    for _ in range(2):
        client = token_app.test_client()
        assert sign_in(client, "s3cret").status_code == 303
        values.append(client.get_cookie("risk_session").value)
        assert client.get_cookie("session") is None  # no signed cookie of Flask's
    assert values[0] != values[1]  # random, not a function of the token
    derived = [
        "s3cret",
        hashlib.sha256(b"s3cret").hexdigest(),
        hashlib.sha256(b"dashboard:s3cret").hexdigest(),
    ]
    stored = (diagnosed.root / "logs" / "dashboard-sessions.db").read_bytes()
    for text in derived:
        assert all(text not in value for value in values)
        assert text.encode() not in stored
    # The server keeps only hashes of the ids: a copy of its file opens no session.
    assert all(value.encode() not in stored for value in values)


def test_a_cookie_replayed_after_sign_out_is_refused(token_app):
    client = token_app.test_client()
    assert sign_in(client, "s3cret").status_code == 303
    captured = client.get_cookie("risk_session").value
    assert sign_out(client).status_code == 303
    assert client.get("/").status_code == 401
    replay = token_app.test_client()
    replay.set_cookie("risk_session", captured)
    assert replay.get("/").status_code == 401
    assert replay.get("/riskranking.csv").status_code == 401


@pytest.mark.parametrize("form_token", [None, "forged"], ids=["no token", "a forged one"])
def test_a_sign_in_without_its_csrf_token_is_refused(token_app, form_token):
    client = token_app.test_client()
    client.get("/")  # the form's cookie is set; a cross-site form has not read its field
    data = (
        {"token": "s3cret"} if form_token is None else {"token": "s3cret", "csrf_token": form_token}
    )
    response = client.post("/signin", data=data)
    assert response.status_code == 403
    assert client.get_cookie("risk_session") is None
    assert client.get("/").status_code == 401


def test_a_sign_in_from_another_site_without_the_forms_cookie_is_refused(token_app):
    field = csrf_field(token_app.test_client().get("/").get_data(as_text=True))
    stranger = token_app.test_client()
    response = stranger.post("/signin", data={"token": "s3cret", "csrf_token": field})
    assert response.status_code == 403


def test_a_sign_out_without_its_csrf_token_is_refused(token_app):
    client = token_app.test_client()
    assert sign_in(client, "s3cret").status_code == 303
    assert client.post("/signout").status_code == 403
    assert client.post("/signout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/").status_code == 200  # still signed in


def test_each_session_gets_its_own_csrf_token_on_the_shared_page(token_app):
    first, second = token_app.test_client(), token_app.test_client()
    for client in (first, second):
        assert sign_in(client, "s3cret").status_code == 303
    fields = [csrf_field(client.get("/").get_data(as_text=True)) for client in (first, second)]
    assert fields[0] != fields[1]
    # One session's token does not sign another out.
    assert second.post("/signout", data={"csrf_token": fields[0]}).status_code == 403


def set_proxy_hops(project, hops: int) -> None:
    config = json.loads(project.config_path.read_text())
    project.config_path.write_text(json.dumps({**config, "api_proxy_hops": hops}))


@pytest.mark.parametrize(
    ("hops", "base_url", "headers", "secure"),
    [
        (0, "http://risk.example", {}, False),
        (0, "https://risk.example", {}, True),
        (0, "http://risk.example", {"X-Forwarded-Proto": "https"}, False),
        (1, "http://risk.example", {"X-Forwarded-Proto": "https"}, True),
        (1, "http://risk.example", {"X-Forwarded-Proto": "http"}, False),
    ],
    ids=["plain HTTP", "HTTPS", "untrusted header", "behind a proxy over HTTPS", "proxy, HTTP"],
)
def test_the_cookie_is_secure_when_served_over_https(diagnosed, hops, base_url, headers, secure):
    set_proxy_hops(diagnosed, hops)
    client = create_app(diagnosed.config_path, token="s3cret").test_client()
    response = sign_in(client, "s3cret", base_url=base_url, headers=headers)
    assert response.status_code == 303
    assert ("Secure" in response.headers["Set-Cookie"]) == secure


def test_the_page_has_no_way_to_change_anything(diagnosed):
    html = page(diagnosed)
    forms = re.findall(r"<form[^>]*>", html)
    assert forms == []  # no token: not even a sign-out button
    assert "<script" not in html


def metric(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.M)
    assert found, f"{name} {labels} not in the metrics"
    return float(found.group(1))


def test_metrics_report_requests_and_what_the_system_knows(diagnosed):
    client = create_app(diagnosed.config_path, token="").test_client()
    for _ in range(3):
        client.get("/health")
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    health = {"endpoint": "/health", "method": "GET", "status": 200}
    assert metric(text, "risk_api_requests_total", **health) == 3
    # A path a client made up is counted under one label, not one series per path.
    assert metric(text, "risk_api_requests_total", endpoint="unmatched", method="GET", status=404)
    assert metric(text, "risk_api_request_duration_seconds_count", endpoint="/health") == 3
    manifest = modelstore.current_deployment(diagnosed.root / "production_deployment").manifest
    assert metric(text, "risk_model_info", version="v0001") == 1
    assert metric(text, "risk_model_deployed") == 1
    assert metric(text, "risk_model_f1") == pytest.approx(manifest["metrics"]["f1"])
    summary = ranking_summary(diagnosed)
    assert metric(text, "risk_current_clients") == summary["clients"]
    assert metric(text, "risk_expected_leavers") == pytest.approx(
        summary["expected_leavers"]["expected"]
    )
    assert "risk_drifted_features" not in text  # no batch has been judged yet


def test_metrics_after_a_run(diagnosed):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    text = create_app(diagnosed.config_path, token="").test_client().get("/metrics").text
    assert metric(text, "risk_model_info", version="v0002") == 1
    assert "v0001" not in text  # only the live version is a series
    assert metric(text, "risk_last_run_outcome", outcome="redeployed") == 1
    assert metric(text, "risk_last_run_outcome", outcome="failed") == 0
    assert metric(text, "risk_last_run_outcome", outcome="no_new_data") == 0
    assert metric(text, "risk_runs_total", outcome="redeployed") == 1
    assert metric(text, "risk_drift_found_total") == 1
    assert metric(text, "risk_failed_runs_in_a_row") == 0
    assert metric(text, "risk_last_success_timestamp_seconds") > 0
    assert metric(text, "risk_drifted_features") >= 1
    assert metric(text, "risk_last_run_duration_seconds") > 0


def test_metrics_need_the_token_when_there_is_one(diagnosed):
    client = create_app(diagnosed.config_path, token="s3cret").test_client()
    assert client.get("/metrics").status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200


def request_series(client, token: str) -> list[str]:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    return [line for line in text.splitlines() if line.startswith("risk_api_requests_total{")]


def test_made_up_methods_and_paths_add_no_series(diagnosed):
    client = create_app(diagnosed.config_path, token="s3cret").test_client()
    client.open("/warm/up", method="WARMUP")
    client.open("/health", method="WARMUP")
    client.open("/prediction", method="WARMUP")
    request_series(client, "s3cret")  # the scrape counts itself from then on
    before = request_series(client, "s3cret")
    for number in range(3000):
        client.open(f"/made/up/{number}", method=f"M{number}")
        client.open("/health", method=f"X{number}")
        client.open("/prediction", method=f"P{number}")
    after = request_series(client, "s3cret")
    assert [line.rsplit(" ", 1)[0] for line in after] == [line.rsplit(" ", 1)[0] for line in before]
    assert len(after) < 10
    text = client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text
    other = {"endpoint": "unmatched", "method": "other", "status": 404}
    assert metric(text, "risk_api_requests_total", **other) == 3001


def test_metrics_before_anything_is_deployed(project):
    text = create_app(project.config_path, token="").test_client().get("/metrics").text
    assert metric(text, "risk_model_deployed") == 0
    assert "risk_model_info" not in text
    assert "risk_current_clients" not in text


# --- in a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served(diagnosed):
    """The app on a free local port, served by werkzeug in a thread."""
    server = make_server("127.0.0.1", 0, create_app(diagnosed.config_path, token=""))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", diagnosed
    server.shutdown()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_the_page_renders_in_headless_chromium_with_the_call_list(served, tmp_path):
    url, project = served
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*command, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    top = ranking_summary(project)["top"][0]["corporation"]
    assert 'id="call-list"' in dom.stdout
    assert top in dom.stdout
    # Nothing on the page failed: no script error, no resource that did not load.
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "ERR_" in line]
    assert console == []
    shot = tmp_path / "dashboard.png"
    subprocess.run(
        [*command, "--window-size=390,2400", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


def test_the_score_chart_never_runs_backwards_when_the_clock_was_set_back():
    from clientrisk.api.dashboard import score_chart

    def score(time, f1):
        return {"scored_at": time, "f1": f1, "model_sha256": "aaa"}

    scores = [
        score("2026-05-01T12:00:00Z", 0.6),
        score("2026-05-01T13:00:00Z", 0.7),
        score("2026-05-01T11:30:00Z", 0.8),  # recorded last, after the clock was set back
    ]
    deployments = [{"time": "2026-05-01T11:00:00Z", "to_version": "v0001", "model_sha256": "aaa"}]
    chart = score_chart(scores, deployments)
    (series,) = chart["series"]
    xs = [x for x, _, _ in series["points"]]
    assert [f1 for _, _, f1 in series["points"]] == [0.6, 0.7, 0.8]
    assert xs == sorted(xs)


def test_the_call_list_says_who_is_current_and_marks_an_uncertain_risk(diagnosed):
    far = pd.DataFrame(
        [("farc", 1.0, 5000.0, 20.0), ("near", 400.0, 5000.0, 20.0)],
        columns=["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees"],
    )
    diagnosed.write_input("roster.csv", far)
    run_steps(diagnosed, "ingestion", "diagnostics")
    html = page(diagnosed)
    row = re.search(r'<table id="call-list">.*?</table>', html, re.S).group(0)
    words = text_of(html)
    assert "Current clients: the clients on the latest roster (roster.csv, batch 3)" in words
    assert "1 of them have figures outside the range the model has seen" in words
    assert (
        "outside the range the model has seen: treat the risk as uncertain"
        " (last month against the year)" in text_of(row)
    )
    assert text_of(row).count("treat the risk as uncertain") == 1
    assert text_of(row).count(": risk ") >= 2  # every client's reason, with its risk in points


def test_after_a_drift_the_page_shows_quality_on_the_newest_rows_and_why(diagnosed):
    before = text_of(page(diagnosed))
    assert "On the newest rows" not in before
    assert "no longer resembles" not in before
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    html = page(diagnosed)
    model = text_of(section(html, "model"))
    assert "On the newest rows: 300 held-out rows of batches 3-3, held out when run" in model
    assert "testdata.csv no longer resembles the incoming data" in model
    newest = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())["quality"]
    assert f"{newest['newest']['roc_auc']:.3f}" in model
    calls = text_of(section(html, "calls"))
    assert "The market changed on " in calls
    assert "a model retrained on the 700 newest clients" in calls
    assert "The newest clients differ from those the model learnt from: " in calls


PHONE_PROBE = """<!doctype html><html><head><title>-</title></head><body style="margin:0">
<iframe id="phone" width="390" height="844" style="border:0" srcdoc="{page}"></iframe>
<script>
document.getElementById("phone").addEventListener("load", (event) => {{
  const inner = event.target.contentDocument;
  const top = (selector) => inner.querySelector(selector).getBoundingClientRect().top;
  const table = inner.querySelector("#drift table");
  document.title = JSON.stringify({{
    first: top("#call-list tbody tr"), cards: top("#model .figures"),
    wide: inner.documentElement.scrollWidth,
    drift_table: table ? [table.scrollWidth, table.parentElement.clientWidth] : null }});
}});
</script></body></html>"""


def on_a_phone(project, tmp_path) -> dict:
    """Where things are on the page in a 390 x 844 phone's viewport, in pixels.

    Headless Chromium keeps its window at least 500 px wide, so the page is measured in a frame
    of the phone's size (the page needs nothing but itself: inline style, no script).
    """
    import html

    probe = tmp_path / "phone.html"
    probe.write_text(PHONE_PROBE.format(page=html.escape(page(project), quote=True)))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(html.unescape(re.search(r"<title>(.*?)</title>", dom.stdout).group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_on_a_phone_the_first_client_is_above_the_fold(diagnosed, tmp_path):
    """The first client to call shows without scrolling, before the model's cards, and nothing
    is wider than the screen."""
    where = on_a_phone(diagnosed, tmp_path)
    assert where["first"] < 844
    assert where["first"] < where["cards"]
    assert where["wide"] <= 390


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_on_a_phone_after_a_drift_the_list_and_the_drift_table_fit(diagnosed, tmp_path):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    where = on_a_phone(diagnosed, tmp_path)
    assert where["first"] < 844  # below what happened and what arrives, still above the fold
    table_width, room = where["drift_table"]
    assert table_width <= room  # no sideways scrolling


def test_a_score_chart_with_one_point_puts_it_in_the_middle_with_its_value():
    from clientrisk.api.dashboard import score_chart

    scores = [{"scored_at": "2026-05-01T12:00:00Z", "f1": 0.466, "model_sha256": "aaa"}]
    deployments = [{"time": "2026-05-01T12:00:00Z", "to_version": "v0001", "model_sha256": "aaa"}]
    chart = score_chart(scores, deployments)
    ((x, _, _),) = chart["series"][0]["points"]
    middle = (chart["left"] + chart["right_x"]) / 2
    assert abs(x - middle) < 1
    assert (chart["start"], chart["end"]) == ("2026-05-01 11:30", "2026-05-01 12:30")
    assert chart["labelled"]


def test_the_score_chart_labels_a_short_history_on_the_page(diagnosed):
    scores = section(page(diagnosed), "scores")
    assert re.search(r"<text [^>]*>0\.\d\d</text>", scores)


def test_the_call_list_marks_this_weeks_calls_at_its_top(diagnosed):
    config = json.loads(diagnosed.config_path.read_text())
    diagnosed.config_path.write_text(json.dumps({**config, "calls_per_week": 3}))
    run_steps(diagnosed, "diagnostics")
    html = page(diagnosed)
    table = re.search(r'<table id="call-list">.*?</table>', html, re.S).group(0)
    rows = re.findall(r"<tr[ >].*?</tr>", table.split("<tbody>")[1], re.S)
    assert ["call-mark" in row for row in rows] == [True] * 3 + [False] * (len(rows) - 3)
    assert "The first 3 are this week's calls" in text_of(html)


def test_without_calls_per_week_no_call_is_marked(diagnosed):
    html = page(diagnosed)
    assert 'class="call-mark"' not in html
    assert "this week's calls" not in text_of(html)


def runs_table(html: str) -> str:
    return re.search(r'<section class="wide" id="runs">.*?</section>', html, re.S).group(0)


def test_the_runs_table_says_what_each_run_did_in_a_sentence(diagnosed):
    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    table = runs_table(page(diagnosed))
    newest = re.search(r"<tbody>\s*<tr.*?</tr>", table, re.S).group(0)
    sentence = re.search(r'<td title="[^"]*">([^<]*)<details', newest).group(1)
    assert sentence.startswith("The model drifted: retrained on the newest clients and deployed")
    assert "v0002" in sentence
    assert "v0001 on 300 new clients." in sentence
    assert "log loss" not in sentence
    # The full reason, with its statistics, is kept a click away.
    details = re.search(r"<details.*?</details>", newest, re.S).group(0)
    assert "log loss on 300 newest rows" in details


@pytest.mark.parametrize(
    ("outcome", "reason", "record", "sentence"),
    [
        (
            "redeployed",
            "model drift; log loss on 600 newest rows: retrained 0.3753, v0003 0.4100"
            " (difference -0.0347, 95 % interval -0.05 to -0.02): better; v0004 is live",
            {
                "deployed_version": "v0003",
                "comparison": {"paired_log_loss": {"rows": 600, "verdict": "better"}},
            },
            "The model drifted: retrained on the newest clients and deployed v0004, better than"
            " v0003 on 600 new clients.",
        ),
        (
            "no drift",
            "the model is still right on 1000 new rows: ...",
            {"deployed_version": "v0001", "new_rows": 1000},
            "No drift: the model is still right on 1,000 new clients.",
        ),
        (
            "too few rows to compare",
            "model drift; only 40 newest rows (...): v0002 stays live, and ...",
            {"deployed_version": "v0002"},
            "The model drifted, but too few new clients with an outcome to compare a retrained"
            " model on: v0002 stays live.",
        ),
        (
            "challenger kept out",
            "model drift; log loss ...: significantly worse; v0001 stays live",
            {
                "deployed_version": "v0001",
                "comparison": {"paired_log_loss": {"rows": 300, "verdict": "worse"}},
            },
            "The model drifted: a model retrained on the newest clients was worse than v0001 on"
            " 300 new clients, so v0001 stays live.",
        ),
        (
            "bootstrapped",
            "nothing was deployed; deployed v0001",
            {},
            "First model trained and deployed: v0001.",
        ),
        (
            "redeployed",
            "40 rows with an outcome in all, fewer than min_comparison_rows (100): too few to"
            " test a model on, so every new row is learnt from; retrained on all 40 and"
            " deployed v0002",
            {"deployed_version": "v0001"},
            "Too few clients with an outcome to test a model on: retrained on all of them and"
            " deployed v0002.",
        ),
        ("failed", "testdata.csv: cannot read", {}, "The run failed: testdata.csv: cannot read"),
    ],
    ids=["retrained", "no drift", "too few", "kept out", "bootstrap", "small store", "failed"],
)
def test_a_run_in_a_sentence(outcome, reason, record, sentence):
    from clientrisk.api.runwords import run_sentence

    assert run_sentence(outcome, reason, record) == sentence
