"""Diagnose the deployed model and the ingested data, and rank the clients by risk of leaving.

Writes, in `output_model_path`, `diagnostics.json` (summary statistics, missing data, step timings,
dependency versions, data drift, and the ranking's summary: the top with reasons, what changed,
expected leavers) and, through ranking.py, `riskranking.csv` (every current client with the
deployed model's probability of leaving and the reasons for it, highest first), each atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from clientrisk.atomicfiles import TEMP_MARKER, atomic_write_json, read_json
from clientrisk.calllist import ranking
from clientrisk.config import DIAGNOSTICS_FILE, MODEL_METADATA_FILE, TRAINING_SAMPLE_FILE, Config
from clientrisk.data import batchstore, ingest
from clientrisk.data.clientcsv import (
    COLUMNS,
    FEATURES,
    ID_COLUMN,
    TARGET,
    problems_error,
    read_unlabelled_csv,
    validate_records,
)
from clientrisk.deployment import modelstore
from clientrisk.errors import DataError
from clientrisk.history.database import open_history
from clientrisk.model import scoring, training
from clientrisk.monitoring import drift
from clientrisk.report import quality
from clientrisk.report.dependencies import check_dependencies
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)


# --- predictions ----------------------------------------------------------------------------


def model_predictions(data, config: Config) -> pd.DataFrame:
    """The deployed model's labels and probabilities of leaving, in input order.

    Args:
        data: a DataFrame with the feature columns, or the path of a CSV file.
        config: where the deployed model is.

    Returns:
        Columns `prediction` (0/1) and `probability`, with `corporation` first when given.

    Raises:
        DataError: a feature column is missing or a row is invalid (named by line or record).
        DeploymentError: no valid model is deployed.
    """
    rows = _prediction_rows(data)
    model, _ = modelstore.load_deployed_model(config.deploy_dir)
    return scoring.predict(model, rows)


def _prediction_rows(data) -> pd.DataFrame:
    if isinstance(data, str | Path):
        return read_unlabelled_csv(data)
    missing = [name for name in FEATURES if name not in data.columns]
    if missing:
        raise DataError(f"missing feature column(s): {', '.join(missing)}")
    rows = data.set_axis(pd.RangeIndex(1, len(data) + 1))
    frame, found = validate_records(rows)
    if found:
        raise problems_error([f"record {index}: {reason}" for index, reason in found])
    unused = [TARGET] if ID_COLUMN in data.columns else [ID_COLUMN, TARGET]
    return frame.drop(columns=unused).reset_index(drop=True)


# --- the ingested data ---------------------------------------------------------------------------


def summary_statistics(data: pd.DataFrame) -> dict:
    """Mean, median, standard deviation, count, min, quartiles and max of each numeric column."""
    numeric = data.select_dtypes("number")
    table = {}
    for name in numeric.columns:
        values = numeric[name].dropna()
        table[name] = {
            "mean": _number(values.mean()),
            "median": _number(values.median()),
            "std": _number(values.std()),
            "count": len(values),
            "min": _number(values.min()),
            "q25": _number(values.quantile(0.25)),
            "q75": _number(values.quantile(0.75)),
            "max": _number(values.max()),
        }
    return table


def missing_percentages(data: pd.DataFrame) -> dict:
    """Percentage of missing values in each column."""
    return {name: round(float(data[name].isna().mean() * 100), 4) for name in data.columns}


def _number(value):
    return None if pd.isna(value) else round(float(value), 6)


def check_ingested_data(data: pd.DataFrame, source: Path) -> None:
    """Raise DataError when the ingested data cannot be diagnosed."""
    empty = [name for name in FEATURES if data[name].isna().all()]
    if empty:
        raise DataError(f"{source}: column(s) with no values at all: {', '.join(empty)}")


# --- drift ---------------------------------------------------------------------------------------


def newest_batches(deployment: modelstore.Deployment, batches) -> list:
    """The batches that arrived after the deployed model's training data."""
    through = deployment.manifest.get("through_batch")
    if through is None:  # a model from before batches: known by its training files
        metadata = read_json(deployment.path / MODEL_METADATA_FILE, "deployed model metadata")
        trained = {(item["file"], item["sha256"]) for item in metadata.get("training_files", [])}
        return [batch for batch in batches if (batch.source, batch.sha256) not in trained]
    return [batch for batch in batches if batch.seq > through]


