"""What in the history is worth an alert, found after every run of fullprocess.py.

Events are read from the history database, not from the run that caused them, so that a run
killed between an event and its alert leaves the alert to the next run, and a rollback done by
hand is alerted too. Each event has a key that stays the same for every run that sees it:

    failed-runs:<first run>      two or more runs in a row failed or were interrupted
    no-success:<last success>    no run did its work for `alert_no_success_hours`
    drift:run<run>               a drift check found drift (the model's, or in the features)
    deployment:<id>              a model was deployed or rolled back to
    kept-out:<run>:<model>       a retrained model was kept out
    vulnerable:<package>==<ver>  an installed dependency has a known vulnerability
    leavers:ranking<id>          the leavers among a past list's clients (its top 20, 50 or
                                 100, or the whole list) fell outside what it expected

Events recorded before alerts existed are not alerted (the history notes where they start).
"""

from __future__ import annotations

import logging
import time

from clientrisk.alerts.delivery import AlertBudget, Event, raise_alerts
from clientrisk.errors import PipelineError
from clientrisk.timestamps import parse_utc, readable_utc

__all__ = [
    "after_run",
    "alert_live_changes",
    "leavers_event",
    "overdue_since",
    "run_events",
    "vulnerability_events",
]

logger = logging.getLogger(__name__)

NEWEST = 20  # how far back each kind of event is looked for, per run
# Fewest clients with an outcome since in a part of a past list for an alert on it: below, the
# interval's normal approximation is too rough to wake anyone.
MIN_LIST_CLIENTS = 15


def overdue_since(config, history, now: float | None = None):
    """The newest run that did its work, when it ended longer than `alert_no_success_hours`
    ago (a dead cron, or runs that keep failing); None otherwise or before any run."""
    last = history.last_success()
    if last is None:
        return None
    ended = parse_utc(last.last_finished_at or last.finished_at or last.started_at)
    hours = config.settings["alert_no_success_hours"]
    now = time.time() if now is None else now
    if ended is not None and now - ended.timestamp() > hours * 3600:
        return last
    return None


def _overdue_event(config, last, run_id) -> Event:
    hours = config.settings["alert_no_success_hours"]
    ended = last.last_finished_at or last.finished_at
    return Event(
        f"no-success:{last.id}:{ended}",
        f"no successful run since {readable_utc(ended)}",
        f"No run of fullprocess.py did its work for more than {hours:g} hours: the last one"
        f" that did was run {last.id}, which ended at {readable_utc(ended)}. Is cron running,"
        " and do the runs since fail? (see logs/cron.log and the dashboard's runs)",
        run=run_id,
    )


def _failed_event(streak, run_id) -> Event:
    first, newest = streak[0], streak[-1]
    return Event(
        f"failed-runs:{first.id}",
        f"{len(streak)} runs in a row failed or were interrupted",
        f"Runs {first.id} to {newest.id} did not finish their work. The newest of them, run"
        f" {newest.id}, {newest.outcome}: {newest.reason}",
        run=run_id,
        kind="failed-runs",
    )


def _drift_events(history, start: dict, run_id) -> list[Event]:
    by_run: dict = {}
    for check in history.drift_found(after=start.get("drift_check", 0), limit=NEWEST):
        by_run.setdefault(check["run"] if check["run"] is not None else -check["id"], []).append(
            check
        )
    events = []
    for run, checks in sorted(by_run.items()):
        kinds = sorted({check["kind"] for check in checks})
        lines = []
        for check in checks:
            detail = check["detail"]
            if check["kind"] == "data":
                features = ", ".join(detail.get("drifted", [])) or "some features"
                lines.append(f"data drift in {features} ({check['rows']} rows)")
            else:
                lines.append(f"the live model drifted on {check['rows']} new rows")
        where = f"run {run}" if run > 0 else "a check outside a run"
        events.append(
            Event(
                f"drift:run{run}",
                f"drift found ({' and '.join(kinds)}) by {where}",
                f"Batches {checks[0]['batches']}: " + "; ".join(lines) + ". See the dashboard"
                " for what the run did about it.",
                run=run_id,
                kind="drift",
            )
        )
    return events


def _deployment_events(history, start: dict, run_id) -> list[Event]:
    events = []
    for change in reversed(history.changes_of_live(start.get("deployment", 0), NEWEST)):
        rolled = change["action"] == "rollback"
        verb = "rolled back to" if rolled else "deployed"
        before = change.get("from_version")
        was = f" (was {before})" if before and before != "-" else ""
        f1 = f"; F1 {change['f1']:.3f} on the test data" if change.get("f1") is not None else ""
        events.append(
            Event(
                f"deployment:{change['id']}",
                f"model {verb} {change['to_version']}{was}",
                f"At {readable_utc(change['time'])} the live model became"
                f" {change['to_version']}{was}{f1}. Why: {change.get('reason') or 'not said'}",
                run=run_id,
                kind="rollback" if rolled else "deployment",
            )
        )
    return events


