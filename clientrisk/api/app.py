"""The HTTP API: predictions of the deployed model and the pipeline's latest results, as JSON.

Requests are cheap: the model is loaded once per deployment (a new deployment or a rollback is
picked up at the next request, no restart), scores are computed once per deployed version, and
statistics and diagnostics are served from what diagnostics.py wrote.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from math import nan
from pathlib import Path

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from clientrisk.api.bodydeadline import BodyDeadline
from clientrisk.api.dashboard import DashboardCache, dashboard
from clientrisk.api.inputs import BoundedRequest, prediction_rows
from clientrisk.api.metrics import Metrics
from clientrisk.api.mlflowformat import invocation_rows
from clientrisk.api.sessions import SESSIONS_FILE, SessionStore
from clientrisk.api.state import (
    ApiState,
    FileCache,
    LiveModel,
    ModelWatcher,
    Unavailable,
    live_model,
    state,
)
from clientrisk.calllist.reasons import explain, reasons
from clientrisk.cli import capture_warnings
from clientrisk.config import DIAGNOSTICS_FILE, default_config_path, load_config
from clientrisk.data.clientcsv import FEATURES, ID_COLUMN, read_labelled_csv
from clientrisk.deployment import modelstore
from clientrisk.errors import DataError, PipelineError
from clientrisk.model.coverage import UNCERTAIN, outside_range, outside_text
from clientrisk.model.scoring import evaluate_model, predict_arrays
from clientrisk.report.vulnerabilities import vulnerable_packages
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

TOKEN_ENV = "RISK_API_TOKEN"
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
PUBLIC_ENDPOINTS = {"api.health", "api.ping"}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

api = Blueprint("api", __name__)


# --- state shared by the requests of one process -------------------------------------------------


# --- requests ------------------------------------------------------------------------------------


# --- endpoints -----------------------------------------------------------------------------------


@api.before_request
def check_token():
    token = state().token
    if token is None or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = jsonify(error="missing or wrong token: send 'Authorization: Bearer <token>'")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, 401
    return None


@api.route("/prediction", methods=["GET", "POST"])
def prediction():
    try:
        rows, with_reasons = prediction_rows()
    except DataError as error:
        return jsonify(error=str(error)), 400
    most = state().config.settings["api_max_reason_rows"]
    if with_reasons and len(rows) > most:
        message = (
            f"{len(rows):,} rows to explain: at most {most:,} are explained in one request;"
            " ask with reasons=false (in the query string or the JSON body) for predictions"
            " alone, or send the rows in parts"
        )
        return jsonify(error=message), 413
    live = live_model()
    if with_reasons:
        labels, probabilities, effects, values, typical = explain(live.model, rows)
    else:
        labels, probabilities = predict_arrays(live.model, rows[list(FEATURES)])
    outside = outside_range(live.model, rows[list(FEATURES)].to_numpy(dtype=float, na_value=nan))
    answer = {
        "model_version": live.deployment.label,
        "rows": len(rows),
        "predictions": labels.astype(int).tolist(),
        "probabilities": probabilities.round(6).tolist(),
        "outside_range": outside,
        "warnings": outside_warnings(outside),
    }
    if with_reasons:
        answer["reasons"] = reasons(effects, values, typical, probabilities)
    if ID_COLUMN in rows.columns:
        clients = rows[ID_COLUMN]
        answer["corporations"] = clients.astype(object).where(clients.notna(), None).tolist()
    return jsonify(answer)


def outside_warnings(outside: list[list[str]], most: int = 10) -> list[str]:
    """A sentence for each of the first `most` records outside the range the model has seen,
    and one for the rest."""
    found = [(index, names) for index, names in enumerate(outside) if names]
    said = [f"record {index + 1}: {outside_text(names)}" for index, names in found[:most]]
    if len(found) > most:
        said.append(f"and {len(found) - most:,} more records {UNCERTAIN.split(':')[0]}")
    return said


@api.post("/invocations")
def invocations():
    """Predictions in MLflow's scoring format, for tools written for MLflow's model server:
    `{"predictions": [...]}` (the labels, 1 = predicted to leave), with the probabilities."""
    try:
        rows = invocation_rows()
    except DataError as error:
        return jsonify(error=str(error)), 400
    live = live_model()
    features = rows[list(FEATURES)]
    labels, probabilities = predict_arrays(live.model, features)
    outside = outside_range(live.model, features.to_numpy(dtype=float, na_value=nan))
    return jsonify(
        predictions=labels.astype(int).tolist(),
        probabilities=probabilities.round(6).tolist(),
        model_version=live.deployment.label,
        warnings=outside_warnings(outside),
    )


@api.get("/ping")
def ping():
    """MLflow's health check: 200 with an empty line while a valid model is served."""
    try:
        state().models.get()
    except PipelineError as error:
        logger.warning("ping: %s", error)
        return jsonify(error="no valid model is deployed"), 503
    return current_app.response_class("\n", mimetype="application/json")


