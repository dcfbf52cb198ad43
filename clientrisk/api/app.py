"""The HTTP API: predictions of the deployed model and the pipeline's latest results, as JSON.

Requests are cheap: the model is loaded once per deployment (a new deployment or a rollback is
picked up at the next request, no restart), scores are computed once per deployed version, and
statistics and diagnostics are served from what diagnostics.py wrote.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from clientrisk.api.dashboard import DashboardCache, dashboard, secret_key
from clientrisk.api.metrics import Metrics
from clientrisk.calllist.ranking import explain, reasons
from clientrisk.config import (
    DIAGNOSTICS_FILE,
    Config,
    default_config_path,
    load_config,
)
from clientrisk.data.clientcsv import FEATURES, ID_COLUMN, read_labelled_csv, read_unlabelled_csv
from clientrisk.deployment import modelstore
from clientrisk.errors import DataError, PipelineError
from clientrisk.model.scoring import evaluate_model, predict_arrays
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

TOKEN_ENV = "RISK_API_TOKEN"
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
PUBLIC_ENDPOINTS = {"api.health"}
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Longest path a client may name; longer ones cannot name a file on common file systems.
MAX_PATH_LENGTH = 4096
MAX_NAME_LENGTH = 255
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

api = Blueprint("api", __name__)


class Forbidden(HTTPException):
    code = 403
    description = "filepath: only files inside the configured data folders can be read"


class NotFoundInData(HTTPException):
    code = 404
    description = "filepath: no such file in the data folders"


class UnsupportedType(HTTPException):
    code = 415
    description = "send application/json or text/csv"


class Unavailable(HTTPException):
    code = 503
    description = "not available"


# --- state shared by the requests of one process -------------------------------------------------


@dataclass(frozen=True)
class LiveModel:
    version: int
    model: object
    deployment: modelstore.Deployment


class ModelWatcher:
    """The deployed model, reloaded when the `current` link points at another version.

    Each request reads the link (one readlink); only a change loads and verifies the new model.
    Deployments are complete before they become live, so a reload never sees half a model.
    """

    def __init__(self, deploy_dir: Path):
        self.deploy_dir = deploy_dir
        self._live: LiveModel | None = None
        self._lock = threading.Lock()

    def get(self) -> LiveModel:
        live = self._live
        if live is not None and live.version == modelstore.current_version(self.deploy_dir):
            return live
        with self._lock:
            live = self._live
            if live is None or live.version != modelstore.current_version(self.deploy_dir):
                model, deployment = modelstore.load_deployed_model(self.deploy_dir)
                live = LiveModel(deployment.version, model, deployment)
                self._live = live
                logger.info("serving model %s", deployment.label)
            return live


class FileCache:
    """What was computed from a file, kept until the file or the `tag` (a model version) changes."""

    def __init__(self):
        self._key = None
        self._value = None
        self._lock = threading.Lock()

    def get(self, path: Path, compute, tag=None):
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size, tag)
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._value = compute(path)
                    self._key = key
        return self._value


@dataclass
class ApiState:
    config: Config
    token: str | None
    models: ModelWatcher
    diagnostics: FileCache
    scores: FileCache
    openapi: dict
    dashboard: DashboardCache
    metrics: Metrics


def state() -> ApiState:
    return current_app.extensions["risk_api"]


def live_model() -> LiveModel:
    try:
        return state().models.get()
    except PipelineError as error:
        logger.warning("no model to serve: %s", error)
        raise Unavailable("no valid model is deployed; run deployment.py") from None


# --- requests ------------------------------------------------------------------------------------


def records_frame(records) -> pd.DataFrame:
    """Client rows from JSON records, each checked field by field.

    Raises:
        DataError: naming the record and the field, e.g. `records[2].lastyear_activity: ...`.
    """
    if not isinstance(records, list) or not records:
        raise DataError("records: expected a non-empty list of objects")
    values = np.empty((len(records), len(FEATURES)))
    ids = []
    for index, record in enumerate(records):
        where = f"records[{index}]"
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object with {', '.join(FEATURES)}")
        for column, name in enumerate(FEATURES):
            if name not in record:
                raise DataError(f"{where}: missing field '{name}'")
            values[index, column] = _feature_value(record[name], f"{where}.{name}")
        identifier = record.get(ID_COLUMN)
        if identifier is not None and not isinstance(identifier, str):
            raise DataError(f"{where}.{ID_COLUMN}: expected text, got {_brief(identifier)}")
        ids.append(identifier)
    frame = pd.DataFrame(values, columns=list(FEATURES))
    if any(identifier is not None for identifier in ids):
        frame.insert(0, ID_COLUMN, ids)
    return frame


def _feature_value(value, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{where}: expected a number or null, got {_brief(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise DataError(f"{where}: {_brief(value)} is too large") from None
    if not math.isfinite(number):
        raise DataError(f"{where}: {value} is not finite")
    if number < 0:
        raise DataError(f"{where}: {_brief(value)} is negative")
    return number


def _brief(value) -> str:
    """A JSON value for an error message, shortened: never the whole of a huge one."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) > 30:
        return f"{str(value)[:20]}… ({len(str(value)):,} digits)"
    return json.dumps(value)[:60]


