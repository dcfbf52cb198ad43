"""Judging what new batches brought: model drift and data drift of the newest rows.

Model drift, by default (`drift_check` = `calibrated`): is the deployed model still right on the
new rows, as its own probabilities predict (see drift.py)? Whatever the check, the rows are also
asked whether a model fitted on them would predict them better (recentfit.py), which finds what
a model cannot see about itself: a relation that creeps, a combination of features. Batches too
small to judge wait in a pool until there are `min_batch_rows` rows with an outcome. Data drift:
each feature and the activity trend of the new rows against the deployed model's training
sample, at any size.

Retraining a challenger when they did is in `retraining.py`. Every verdict is recorded in the
history.
"""

from __future__ import annotations

import logging

import pandas as pd

from clientrisk.config import HISTORY_CHECKS, TRAINING_SAMPLE_FILE
from clientrisk.data import batchstore
from clientrisk.data.clientcsv import FEATURES, TARGET, read_labelled_csv
from clientrisk.deployment import modelstore
from clientrisk.model import scoring
from clientrisk.monitoring import drift, recentfit

logger = logging.getLogger(__name__)

# The context of a deployed model's score on a batch judged after it went live.
NEW_DATA_CONTEXT = "new data"


def rows_of(config, history, batches):
    """The rows with an outcome that `batches` brought (rows seen in earlier batches count once,
    with the earlier one)."""
    if not batches:
        return batchstore.labelled_history(config.ingested_dir, [])
    seqs = [batch.seq for batch in history.batches() if batch.seq <= batches[-1].seq]
    rows = batchstore.labelled_history(config.ingested_dir, seqs)
    wanted = rows[batchstore.BATCH_COLUMN].isin([batch.seq for batch in batches])
    return rows[wanted.to_numpy()].reset_index(drop=True)


def batch_names(batches) -> str:
    return ", ".join(batch.source for batch in batches)


# --- judging new rows ----------------------------------------------------------------------------


def past_scores(history, deployment, batch_name: str) -> list[float]:
    """The deployed model's F1 scores that the history checks compare with, oldest first: its
    test scores and its scores on batches judged not drifted (a drifted batch's score would
    lower the baseline for good), one per context and dataset. The batch being judged is left
    out: an earlier, interrupted run may have recorded it."""
    sha256 = deployment.manifest["model_sha256"]
    latest = {}
    for row in history.scores(sha256):
        usable = row["context"] == "test" or row["verdict"] == "no drift"
        if row["f1"] is not None and usable and row["dataset"] != batch_name:
            latest.pop((row["context"], row["dataset"]), None)
            latest[(row["context"], row["dataset"])] = row["f1"]
    return list(latest.values()) or [deployment.manifest["metrics"]["f1"]]


def check_reference(config, model, deployment) -> dict:
    """How far the deployed model's log loss exceeded its own expectation on data of its own
    market when it was deployed: the newest held-out rows it was compared on, else the test
    data."""
    reference = deployment.manifest.get("check_reference")
    if reference:
        return reference
    metrics = deployment.manifest.get("metrics", {})
    if "log_loss_excess" not in metrics:
        metrics = scoring.evaluate_model(model, read_labelled_csv(config.test_data_file))
    return {
        "excess": metrics["log_loss_excess"],
        "variance": metrics["log_loss_excess_variance"],
        "rows": metrics["rows"],
        "dataset": config.test_data_file.name,
    }


def data_drift(deployment, rows) -> dict:
    """Each feature and the activity trend of `rows` against the deployed model's training
    sample: a two-sample test that knows the sizes, so a verdict at any size."""
    sample_path = modelstore.deployed_file(deployment, TRAINING_SAMPLE_FILE)
    if sample_path is None:
        return {"available": False, "verdict": "unknown", "drifted": []}
    features = drift.feature_drift(
        drift.with_trend(pd.read_csv(sample_path)),
        drift.with_trend(rows),
        (*FEATURES, drift.TREND),
    )
    drifted = [item["feature"] for item in features if item["ks_drift"]]
    return {
        "available": True,
        "reference": f"training sample of {deployment.label}",
        "features": features,
        "drifted": drifted,
        "verdict": "drift" if drifted else "no drift",
    }


