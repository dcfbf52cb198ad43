"""Keep the deployed model current; run by cron every 10 minutes, unattended.

1. Nothing deployed yet: bootstrap (ingest, train, score, deploy, then report).
2. New data? Files in the input folder whose name or content is neither in the deployed
   ingestion record nor among the files already checked. None: stop.
3. Ingest, then judge the new rows: the deployed model's F1 on them against its past scores
   (`drift_check`) and each feature against its training data. Fewer than `min_batch_rows` rows:
   "insufficient data". No drift: stop, with the data ingested and the files marked as checked.
4. Drift: retrain with a held-out part of the new rows left out, rescore, and deploy the new model
   only if it is not worse than the deployed one on the test data plus those held-out rows.
5. Then diagnostics, reporting and the API calls (an API that does not answer is recorded, not a
   failure).

One run at a time: a second run exits at once with code 75. Every run appends one JSON line to
`fullprocess.jsonl` in `log_folder_path`: times, decision, reason, scores, files and step timings.
Deciding that there is nothing new imports only the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import modelstore
from project import (
    DIAGNOSTICS_FILE,
    RECORD_FILE,
    ConfigError,
    IngestedFile,
    PipelineError,
    atomic_write_json,
    atomic_write_text,
    build_parser,
    configure_logging,
    default_config_path,
    exclusive_lock,
    format_ingestion_record,
    list_input_files,
    load_config,
    read_ingestion_record,
    sha256_file,
    utc_now,
)

logger = logging.getLogger(__name__)

EXIT_BUSY = 75  # EX_TEMPFAIL: try again later
RUN_LOG_FILE = "fullprocess.jsonl"
LOCK_FILE = "fullprocess.lock"
CHECKED_FILE = "checkedfiles.txt"
HASH_CACHE_FILE = "inputhashes.json"
CHECKED_HEADER = (
    "# Files fullprocess.py has judged, one per line, tab-separated; status is the decision."
)
HOLDOUT_SHARE = 0.3
RANDOM_SEED = 0


class RunLog:
    """What one run did, step by step; ends as its line in the run log."""

    def __init__(self):
        self.started = time.monotonic()
        self.record = {"started_at": utc_now(), "steps": {}}

    @contextmanager
    def step(self, name: str):
        logger.info("%s ...", name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.record["steps"][name] = round(time.perf_counter() - started, 3)

    def finish(self, outcome: str, reason: str, **facts) -> dict:
        self.record.update(facts, outcome=outcome, reason=reason)
        self.record["finished_at"] = utc_now()
        self.record["seconds"] = round(time.monotonic() - self.started, 3)
        return self.record


# --- what is new (standard library only) ---------------------------------------------------------


def checked_path(config) -> Path:
    return config.deploy_dir / CHECKED_FILE


def input_hashes(config) -> list[tuple[Path, str]]:
    """(path, SHA-256) of every input file; a file whose size and time are unchanged since the
    last run is not read again (its hash is kept in `inputhashes.json` in the log folder)."""
    cache_path = config.log_dir / HASH_CACHE_FILE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    hashes, fresh = [], {}
    for path in list_input_files(config.input_dir):
        stat = path.stat()
        cached = cache.get(path.name) if isinstance(cache, dict) else None
        if isinstance(cached, list) and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            sha256 = cached[2]
        else:
            sha256 = sha256_file(path)
        fresh[path.name] = [stat.st_size, stat.st_mtime_ns, sha256]
        hashes.append((path, sha256))
    if fresh != cache:
        atomic_write_json(cache_path, fresh)
    return hashes


def find_new_files(config) -> list[tuple[Path, str]]:
    """(path, SHA-256) of input files unknown to the deployed record and to the checked files."""
    known = read_ingestion_record(config.deploy_dir / RECORD_FILE)
    known += read_ingestion_record(checked_path(config))
    seen = {(entry.file, entry.sha256) for entry in known}
    return [
        (path, sha256) for path, sha256 in input_hashes(config) if (path.name, sha256) not in seen
    ]


def mark_checked(config, files: list[tuple[Path, str]], rows: dict, outcome: str, reason: str):
    """Add judged files to the checked record, so that the next run does not judge them again."""
    entries = read_ingestion_record(checked_path(config))
    now = utc_now()
    for path, sha256 in files:
        entries.append(
            IngestedFile(path.name, sha256, rows.get(path.name, 0), 0, now, outcome, reason)
        )
    atomic_write_text(checked_path(config), format_ingestion_record(entries, CHECKED_HEADER))


def reports_are_current(config) -> bool:
    """Whether the latest diagnostics were made with the live model (reads two small files)."""
    try:
        live = modelstore.current_deployment(config.deploy_dir).manifest["model_sha256"]
        made = json.loads((config.model_dir / DIAGNOSTICS_FILE).read_text(encoding="utf-8"))
        return made["model"]["sha256"] == live
    except (OSError, ValueError, KeyError, TypeError, PipelineError):
        return False


# --- judging new data ----------------------------------------------------------------------------


def read_new_rows(config, files: list[tuple[Path, str]]):
    """The valid rows of the new files that ingestion took in (duplicate files count once).

    Returns:
        (rows, rows per file name).
    """
    import pandas as pd

    from project import read_client_csv

    accepted = {
        (entry.file, entry.sha256)
        for entry in read_ingestion_record(config.ingestion_record_file)
        if entry.status == "ingested"
    }
    frames, counts = [], {}
    for path, sha256 in files:
        if (path.name, sha256) in accepted:
            frame = read_client_csv(path).frame
            frames.append(frame)
            counts[path.name] = len(frame)
    if not frames:
        return pd.DataFrame(), counts
    return pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True), counts


def past_scores(config, deployment, batch_name: str) -> list[float]:
    """The deployed model's F1 scores, oldest first, one per context and dataset.

    The batch being judged is left out: an earlier, interrupted run may have recorded it.
    """
    from project import SCORE_HISTORY_FILE
    from scoring import read_score_history

    sha256 = deployment.manifest["model_sha256"]
    latest = {}
    for row in read_score_history(config.model_dir / SCORE_HISTORY_FILE):
        if row["model_sha256"] == sha256 and row["f1"] is not None and row["dataset"] != batch_name:
            latest.pop((row["context"], row["dataset"]), None)
            latest[(row["context"], row["dataset"])] = row["f1"]
    return list(latest.values()) or [deployment.manifest["metrics"]["f1"]]


def judge(config, model, deployment, rows, batch_name: str) -> dict:
    """Model drift and data drift of the new rows against the deployed model."""
    import pandas as pd

    import drift
    from diagnostics import predict
    from project import FEATURES, TARGET, TRAINING_SAMPLE_FILE, read_labelled_csv
    from scoring import evaluate_model, record_score

    minimum = config.settings["min_batch_rows"]
    sample_path = modelstore.deployed_file(deployment, TRAINING_SAMPLE_FILE)
    data_drift = {"available": sample_path is not None, "drifted": []}
    if data_drift["available"]:
        features = drift.feature_drift(pd.read_csv(sample_path), rows, FEATURES)
        data_drift.update(
            features=features, drifted=[f["feature"] for f in features if f["ks_drift"]]
        )
    if len(rows) < minimum:
        verdict = {"verdict": "insufficient data", "rows": len(rows), "min_batch_rows": minimum}
        return {
            "model_drift": verdict,
            "data_drift": {**data_drift, "verdict": "insufficient data"},
        }
    metrics = evaluate_model(model, rows)
    test = read_labelled_csv(config.test_data_file)
    chance = drift.sampling_f1(test[TARGET], predict(model, test)["prediction"], len(rows))
    check = drift.score_drift(
        config.settings["drift_check"],
        metrics["f1"],
        past_scores(config, deployment, batch_name),
        chance,
    )
    sha256 = deployment.manifest["model_sha256"]
    record_score(config.model_dir, metrics, sha256, "new data", batch_name)
    check.update(verdict="drift" if check["drift"] else "no drift", rows=len(rows), metrics=metrics)
    data_drift["verdict"] = "drift" if data_drift["drifted"] else "no drift"
    return {"model_drift": check, "data_drift": data_drift}


def split_holdout(rows):
    """(rows to train on, rows held out to compare the models), stratified when possible."""
    from sklearn.model_selection import train_test_split

    from project import TARGET

    counts = rows[TARGET].value_counts()
    stratify = rows[TARGET] if len(counts) == 2 and counts.min() >= 2 else None
    return train_test_split(
        rows, test_size=HOLDOUT_SHARE, random_state=RANDOM_SEED, stratify=stratify
    )


def compare_models(config, champion, holdout) -> dict:
    """F1 of the deployed model and of the newly trained one on the test data plus `holdout`."""
    import pandas as pd

    from project import read_labelled_csv
    from scoring import evaluate_model, load_trained_model

    challenger, _ = load_trained_model(config.model_dir)
    evaluation = pd.concat([read_labelled_csv(config.test_data_file), holdout], ignore_index=True)
    champion_f1 = evaluate_model(champion, evaluation)["f1"]
    challenger_f1 = evaluate_model(challenger, evaluation)["f1"]
    return {
        "evaluation_rows": len(evaluation),
        "deployed_f1": champion_f1,
        "retrained_f1": challenger_f1,
        "retrained_is_not_worse": challenger_f1 >= champion_f1,
    }


# --- the run -------------------------------------------------------------------------------------


def report(log: RunLog, config) -> None:
    """Diagnostics, reporting, and the API calls (which may find no API running)."""
    import apicalls
    import diagnostics
    import reporting

    with log.step("diagnostics"):
        diagnostics.run(config)
    with log.step("reporting"):
        reporting.run(config)
    with log.step("apicalls"):
        try:
            apicalls.run(config)
            log.record["api"] = "answered"
        except PipelineError as error:
            logger.warning("API calls: %s (carrying on)", error)
            log.record["api"] = f"not reached: {error}"


def bootstrap(log: RunLog, config) -> dict:
    import deployment
    import ingestion
    import scoring
    import training

    with log.step("ingestion"):
        ingested = ingestion.run(config)
    with log.step("training"):
        training.run(config)
    with log.step("scoring"):
        scored = scoring.run(config)
    with log.step("deployment"):
        deployed = deployment.deploy_trained_model(config, "bootstrap: nothing was deployed")
    report(log, config)
    return log.finish(
        "bootstrapped",
        f"nothing was deployed; deployed {deployed.deployment.label}",
        new_files=[entry.file for entry in ingested.entries],
        scores={"test_f1": scored.metrics["f1"]},
    )


def update(log: RunLog, config, new_files: list[tuple[Path, str]]) -> dict:
    """Ingest new files, judge them and retrain, redeploy or keep the model as they warrant."""
    import deployment
    import ingestion
    import scoring
    import training

    names = [path.name for path, _ in new_files]
    logger.info("new files: %s", ", ".join(names))
    with log.step("ingestion"):
        ingestion.run(config)
    rows, counts = read_new_rows(config, new_files)
    model, live = modelstore.load_deployed_model(config.deploy_dir)
    with log.step("drift check"):
        verdicts = judge(config, model, live, rows, ",".join(names))
    facts = {"new_files": names, "new_rows": len(rows), "deployed_version": live.label, **verdicts}
    model_drift = verdicts["model_drift"]["verdict"] == "drift"
    data_drift = verdicts["data_drift"]["verdict"] == "drift"
    retrain_for_data = data_drift and config.settings["retrain_on_data_drift"]
    if not (model_drift or retrain_for_data):
        reason = _no_drift_reason(verdicts, len(rows))
        mark_checked(config, new_files, counts, "no drift", reason)
        return log.finish("no drift", reason, **facts)
    cause = (
        "model drift"
        if model_drift
        else "data drift in " + ", ".join(verdicts["data_drift"]["drifted"])
    )
    _, holdout = split_holdout(rows)
    logger.info("%s: retraining, %d new rows held out", cause, len(holdout))
    with log.step("training"):
        training.run(config, holdout=holdout)
    with log.step("scoring"):
        scoring.run(config)
    comparison = compare_models(config, model, holdout)
    facts["comparison"] = comparison
    if comparison["retrained_is_not_worse"]:
        with log.step("deployment"):
            result = deployment.deploy_trained_model(
                config, f"{cause} on {', '.join(names)}; retrained model not worse"
            )
        outcome = "redeployed"
        reason = (
            f"{cause}; retrained model F1 {comparison['retrained_f1']:.3f} >= deployed"
            f" {comparison['deployed_f1']:.3f} on {comparison['evaluation_rows']} rows;"
            f" {result.deployment.label} is live"
        )
    else:
        outcome = "challenger kept out"
        reason = (
            f"{cause}; retrained model F1 {comparison['retrained_f1']:.3f} < deployed"
            f" {comparison['deployed_f1']:.3f} on {comparison['evaluation_rows']} rows;"
            f" {live.label} stays live"
        )
    mark_checked(config, new_files, counts, outcome, reason)
    report(log, config)
    return log.finish(outcome, reason, **facts)


def _no_drift_reason(verdicts: dict, rows: int) -> str:
    model_drift, data_drift = verdicts["model_drift"], verdicts["data_drift"]
    if not rows:
        return "the new files hold no new usable rows"
    if model_drift["verdict"] == "insufficient data":
        return (
            f"insufficient data: {rows} new rows, fewer than min_batch_rows"
            f" {model_drift['min_batch_rows']}"
        )
    text = (
        f"F1 {model_drift['score']:.3f} on {rows} new rows is not below"
        f" {model_drift['threshold']:.3f} ({model_drift['method']})"
    )
    if data_drift["drifted"]:
        text += f"; features drifted ({', '.join(data_drift['drifted'])}) but"
        text += " retrain_on_data_drift is off"
    return text


def run(config) -> dict:
    """Decide and do what the current data calls for; never raises for a failed step."""
    log = RunLog()
    try:
        if modelstore.current_version(config.deploy_dir) is None:
            logger.info("nothing is deployed: bootstrapping")
            return bootstrap(log, config)
        modelstore.mend_history(config.deploy_dir)
        new_files = find_new_files(config)
        if new_files:
            return update(log, config, new_files)
        if reports_are_current(config):
            return log.finish("no new data", "no file in the input folder is new")
        report(log, config)
        return log.finish(
            "no new data",
            "no file in the input folder is new; the reports were behind the live model"
            " (an interrupted run or a rollback) and were made again",
        )
    except (PipelineError, OSError) as error:
        logger.error("%s", error)
        return log.finish("failed", str(error))
    except Exception as error:  # a bug: keep the traceback in the log, and the record
        logger.exception("unexpected error")
        return log.finish("failed", f"unexpected {type(error).__name__}: {error}")


def append_run_record(config, record: dict) -> None:
    """One JSON line per run, written with a single append so that lines never interleave."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(config.log_dir / RUN_LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def parse_args(argv: list[str] | None):
    """The options; without any (as cron runs it) argparse, a few milliseconds, is not needed."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return SimpleNamespace(config=default_config_path(), verbose=False)
    return build_parser(__file__, __doc__).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.verbose)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        logger.error("fullprocess: %s", error)
        return error.exit_code
    try:
        with exclusive_lock(config.log_dir / LOCK_FILE, wait=False):
            record = run(config)
            append_run_record(config, {"config": str(config.path), **record})
    except BlockingIOError:
        logger.warning("another fullprocess.py run is in progress; this one stops (try later)")
        record = RunLog().finish("busy", "another run holds the lock")
        append_run_record(config, {"config": str(config.path), **record})
        return EXIT_BUSY
    logger.info("%s: %s", record["outcome"], record["reason"])
    return 1 if record["outcome"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