def data_file(text) -> Path:
    """The CSV file a `filepath` names, if it lies inside the configured data folders.

    The path is relative to the project folder (the config file's). Anything outside, `..`
    and links that lead out included, is refused before the file system is asked about it, so
    the answer never tells whether a file outside exists.
    """
    config = state().config
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise DataError("filepath: expected the path of a CSV file in a data folder")
    if len(text) > MAX_PATH_LENGTH or any(len(part) > MAX_NAME_LENGTH for part in text.split("/")):
        raise DataError("filepath: too long to name a file")
    try:
        candidate = Path(os.path.realpath(config.path.parent / text))
        test_root = config.test_data_path if config.test_data_path.is_dir() else None
        roots = [config.input_dir, config.ingested_dir, test_root or config.test_data_file.parent]
        if not any(candidate.is_relative_to(os.path.realpath(root)) for root in roots):
            raise Forbidden()
        if candidate.suffix.lower() != ".csv":
            raise DataError("filepath: only .csv files can be read")
        if not candidate.is_file():
            raise NotFoundInData()
    except OSError as error:
        raise DataError(f"filepath: cannot be used: {error.strerror or error}") from None
    return candidate


def json_body():
    """The request's JSON, or DataError saying what is wrong with it."""
    try:
        return json.loads(request.get_data())
    except RecursionError:
        raise DataError("body: JSON nested too deeply") from None
    except ValueError as error:
        raise DataError(f"body: invalid JSON: {error}") from None


def rows_of_file(filepath) -> pd.DataFrame:
    path = data_file(filepath)
    return read_unlabelled_csv(path, label=filepath)


def wants_reasons(body) -> bool:
    """Whether to explain each prediction: `reasons` (true unless false) in a JSON body or the
    query string; bulk scoring can leave the reasons out."""
    given = request.args.get("reasons")
    if isinstance(body, dict) and "reasons" in body:
        if given is not None:
            raise DataError("give reasons either in the query string or in the body, not both")
        if not isinstance(body["reasons"], bool):
            raise DataError(f"reasons: expected true or false, got {_brief(body['reasons'])}")
        return body["reasons"]
    if given is None:
        return True
    if given.lower() not in {"true", "false", "1", "0"}:
        raise DataError(f"reasons: expected true or false, got {_brief(given)}")
    return given.lower() in {"true", "1"}


def prediction_rows() -> tuple[pd.DataFrame, bool]:
    """The client rows a request asks about: JSON records or filepath, a CSV body, or a filepath
    as a form field or in the query string (as clients written for the course send it); and
    whether to give the reasons."""
    unknown = sorted(set(request.args) - {"filepath", "reasons"})
    if unknown:
        raise DataError(f"query: unknown parameter(s) {', '.join(map(repr, unknown))}")
    rows, body = _prediction_rows()
    return rows, wants_reasons(body)


