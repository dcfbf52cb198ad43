"""Score the trained model on the hold-out test data.

Writes, in `output_model_path`: `latestscore.txt` (the F1 as a bare number), `scoremetrics.json`
(precision, recall, ROC AUC, confusion counts, rows) and one more line of `scorehistory.csv`.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from clientrisk.atomicfiles import (
    atomic_write_json,
    atomic_write_text,
    read_json,
    sha256_file,
    spreadsheet_safe,
)
from clientrisk.config import (
    METRICS_FILE,
    MODEL_FILE,
    MODEL_METADATA_FILE,
    SCORE_FILE,
    SCORE_HISTORY_FILE,
    Config,
)
from clientrisk.data.clientcsv import FEATURES, ID_COLUMN, TARGET, read_labelled_csv
from clientrisk.deployment.modelstore import load_model
from clientrisk.errors import DataError
from clientrisk.history.database import SCORE_FIELDS, open_history
from clientrisk.monitoring import drift
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

# The columns of the `scorehistory.csv` export (as earlier versions wrote it).
SCORE_HISTORY_FIELDS = tuple(field for field in SCORE_FIELDS if field not in ("run", "verdict"))


@dataclass
class ScoringResult:
    metrics: dict
    score_path: Path

    @property
    def summary(self) -> str:
        metrics = self.metrics
        auc = "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.3f}"
        return (
            f"F1 {metrics['f1']:.3f} (precision {metrics['precision']:.3f}, recall"
            f" {metrics['recall']:.3f}, ROC AUC {auc}) on {metrics['rows']} test rows"
            f" -> {self.score_path}"
        )


def predict(model, rows: pd.DataFrame) -> pd.DataFrame:
    """Labels and probabilities of `model` for valid client rows, in their order."""
    labels, probabilities = predict_arrays(model, rows[list(FEATURES)])
    result = pd.DataFrame({"prediction": labels, "probability": probabilities})
    if ID_COLUMN in rows.columns:
        result.insert(0, ID_COLUMN, rows[ID_COLUMN].to_numpy())
    return result


def predict_arrays(model, features: pd.DataFrame):
    """(labels, probabilities) of `model` for the feature columns, as arrays: one pass, the label
    being the probability against the tuned threshold, as predict() would do."""
    probabilities = model.predict_proba(features)[:, 1]
    final_step = model.steps[-1][1] if hasattr(model, "steps") else model
    threshold = getattr(final_step, "best_threshold_", None)
    if threshold is None and isinstance(getattr(final_step, "threshold", None), float):
        threshold = final_step.threshold
    if threshold is None:
        return np.asarray(model.predict(features)), probabilities
    return (probabilities >= threshold).astype(int), probabilities


def evaluate_model(model, data: pd.DataFrame) -> dict:
    """Classification metrics of `model` on labelled client rows.

    Besides F1 and the rest: the log loss, and how much it exceeds what the model's own
    probabilities expect on these rows (with that excess's variance), which the `calibrated`
    drift check takes as the model's reference.
    """
    truth = data[TARGET].to_numpy().astype(int)
    predictions = predict(model, data)
    predicted = predictions["prediction"].to_numpy()
    probabilities = predictions["probability"].to_numpy()
    tn, fp, fn, tp = confusion_matrix(truth, predicted, labels=[0, 1]).ravel()
    both_classes = len(set(truth)) == 2
    auc = roc_auc_score(truth, probabilities) if both_classes else None
    excess, variance = drift.log_loss_excess(truth, probabilities)
    clipped = np.clip(probabilities, drift.PROBABILITY_FLOOR, 1 - drift.PROBABILITY_FLOOR)
    loss = -np.mean(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped))
    return {
        "f1": round(float(f1_score(truth, predicted, zero_division=0)), 6),
        "precision": round(float(precision_score(truth, predicted, zero_division=0)), 6),
        "recall": round(float(recall_score(truth, predicted, zero_division=0)), 6),
        "roc_auc": None if auc is None else round(float(auc), 6),
        "log_loss": round(float(loss), 6),
        "log_loss_excess": round(excess, 6),
        "log_loss_excess_variance": variance,
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "rows": len(truth),
        "exited_rate": round(float(truth.mean()), 6),
        "mean_probability": round(float(probabilities.mean()), 6),
    }


def load_trained_model(model_dir: Path):
    """The model in `output_model_path`, checked against the hash training recorded for it.

    Returns:
        (model, its metadata).
    """
    metadata_path = model_dir / MODEL_METADATA_FILE
    if not metadata_path.exists():
        raise DataError(f"{metadata_path}: no trained model; run training.py first")
    metadata = read_json(metadata_path, "model metadata")
    model = load_model(model_dir / MODEL_FILE, metadata["model_sha256"])
    return model, metadata


def append_score_history(path: Path, row: dict) -> None:
    """Add one line to the score history export (rewritten atomically, so never half a line;
    a dataset named like a spreadsheet formula is neutralised)."""
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ",".join(SCORE_HISTORY_FIELDS) + "\n"
    line = io.StringIO()
    csv.writer(line, lineterminator="\n").writerow(
        [
            "" if row.get(name) is None else spreadsheet_safe(row[name])
            for name in SCORE_HISTORY_FIELDS
        ]
    )
    atomic_write_text(path, existing + line.getvalue())


def record_score(
    config: Config,
    metrics: dict,
    model_sha256: str,
    context: str,
    dataset: str,
    run_id: int | None = None,
    verdict: str | None = None,
) -> None:
    """Record a score in the history database, then in the `scorehistory.csv` export."""
    scored_at = utc_now()
    with open_history(config.history_location) as history:
        history.record_score(metrics, model_sha256, context, dataset, run_id, scored_at, verdict)
    append_score_history(
        config.model_dir / SCORE_HISTORY_FILE,
        {
            "scored_at": scored_at,
            "model_sha256": model_sha256,
            "context": context,
            "dataset": dataset,
            **metrics,
        },
    )


def run(config: Config) -> ScoringResult:
    """Score the trained model on the test data and write the score files."""
    model, metadata = load_trained_model(config.model_dir)
    test_path = config.test_data_file
    metrics = evaluate_model(model, read_labelled_csv(test_path))
    logger.debug("model %s on %s: %s", metadata["model_sha256"][:12], test_path, metrics)
    record = {
        **metrics,
        "model_sha256": metadata["model_sha256"],
        "dataset": {"file": test_path.name, "sha256": sha256_file(test_path)},
        "scored_at": utc_now(),
    }
    atomic_write_json(config.model_dir / METRICS_FILE, record)
    score_path = config.model_dir / SCORE_FILE
    atomic_write_text(score_path, f"{metrics['f1']:.6f}\n")
    record_score(config, metrics, metadata["model_sha256"], "test", test_path.name)
    logger.debug("wrote %s, %s and a score line", score_path, config.model_dir / METRICS_FILE)
    return ScoringResult(metrics, score_path)