def data_drift(
    config: Config, deployment: modelstore.Deployment, data: pd.DataFrame, batches
) -> dict:
    """Per-feature drift (the activity trend included) of what is newest for the live model.

    The batches that arrived after its training, with and without an outcome, against its
    training sample; when there are none, the check that made a run retrain and deploy it: the
    batches that drifted against the previous model's training sample (comparing the model's own
    training data with itself would say nothing).
    """
    newer = newest_batches(deployment, batches)
    if not newer:
        return triggering_drift(config, deployment)
    sample_path = modelstore.deployed_file(deployment, TRAINING_SAMPLE_FILE)
    if sample_path is None:
        return {"available": False, "reason": f"{deployment.label} has no training sample"}
    seqs = [batch.seq for batch in newer]
    current = pd.concat(
        [
            data[data[batchstore.BATCH_COLUMN].isin(seqs).to_numpy()],
            batchstore.current_observations(config.ingested_dir, seqs),
        ],
        ignore_index=True,
    )
    compared = "batches since training: " + ", ".join(
        f"{batch.seq} ({batch.source})" for batch in newer
    )
    logger.debug("drift: %s (%d rows) against %s", compared, len(current), sample_path)
    features = drift.feature_drift(
        drift.with_trend(pd.read_csv(sample_path)),
        drift.with_trend(current),
        (*FEATURES, drift.TREND),
    )
    return {
        "available": True,
        "compared": compared,
        "reference": f"training sample of {deployment.label}",
        "ks_alpha": drift.KS_ALPHA,
        "psi_major": drift.PSI_MAJOR,
        "features": features,
        "drifted": [item["feature"] for item in features if item["ks_drift"]],
    }


def triggering_drift(config: Config, deployment: modelstore.Deployment) -> dict:
    """The data-drift check of the run that deployed the live model, if a run did."""
    with open_history(config.history_location) as history:
        check = history.deciding_check(deployment.manifest["model_sha256"], "data")
    logger.debug(
        "drift: no batch arrived after %s was trained; %s",
        deployment.label,
        "nothing to show" if check is None else f"showing the check of run {check['run']}",
    )
    if check is None or not check["detail"].get("features"):
        return {
            "available": False,
            "reason": f"no batch arrived after {deployment.label} was trained",
        }
    detail = check["detail"]
    return {
        "available": True,
        "compared": f"batches {check['batches']}, which made run {check['run']} retrain and"
        f" deploy {deployment.label}",
        "reference": detail["reference"],
        "ks_alpha": drift.KS_ALPHA,
        "psi_major": drift.PSI_MAJOR,
        "features": detail["features"],
        "drifted": detail["drifted"],
    }


def with_words(found: dict) -> dict:
    """The drift check, with what it found in a manager's words under `in_words`."""
    return {**found, "in_words": quality.drift_in_words(found)}


def live_quality(config: Config, deployment, data: pd.DataFrame, batches) -> dict:
    """The live model on the test file and on the newest rows with an outcome, whether the test
    file still resembles the newest batch, and what happened (see quality.py)."""
    with open_history(config.history_location) as history:
        return quality.live_quality(config, history, deployment, data, batches)


# --- timing --------------------------------------------------------------------------------------


TIMED_STEPS = ("ingestion", "training", "scoring")
RECORDED_RUNS = 5


def recorded_timings(config: Config, this_run: dict | None = None) -> dict:
    """Seconds the real runs took per step: this run's (when fullprocess.py is running it) and
    those of the newest RECORDED_RUNS runs in the history that ran the step. Nothing is run again
    to time it."""
    this_run = this_run or {}
    with open_history(config.history_location) as history:
        timings = {}
        for step in TIMED_STEPS:
            seconds = ([this_run[step]] if step in this_run else []) + history.step_seconds(
                step, RECORDED_RUNS
            )
            seconds = seconds[:RECORDED_RUNS]
            if seconds:
                timings[step] = {
                    "median_seconds": statistics.median(seconds),
                    "runs": seconds,
                    "measured": "fullprocess.py runs, newest first",
                }
    return timings


def time_steps(config: Config, repeats: int, batches) -> dict:
    """Median seconds of ingestion and training, run on a copy in a temporary folder.

    Nothing of the project's own is written. The copy is made from the store (each batch as a
    CSV file, without the rows ingestion had rejected), so that it holds what was ingested even
    when the input files were archived since, and a batch landing meanwhile changes nothing.
    """
    runs = {"ingestion": [], "training": []}
    # Marked as temporary with this process's id: if it is killed, the next run removes it.
    marker = f"{TEMP_MARKER}{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix=".risk-timing.", suffix=marker) as scratch_dir:
        scratch = Path(scratch_dir)
        (scratch / "input").mkdir()
        for batch in batches:
            rows = pd.concat(
                [
                    batchstore.read_rows(
                        config.ingested_dir, [batch.seq], batchstore.OUTCOMES_FILE
                    ),
                    batchstore.read_rows(config.ingested_dir, [batch.seq], batchstore.CURRENT_FILE),
                ],
                ignore_index=True,
            )
            rows = rows.drop(columns=[batchstore.BATCH_COLUMN])
            rows.to_csv(scratch / "input" / f"batch{batch.seq:06d}.csv", index=False)
        copy = config._replace(
            input_dir=scratch / "input",
            ingested_dir=scratch / "ingested",
            model_dir=scratch / "models",
            deploy_dir=scratch / "deploy",
            log_dir=scratch / "logs",
            history_path=scratch / "ingested" / "history.db",
            # The copy keeps its own history file, even when the real one is on a server.
            settings={**config.settings, "settle_seconds": 0, "history_db_url": None},
        )
        with _quiet_logging():
            for _ in range(repeats):
                for name, step in (("ingestion", ingest.run), ("training", training.run)):
                    started = time.perf_counter()
                    step(copy)
                    runs[name].append(round(time.perf_counter() - started, 4))
                # Each repeat ingests from nothing, as the first ingestion did.
                shutil.rmtree(copy.ingested_dir)
    return {
        name: {
            "median_seconds": statistics.median(times),
            "runs": times,
            "measured": f"{repeats} run(s) on a copy",
        }
        for name, times in runs.items()
    }


