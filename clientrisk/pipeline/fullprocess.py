"""What one run of fullprocess.py does: decide from what is stored, then do what the data calls for.

See `fullprocess.py` for the steps. One run at a time: a second run exits at once with code 75.
Every run is recorded in the history database and as a line of `fullprocess.jsonl` in
`log_folder_path`. A run that was killed is recorded as interrupted by the next one, which
completes the work from what is stored; a run stopped by SIGTERM or SIGINT says so in one line.
Deciding that there is nothing new imports only the standard library; when nothing has changed
since the last quiet run, only its smallest parts (quiettick.py, before anything else).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from clientrisk.atomicfiles import atomic_write_json, exclusive_lock, sha256_file
from clientrisk.cli import configure_logging, stop_on_signals
from clientrisk.config import REPORT_FILE, load_config
from clientrisk.data import batchstore
from clientrisk.deployment import modelstore
from clientrisk.errors import PipelineError, Stopped
from clientrisk.history.database import TAKEN_OVER, HistoryBusy, open_history
from clientrisk.pipeline import quiettick
from clientrisk.pipeline.runlog import RUN_LOG_FILE, RUN_LOG_MAX_BYTES, RunLog, append_run_record

logger = logging.getLogger(__name__)

EXIT_BUSY = 75  # EX_TEMPFAIL: try again later
HASH_CACHE_FILE = "inputhashes.json"


# --- what is new (standard library only) ---------------------------------------------------------


def input_hashes(config, candidates) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, SHA-256) of the readable input files, and why the others wait.

    A file whose size and time are unchanged since the last run is not read again (its hash is
    kept in `inputhashes.json` in the log folder).
    """
    cache_path = config.log_dir / HASH_CACHE_FILE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    hashes, waiting, fresh = [], [], {}
    for candidate in candidates:
        try:
            status = candidate.path.stat()
            cached = cache.get(candidate.name) if isinstance(cache, dict) else None
            if isinstance(cached, list) and cached[:2] == [status.st_size, status.st_mtime_ns]:
                sha256 = cached[2]
            else:
                sha256 = sha256_file(candidate.path)
        except OSError as error:
            waiting.append(f"{candidate.name}: cannot read: {error.strerror or error}")
            continue
        fresh[candidate.name] = [status.st_size, status.st_mtime_ns, sha256]
        hashes.append((candidate.name, sha256))
    if fresh != cache:
        atomic_write_json(cache_path, fresh)
    return hashes, waiting


def find_new_files(config, history, probe=None) -> tuple[list[str], list[str]]:
    """Input files that ingestion has not read yet (and the database source's new rows), and
    why others wait for a later run. `probe` gets what the database said (see dbsource)."""
    candidates = batchstore.scan_settled_input_folder(
        config.input_dir, config.settings["settle_seconds"], config.log_dir / batchstore.LOOKS_FILE
    )
    known = history.known_files()
    readable = [candidate for candidate in candidates if candidate.problem is None]
    hashes, waiting = input_hashes(config, readable)
    new = [name for name, sha256 in hashes if (name, sha256) not in known]
    for candidate in candidates:
        if candidate.problem is None:
            continue
        if candidate.retry:
            waiting.append(f"{candidate.name}: {candidate.problem}")
        elif (candidate.name, batchstore.NO_CONTENT) not in known:
            new.append(candidate.name)
    if config.settings.get("input_database_url"):
        from clientrisk.data import dbsource

        try:
            rows = dbsource.new_rows_waiting(config, history, probe)
        except dbsource.SourceProblem as problem:
            waiting.append(str(problem))
        else:
            new += [rows] if rows else []
    return new, waiting


def reports_are_current(config, history, deployment) -> bool:
    """Whether the last complete set of reports describes the live model and every stored batch
    (the data the call list is made from)."""
    latest = history.latest_reports()
    made = config.model_dir / REPORT_FILE
    return (
        latest is not None
        and tuple(latest[:2]) == (deployment.manifest["model_sha256"], history.last_batch_seq())
        and made.exists()
    )


def ranking_is_current(history, deployment) -> bool:
    """Whether the newest ranking was made by the live model from every stored batch."""
    latest = history.latest_ranking()
    return latest is not None and tuple(latest) == (
        deployment.manifest["model_sha256"],
        history.last_batch_seq(),
    )


# --- the run -------------------------------------------------------------------------------------


def rerank(log: RunLog, config) -> None:
    """Rank the current clients again (new observations arrived) and remake the report."""
    from clientrisk.calllist import ranking
    from clientrisk.report import summary

    with log.step("ranking"):
        ranking.run(config)
    with log.step("reporting"):
        summary.run(config)


