"""The dashboard (`GET /`): what the system knows, on one page, from what the steps left behind.

Everything comes from the live deployment's manifest, `ranking.json`, `diagnostics.json` and the
history database; nothing is computed again (no model is loaded, let alone fitted). The page is
made once per change of those files and served from memory until the next change, so it costs
about what a bare route does. Charts are inline SVG drawn here, so the page needs no script.

When the API has a token, the page asks for it once and opens a session kept on the server side
(`sessions.py`: the cookie holds a random id, nothing derived from the token); both forms carry
a CSRF token. Without a token it is open, as the API is. Nothing on the page changes anything.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import (
    Blueprint,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from clientrisk.api.runwords import run_sentence
from clientrisk.api.sessions import SESSION_SECONDS
from clientrisk.calllist import outcomes
from clientrisk.calllist.ranking import RANKING_FILE, RANKING_SUMMARY_FILE, TOP_CLIENTS
from clientrisk.calllist.reasons import reason_text
from clientrisk.config import DIAGNOSTICS_FILE, Config
from clientrisk.deployment import modelstore
from clientrisk.errors import PipelineError
from clientrisk.timestamps import parse_utc, readable_utc

logger = logging.getLogger(__name__)

dashboard = Blueprint("dashboard", __name__)

RUNS_SHOWN = 12
ALERTS_SHOWN = 8
SCORES_SHOWN = 300  # the newest scores drawn in the history chart
CHART = {"width": 640, "height": 220, "left": 44, "right": 12, "top": 12, "bottom": 30}
SERIES_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
FAILED_OUTCOMES = ("failed", "interrupted")
SESSION_COOKIE = "risk_session"
SIGN_IN_CSRF_COOKIE = "risk_signin_csrf"
SIGN_IN_FORM_SECONDS = 3600
# Where the dashboard template has the sign-out form's CSRF field: markup that no value shown on
# the page can contain (Jinja escapes "<" in every value).
CSRF_SLOT = "<!--csrf-->"
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
GRIDLINES = (0, 0.25, 0.5, 0.75, 1)
MIN_CHART_SECONDS = 3600  # the score chart spans at least an hour
LABELLED_POINTS = 8  # up to this many scores, each is labelled with its F1


# --- what the page shows -------------------------------------------------------------------------


def gather(config: Config) -> dict:
    """Everything the page shows; a part that cannot be read says so instead of failing."""
    facts = {"generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "problems": []}
    try:
        deployment = modelstore.current_deployment(config.deploy_dir)
    except PipelineError as error:
        deployment = None
        if modelstore.current_version(config.deploy_dir) is not None:
            facts["problems"].append(f"the live deployment cannot be read: {error}")
    facts["live"] = _live(deployment)
    history = _history(config, deployment, facts["problems"])
    facts.update(history)
    facts["ranking"] = _ranking(config, deployment, facts["problems"])
    facts["drift"] = _drift(config, facts["problems"])
    facts["quality"] = _quality(config, deployment, facts["problems"])
    facts["config"] = {"input_folder": str(config.input_dir), "config_file": str(config.path)}
    return facts


def _live(deployment) -> dict | None:
    if deployment is None:
        return None
    manifest = deployment.manifest
    metrics = manifest.get("metrics", {})
    return {
        "version": deployment.label,
        "deployed_at": readable_utc(manifest.get("deployed_at")),
        "reason": manifest.get("reason", ""),
        "trained_at": readable_utc(manifest.get("trained_at")),
        "training_rows": manifest.get("training_rows"),
        "through_batch": manifest.get("through_batch"),
        "metrics": {
            name: metrics.get(name) for name in ("f1", "precision", "recall", "roc_auc", "rows")
        },
        "test_data": metrics.get("dataset", {}).get("file"),
        "sha256": manifest.get("model_sha256", ""),
    }


def _history(config: Config, deployment, problems: list) -> dict:
    """Runs, scores, deployments and the newest challenger kept out, from the history database
    (never created here: before the first run there is none; one on a server is opened)."""
    empty = {
        "runs": [],
        "chart": None,
        "kept_out": None,
        "deployments": [],
        "alerts": [],
        "counts": None,
        "last_success_at": None,
        "last_success_readable": None,
    }
    if not config.settings.get("history_db_url") and not Path(config.history_path).is_file():
        return empty
    from clientrisk.history.database import open_history

    try:
        with open_history(config.history_location) as history:
            runs = history.latest_runs(RUNS_SHOWN)
            scores = history.scores()[-SCORES_SHOWN:]
            deployments = history.deployments()
            challengers = history.challengers(limit=1, verdict="kept out")
            alerts = history.alerts(ALERTS_SHOWN)
            last_success = history.last_success()
            counts = {
                "runs": history.run_counts(),
                "failed_in_a_row": len(history.failed_streak()),
                "drift_runs": history.drift_runs(),
                "failed_deliveries": history.failed_deliveries(),
            }
    except PipelineError as error:
        problems.append(f"the history database cannot be read: {error}")
        return empty
    kept_out = None
    if challengers and deployment is not None:
        newest = challengers[0]
        deployed_at = parse_utc(deployment.manifest.get("deployed_at"))
        decided = parse_utc(newest["decided_at"])
        if deployed_at is None or (decided is not None and decided >= deployed_at):
            kept_out = {**newest, "decided_at": readable_utc(newest["decided_at"])}
    return {
        "runs": [_run(run) for run in runs],
        "chart": score_chart(scores, deployments),
        "kept_out": kept_out,
        "deployments": [
            {**change, "time": readable_utc(change["time"])}
            for change in reversed(deployments[-5:])
        ],
        "alerts": [_alert(alert) for alert in alerts],
        "counts": counts,
        # When the newest run that did its work ended (a quiet run: its latest repeat).
        "last_success_at": last_success
        and (last_success.last_finished_at or last_success.finished_at),
        "last_success_readable": last_success
        and readable_utc(last_success.last_finished_at or last_success.finished_at),
    }


def _alert(alert) -> dict:
    return {
        "raised_at": readable_utc(alert.raised_at),
        "subject": alert.subject,
        "text": alert.text,
        "delivered": list(alert.delivered),
        "failures": alert.failures,
        "unconfirmed": alert.finished_at is None,
        "receivers": list(alert.receivers),
    }


def overdue(facts: dict, hours: float, now: datetime | None = None) -> bool:
    """Whether no run has done its work for more than `hours` (False before any run)."""
    ended = parse_utc(facts.get("last_success_at"))
    if ended is None:
        return False
    return ((now or datetime.now(UTC)) - ended).total_seconds() > hours * 3600


def _run(run) -> dict:
    seconds = run.seconds
    return {
        "id": run.id,
        "started_at": readable_utc(run.started_at),
        "last_finished_at": readable_utc(run.last_finished_at) if run.repeats > 1 else None,
        "repeats": run.repeats,
        "outcome": run.outcome,
        "reason": run.reason or "",
        "sentence": run_sentence(run.outcome, run.reason, run.record),
        "seconds": "" if seconds is None else f"{seconds:,.1f} s",
        "seconds_value": seconds,
        "finished_at_utc": run.last_finished_at or run.finished_at or run.started_at,
        "failed": run.outcome in FAILED_OUTCOMES,
    }


def _ranking(config: Config, deployment, problems: list) -> dict | None:
    path = config.model_dir / RANKING_SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        top = [
            {
                "rank": entry["rank"],
                "corporation": entry["corporation"],
                "probability": entry["probability"],
                "reasons": [reason_text(item) for item in entry.get("reasons", [])],
                "note": entry.get("note", ""),
                "call": bool(entry.get("call_this_week")),
                "hold": bool(entry.get("hold_back")),
            }
            for entry in summary["top"][:TOP_CLIENTS]
        ]
        leavers = summary["expected_leavers"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        problems.append(f"{path.name} cannot be read: {error}")
        return None
    live_sha = deployment.manifest.get("model_sha256") if deployment else None
    return {
        "made_at": readable_utc(summary.get("made_at")),
        "model_version": summary.get("model_version"),
        "stale": live_sha is not None and summary.get("model_sha256") != live_sha,
        "clients": summary.get("clients", 0),
        "current_rule": summary.get("current_rule", ""),
        "outside_range": summary.get("outside_range", 0),
        "calls_this_week": summary.get("calls_this_week", 0),
        "hold_back_share": summary.get("hold_back_share") or 0,
        "held_back": summary.get("held_back") or 0,
        "contacts": summary.get("contacts"),
        "top": top,
        "expected": leavers,
        "estimated": summary.get("estimated"),
        "changes": _changes(summary.get("changes")),
        "past": past_lists_view(summary.get("past_lists"), summary.get("calls_caveat")),
        "download": (config.model_dir / RANKING_FILE).is_file(),
    }


def _changes(changes) -> dict:
    if not isinstance(changes, dict) or not changes.get("previous"):
        return {"previous": None}
    previous = {**changes["previous"], "made_at": readable_utc(changes["previous"].get("made_at"))}
    return {**changes, "previous": previous}


def _drift(config: Config, problems: list) -> dict | None:
    path = config.model_dir / DIAGNOSTICS_FILE
    if not path.is_file():
        return None
    try:
        drift = json.loads(path.read_text(encoding="utf-8"))["drift"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        problems.append(f"{path.name} cannot be read: {error}")
        return None
    if not drift.get("available"):
        return {"available": False, "reason": drift.get("reason", "")}
    features = drift.get("features", [])
    largest = max([item.get("psi") or 0 for item in features] + [drift.get("psi_major", 0.25)])
    return {
        "available": True,
        "compared": drift.get("compared", ""),
        "reference": drift.get("reference", ""),
        "in_words": drift.get("in_words"),
        "drifted": drift.get("drifted", []),
        "psi_major": drift.get("psi_major", 0.25),
        "features": [
            {
                "feature": item["feature"],
                "psi": item.get("psi") or 0.0,
                "bar": round(100 * (item.get("psi") or 0.0) / largest, 1) if largest else 0,
                "ks": item.get("ks_statistic"),
                "p": item.get("ks_adjusted_pvalue"),
                "drifted": item["feature"] in drift.get("drifted", []),
                "medians": (item.get("reference_median"), item.get("current_median")),
            }
            for item in features
        ],
        "major_at": round(100 * drift.get("psi_major", 0.25) / largest, 1) if largest else 0,
    }


def _quality(config: Config, deployment, problems: list) -> dict | None:
    """The live model on the newest rows, the test file's resemblance and what happened, from
    `diagnostics.json` when it was made for the live model."""
    path = config.model_dir / DIAGNOSTICS_FILE
    if deployment is None or not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        quality = report.get("quality")
        made_for = report["model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        problems.append(f"{path.name} cannot be read: {error}")
        return None
    if not quality or made_for != deployment.manifest.get("model_sha256"):
        return None
    resemblance = quality.get("test_file_drift") or {}
    return {
        "newest": quality.get("newest"),
        "story": quality.get("story"),
        "unlike_test_file": bool(resemblance.get("available") and not resemblance["resembles"]),
        "compared": resemblance.get("compared", ""),
        "drifted": resemblance.get("drifted", []),
    }


def in_order(rows: list[dict], key: str) -> list[tuple]:
    """(time, row) of the rows with a readable time, in their recorded order: a time earlier
    than the one before it (the clock was set back) is drawn at the one before, so that the
    chart never runs backwards."""
    placed, latest = [], None
    for row in rows:
        time = parse_utc(row[key])
        if time is None:
            continue
        latest = time if latest is None else max(latest, time)
        placed.append((latest, row))
    return placed


def score_chart(scores: list[dict], deployments: list[dict]) -> dict | None:
    """The F1 of every recorded score over time as SVG coordinates: one series per deployed
    model, crosses for models kept out, a dotted line at each deployment."""
    points = [
        (time, row["f1"], row["model_sha256"])
        for time, row in in_order(scores, "scored_at")
        if row["f1"] is not None
    ]
    changes = in_order(deployments, "time")
    if not points:
        return None
    times = [time for time, _, _ in points] + [time for time, _ in changes]
    start, end = min(times), max(times)
    if (end - start).total_seconds() < MIN_CHART_SECONDS:
        # A lone point (or a few minutes of history) in the middle of an hour, not at the edge.
        middle = start + (end - start) / 2
        start = middle - timedelta(seconds=MIN_CHART_SECONDS / 2)
        end = middle + timedelta(seconds=MIN_CHART_SECONDS / 2)
    span = (end - start).total_seconds()
    width = CHART["width"] - CHART["left"] - CHART["right"]
    height = CHART["height"] - CHART["top"] - CHART["bottom"]

    def x(time) -> float:
        return round(CHART["left"] + width * (time - start).total_seconds() / span, 1)

    def y(value: float) -> float:
        return round(CHART["top"] + height * (1 - value), 1)

    names = {}
    for _, change in changes:
        names.setdefault(change.get("model_sha256"), change.get("to_version"))
    series, colours = [], iter(SERIES_COLOURS * 100)
    for sha in dict.fromkeys(sha for _, _, sha in points if sha in names):
        mine = [(x(time), y(f1), f1) for time, f1, other in points if other == sha]
        series.append(
            {
                "label": names[sha],
                "colour": next(colours),
                "points": mine,
                "path": " ".join(f"{px},{py}" for px, py, _ in mine),
            }
        )
    kept_out = [(x(time), y(f1), f1) for time, f1, sha in points if sha not in names]
    return {
        **CHART,
        "series": series,
        # Few points are read one by one: each is labelled with its F1.
        "labelled": len(points) <= LABELLED_POINTS,
        "kept_out": kept_out,
        "deployments": [
            {"x": x(time), "label": change.get("to_version"), "action": change.get("action")}
            for time, change in changes
        ],
        "gridlines": [{"y": y(value), "label": f"{value:.2g}"} for value in GRIDLINES],
        "start": start.strftime("%Y-%m-%d %H:%M"),
        "end": end.strftime("%Y-%m-%d %H:%M"),
        "bottom_y": CHART["height"] - CHART["bottom"] + 16,
        "right_x": CHART["width"] - CHART["right"],
    }


def past_lists_view(found, caveat) -> dict | None:
    """How past lists did, for the page: the newest list with an outcome since in sentences,
    a table and a chart, each older one in a sentence."""
    if not found:
        return None
    try:
        newest, older = found[0], found[1:]
        return {
            "name": outcomes.list_name(newest),
            "sentences": outcomes.sentences(newest),
            "parts": newest["parts"],
            "bands": newest["bands"],
            "older": [outcomes.sentences(other)[0] for other in older],
            "calls": outcomes.calls_sentence(newest["calls"]) if newest.get("calls") else None,
            "chart": list_chart(newest["parts"]),
            "caveat": caveat or outcomes.CALLS_CAVEAT,
        }
    except (KeyError, TypeError, IndexError, ValueError):
        return None


LIST_CHART = {"width": 640, "height": 200, "left": 44, "right": 12, "top": 12, "bottom": 30}


def list_chart(parts: list[dict]) -> dict | None:
    """One past list's parts as SVG bars: the share who left of those with an outcome since, the
    share the list expected with its interval as a whisker, the base rate as a dashed line."""
    shown = [part for part in parts if part.get("with_outcome")]
    if not shown:
        return None
    chart = LIST_CHART
    width = chart["width"] - chart["left"] - chart["right"]
    height = chart["height"] - chart["top"] - chart["bottom"]
    slot = width / len(shown)

    def y(share: float) -> float:
        return round(chart["top"] + height * (1 - min(max(share, 0.0), 1.0)), 1)

    bars = []
    for index, part in enumerate(shown):
        count = part["with_outcome"]
        x = chart["left"] + slot * index + slot * 0.25
        bars.append(
            {
                "x": round(x, 1),
                "width": round(slot * 0.5, 1),
                "y": y(part["share_left"]),
                "label": f"top {part['top']}" if part["top"] else "whole list",
                "left": part["left"],
                "count": count,
                "share": part["share_left"],
                "centre": round(x + slot * 0.25, 1),
                "expected_y": y(part["expected"] / count),
                "low_y": y(part["low"] / count),
                "high_y": y(part["high"] / count),
                "base_y": y(part["at_base_rate"] / count) if part["top"] else None,
                "outside": part.get("verdict") != "as expected",
            }
        )
    return {
        **chart,
        "bars": bars,
        "bottom_line": chart["height"] - chart["bottom"],
        "label_y": chart["height"] - chart["bottom"] + 16,
        "right_x": chart["width"] - chart["right"],
        "gridlines": [{"y": y(value), "label": f"{value:.0%}"} for value in GRIDLINES],
    }


# --- serving it ----------------------------------------------------------------------------------


class DashboardCache:
    """What the page shows (and /metrics reports), and the page itself, kept until one of the
    files they are made from changes (a few stats per request, no database query); with the
    history on a server, until it changes too (one small query per request, on a connection
    kept for it: `postgres.ChangeProbe`)."""

    def __init__(self, config: Config):
        history = Path(config.history_path)
        self.config = config
        self.history_probe = None
        if config.settings.get("history_db_url"):
            from clientrisk.history.postgres import ChangeProbe

            self.history_probe = ChangeProbe(config.settings["history_db_url"])
            history_files = []
        else:
            history_files = [history, history.with_name(history.name + "-wal")]
        self.watched = [
            *history_files,
            config.model_dir / RANKING_SUMMARY_FILE,
            config.model_dir / DIAGNOSTICS_FILE,
            config.model_dir / RANKING_FILE,
        ]
        self.live_link = config.deploy_dir / modelstore.CURRENT_LINK
        self._key = None
        self._facts = None
        self._page = None
        self._lock = threading.Lock()

    def _state_key(self) -> tuple:
        states = []
        for path in self.watched:
            try:
                status = path.stat()
                states.append((status.st_size, status.st_mtime_ns))
            except OSError:
                states.append(None)
        try:
            states.append(str(self.live_link.readlink()))
        except OSError:
            states.append(None)
        if self.history_probe is not None:
            states.append(self.history_probe.key())
        return tuple(states)

    def facts(self) -> dict:
        key = self._state_key()
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._facts, self._page = gather(self.config), None
                    self._key = key
        return self._facts

    def overdue(self, facts: dict) -> bool:
        """Whether no run has done its work for `alert_no_success_hours`: the one thing on
        the page that changes with time alone (cron stopped, so no file changes)."""
        return overdue(facts, self.config.settings["alert_no_success_hours"])

    def page(self, render) -> str:
        facts = self.facts()
        late = self.overdue(facts)
        page = self._page
        if page is None or page[0] != late:
            page = (late, render(facts, late))
            with self._lock:
                if self._facts is facts:
                    self._page = page
        return page[1]


def _state():
    return current_app.extensions["risk_api"]


def _session_id() -> str | None:
    return request.cookies.get(SESSION_COOKIE)


def _signed_in() -> bool:
    state = _state()
    return state.token is None or state.sessions.csrf_of(_session_id()) is not None


def _sign_in_page(wrong: bool, status: int = 401):
    """The sign-in form, with a fresh CSRF token in a hidden field and in a cookie (the form
    is accepted only with both, so another site cannot sign a browser in)."""
    csrf = secrets.token_urlsafe(32)
    response = current_app.make_response(
        (render_template("signin.html", wrong=wrong, csrf=csrf), status)
    )
    _set_cookie(response, SIGN_IN_CSRF_COOKIE, csrf, max_age=SIGN_IN_FORM_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _set_cookie(response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )


def _form_matches(expected: str | None) -> bool:
    given = request.form.get("csrf_token", "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


@dashboard.get("/")
def page():
    if not _signed_in():
        return _sign_in_page(wrong=False)
    state = _state()
    html = state.dashboard.page(
        lambda facts, late: render_template(
            "dashboard.html",
            signed_in_with_token=state.token is not None,
            csrf_slot=CSRF_SLOT,
            overdue=late,
            no_success_hours=state.config.settings["alert_no_success_hours"],
            **facts,
        )
    )
    if state.token is not None:
        # The page is made once for everybody; each session's own token goes into its form.
        csrf = state.sessions.csrf_of(_session_id()) or ""
        field = f'<input type="hidden" name="csrf_token" value="{csrf}">'
        html = html.replace(CSRF_SLOT, field, 1)
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@dashboard.post("/signin")
def sign_in():
    state = _state()
    if state.token is None:
        return redirect(url_for("dashboard.page"))
    if not _form_matches(request.cookies.get(SIGN_IN_CSRF_COOKIE)):
        logger.warning(
            "dashboard: sign-in without its form's CSRF token from %s", request.remote_addr
        )
        return _sign_in_page(wrong=False, status=403)
    given = request.form.get("token", "")
    if not hmac.compare_digest(given.encode(), state.token.encode()):
        logger.warning("dashboard: wrong token from %s", request.remote_addr)
        return _sign_in_page(wrong=True)
    state.sessions.close(_session_id())
    session_id, _ = state.sessions.open()
    response = redirect(url_for("dashboard.page"), code=303)
    _set_cookie(response, SESSION_COOKIE, session_id, max_age=SESSION_SECONDS)
    response.delete_cookie(SIGN_IN_CSRF_COOKIE)
    return response


@dashboard.post("/signout")
def sign_out():
    state = _state()
    session_id = _session_id()
    csrf = state.sessions.csrf_of(session_id) if state.token is not None else None
    if csrf is not None:
        if not _form_matches(csrf):
            logger.warning(
                "dashboard: sign-out without its CSRF token from %s", request.remote_addr
            )
            return "the sign-out form was not sent from the dashboard\n", 403, TEXT
        state.sessions.close(session_id)
    response = redirect(url_for("dashboard.page"), code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@dashboard.get("/riskranking.csv")
def download_ranking():
    if not _signed_in():
        return _sign_in_page(wrong=False)
    path = _state().config.model_dir / RANKING_FILE
    if not path.is_file():
        message = "no call list yet: it is made by fullprocess.py (or ranking.py)\n"
        return message, 404, TEXT
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=RANKING_FILE)