@contextlib.contextmanager
def _quiet_logging():
    """Silence warnings while steps repeat on a copy: they were reported when run for real."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


# --- the step ------------------------------------------------------------------------------------


@dataclasses.dataclass
class DiagnosticsResult:
    report: dict
    path: Path

    @property
    def summary(self) -> str:
        report = self.report
        lines = [
            f"model {report['model']['version']}, {report['data']['rows']} ingested rows",
            "summary statistics:",
        ]
        for name, stats in report["summary_statistics"].items():
            lines.append(
                f"  {name:<20} mean {stats['mean']:>12.2f}  median {stats['median']:>10.2f}"
                f"  std {stats['std']:>12.2f}"
            )
        missing = ", ".join(f"{k} {v:.1f} %" for k, v in report["missing_percent"].items() if v)
        lines.append(f"missing values: {missing or 'none'}")
        timings = report["timings"]
        lines.append(
            "timings (median seconds): "
            + (
                ", ".join(
                    f"{step} {timing['median_seconds']:.2f} ({len(timing['runs'])} runs)"
                    for step, timing in timings.items()
                )
                or "none recorded yet (run fullprocess.py, or diagnostics.py --time-on-copy)"
            )
        )
        deps = report["dependencies"]
        counts = [
            f"{len(names)} {status} ({', '.join(names)})"
            for status in ("outdated", "unknown", "not installed")
            if (names := [d["package"] for d in deps if d["status"] == status])
        ]
        lines.append(f"dependencies: {'; '.join(counts) or 'all up to date'}")
        if "vulnerabilities" in report:
            lines.append(f"vulnerabilities: {report['vulnerabilities']['in_words']}")
        drifted = report["drift"].get("drifted")
        lines.append(
            "data drift: "
            + (report["drift"]["reason"] if drifted is None else ", ".join(drifted) or "none")
        )
        lines.append(quality_line(report["quality"]))
        top = report["ranking"]["top"][:5]
        lines.append(
            "most at risk: " + ", ".join(f"{c[ID_COLUMN]} {c['probability']:.2f}" for c in top)
        )
        lines.append(f"-> {self.path}")
        return "\n".join(lines)


def quality_line(found: dict) -> str:
    """The live model's quality in one line: the test file, the newest rows, the resemblance."""
    test, newest = found["test_file"], found["newest"]
    line = (
        f"quality: F1 {_figure(test['f1'])}, ROC AUC {_figure(test['roc_auc'])} on {test['file']}"
    )
    if newest:
        line += (
            f"; F1 {_figure(newest['f1'])}, ROC AUC {_figure(newest['roc_auc'])} on"
            f" {newest['dataset']}"
        )
    resemblance = found["test_file_drift"]
    if resemblance.get("available") and not resemblance["resembles"]:
        line += f" ({test['file']} no longer resembles the newest batch)"
    return line


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(
    config: Config, timing_repeats: int | None = None, this_run: dict | None = None
) -> DiagnosticsResult:
    """Compute every diagnostic, then write the ranking and `diagnostics.json`.

    Args:
        timing_repeats: time ingestion and training this many times on a copy; by default the
            timings are those the real runs recorded.
        this_run: the step seconds of the fullprocess.py run that calls this.
    """
    model, deployment = modelstore.load_deployed_model(config.deploy_dir)
    data, batches = batchstore.stored_outcomes(config)
    check_ingested_data(data, config.ingested_dir)
    dependencies, vulnerable = check_dependencies(config)
    report = {
        "generated_at": utc_now(),
        "model": {
            "version": deployment.label,
            "sha256": deployment.manifest["model_sha256"],
            "deployed_at": deployment.manifest.get("deployed_at"),
            "family": deployment.manifest.get("family", "logistic"),
            "why": deployment.manifest.get("why"),
        },
        "data": {
            "file": str(config.final_data_file),
            "batches": len(batches),
            "through_batch": batches[-1].seq,
            "sha256": batchstore.fingerprint(batches),
            "rows": len(data),
        },
        "summary_statistics": summary_statistics(data[list(COLUMNS)]),
        "missing_percent": missing_percentages(data[list(COLUMNS)]),
        "drift": with_words(data_drift(config, deployment, data, batches)),
        "quality": live_quality(config, deployment, data, batches),
        "timings": time_steps(config, timing_repeats, batches)
        if timing_repeats
        else recorded_timings(config, this_run),
        "dependencies": dependencies,
        "vulnerabilities": vulnerable,
        "ranking": ranking.run(config, model, deployment, refresh=False, outcomes=data).report,
    }
    path = config.model_dir / DIAGNOSTICS_FILE
    atomic_write_json(path, report)
    logger.debug("wrote %s", path)
    return DiagnosticsResult(report, path)