def report(log: RunLog, config) -> None:
    """Diagnostics, reporting, and the API calls (which may find no API running)."""
    from clientrisk.api import client
    from clientrisk.report import diagnostics, summary

    with log.step("diagnostics"):
        diagnostics.run(config, this_run=log.record["steps"])
    with log.step("reporting"):
        summary.run(config)
    with log.step("apicalls"):
        try:
            client.run(config)
            log.record["api"] = "answered"
        except PipelineError as error:
            logger.warning("API calls: %s (carrying on)", error)
            log.record["api"] = f"not reached: {error}"


def bootstrap(log: RunLog, config, history) -> dict:
    from clientrisk.data import ingest
    from clientrisk.deployment import deploy
    from clientrisk.model import scoring, training

    with log.step("ingestion"):
        ingested = ingest.run(config)
    with log.step("training"):
        trained = training.run(config, run_id=log.run_id)
    with log.step("scoring"):
        scored = scoring.run(config)
    with log.step("deployment"):
        deployed = deploy.deploy_trained_model(
            config,
            "bootstrap: nothing was deployed",
            expected_sha256=trained.metadata["model_sha256"],
            expected_live=None,
        )
    through = trained.metadata["through_batch"]
    seqs = [batch.seq for batch in history.batches() if batch.seq <= through]
    history.judge_batches(seqs, log.run_id, f"trained on by {deployed.deployment.label}")
    report(log, config)
    return log.finish(
        "bootstrapped",
        f"nothing was deployed; deployed {deployed.deployment.label}",
        new_files=[batch.source for batch in ingested.new_batches],
        batches=seqs,
        scores={"test_f1": scored.metrics["f1"]},
    )


def update(log: RunLog, config, history, live) -> dict:
    """Ingest new files, judge the new batches (pooled until there are enough rows) and retrain,
    redeploy or keep the model; make the reports again if they are behind."""
    from clientrisk.data import ingest
    from clientrisk.monitoring import judging, retraining

    with log.step("ingestion"):
        ingested = ingest.run(config)
    trained_on = [
        batch.seq
        for batch in history.batches()
        if batch.judgement is None and batch.seq <= live.through_batch
    ]
    history.judge_batches(trained_on, log.run_id, f"trained on by {live.label}")
    pending = history.pending_batches(live.through_batch)
    rows = judging.rows_of(config, history, pending)
    with_rows = set(rows["batch"]) if len(rows) else set()
    empty = [batch for batch in pending if batch.seq not in with_rows]
    history.judge_batches([batch.seq for batch in empty], log.run_id, "nothing to judge")
    batches = [batch for batch in pending if batch.seq in with_rows]
    facts = {
        "new_files": [batch.source for batch in pending],
        "batches": [batch.seq for batch in batches],
        "deployed_version": live.label,
        "new_rows": len(rows),
    }
    if ingested.waiting:
        facts["waiting"] = ingested.waiting
    if not batches:
        outcome, reason = "nothing to judge", judging.nothing_to_judge_reason(ingested, pending)
        rosters = judging.roster_drift(config, history, log, live, empty)
        if rosters is not None:
            facts["data_drift"] = rosters
            reason += "; " + judging.roster_drift_words(rosters)
        return finish_update(log, config, history, outcome, reason, facts)
    logger.info(
        "new batches: %s (%d rows with an outcome)", judging.batch_names(batches), len(rows)
    )
    stored = sum(batch.labelled_rows for batch in history.batches())
    if stored < config.settings["min_comparison_rows"]:
        outcome, reason = retraining.retrain_on_everything(
            log, config, history, live, batches, stored
        )
        history.judge_batches(facts["batches"], log.run_id, outcome)
        return finish_update(log, config, history, outcome, reason, facts)
    model, live = modelstore.load_deployed_model(config.deploy_dir)
    with log.step("drift check"):
        verdicts = judging.judge(config, history, log, model, live, rows, batches)
    facts.update(verdicts)
    cause = retrain_cause(config, history, live, verdicts)
    insufficient = verdicts["model_drift"]["verdict"] == "insufficient data"
    if cause is None:
        outcome = "insufficient data" if insufficient else "no drift"
        if not insufficient:
            history.judge_batches(facts["batches"], log.run_id, outcome)
        reason = judging.no_drift_reason(verdicts, len(rows))
        return finish_update(log, config, history, outcome, reason, facts)
    if cause.startswith("new data"):
        newest = [batch for batch in history.batches() if batch.seq > live.through_batch]
    else:
        newest = retraining.drifted_batches(history, live, batches)
    outcome, reason = retraining.retrain(log, config, history, model, live, cause, newest, facts)
    history.judge_batches(facts["batches"], log.run_id, outcome)
    return finish_update(log, config, history, outcome, reason, facts)