def model_drift(config, history, model, deployment, rows, batch_name: str) -> dict:
    """The configured check of the deployed model on `rows` (enough of them)."""
    method = config.settings["drift_check"]
    metrics = scoring.evaluate_model(model, rows)
    if method in HISTORY_CHECKS:
        test = read_labelled_csv(config.test_data_file)
        predicted = scoring.predict(model, test)["prediction"]
        chance = drift.sampling_f1(test[TARGET], predicted, len(rows))
        past = past_scores(history, deployment, batch_name)
        verdict = drift.score_drift(method, metrics["f1"], past, chance)
    else:
        predictions = scoring.predict(model, rows)
        verdict = drift.model_still_right(
            rows[TARGET],
            predictions["probability"],
            predictions["prediction"],
            check_reference(config, model, deployment),
        )
    # Beside the model's view of itself, the rows' own: would a model fitted on them do better?
    recent = recentfit.recent_model_check(model, rows)
    verdict["recent_model"] = recent
    if recent["drift"] and not verdict["drift"]:
        verdict.update(drift=True, basis=f"{verdict['basis']}; but {recent['basis']}")
    verdict.update(
        verdict="drift" if verdict["drift"] else "no drift", rows=len(rows), metrics=metrics
    )
    return verdict


def judge(config, history, log, model, deployment, rows, batches) -> dict:
    """Model drift (when there are enough rows) and data drift of the new rows, recorded."""
    minimum = config.settings["min_batch_rows"]
    seqs = [batch.seq for batch in batches]
    sha256 = deployment.manifest["model_sha256"]
    features = data_drift(deployment, rows)
    if len(rows) < minimum:
        verdict = {"verdict": "insufficient data", "rows": len(rows), "min_batch_rows": minimum}
    else:
        batch_name = ",".join(batch.source for batch in batches)
        verdict = model_drift(config, history, model, deployment, rows, batch_name)
        scoring.record_score(
            config,
            verdict["metrics"],
            sha256,
            NEW_DATA_CONTEXT,
            batch_name,
            log.run_id,
            verdict["verdict"],
        )
    with history.transaction():
        history.record_drift(
            log.run_id, sha256, seqs, len(rows), "model", verdict["verdict"], verdict
        )
        history.record_drift(
            log.run_id, sha256, seqs, len(rows), "data", features["verdict"], features
        )
    return {"model_drift": verdict, "data_drift": features}


def went_live_at(config, live) -> str | None:
    """When the live model last went live (its deployment or a rollback to it), or None."""
    times = [
        change["time"]
        for change in modelstore.read_history(config.deploy_dir)
        if change.get("to_version") == live.label and change.get("time")
    ]
    return times[-1] if times else None


def roster_drift(config, history, log, live, batches) -> dict | None:
    """Data drift of the current-client rows (rosters) of `batches` against the live model's
    training sample, recorded like that of labelled batches; None when they hold no such row.
    No outcome, so no model drift: only the inputs can be compared until outcomes arrive."""
    seqs = [batch.seq for batch in batches if batch.current_rows]
    if not seqs:
        return None
    rows = batchstore.current_observations(config.ingested_dir, seqs)
    if rows.empty:
        return None
    features = data_drift(live, rows)
    history.record_drift(
        log.run_id,
        live.manifest["model_sha256"],
        seqs,
        len(rows),
        "data",
        features["verdict"],
        features,
    )
    return {**features, "rows": len(rows), "batches": seqs}


