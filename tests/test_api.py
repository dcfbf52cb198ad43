import importlib
import io
import json
import os
import sys

import pandas as pd
import pytest

import deployment
from clientrisk.api import app as api_module
from clientrisk.api.app import create_app
from clientrisk.config import load_config
from clientrisk.data.clientcsv import FEATURES
from clientrisk.deployment import modelstore
from conftest import client_rows, run_steps

RECORD = {"lastmonth_activity": 40, "lastyear_activity": 600, "number_of_employees": 12}


@pytest.fixture
def app(diagnosed):
    return create_app(diagnosed.config_path, token="")


@pytest.fixture
def client(app):
    return app.test_client()


def post_records(client, records, **kwargs):
    return client.post("/prediction", json={"records": records}, **kwargs)


def test_health(client, diagnosed):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "model_version": "v0001",
        "config": {"name": "config.json", "id": load_config(diagnosed.config_path).identity["id"]},
        # The steps were run by hand: no run of fullprocess.py yet, so none is overdue.
        "runs": {"last_success_at": None, "no_success_hours": 1.0, "overdue": False},
    }


def test_health_without_a_model(project):
    response = create_app(project.config_path, token="").test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_prediction_from_records_in_input_order(client):
    records = [
        {
            "corporation": "dorm",
            "lastmonth_activity": 0,
            "lastyear_activity": 3000,
            "number_of_employees": 40,
        },
        {
            "corporation": "busy",
            "lastmonth_activity": 260,
            "lastyear_activity": 3000,
            "number_of_employees": 40,
        },
        {"lastmonth_activity": None, "lastyear_activity": 800.5, "number_of_employees": 12},
    ]
    body = post_records(client, records).get_json()
    assert body["model_version"] == "v0001"
    assert body["rows"] == 3
    assert body["corporations"] == ["dorm", "busy", None]
    assert set(body["predictions"]) <= {0, 1}
    dormant, busy, _ = body["probabilities"]
    assert dormant > busy
    reversed_body = post_records(client, records[::-1]).get_json()
    assert reversed_body["probabilities"] == body["probabilities"][::-1]