def retrain_cause(config, history, live, verdicts: dict) -> str | None:
    """Why to retrain, or None: the model drifted, the features drifted (when that is enough),
    or as much new data as the model was trained on has arrived."""
    from clientrisk.monitoring import judging

    if verdicts["model_drift"]["verdict"] == "drift":
        return "model drift"
    drifted = verdicts["data_drift"]["drifted"]
    if drifted and config.settings["retrain_on_data_drift"]:
        return "data drift in " + ", ".join(drifted)
    if verdicts["model_drift"]["verdict"] == "no drift":
        growth = judging.growth_due(config, history, live)
        if growth:
            return f"new data: {growth}"
    return None


def finish_update(log: RunLog, config, history, outcome: str, reason: str, facts: dict) -> dict:
    """Make the reports when the live model changed or they are behind the live model or the
    stored data (new outcomes or current clients), and end the record."""
    live = modelstore.current_deployment(config.deploy_dir)
    if outcome == "redeployed" or not reports_are_current(config, history, live):
        report(log, config)
    elif not ranking_is_current(history, live):
        rerank(log, config)
    return log.finish(outcome, reason, **facts)


def tidy_up(config) -> None:
    """Finish what killed processes left: temporary files, and a live switch not yet recorded."""
    import tempfile

    from clientrisk.atomicfiles import remove_leftovers

    remove_leftovers(
        [
            config.ingested_dir,
            batchstore.batches_dir(config.ingested_dir),
            config.model_dir,
            config.deploy_dir,
            config.deploy_dir / modelstore.VERSIONS_DIR,
            config.log_dir,
            Path(tempfile.gettempdir()),
        ]
    )
    modelstore.mend_history(config.deploy_dir)
    from clientrisk.deployment.deploy import mirror_history

    mirror_history(config)


def decide(config, history, probe=None):
    """What this run has to do, from what is stored: (what, reason or new files, live).
    `probe` gets what the database source said (see dbsource.new_rows_waiting)."""
    live_version = modelstore.current_version(config.deploy_dir)
    if live_version is None:
        candidates = batchstore.scan_settled_input_folder(
            config.input_dir,
            config.settings["settle_seconds"],
            config.log_dir / batchstore.LOOKS_FILE,
        )
        if not history.batches() and all(item.problem for item in candidates):
            problems = [f"{item.name}: {item.problem}" for item in candidates]
            problems = problems or ["the input folder holds no CSV file"]
            if not config.settings.get("input_database_url"):
                return "wait", problems, None
            new, waiting = find_new_files(config, history)
            if not new:
                return "wait", problems + (waiting or ["the database holds no row yet"]), None
        return "bootstrap", "nothing is deployed", None
    live = modelstore.get_deployment(config.deploy_dir, live_version)
    new, waiting = find_new_files(config, history, probe)
    pending = history.pending_batches(live.through_batch)
    pooled = sum(batch.labelled_rows for batch in pending)
    logger.debug(
        "live %s (trained through batch %d); new files: %s; batches not judged yet: %s (%d rows)",
        live.label,
        live.through_batch,
        ", ".join(new) or "none",
        ", ".join(str(batch.seq) for batch in pending) or "none",
        pooled,
    )
    # Batches waiting for more rows are judged again only with new data, or once they add up.
    if new or (pending and pooled >= config.settings["min_batch_rows"]):
        return "update", new, live
    if not reports_are_current(config, history, live) or not ranking_is_current(history, live):
        return "reports", waiting, live
    return "quiet", waiting, live


def run(config) -> dict:
    """Decide and do what the data calls for, then raise the alerts of what happened (within
    `alert_timeout_seconds`); never raises for a failed step or a failed alert."""
    from clientrisk.alerts import events

    log = RunLog()
    with open_history(config.history_location) as history:
        # Before this run records anything: has any run done its work lately?
        overdue = events.overdue_since(config, history)
        try:
            record = run_with_history(log, config, history)
        except Stopped as stopped:
            where = log.record.get("current_step")
            reason = (
                f"stopped by {stopped.signal_name}"
                + (f" during {where}" if where else "")
                + "; the next run completes the work"
            )
            record = log.finish("interrupted", reason)
            record["exit_code"] = stopped.exit_code
            history.finish_run(log.run_id, record)
            return record  # stopping now; the next run raises the alerts
        except HistoryBusy:
            raise  # the history cannot take the record either; tick() says so and exits 75
        except (PipelineError, OSError) as error:
            logger.error("%s", error)
            record = _finished(history, log, log.finish("failed", str(error)))
        except Exception as error:  # a bug: keep the traceback in the log, and the record
            logger.exception("unexpected error")
            record = log.finish("failed", f"unexpected {type(error).__name__}: {error}")
            record = _finished(history, log, record)
        events.after_run(config, history, record, overdue)
        return record


