"""Judging what new batches brought: whether the deployed model still holds on their rows, and
whether a model retrained on them is better.

Model drift: the deployed model's F1 on the new rows against its past scores, by the configured
`drift_check` (see drift.py). Data drift: each feature of the new rows against the deployed
model's training sample. A challenger is trained with part of the new rows held out and compared
with the live model on the test data plus those rows; it is deployed only if it is not worse and
the model it was judged against is still live. Every verdict is recorded in the history.
"""

from __future__ import annotations

import logging

import pandas as pd
from sklearn.model_selection import train_test_split

import datastore
import deployment
import drift
import modelstore
import scoring
import training
from clientdata import COLUMNS, FEATURES, TARGET, read_labelled_csv
from diagnostics import predict
from project import TRAINING_SAMPLE_FILE

logger = logging.getLogger(__name__)

HOLDOUT_SHARE = 0.3
RANDOM_SEED = 0


def new_rows(config, history, batches):
    """The rows with an outcome that `batches` brought (rows seen in earlier batches count once,
    with the earlier one)."""
    seqs = [batch.seq for batch in history.batches() if batch.seq <= batches[-1].seq]
    rows = datastore.labelled_history(config.ingested_dir, seqs)
    wanted = rows[datastore.BATCH_COLUMN].isin([batch.seq for batch in batches])
    return rows[wanted.to_numpy()].reset_index(drop=True)


def past_scores(history, deployment, batch_name: str) -> list[float]:
    """The deployed model's F1 scores, oldest first, one per context and dataset.

    The batch being judged is left out: an earlier, interrupted run may have recorded it.
    """
    sha256 = deployment.manifest["model_sha256"]
    latest = {}
    for row in history.scores(sha256):
        if row["f1"] is not None and row["dataset"] != batch_name:
            latest.pop((row["context"], row["dataset"]), None)
            latest[(row["context"], row["dataset"])] = row["f1"]
    return list(latest.values()) or [deployment.manifest["metrics"]["f1"]]


def judge(config, history, log, model, deployment, rows, batches) -> dict:
    """Model drift and data drift of the new rows against the deployed model."""
    minimum = config.settings["min_batch_rows"]
    seqs = [batch.seq for batch in batches]
    batch_name = ",".join(batch.source for batch in batches)
    sha256 = deployment.manifest["model_sha256"]
    sample_path = modelstore.deployed_file(deployment, TRAINING_SAMPLE_FILE)
    data_drift = {"available": sample_path is not None, "drifted": []}
    if data_drift["available"]:
        features = drift.feature_drift(pd.read_csv(sample_path), rows, FEATURES)
        data_drift.update(
            features=features, drifted=[f["feature"] for f in features if f["ks_drift"]]
        )
    if len(rows) < minimum:
        verdict = {"verdict": "insufficient data", "rows": len(rows), "min_batch_rows": minimum}
        data_drift["verdict"] = "insufficient data"
    else:
        metrics = scoring.evaluate_model(model, rows)
        test = read_labelled_csv(config.test_data_file)
        chance = drift.sampling_f1(test[TARGET], predict(model, test)["prediction"], len(rows))
        verdict = drift.score_drift(
            config.settings["drift_check"],
            metrics["f1"],
            past_scores(history, deployment, batch_name),
            chance,
        )
        scoring.record_score(config, metrics, sha256, "new data", batch_name, log.run_id)
        verdict.update(
            verdict="drift" if verdict["drift"] else "no drift", rows=len(rows), metrics=metrics
        )
        data_drift["verdict"] = "drift" if data_drift["drifted"] else "no drift"
    with history.transaction():
        history.record_drift(
            log.run_id, sha256, seqs, len(rows), "model", verdict["verdict"], verdict
        )
        history.record_drift(
            log.run_id, sha256, seqs, len(rows), "data", data_drift["verdict"], data_drift
        )
    return {"model_drift": verdict, "data_drift": data_drift}


def split_holdout(rows):
    """(rows to train on, rows held out to compare the models), stratified when possible."""
    counts = rows[TARGET].value_counts()
    stratify = rows[TARGET] if len(counts) == 2 and counts.min() >= 2 else None
    return train_test_split(
        rows, test_size=HOLDOUT_SHARE, random_state=RANDOM_SEED, stratify=stratify
    )


def compare_models(config, champion, holdout) -> dict:
    """F1 of the deployed model and of the newly trained one on the test data plus `holdout`."""
    challenger, _ = scoring.load_trained_model(config.model_dir)
    test = read_labelled_csv(config.test_data_file)
    evaluation = pd.concat([test, holdout[list(COLUMNS)]], ignore_index=True)
    champion_f1 = scoring.evaluate_model(champion, evaluation)["f1"]
    challenger_f1 = scoring.evaluate_model(challenger, evaluation)["f1"]
    return {
        "evaluation_rows": len(evaluation),
        "deployed_f1": champion_f1,
        "retrained_f1": challenger_f1,
        "retrained_is_not_worse": challenger_f1 >= champion_f1,
    }


def nothing_to_judge_reason(ingested, batches) -> str:
    """Why new files brought no rows with an outcome."""
    parts = [
        f"{entry.name}: {entry.status}" + (f" ({entry.note})" if entry.note else "")
        for entry in ingested.recorded
        if entry.status != "ingested"
    ]
    current = sum(batch.current_rows for batch in batches)
    if current:
        parts.append(f"{current} current-client rows (no outcome) in {batch_names(batches)}")
    return "no new rows with an outcome to judge the model on: " + ("; ".join(parts) or "none")


def batch_names(batches) -> str:
    return ", ".join(batch.source for batch in batches)


def retrain(log, config, history, model, live, rows, cause, batches, facts):
    """Train a challenger, compare it with the live model and deploy it if it is not worse.

    Returns:
        (outcome, reason).
    """
    _, holdout = split_holdout(rows)
    logger.info("%s: retraining, %d new rows held out", cause, len(holdout))
    with log.step("training"):
        trained = training.run(config, holdout=holdout, run_id=log.run_id)
    sha256 = trained.metadata["model_sha256"]
    history.record_challenger(sha256, log.run_id, "pending")
    with log.step("scoring"):
        scoring.run(config)
    comparison = compare_models(config, model, holdout)
    facts["comparison"] = comparison
    scores = (
        f"retrained model F1 {comparison['retrained_f1']:.3f} vs deployed"
        f" {comparison['deployed_f1']:.3f} on {comparison['evaluation_rows']} rows"
    )
    if not comparison["retrained_is_not_worse"]:
        reason = f"{cause}; {scores}: worse; {live.label} stays live"
        history.record_challenger(sha256, log.run_id, "kept out", reason)
        return "challenger kept out", reason
    try:
        with log.step("deployment"):
            result = deployment.deploy_trained_model(
                config,
                f"{cause} on {batch_names(batches)}; retrained model not worse",
                expected_sha256=sha256,
                expected_live=live.version,
            )
    except modelstore.LiveChanged as error:
        reason = (
            f"{cause}; {scores}, but not deployed: {error} (changed by hand during this run);"
            " the retrained model stays in the model folder, kept out"
        )
        history.record_challenger(sha256, log.run_id, "kept out", reason)
        return "live model changed", reason
    reason = f"{cause}; {scores}: not worse; {result.deployment.label} is live"
    history.record_challenger(sha256, log.run_id, "deployed", reason)
    return "redeployed", reason


def no_drift_reason(verdicts: dict, rows: int) -> str:
    model_drift, data_drift = verdicts["model_drift"], verdicts["data_drift"]
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