def test_prediction_from_a_data_file_matches_the_model(client, diagnosed):
    response = client.post("/prediction", json={"filepath": "testdata/testdata.csv"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["rows"] == 300
    model, _ = modelstore.load_deployed_model(diagnosed.config.deploy_dir)
    rows = pd.read_csv(diagnosed.root / "testdata" / "testdata.csv")
    assert body["predictions"] == model.predict(rows[list(FEATURES)]).tolist()


@pytest.mark.parametrize("path", ["sourcedata/batch1.csv", "ingesteddata/finaldata.csv"])
def test_prediction_from_other_data_folders(client, path):
    assert client.post("/prediction", json={"filepath": path}).status_code == 200


def test_prediction_from_a_csv_body(client):
    csv = "lastmonth_activity,lastyear_activity,number_of_employees\n4,60,2\n,900,30\n"
    response = client.post("/prediction", data=csv, content_type="text/csv")
    assert response.status_code == 200
    assert response.get_json()["rows"] == 2


@pytest.fixture
def secret(diagnosed, tmp_path):
    """A file outside the data folders, and links to it from inside them."""
    path = tmp_path / "secret.csv"
    path.write_text(
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
        "topsecret,1,2,3,0\n"
    )
    os.symlink(path, diagnosed.input_dir / "link.csv")
    os.symlink(tmp_path, diagnosed.input_dir / "linkdir")
    return path


@pytest.mark.parametrize(
    "filepath",
    [
        "../../secret.csv",
        "sourcedata/../../secret.csv",
        "sourcedata/link.csv",
        "sourcedata/linkdir/secret.csv",
        "config.json",
        "models/trainedmodel.json",
        "/etc/passwd",
        "../../does-not-exist.csv",
        "/nowhere/at/all.csv",
    ],
)
def test_paths_outside_the_data_folders_are_refused(client, secret, filepath):
    response = client.post("/prediction", json={"filepath": filepath})
    assert response.status_code == 403
    assert response.get_json() == {
        "error": "filepath: only files inside the configured data folders can be read"
    }


def test_missing_file_inside_the_data_folders(client):
    response = client.post("/prediction", json={"filepath": "sourcedata/nope.csv"})
    assert response.status_code == 404
    assert "no such file" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"records": []}, "records: expected a non-empty list of objects"),
        ({"records": "x"}, "records: expected a non-empty list of objects"),
        ({"records": [RECORD, 5]}, "records[1]: expected an object"),
        (
            {"records": [{"lastmonth_activity": 1, "lastyear_activity": 2}]},
            "records[0]: missing field 'number_of_employees'",
        ),
        (
            {"records": [{**RECORD, "lastyear_activity": "600"}]},
            'records[0].lastyear_activity: expected a number or null, got "600"',
        ),
        (
            {"records": [{**RECORD, "number_of_employees": True}]},
            "records[0].number_of_employees: expected a number or null, got true",
        ),
        (
            {"records": [RECORD, {**RECORD, "lastmonth_activity": -3}]},
            "records[1].lastmonth_activity: -3 is negative",
        ),
        (
            {"records": [{**RECORD, "corporation": 7}]},
            "records[0].corporation: expected text, got 7",
        ),
        (
            {"records": [RECORD], "filepath": "x.csv"},
            "give exactly one of 'records' and 'filepath'",
        ),
        ({}, "give exactly one of 'records' and 'filepath'"),
        ({"record": [RECORD]}, "body: unknown field(s) 'record'"),
        ({"filepath": 3}, "filepath: expected the path of a CSV file"),
        ({"filepath": "sourcedata/"}, "only .csv files"),
        ([1, 2], "body: expected a JSON object"),
    ],
)
def test_bad_request_names_the_field(client, body, message):
    response = client.post("/prediction", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_bad_csv_line_is_named(client, diagnosed):
    (diagnosed.input_dir / "bad.csv").write_text(
        "lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n4,lots,6\n"
    )
    response = client.post("/prediction", json={"filepath": "sourcedata/bad.csv"})
    assert response.status_code == 400
    assert (
        response.get_json()["error"]
        == "sourcedata/bad.csv:3: lastyear_activity: 'lots' is not a number"
    )


HUGE = 10**401


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            json.dumps({"records": [{**RECORD, "number_of_employees": HUGE}]}),
            "application/json",
            "records[0].number_of_employees: 10000000000000000000… (402 digits) is too large",
        ),
        (
            '{"records": [{"lastmonth_activity": 1e400, "lastyear_activity": 1,'
            ' "number_of_employees": 1}]}',
            "application/json",
            "records[0].lastmonth_activity: inf is not finite",
        ),
        (
            '{"records": [{"lastmonth_activity": NaN, "lastyear_activity": 1,'
            ' "number_of_employees": 1}]}',
            "application/json",
            "records[0].lastmonth_activity: nan is not finite",
        ),
        ("[" * 100_000 + "]" * 100_000, "application/json", "body: JSON nested too deeply"),
        (
            "lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n4,5\n",
            "text/csv",
            "body:3: expected 3 fields, saw 2",
        ),
        (
            "lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3,4\n",
            "text/csv",
            "body:2: expected 3 fields, saw 4",
        ),
        (
            f"lastmonth_activity,lastyear_activity,number_of_employees\n1,1e400,{HUGE}\n",
            "text/csv",
            "body:2: lastyear_activity: 1e400 is too large",
        ),
        (
            ",".join(f"column{i}" for i in range(30_000)) + "\n" + ",".join(["1"] * 30_000),
            "text/csv",
            "body: 30,000 columns in the header; at most 256",
        ),
        (
            "lastmonth_activity,lastyear_activity,number_of_employees\n1.5e307,,3\n",
            "text/csv",
            "body:2: lastmonth_activity: 1.5e307 is too large (at most 1,000,000,000,000,000)",
        ),
        (
            '{"records": [{"corporation": "ab\\ud800", "lastmonth_activity": 1,'
            ' "lastyear_activity": 1, "number_of_employees": 1}]}',
            "application/json",
            "records[0].corporation: not valid text",
        ),
        (
            json.dumps({"records": [{**RECORD, "lastmonth_activity": 1.5e307}]}),
            "application/json",
            "records[0].lastmonth_activity: 1.5e+307 is too large (at most 1,000,000,000,000,000)",
        ),
    ],
    ids=[
        "401-digit number",
        "1e400",
        "NaN",
        "deep JSON",
        "short CSV row",
        "long CSV row",
        "huge CSV numbers",
        "30,000 columns",
        "CSV count whose year overflows",
        "lone surrogate in corporation",
        "JSON count whose year overflows",
    ],
)
def test_hostile_bodies_are_400_with_the_field_and_reason(client, body, content_type, message):
    response = client.post("/prediction", data=body, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["error"].startswith(message)


@pytest.mark.parametrize(
    "filepath", ["x" * 5000 + ".csv", "sourcedata/" + "y" * 300 + ".csv"], ids=["long", "long name"]
)
def test_a_filepath_too_long_is_400(client, filepath):
    response = client.post("/prediction", json={"filepath": filepath})
    assert response.status_code == 400
    assert response.get_json()["error"] == "filepath: too long to name a file"


def test_the_filepath_as_a_form_field_or_in_the_query_string(client):
    expected = client.post("/prediction", json={"filepath": "testdata/testdata.csv"}).get_json()
    form = client.post("/prediction", data={"filepath": "testdata/testdata.csv"})
    query = client.post("/prediction?filepath=testdata/testdata.csv")
    assert form.status_code == query.status_code == 200
    assert form.get_json() == query.get_json() == expected
    outside = client.post("/prediction?filepath=../../etc/passwd")
    assert outside.status_code == 403


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        (
            {"path": "/prediction?filepath=a.csv", "json": {"filepath": "b.csv"}},
            "either in the query string or in the body",
        ),
        ({"path": "/prediction?file=a.csv"}, "query: unknown parameter(s) 'file'"),
        ({"path": "/prediction", "data": {"filepath": "a.csv", "x": "1"}}, "form: expected"),
        ({"path": "/prediction"}, 'body: send {"records": [...]}'),
    ],
    ids=["query and body", "unknown query", "extra form field", "nothing"],
)
def test_unclear_requests_say_what_to_send(client, request_kwargs, message):
    response = client.post(**request_kwargs)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_openapi_names_the_server_it_is_served_from_without_the_host_header(client):
    response = client.get("/openapi.json", headers={"Host": "evil.example:666"})
    assert response.get_json()["servers"] == [{"url": "/"}]
    assert "evil.example" not in response.get_data(as_text=True)