@api.get("/scoring")
def scoring():
    live = live_model()
    test_file = state().config.test_data_file
    if not test_file.is_file():
        raise Unavailable(f"no test data ({test_file.name}) to score on")
    metrics = state().scores.get(test_file, lambda path: score(live, path), tag=live.version)
    return jsonify({**metrics, **newest_quality(live)})


def newest_quality(live: LiveModel) -> dict:
    """The live model on the newest rows with an outcome, and whether the test file still
    resembles the incoming data, as the diagnostics of the live model found them (None before
    they are made for it)."""
    try:
        report = latest_diagnostics()
    except Unavailable:
        report = {}
    quality = (
        report.get("quality")
        if report.get("model", {}).get("sha256") == (live.deployment.manifest["model_sha256"])
        else None
    )
    resemblance = (quality or {}).get("test_file_drift") or {}
    return {
        "newest_rows": (quality or {}).get("newest"),
        "test_data_resembles_incoming": resemblance.get("resembles"),
        "test_data_drifted": resemblance.get("drifted", []),
        "what_happened": (quality or {}).get("story"),
    }


def score(live: LiveModel, path: Path) -> dict:
    metrics = evaluate_model(live.model, read_labelled_csv(path))
    return {
        **metrics,
        "model_version": live.deployment.label,
        "test_data": path.name,
        "computed_at": utc_now(),
    }


@api.get("/summarystats")
def summarystats():
    report = latest_diagnostics()
    return jsonify({**_provenance(report), "summary_statistics": report["summary_statistics"]})


@api.get("/diagnostics")
def diagnostics_view():
    report = latest_diagnostics()
    dependencies = report["dependencies"]
    return jsonify(
        {
            **_provenance(report),
            "missing_percent": report["missing_percent"],
            "timings": report["timings"],
            "dependencies": dependencies,
            "outdated_packages": [d["package"] for d in dependencies if d["status"] == "outdated"],
            "vulnerabilities": report.get("vulnerabilities"),
            "vulnerable_packages": [
                f"{found.package}=={found.version}" for found in vulnerable_packages(report)
            ],
            "drift": report["drift"],
            "ranking": report.get("ranking"),
        }
    )