def _prediction_rows():
    query = request.args.get("filepath")
    if not request.get_data():
        if query is None:
            raise DataError(
                'body: send {"records": [...]} or {"filepath": "..."} as JSON, a CSV body, or'
                " a filepath form field or query parameter"
            )
        return rows_of_file(query), None
    if query is not None:
        raise DataError("give the filepath either in the query string or in the body, not both")
    if request.mimetype == "text/csv":
        return read_unlabelled_csv(request.get_data(), label="body"), None
    if request.mimetype in FORM_TYPES:
        fields = set(request.form) | set(request.files)
        if fields != {"filepath"} or request.files:
            raise DataError("form: expected exactly one field, 'filepath'")
        return rows_of_file(request.form["filepath"]), None
    if request.mimetype != "application/json":
        raise UnsupportedType()
    body = json_body()
    if not isinstance(body, dict):
        raise DataError('body: expected a JSON object {"records": [...]} or {"filepath": "..."}')
    unknown = sorted(set(body) - {"records", "filepath", "reasons"})
    if unknown:
        raise DataError(f"body: unknown field(s) {', '.join(map(repr, unknown))}")
    if ("records" in body) == ("filepath" in body):
        raise DataError("body: give exactly one of 'records' and 'filepath'")
    if "records" in body:
        return records_frame(body["records"]), body
    return rows_of_file(body["filepath"]), body


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


@api.post("/prediction")
def prediction():
    try:
        rows, with_reasons = prediction_rows()
    except DataError as error:
        return jsonify(error=str(error)), 400
    live = live_model()
    if with_reasons:
        labels, probabilities, effects, values, typical = explain(live.model, rows)
    else:
        labels, probabilities = predict_arrays(live.model, rows[list(FEATURES)])
    answer = {
        "model_version": live.deployment.label,
        "rows": len(rows),
        "predictions": labels.astype(int).tolist(),
        "probabilities": probabilities.round(6).tolist(),
    }
    if with_reasons:
        answer["reasons"] = reasons(effects, values, typical)
    if ID_COLUMN in rows.columns:
        clients = rows[ID_COLUMN]
        answer["corporations"] = clients.astype(object).where(clients.notna(), None).tolist()
    return jsonify(answer)


@api.get("/scoring")
def scoring():
    live = live_model()
    test_file = state().config.test_data_file
    if not test_file.is_file():
        raise Unavailable(f"no test data ({test_file.name}) to score on")
    metrics = state().scores.get(test_file, lambda path: score(live, path), tag=live.version)
    return jsonify(metrics)


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
    try:
        live = state().models.get()
    except PipelineError as error:
        logger.warning("health: %s", error)
        return jsonify(status="unavailable", error="no valid model is deployed"), 503
    return jsonify(status="ok", model_version=live.deployment.label)


@api.get("/metrics")
def metrics():
    """Prometheus text format: requests per endpoint, and what the system knows now."""
    body = state().metrics.exposition(state().dashboard.facts())
    return current_app.response_class(body, content_type=PROMETHEUS_TYPE)


@api.get("/openapi.json")
def openapi():
    """The OpenAPI description, naming the server it is served from."""
    return jsonify({**state().openapi, "servers": [{"url": request.url_root.rstrip("/")}]})


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
    """Under gunicorn, send the app's log lines to gunicorn's error log, at its level."""
    server_logger = logging.getLogger("gunicorn.error")
    if server_logger.handlers:
        logging.root.handlers = list(server_logger.handlers)
        logging.root.setLevel(server_logger.level)


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
    app.config["MAX_CONTENT_LENGTH"] = config.settings["api_max_request_bytes"]
    app.config["SECRET_KEY"] = secret_key(token or "")
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
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
    )
    app.register_blueprint(api)
    app.register_blueprint(dashboard)
    app.before_request(start_timer)
    app.after_request(count_request)
    app.register_error_handler(HTTPException, json_error)
    app.register_error_handler(Exception, internal_error)
    return app
