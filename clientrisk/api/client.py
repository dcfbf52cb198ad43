"""Call every endpoint of the running API and write the answers to `apireturns.txt`.

The API is found at --url, else the RISK_API_URL environment variable, else
http://127.0.0.1:8000; a token in RISK_API_TOKEN is sent as `Authorization: Bearer`. Predictions
are asked for the test data (without reasons). The file (written atomically) has every answer,
a failed call's error in its place, long lists cut (MOST_LIST_ITEMS); the OpenAPI description is
checked, not copied. The API must serve this
run's configuration and live model (its /health names them): an API started under another
config answers for another project. The exit code is 1, naming each failed endpoint or the
mismatch, when one failed, and when the server is down nothing is written.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import requests

from clientrisk.atomicfiles import atomic_write_text
from clientrisk.config import Config
from clientrisk.deployment import modelstore
from clientrisk.errors import PipelineError
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

URL_ENV = "RISK_API_URL"
TOKEN_ENV = "RISK_API_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8000"
RETURNS_FILE = "apireturns.txt"
TIMEOUT_SECONDS = 60


@dataclass
class Answer:
    method: str
    path: str
    status: int
    body: object


@dataclass
class ApiCallsResult:
    answers: list[Answer]
    base_url: str
    path: Path

    @property
    def summary(self) -> str:
        return f"{len(self.answers)} endpoints of {self.base_url} answered -> {self.path}"


def planned_calls(config: Config) -> list[tuple[str, str, dict | None]]:
    """(method, path, JSON body) of every call, in order."""
    test_file = os.path.relpath(config.test_data_file, config.path.parent)
    return [
        ("GET", "/health", None),
        ("POST", "/prediction", {"filepath": test_file, "reasons": False}),
        ("GET", "/scoring", None),
        ("GET", "/summarystats", None),
        ("GET", "/diagnostics", None),
        ("GET", "/openapi.json", None),
    ]


# Answers that are checked but not copied into the file (the description of the API itself).
NOT_COPIED = {"/openapi.json"}
# Lists longer than this are cut in the file (with how many there are), so that it stays a
# size a person reads: the predictions for a test file of thousands of rows are checked whole.
MOST_LIST_ITEMS = 50


def call_endpoints(config: Config, base_url: str, token: str | None) -> list[Answer]:
    """Make every call; a call that fails has its error as its answer (status 0 when there was
    no HTTP answer at all).

    Raises:
        PipelineError: the server cannot be reached at all (the first call is refused).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers = []
    with requests.Session() as session:
        for method, path, body in planned_calls(config):
            url = base_url.rstrip("/") + path
            try:
                response = session.request(
                    method, url, json=body, headers=headers, timeout=TIMEOUT_SECONDS
                )
            except requests.ConnectionError:
                if not answers:
                    raise PipelineError(
                        f"{method} {path}: cannot reach {url}; is the API running at {base_url}?"
                    ) from None
                answers.append(Answer(method, path, 0, {"error": f"cannot reach {url}"}))
                continue
            except requests.Timeout:
                error = f"no answer within {TIMEOUT_SECONDS} s"
                answers.append(Answer(method, path, 0, {"error": error}))
                continue
            except requests.RequestException as error:
                answers.append(Answer(method, path, 0, {"error": str(error)}))
                continue
            try:
                content = response.json()
            except ValueError:
                content = response.text
            logger.debug(
                "%s %s: %d in %.3f s",
                method,
                url,
                response.status_code,
                response.elapsed.total_seconds(),
            )
            answers.append(Answer(method, path, response.status_code, content))
    return answers


def failures(answers: list[Answer]) -> list[str]:
    problems = []
    for answer in answers:
        if not 200 <= answer.status < 300:
            detail = answer.body.get("error") if isinstance(answer.body, dict) else answer.body
            status = answer.status or "no answer:"
            problems.append(f"{answer.method} {answer.path}: {status} {detail}")
    return problems


def served_elsewhere(config: Config, answers: list[Answer]) -> list[str]:
    """Why the API's answers are not about this run's project: another configuration, or
    another live model, than /health names (nothing when /health did not answer)."""
    health = next((a for a in answers if a.path == "/health" and a.status == 200), None)
    if health is None or not isinstance(health.body, dict):
        return []
    problems = []
    served = health.body.get("config")
    ours = config.identity
    if served != ours:
        named = served.get("name") if isinstance(served, dict) else None
        where = f"{named}, a config file elsewhere" if named == ours["name"] else named
        problems.append(
            f"GET /health: the API serves another configuration ({where or 'not named'}), not"
            f" this run's {config.path}; start it with this config (RISK_CONFIG or --config)"
        )
        return problems
    live = modelstore.current_version(config.deploy_dir)
    ours_live = modelstore.version_name(live) if live is not None else None
    if health.body.get("model_version") != ours_live:
        problems.append(
            f"GET /health: the API serves model {health.body.get('model_version')}, while"
            f" {ours_live} is live here"
        )
    return problems


def pretty(value, indent: int = 0) -> str:
    """JSON with objects indented, a small object of plain values on one line, lists of plain
    values (or of such small lists) wrapped onto a few lines, and lists of more than
    MOST_LIST_ITEMS cut there with how many more there are."""
    pad = " " * indent
    if isinstance(value, list) and len(value) > MOST_LIST_ITEMS:
        value = [*value[:MOST_LIST_ITEMS], f"... {len(value) - MOST_LIST_ITEMS:,} more"]
    text = json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and value and _all_plain(value.values()) and len(text) <= 136:
        return text
    if isinstance(value, dict) and value:
        items = [f'{pad}  "{key}": {pretty(item, indent + 2)}' for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    nested = isinstance(value, list) and any(
        isinstance(item, dict)
        or (isinstance(item, list) and not _all_plain(item))
        or (isinstance(item, str) and len(item) > 40)  # a sentence: one a line
        for item in value
    )
    if nested:
        items = [f"{pad}  {pretty(item, indent + 2)}" for item in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    if isinstance(value, list) and len(text) > 100 - indent:
        lines = textwrap.wrap(text[1:-1], width=96 - indent, break_on_hyphens=False)
        return "[\n" + "\n".join(f"{pad}  {line}" for line in lines) + f"\n{pad}]"
    return text


def _all_plain(values) -> bool:
    return not any(isinstance(item, dict | list) for item in values)


def format_answers(answers: list[Answer], base_url: str, mismatch: list[str] = ()) -> str:
    parts = [f"# Answers of the API at {base_url}, {utc_now()}"]
    parts += [f"# NOT THIS PROJECT'S API: {problem}" for problem in mismatch]
    for answer in answers:
        status = answer.status or "no answer"
        if answer.path in NOT_COPIED and 200 <= answer.status < 300:
            body = "(answered; not copied here)"
        else:
            body = pretty(answer.body)
        parts.append(f"\n## {answer.method} {answer.path} -> {status}\n{body}")
    return "\n".join(parts) + "\n"


def run(config: Config, base_url: str | None = None) -> ApiCallsResult:
    base_url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
    answers = call_endpoints(config, base_url, os.environ.get(TOKEN_ENV) or None)
    path = config.model_dir / RETURNS_FILE
    mismatch = served_elsewhere(config, answers)
    atomic_write_text(path, format_answers(answers, base_url, mismatch))
    problems = mismatch + failures(answers)
    if problems:
        raise PipelineError(f"{'; '.join(problems)} (the answers are in {path})")
    return ApiCallsResult(answers, base_url, path)