def latest_diagnostics() -> dict:
    path = state().config.model_dir / DIAGNOSTICS_FILE
    try:
        return state().diagnostics.get(path, lambda p: json.loads(p.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise Unavailable("no diagnostics yet; run diagnostics.py (or fullprocess.py)") from None
    except (OSError, ValueError):
        raise Unavailable("the diagnostics file cannot be read; run diagnostics.py") from None


def _provenance(report: dict) -> dict:
    live_version = modelstore.current_version(state().config.deploy_dir)
    model = report["model"]["version"]
    return {
        "generated_at": report["generated_at"],
        "model_version": model,
        "live_model_version": None
        if live_version is None
        else modelstore.version_name(live_version),
        "rows": report["data"]["rows"],
    }


@api.get("/health")
def health():
    runs = pipeline_health()
    try:
        live = state().models.get()
    except PipelineError as error:
        logger.warning("health: %s", error)
        return jsonify(status="unavailable", error="no valid model is deployed", runs=runs), 503
    return jsonify(
        status="ok", model_version=live.deployment.label, config=state().config.identity, runs=runs
    )


def pipeline_health() -> dict:
    """Whether the pipeline is alive: when a run last did its work, and whether that is longer
    ago than `alert_no_success_hours` (a dead cron shows here before any tick runs again)."""
    facts = state().dashboard.facts()
    return {
        "last_success_at": facts.get("last_success_at"),
        "no_success_hours": state().config.settings["alert_no_success_hours"],
        "overdue": state().dashboard.overdue(facts),
    }


@api.get("/metrics")
def metrics():
    """Prometheus text format: requests per endpoint, and what the system knows now."""
    body = state().metrics.exposition(state().dashboard.facts())
    return current_app.response_class(body, content_type=PROMETHEUS_TYPE)


@api.get("/openapi.json")
def openapi():
    """The OpenAPI description; its server is named relative to where it is served from (never
    from the Host header a client sends)."""
    return jsonify({**state().openapi, "servers": [{"url": request.script_root or "/"}]})


# --- the application -----------------------------------------------------------------------------


def json_error(error: HTTPException):
    """Every HTTP error as `{"error": ...}` with its status (and headers, such as Allow)."""
    messages = {
        NotFound: f"no such endpoint: {request.path}; see /openapi.json",
        MethodNotAllowed: f"{request.method} is not allowed on {request.path}",
        RequestEntityTooLarge: "request body too large: at most"
        f" {current_app.config['MAX_CONTENT_LENGTH']:,} bytes are accepted",
    }
    response = error.get_response()
    message = messages.get(type(error), error.description)
    response.data = current_app.json.dumps({"error": message})
    response.content_type = "application/json"
    return response


def internal_error(error: Exception):
    logger.exception("unexpected error on %s %s", request.method, request.path)
    return jsonify(error="internal error"), 500


def start_timer() -> None:
    g.started = time.perf_counter()


def count_request(response):
    """Every answer counted by route (not by path, which a client chooses), with its latency."""
    started = g.get("started")
    if started is not None:
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        seconds = time.perf_counter() - started
        state().metrics.observe(endpoint, request.method, response.status_code, seconds)
    return response


def use_gunicorn_logging() -> None:
    """Under gunicorn, send the app's log lines, library warnings among them, to gunicorn's
    error log, at its level."""
    server_logger = logging.getLogger("gunicorn.error")
    if server_logger.handlers:
        logging.root.handlers = list(server_logger.handlers)
        logging.root.setLevel(server_logger.level)
        capture_warnings()


def create_app(config_path: str | os.PathLike | None = None, token: str | None = None) -> Flask:
    """Build the API for one project.

    Args:
        config_path: the config file (default: RISK_CONFIG, else `config.json` beside the scripts).
        token: required as `Authorization: Bearer <token>` on every endpoint but /health;
            default: the RISK_API_TOKEN environment variable, none when it is unset or empty.
    """
    config = load_config(config_path or default_config_path())
    token = (token if token is not None else os.environ.get(TOKEN_ENV)) or None
    app = Flask(__name__)
    app.request_class = BoundedRequest
    app.config["MAX_CONTENT_LENGTH"] = config.settings["api_max_request_bytes"]
    app.wsgi_app = BodyDeadline(
        app.wsgi_app,
        config.settings["api_body_timeout_seconds"],
        config.settings["api_max_request_bytes"],
    )
    hops = config.settings["api_proxy_hops"]
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    sessions = SessionStore(config.log_dir / SESSIONS_FILE)
    if token is not None:
        sessions.bind_token(token)
    app.json.sort_keys = False
    app.extensions["risk_api"] = ApiState(
        config=config,
        token=token,
        models=ModelWatcher(config.deploy_dir),
        diagnostics=FileCache(),
        scores=FileCache(),
        openapi=json.loads(OPENAPI_FILE.read_text(encoding="utf-8")),
        dashboard=DashboardCache(config),
        metrics=Metrics(),
        sessions=sessions,
    )
    app.register_blueprint(api)
    app.register_blueprint(dashboard)
    app.before_request(start_timer)
    app.after_request(count_request)
    app.register_error_handler(HTTPException, json_error)
    app.register_error_handler(Exception, internal_error)
    return app