def test_invalid_json_and_other_media_types(client):
    response = client.post("/prediction", data="{not json", content_type="application/json")
    assert response.status_code == 400
    response = client.post("/prediction", data="<a/>", content_type="application/xml")
    assert response.status_code == 415
    assert response.get_json() == {"error": "send application/json or text/csv"}


def test_body_over_the_limit_is_413(diagnosed):
    config = json.loads(diagnosed.config_path.read_text())
    diagnosed.config_path.write_text(json.dumps({**config, "api_max_request_bytes": 2000}))
    client = create_app(diagnosed.config_path, token="").test_client()
    response = post_records(client, [RECORD] * 100)
    assert response.status_code == 413
    assert response.get_json() == {
        "error": "request body too large: at most 2,000 bytes are accepted"
    }
    assert post_records(client, [RECORD]).status_code == 200


def csv_body(rows: int) -> bytes:
    lines = "".join(f"c{index:05d},40,600,12\n" for index in range(rows))
    return (
        "corporation,lastmonth_activity,lastyear_activity,number_of_employees\n" + lines
    ).encode()


@pytest.fixture
def small_limit_app(diagnosed):
    config = json.loads(diagnosed.config_path.read_text())
    diagnosed.config_path.write_text(json.dumps({**config, "api_max_request_bytes": 2000}))
    return create_app(diagnosed.config_path, token="")