def record_what_is_live(config, history) -> None:
    """Record what a deployment implies, when the process that deployed was killed (or it was
    done by hand) before recording it: the batches the live model was trained on are judged,
    and a retrained model still `pending` that is live is `deployed`."""
    live_version = modelstore.current_version(config.deploy_dir)
    if live_version is None:
        return
    live = modelstore.get_deployment(config.deploy_dir, live_version)
    trained_on = [
        batch.seq
        for batch in history.batches()
        if batch.judgement is None and batch.seq <= live.through_batch
    ]
    if trained_on:
        history.judge_batches(trained_on, None, f"trained on by {live.label}")
        logger.info("batches %s: trained on by %s (recorded now)", trained_on, live.label)
    verdict = history.challenger_verdict(live.manifest["model_sha256"])
    if verdict is not None and verdict[0] == "pending":
        reason = f"deployed as {live.label}; the run was stopped before it recorded this"
        history.record_challenger(live.manifest["model_sha256"], verdict[2], "deployed", reason)


def run_with_history(log: RunLog, config, history) -> dict:
    if not history.fact(TAKEN_OVER):
        from clientrisk.data import takeover

        with exclusive_lock(config.ingested_dir / batchstore.LOCK_FILE):
            takeover.take_over(config, history)
    interrupted = history.unfinished_runs()
    if interrupted:
        tidy_up(config)
    record_what_is_live(config, history)
    probe = {}
    what, detail, live = decide(config, history, probe)
    if what == "wait":
        reason = "nothing is deployed and no input file is ready yet: " + "; ".join(detail)
        return _finished(history, log, log.finish("no new data", reason))
    if what == "quiet":
        reason = "no file in the input folder is new"
        if config.settings.get("input_database_url") and "newest" in probe:
            reason += ", nor any row of the database"
        if detail:
            reason += "; waiting: " + "; ".join(detail)
        _note_interrupted(history, interrupted, None)
        record = _finished(history, log, log.finish("no new data", reason))
        if not detail:
            leave_quiet_stamp(config, history, record, probe)
        return record
    log.run_id = history.start_run(os.getpid(), log.record["started_at"], str(config.path))
    _note_interrupted(history, interrupted, log.run_id)
    if not interrupted:
        tidy_up(config)
    if what == "bootstrap":
        logger.info("nothing is deployed: bootstrapping")
        record = bootstrap(log, config, history)
    elif what == "update":
        if detail:
            logger.info("new files: %s", ", ".join(detail))
        record = update(log, config, history, live)
    elif not reports_are_current(config, history, live):
        report(log, config)
        record = log.finish(
            "no new data",
            "no file in the input folder is new; the reports were behind the live model or the"
            " stored data (an interrupted run or a rollback) and were made again",
        )
    else:
        rerank(log, config)
        record = log.finish(
            "no new data",
            "no file in the input folder is new; the ranking was behind the stored batches"
            " (an interrupted run) and was made again",
        )
    if interrupted:
        record["completed_interrupted_runs"] = [run.id for run in interrupted]
    return _finished(history, log, record)


def leave_quiet_stamp(config, history, record: dict, probe=None) -> None:
    """Let the next tick find that nothing changed without deciding in full (quiettick.py).
    With a database source, the stamp says how to ask it for its newest row (`probe`: what it
    said this run); one the quiet tick cannot ask leaves no stamp."""
    places = {
        "config": os.path.abspath(config.path),
        "input": str(config.input_dir),
        "report": str(config.model_dir / REPORT_FILE),
        "live": str(config.deploy_dir / modelstore.CURRENT_LINK),
        "history": _history_place(config),
        "lock": str(config.run_lock_file),
        "runlog": str(config.log_dir / RUN_LOG_FILE),
        "maxlog": RUN_LOG_MAX_BYTES,
        "overdue": int(config.settings["alert_no_success_hours"] * 3600),
    }
    states = {
        "generation": history.generation(),
        "run": record["run_id"],
        "outcome": record["outcome"],
        "reason": record["reason"],
        "config_shown": str(config.path),
        **dict.fromkeys(quiettick.DATABASE_STATES, ""),
    }
    if config.settings.get("input_database_url"):
        from clientrisk.data import dbsource

        try:
            asked = probe and dbsource.quiet_probe(
                probe["source"], probe["newest"], config.settings["input_database_url"]
            )
        except Exception as error:  # no stamp: the next tick decides in full, as this one did
            logger.debug("no quiet stamp for the database source: %s", error)
            asked = None
        if not asked:
            return
        states.update(asked)
    if history.last_run_id() == record["run_id"]:
        quiettick.write_stamp(places["config"], places, states)