def _kept_out_events(history, start: dict, run_id) -> list[Event]:
    return [
        Event(
            f"kept-out:{kept['run']}:{kept['model_sha256'][:12]}",
            f"a retrained model was kept out (run {kept['run']})",
            f"Run {kept['run']} retrained a model ({kept['model_sha256'][:12]}) and kept it out:"
            f" {kept['reason']}",
            run=run_id,
            kind="kept-out",
        )
        for kept in reversed(history.kept_out(start.get("challenger", 0), NEWEST))
    ]


def run_events(config, history, record: dict, overdue=None) -> list[Event]:
    """Every event the history holds after a run (with `record`), alerted or not yet."""
    run_id = record.get("run_id")
    start = history.alerts_from()
    events = []
    if overdue is not None:
        events.append(_overdue_event(config, overdue, run_id))
    for streak in history.failed_streaks(after=start.get("run", 0)):
        events.append(_failed_event(streak, run_id))
    events += _drift_events(history, start, run_id)
    events += _deployment_events(history, start, run_id)
    events += _kept_out_events(history, start, run_id)
    events += vulnerability_events(config, run_id)
    if record.get("batches"):
        leavers = leavers_event(config, history, start, run_id)
        if leavers is not None:
            events.append(leavers)
    return events


def leavers_event(config, history, start: dict, run_id=None) -> Event | None:
    """The newest past list (`past_lists` in ranking.json, made after alerts began) of which a
    part, its top 20, 50 or 100 or the whole list, saw more or fewer leavers among its clients
    with an outcome since than its probabilities expected (outside the 95 % interval): the
    realized precision of the list moved outside what it said. One event per list."""
    from clientrisk.calllist import outcomes, ranking

    try:
        found = ranking.read_summary(config).get("past_lists") or []
    except PipelineError:
        return None
    for past in found:
        if past.get("ranking", 0) <= start.get("ranking", 0):
            continue
        parts = [
            part
            for part in outcomes.outside_interval(past)
            if part["with_outcome"] >= MIN_LIST_CLIENTS
        ]
        if not parts:
            continue
        first = next((part for part in parts if part["top"] is None), parts[0])
        side = "more" if first["left"] > first["high"] else "fewer"
        where = "" if first["top"] is None else f" at the top {first['top']}"
        said = "; ".join(
            f"{_part_name(part)}: {part['left']} of {part['with_outcome']} left,"
            f" {part['expected']:.1f} expected ({part['low']} to {part['high']})"
            for part in parts
        )
        return Event(
            f"leavers:ranking{past['ranking']}",
            f"{side} leavers than expected{where}: {first['left']} of {first['with_outcome']}"
            " clients left",
            f"Of the clients on {outcomes.list_name(past)} whose outcome has arrived since,"
            f" {said} (95 % intervals). The model may no longer fit the market.",
            run=run_id,
            kind="leavers",
        )
    return None


def vulnerability_events(config, run_id=None) -> list[Event]:
    """One event per installed release with a known vulnerability, as the latest diagnostics
    found them (`diagnostics.json`): alerted once per package and version."""
    from clientrisk.atomicfiles import read_json
    from clientrisk.config import DIAGNOSTICS_FILE
    from clientrisk.report.vulnerabilities import vulnerable_packages

    path = config.model_dir / DIAGNOSTICS_FILE
    if not path.is_file():
        return []
    try:
        found = vulnerable_packages(read_json(path, "diagnostics"))
    except (PipelineError, AttributeError, KeyError, TypeError):
        return []
    return [
        Event(
            item.alert_key,
            f"known vulnerability in {item.package} {item.version}",
            f"The installed {item.package} {item.version} has known vulnerabilities"
            f" ({', '.join(item.ids)}), as the package index lists them: see the diagnostics'"
            " dependencies (GET /diagnostics, or the report's last page) for the fixed versions,"
            " and update the lock files.",
            run=run_id,
            kind="vulnerability",
        )
        for item in found
    ]


def _part_name(part: dict) -> str:
    return "the whole list" if part["top"] is None else f"the top {part['top']}"


def alert_live_changes(config, history) -> list[dict]:
    """Raise the alerts of deployments and rollbacks not alerted yet (deployment.py by hand);
    never raises."""
    try:
        return raise_alerts(
            config, history, _deployment_events(history, history.alerts_from(), None)
        )
    except Exception:  # alerts must never fail what they report on
        logger.exception("alerts: unexpected error")
        return []


def after_run(config, history, record: dict, overdue=None) -> list[dict]:
    """Raise the alerts of a finished run (`record`); never raises, whatever goes wrong.

    Returns:
        What happened to each new alert, also added to `record` (`alerts`, and the seconds
        they took, `alerts_seconds`) for the run log.
    """
    started = time.monotonic()
    try:
        budget = AlertBudget(config.settings["alert_timeout_seconds"])
        outcomes = raise_alerts(
            config, history, run_events(config, history, record, overdue), budget
        )
    except Exception as error:  # alerts must never fail the run they report on
        logger.exception("alerts: unexpected error")
        record["alerts"] = {"error": f"unexpected {type(error).__name__}: {error}"}
        return []
    if outcomes:
        record["alerts"] = {
            outcome["key"]: {"delivered": outcome["delivered"], "failures": outcome["failures"]}
            for outcome in outcomes
        }
        record["alerts_seconds"] = round(time.monotonic() - started, 3)
    return outcomes