def roster_drift_words(verdict: dict) -> str:
    """The roster's data drift in a clause of the run's reason."""
    if not verdict.get("available"):
        return "the current clients' figures could not be compared (no training sample)"
    where = f"{verdict['rows']} current-client rows"
    if verdict["drifted"]:
        return f"features drifted on {where} ({', '.join(verdict['drifted'])}), no outcome yet"
    return f"no feature drift on {where}"


def latest_calibration(config, history, live) -> dict | None:
    """How the live model's forecast exit rate compared with the real one on the newest rows it
    was judged on since it went live (None before any): the leavers it expected and those who
    left, and whether that judgement found drift, still unresolved while the model is live."""
    since = went_live_at(config, live)
    sha256 = live.manifest["model_sha256"]
    for check in history.drift_checks(limit=50):
        if check["kind"] != "model" or check["model_sha256"] != sha256:
            continue
        if since and check["checked_at"] < since:
            return None
        metrics = check["detail"].get("metrics") or {}
        if "mean_probability" not in metrics:
            continue
        return {
            "rows": metrics["rows"],
            "expected_rate": metrics["mean_probability"],
            "observed_rate": metrics["exited_rate"],
            "drift": check["verdict"] == "drift",
            "batches": check["batches"],
        }
    return None


def growth_due(config, history, live) -> str | None:
    """Why the live model should learn from the data that arrived since its training, or None:
    as many rows as it was trained on (times `retrain_growth`) have arrived since. A model whose
    rows were weighed down by age learnt from as many as their weights amount to: after a
    change, the new market's rows soon outnumber what it knew of it."""
    factor = config.settings["retrain_growth"]
    weighting = live.manifest.get("weighting") or {}
    trained = round(weighting.get("effective_rows") or live.manifest.get("training_rows") or 0)
    # A model made live again (a returning market) counts what arrived since it went live.
    went_live = went_live_at(config, live)
    since = sum(
        batch.labelled_rows
        for batch in history.batches()
        if batch.seq > live.through_batch and (not went_live or batch.arrived_at >= went_live)
    )
    if factor <= 0 or since < max(factor * trained, config.settings["min_batch_rows"]):
        return None
    return (
        f"{since} rows with an outcome arrived since {live.label} was trained on {trained}"
        + (" (by their age weights)" if weighting.get("half_life_rows") else "")
        + f" (retrain_growth {factor:g})"
    )


# --- the challenger ------------------------------------------------------------------------------


# --- words for the record ------------------------------------------------------------------------


def nothing_to_judge_reason(ingested, batches) -> str:
    """Why new files brought no rows with an outcome."""
    parts = [
        f"{entry.name}: {entry.status}" + (f" ({entry.note})" if entry.note else "")
        for entry in ingested.recorded
        if entry.status != "ingested"
    ]
    if getattr(ingested, "database_problem", None):
        parts.append(ingested.database_problem)
    current = sum(batch.current_rows for batch in batches)
    if current:
        parts.append(f"{current} current-client rows (no outcome) in {batch_names(batches)}")
    return "no new rows with an outcome to judge the model on: " + ("; ".join(parts) or "none")


def no_drift_reason(verdicts: dict, rows: int) -> str:
    """Why the model stays, in words."""
    model, data = verdicts["model_drift"], verdicts["data_drift"]
    if model["verdict"] == "insufficient data":
        text = (
            f"insufficient data ({rows} of {model['min_batch_rows']} rows so far): the new"
            " batches wait for more before the model is judged on them"
        )
    elif model["method"] == "calibrated":
        text = f"the model is still right on {rows} new rows: {model['basis']}"
        if model.get("recent_model", {}).get("available"):
            text += f"; {model['recent_model']['basis']}"
    else:
        text = (
            f"F1 {model['score']:.3f} on {rows} new rows is not below"
            f" {model['threshold']:.3f} ({model['method']})"
        )
    if data["drifted"]:
        text += f"; features drifted ({', '.join(data['drifted'])}) but"
        text += " retrain_on_data_drift is off"
    return text