def _history_place(config) -> str:
    """Where the quiet tick finds the history: the file, or the server's URL without its
    password (which the tick takes from the config file or the environment, as this run)."""
    url = config.settings.get("history_db_url")
    if not url:
        return str(config.history_path)
    from clientrisk.history.postgres import libpq_url, url_without_password

    return url_without_password(libpq_url(url))


def _note_interrupted(history, interrupted, run_id) -> None:
    for run in interrupted:
        step = run.record.get("current_step")
        reason = (
            "killed or stopped before it finished"
            + (f" (during {step})" if step else "")
            + (f"; run {run_id} completed its work" if run_id else "; nothing was left to do")
        )
        history.mark_interrupted(run, reason)
        logger.warning("run %d (started %s) was interrupted: %s", run.id, run.started_at, reason)


def _finished(history, log: RunLog, record: dict) -> dict:
    record.pop("current_step", None)
    record["run_id"] = history.finish_run(log.run_id, record)
    return record


def record_busy(config) -> None:
    """Record a tick that found another run holding the lock; when no run has done its work
    for `alert_no_success_hours` (a run that hangs holds the lock for good), alert."""
    from clientrisk.alerts import events

    record = RunLog().finish("busy", "another run holds the lock")
    try:
        with open_history(config.history_location) as history:
            history.finish_run(None, record)
            overdue = events.overdue_since(config, history)
            if overdue is not None:
                events.raise_overdue(config, history, overdue, record)
    except PipelineError as error:
        logger.warning("%s", error)
    append_run_record(config, {"config": str(config.path), **record}, rotate=False)


def test_alert(args) -> int:
    """`fullprocess.py --test-alert`: a test message to every configured receiver.

    Returns:
        0 when every receiver took it; 1 when one did not (the reason in one line each), or
        none is configured; the config's own code when it cannot be read.
    """
    from clientrisk.alerts.delivery import send_test_alert

    configure_logging(args.verbose)
    try:
        config = load_config(args.config)
    except PipelineError as error:
        logger.error("fullprocess: %s", error)
        return error.exit_code
    delivered, failures = send_test_alert(config)
    for receiver in delivered:
        logger.info("test alert delivered: %s", receiver)
    for problem in failures.values():
        logger.error("test alert not delivered: %s", problem)
    if not delivered and not failures:
        logger.error(
            "fullprocess: no alert receiver is configured: set alert_webhook_url or"
            " alert_email_to (with alert_smtp_host) in %s",
            config.path,
        )
        return 1
    return 1 if failures else 0


def tick(args) -> int:
    """One unattended run with the options `args` (config, verbose), under the run lock.

    Returns:
        The exit code: 0, 1 for a failed run, EXIT_BUSY when another run holds the lock, the
        config's or the signal's own code.
    """
    configure_logging(args.verbose)
    config = None
    try:
        with stop_on_signals():
            config = load_config(args.config)
            try:
                with exclusive_lock(config.run_lock_file, wait=False):
                    record = run(config)
                    append_run_record(config, {"config": str(config.path), **record})
            except BlockingIOError:
                logger.warning(
                    "another fullprocess.py run is in progress; this one stops (try later)"
                )
                record_busy(config)
                return EXIT_BUSY
    except PipelineError as error:
        logger.error("fullprocess: %s", error)
        if config is not None:
            outcome = "busy" if isinstance(error, HistoryBusy) else "failed"
            record = RunLog().finish(outcome, str(error))
            try:
                append_run_record(config, {"config": str(config.path), **record}, rotate=False)
            except OSError as write_error:
                logger.warning("%s: %s", config.log_dir, write_error.strerror or write_error)
        return error.exit_code
    except Stopped as stopped:
        logger.error("fullprocess: stopped by %s before it began", stopped.signal_name)
        return stopped.exit_code
    if record["outcome"] == "interrupted":
        logger.error("fullprocess: %s", record["reason"])
        return record["exit_code"]
    logger.info("%s: %s", record["outcome"], record["reason"])
    return 1 if record["outcome"] == "failed" else 0