def post_chunked(url: str, body: bytes):
    """POST `body` as a chunked CSV (no Content-Length) over a real connection."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    chunks = (body[start : start + 500] for start in range(0, len(body), 500))
    connection.request(
        "POST",
        "/prediction?reasons=false",
        body=chunks,
        headers={"Content-Type": "text/csv"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read()))
    connection.close()
    return answer


@pytest.mark.parametrize("rows", [110, 140], ids=["under the limit", "over the limit"])
def test_a_chunked_body_over_the_limit_is_413_not_cut(small_limit_app, rows):
    import threading

    from werkzeug.serving import make_server

    body = csv_body(rows)
    assert (len(body) <= 2000) == (rows == 110)
    server = make_server("127.0.0.1", 0, small_limit_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, answer = post_chunked(f"http://127.0.0.1:{server.port}", body)
    finally:
        server.shutdown()
    if len(body) <= 2000:
        assert status == 200
        assert answer["rows"] == rows
    else:
        assert status == 413
        assert answer == {"error": "request body too large: at most 2,000 bytes are accepted"}


@pytest.mark.parametrize("chunked", [False, True], ids=["Content-Length", "chunked"])
def test_a_body_sent_too_slowly_is_408(diagnosed, chunked):
    import threading
    import time

    from test_apicalls import SlowClient
    from werkzeug.serving import make_server

    config = json.loads(diagnosed.config_path.read_text())
    diagnosed.config_path.write_text(json.dumps({**config, "api_body_timeout_seconds": 1.5}))
    server = make_server("127.0.0.1", 0, create_app(diagnosed.config_path, token=""), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = SlowClient(f"http://127.0.0.1:{server.port}", chunked=chunked)
    try:
        started = time.monotonic()
        answer = client.answer()
        assert time.monotonic() - started < 4
    finally:
        client.close()
        server.shutdown()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["error"].startswith("request body not received within 1.5 s")


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_an_unframed_body_at_the_limit(small_limit_app, extra):
    body = csv_body(70)
    body += b"\n" * (2000 + extra - len(body))  # blank lines: no rows
    response = small_limit_app.test_client().post(
        "/prediction?reasons=false",
        input_stream=io.BytesIO(body),
        content_type="text/csv",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == (413 if extra > 0 else 200)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("get", "/nothing", 404), ("delete", "/prediction", 405), ("post", "/scoring", 405)],
)
def test_http_errors_are_json(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.is_json
    assert set(response.get_json()) == {"error"}


def test_an_unexpected_failure_is_a_json_500(client, monkeypatch):
    def broken(model, rows):
        raise RuntimeError("boom at /secret/place")

    monkeypatch.setattr(api_module, "predict_arrays", broken)
    monkeypatch.setattr(api_module, "explain", broken)
    response = post_records(client, [RECORD])
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal error"}


def test_scoring_is_computed_once_per_model(client, diagnosed):
    first = client.get("/scoring").get_json()
    stored = json.loads((diagnosed.root / "models" / "scoremetrics.json").read_text())
    for key in ("f1", "precision", "recall", "roc_auc", "confusion", "rows"):
        assert first[key] == stored[key]
    assert first["model_version"] == "v0001"
    assert client.get("/scoring").get_json()["computed_at"] == first["computed_at"]


def test_scoring_before_any_new_batch_has_the_test_file_alone(client):
    body = client.get("/scoring").get_json()
    assert body["newest_rows"] is None
    assert body["test_data_resembles_incoming"] is True
    assert body["what_happened"] is None
    described = client.get("/openapi.json").get_json()["components"]["schemas"]["Scores"]
    assert set(body) <= set(described["properties"])


def test_after_a_drift_scoring_gives_the_newest_rows_beside_the_test_file(diagnosed):
    import fullprocess

    diagnosed.write_input("drifted.csv", client_rows(1000, seed=23, drifted=True))
    assert fullprocess.main(diagnosed.args()) == 0
    client = create_app(diagnosed.config_path, token="").test_client()
    body = client.get("/scoring").get_json()
    assert body["model_version"] == "v0002"
    assert body["test_data"] == "testdata.csv"
    newest = body["newest_rows"]
    assert (newest["rows"], newest["dataset"]) == (300, "300 held-out rows of batches 3-3")
    assert newest["roc_auc"] > body["roc_auc"]  # better on today's market than on the old one
    assert body["test_data_resembles_incoming"] is False
    assert body["test_data_drifted"]
    assert body["what_happened"].startswith("The market changed on ")
    described = client.get("/openapi.json").get_json()["components"]["schemas"]["Scores"]
    assert set(body) <= set(described["properties"])
    assert set(newest) <= set(described["properties"]["newest_rows"]["properties"])


def test_summarystats_and_diagnostics_come_from_the_latest_results(client, diagnosed):
    report = json.loads((diagnosed.root / "models" / "diagnostics.json").read_text())
    stats = client.get("/summarystats").get_json()
    assert stats["summary_statistics"] == report["summary_statistics"]
    assert stats["generated_at"] == report["generated_at"]
    body = client.get("/diagnostics").get_json()
    assert body["missing_percent"] == report["missing_percent"]
    assert body["timings"] == report["timings"]
    assert body["drift"] == report["drift"]
    assert body["dependencies"] == report["dependencies"]


@pytest.mark.parametrize("path", ["/summarystats", "/diagnostics"])
def test_no_diagnostics_yet_is_503(deployed, path):
    response = create_app(deployed.config_path, token="").test_client().get(path)
    assert response.status_code == 503
    assert "run diagnostics.py" in response.get_json()["error"]


def test_no_model_is_503(project):
    client = create_app(project.config_path, token="").test_client()
    response = post_records(client, [RECORD])
    assert response.status_code == 503
    assert response.get_json() == {"error": "no valid model is deployed; run deployment.py"}
    assert client.get("/scoring").status_code == 503


def test_tampered_live_model_is_not_served(client, diagnosed):
    model = diagnosed.root / "production_deployment" / "versions" / "v0001" / "trainedmodel.pkl"
    with model.open("ab") as handle:
        handle.write(b"!")
    fresh = create_app(diagnosed.config_path, token="").test_client()
    assert fresh.get("/health").status_code == 503
    assert post_records(fresh, [RECORD]).status_code == 503


@pytest.mark.parametrize(
    "place",
    ["versions/v0001/trainedmodel.pkl", "versions/v0001", "versions", "."],
    ids=["the model", "its version folder", "the versions folder", "the deployment folder"],
)
def test_a_model_others_may_write_to_is_not_loaded(diagnosed, place, caplog):
    path = diagnosed.root / "production_deployment" / place
    path.chmod(path.stat().st_mode | 0o002)
    try:
        fresh = create_app(diagnosed.config_path, token="").test_client()
        assert fresh.get("/health").status_code == 503
        assert post_records(fresh, [RECORD]).status_code == 503
        assert "writable by others than its owner" in caplog.text
        # The pipeline's next run refuses it too.
        with pytest.raises(modelstore.DeploymentError, match="writable by others"):
            modelstore.load_deployed_model(diagnosed.root / "production_deployment")
    finally:
        path.chmod(path.stat().st_mode & ~0o002)
    assert (
        create_app(diagnosed.config_path, token="").test_client().get("/health").status_code == 200
    )


@pytest.mark.parametrize(
    "impostor", ["unfitted", "not a model"], ids=["an unfitted pipeline", "a plain object"]
)
def test_health_is_not_ok_for_something_that_is_not_a_fitted_model(diagnosed, impostor):
    import pickle

    from clientrisk.atomicfiles import sha256_file
    from clientrisk.model.training import build_pipeline

    version = diagnosed.root / "production_deployment" / "versions" / "v0001"
    thing = build_pipeline() if impostor == "unfitted" else {"predict": "nothing"}
    (version / "trainedmodel.pkl").write_bytes(pickle.dumps(thing))
    manifest = json.loads((version / "manifest.json").read_text())
    checksum = sha256_file(version / "trainedmodel.pkl")
    manifest["model_sha256"] = checksum
    manifest["files"]["trainedmodel.pkl"] = checksum
    (version / "manifest.json").write_text(json.dumps(manifest))
    response = create_app(diagnosed.config_path, token="").test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"


def test_new_deployment_and_rollback_are_served_without_restart(client, diagnosed):
    assert post_records(client, [RECORD]).get_json()["model_version"] == "v0001"
    diagnosed.write_input("more.csv", client_rows(200, seed=11))
    run_steps(diagnosed, "ingestion", "training", "scoring", "deployment")
    assert post_records(client, [RECORD]).get_json()["model_version"] == "v0002"
    assert client.get("/scoring").get_json()["model_version"] == "v0002"
    run_steps(diagnosed, "deployment")  # unchanged: nothing to do
    assert client.get("/health").get_json()["model_version"] == "v0002"
    assert deployment.main(diagnosed.args("--rollback")) == 0
    assert client.get("/health").get_json()["model_version"] == "v0001"


@pytest.fixture
def token_client(diagnosed):
    return create_app(diagnosed.config_path, token="s3cret").test_client()


@pytest.mark.parametrize("header", [None, "Bearer wrong", "s3cret", "Basic s3cret"])
@pytest.mark.parametrize("path", ["/scoring", "/summarystats", "/diagnostics", "/openapi.json"])
def test_token_is_required(token_client, path, header):
    headers = {} if header is None else {"Authorization": header}
    response = token_client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in response.get_json()["error"]


def test_token_opens_every_endpoint_but_health_needs_none(token_client):
    auth = {"Authorization": "Bearer s3cret"}
    assert token_client.get("/scoring", headers=auth).status_code == 200
    assert post_records(token_client, [RECORD], headers=auth).status_code == 200
    assert post_records(token_client, [RECORD]).status_code == 401
    assert token_client.get("/health").status_code == 200


def test_token_from_the_environment(diagnosed, monkeypatch):
    monkeypatch.setenv("RISK_API_TOKEN", "from-env")
    client = create_app(diagnosed.config_path).test_client()
    assert client.get("/scoring").status_code == 401
    assert client.get("/scoring", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_openapi_describes_every_route(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    routes = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    described = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert routes == described
    for item in spec["paths"].values():
        for operation in item.values():
            assert operation["responses"]


def test_wsgi_takes_the_config_from_the_environment(diagnosed, monkeypatch):
    monkeypatch.setenv("RISK_CONFIG", str(diagnosed.config_path))
    sys.modules.pop("wsgi", None)
    wsgi = importlib.import_module("wsgi")
    assert wsgi.app.extensions["risk_api"].config == load_config(diagnosed.config_path)
    sys.modules.pop("wsgi", None)


def test_every_prediction_comes_with_its_reasons_unless_left_out(client):
    dormant = {**RECORD, "lastmonth_activity": 0}
    answer = post_records(client, [dormant, RECORD]).get_json()
    assert len(answer["reasons"]) == 2
    strongest = answer["reasons"][0][0]
    assert strongest["factor"] == "recent activity"
    assert strongest["reason"] == (
        "no activity last month (average 50); clients silent for a month leave more often"
    )
    assert strongest["text"].startswith(strongest["reason"] + ": risk ")
    assert all(answer["reasons"])  # every record has one, typical or not
    assert 0.01 <= strongest["effect"] <= answer["probabilities"][0]
    plain = client.post("/prediction", json={"records": [dormant], "reasons": False}).get_json()
    assert "reasons" not in plain
    assert plain["probabilities"] == answer["probabilities"][:1]
    csv = "lastmonth_activity,lastyear_activity,number_of_employees\n0,600,12\n"
    queried = client.post("/prediction?reasons=false", data=csv, content_type="text/csv")
    assert "reasons" not in queried.get_json()
    assert client.post("/prediction", data=csv, content_type="text/csv").get_json()["reasons"]


@pytest.mark.parametrize(
    ("query", "body", "message"),
    [
        ("", {"reasons": "yes"}, 'reasons: expected true or false, got "yes"'),
        ("?reasons=maybe", {}, 'reasons: expected true or false, got "maybe"'),
        ("?reasons=false", {"reasons": False}, "reasons either in the query string or in the body"),
    ],
)
def test_a_bad_reasons_option_is_a_400(client, query, body, message):
    response = client.post(f"/prediction{query}", json={"records": [RECORD], **body})
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_diagnostics_give_the_call_list_summary(client, diagnosed):
    ranking = client.get("/diagnostics").get_json()["ranking"]
    listed = pd.read_csv(diagnosed.root / "models" / "riskranking.csv")
    assert ranking["clients"] == len(listed)
    assert [entry["corporation"] for entry in ranking["top"]] == list(listed["corporation"][:20])
    leavers = ranking["expected_leavers"]
    assert leavers["low"] <= leavers["expected"] <= leavers["high"]
    assert leavers["expected"] == pytest.approx(listed["probability"].sum(), abs=0.1)
    assert set(ranking["precision"]) == {"rows", "base_rate", "top_20", "top_50", "top_100"}


def test_more_rows_to_explain_than_the_bound_is_413_saying_how_to_ask_for_less(diagnosed):
    config = json.loads(diagnosed.config_path.read_text())
    diagnosed.config_path.write_text(json.dumps({**config, "api_max_reason_rows": 5}))
    client = create_app(diagnosed.config_path, token="").test_client()
    response = post_records(client, [RECORD] * 6)
    assert response.status_code == 413
    message = response.get_json()["error"]
    assert message.startswith("6 rows to explain: at most 5 are explained in one request")
    assert "reasons=false" in message
    assert post_records(client, [RECORD] * 5).status_code == 200
    alone = client.post("/prediction?reasons=false", json={"records": [RECORD] * 6})
    assert alone.status_code == 200
    assert alone.get_json()["rows"] == 6


def test_a_record_outside_the_range_the_model_has_seen_is_marked(client):
    far = {"lastmonth_activity": 1, "lastyear_activity": 5e7, "number_of_employees": 12}
    answer = post_records(client, [RECORD, far]).get_json()
    inside, outside = answer["outside_range"]
    assert inside == []
    assert outside == ["lastyear_activity", "last month against the year"]
    assert answer["warnings"] == [
        "record 2: outside the range the model has seen: treat the risk as uncertain"
        " (lastyear_activity, last month against the year)"
    ]
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    described = schemas["Predictions"]
    assert set(described["required"]) <= set(answer) <= set(described["properties"])
    for items in answer["reasons"]:
        for item in items:
            assert set(item) == set(schemas["Reason"]["properties"])
            assert item["factor"] in schemas["Reason"]["properties"]["factor"]["enum"]
