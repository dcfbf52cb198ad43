"""The live model's quality on today's market, beside its score on the test file.

The test file may come from a market that has gone: after a drifted batch, a retrained model is
deployed because it predicts the newest held-out rows better, while on the old test file it can
look worse. This module finds the live model's newest score on rows with an outcome that it did
not learn from (a batch judged after it went live, or the rows held out when it was trained),
checks whether the test file still resembles the newest batch, and says in one sentence what
happened.
"""

from __future__ import annotations

import logging

import pandas as pd

from clientrisk.data import batchstore
from clientrisk.data.clientcsv import FEATURES, read_labelled_csv
from clientrisk.monitoring import drift
from clientrisk.monitoring.judging import NEW_DATA_CONTEXT
from clientrisk.monitoring.retraining import HELD_OUT_CONTEXT, QUALITY_KEYS
from clientrisk.timestamps import parse_utc

logger = logging.getLogger(__name__)


def test_file_quality(deployment, test_file: str) -> dict:
    """The live model's metrics on the test file, as scored when it was trained."""
    metrics = deployment.manifest.get("metrics", {})
    return {
        "file": metrics.get("dataset", {}).get("file", test_file),
        **{key: metrics.get(key) for key in QUALITY_KEYS},
    }


def newest_quality(history, deployment) -> dict | None:
    """The live model's newest score on rows with an outcome it never learnt from, or None: a
    batch judged after it went live ("new data"), or the newest rows held out when it was
    trained ("held out")."""
    sha256 = deployment.manifest["model_sha256"]
    fresh = [
        score
        for score in history.scores(sha256)
        if score["context"] in (NEW_DATA_CONTEXT, HELD_OUT_CONTEXT)
    ]
    if not fresh:
        return None
    score = fresh[-1]
    judged = score["context"] == NEW_DATA_CONTEXT
    return {
        **{key: score[key] for key in QUALITY_KEYS},
        "dataset": f"new batch {score['dataset']}" if judged else score["dataset"],
        "measured": "judged when the batch arrived, after the model went live"
        if judged
        else f"held out when run {score['run']} trained it",
        "at": score["scored_at"],
    }


def test_file_drift(config, data: pd.DataFrame, batches) -> dict:
    """Whether the test file still resembles the newest batch (its rows with and without an
    outcome): the features whose distribution differs significantly (KS) and by a major PSI."""
    if not config.test_data_file.is_file() or not batches:
        return {"available": False, "reason": "no test file or no batch to compare"}
    newest = batches[-1]
    rows = pd.concat(
        [
            data[data[batchstore.BATCH_COLUMN] == newest.seq],
            batchstore.current_observations(config.ingested_dir, [newest.seq]),
        ],
        ignore_index=True,
    )
    if rows.empty:
        return {"available": False, "reason": f"batch {newest.seq} has no usable rows"}
    features = drift.feature_drift(
        drift.with_trend(read_labelled_csv(config.test_data_file)),
        drift.with_trend(rows),
        (*FEATURES, drift.TREND),
    )
    # Both a significant difference and a major one: two samples of one market differ by
    # chance often enough on one test (a test file of a few hundred rows).
    drifted = [item["feature"] for item in features if item["ks_drift"] and item["psi_drift"]]
    return {
        "available": True,
        "compared": f"{config.test_data_file.name} against batch {newest.seq}"
        f" ({newest.source}, {len(rows):,} rows)",
        "drifted": drifted,
        "resembles": not drifted,
        "features": features,
    }


def market_story(history, deployment) -> str | None:
    """One sentence on why the live model is the one live, when a drift made a run deploy it."""
    sha256 = deployment.manifest["model_sha256"]
    check = next(
        (
            found
            for kind in ("model", "data")
            if (found := history.deciding_check(sha256, kind)) and found["verdict"] == "drift"
        ),
        None,
    )
    if check is None:
        return None
    changed = parse_utc(check["checked_at"])
    when = f" on {changed.day} {changed:%b %Y}" if changed else ""
    seqs = str(check["batches"]).split(",")
    batches = f"batch {seqs[0]}" if len(seqs) == 1 else f"batches {seqs[0]}–{seqs[-1]}"
    manifest = deployment.manifest
    rows, first = manifest.get("training_rows") or 0, manifest.get("from_batch")
    clients = f"{rows:,} newest clients" if first and first > 1 else f"{rows:,} clients"
    return (
        f"The market changed{when} ({batches}); the list below comes from a model retrained on"
        f" the {clients}."
    )


FEATURE_WORDS = {
    "lastmonth_activity": "last month's activity",
    "lastyear_activity": "last year's activity",
    "number_of_employees": "the head count",
    drift.TREND: "last month's activity against the year's average",
}


def drift_in_words(found: dict) -> str | None:
    """The data drift a manager reads: which figures of the newest clients differ from those the
    model learnt from, which way and how much; None when nothing drifted.

    "Last month's activity is much lower than in the data the model learnt from (median 12
    against 43)": "much" for a major PSI, "somewhat" below it.
    """
    if not found.get("available") or not found.get("drifted"):
        return None
    said = []
    for item in found["features"]:
        if item["feature"] not in found["drifted"]:
            continue
        before, now = item.get("reference_median"), item.get("current_median")
        how = "much" if item.get("psi_drift") else "somewhat"
        name = FEATURE_WORDS.get(item["feature"], item["feature"])
        if before is None or now is None or before == now:
            said.append(f"{name} is spread differently")
            continue
        way = "higher" if now > before else "lower"
        # The trend is a log ratio: its median means nothing to a reader, the direction does.
        figures = (
            ""
            if item["feature"] == drift.TREND
            else f" (median {_median(now)} against {_median(before)})"
        )
        said.append(f"{name} is {how} {way}{figures}")
    text = "; ".join(said)
    return f"The newest clients differ from those the model learnt from: {text}."


def _median(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2g}"


def live_quality(config, history, deployment, data: pd.DataFrame, batches) -> dict:
    """What `diagnostics.json` holds under `quality`."""
    newest = newest_quality(history, deployment)
    resemblance = test_file_drift(config, data, batches)
    logger.debug("quality: newest %s; test file %s", newest, resemblance)
    return {
        "test_file": test_file_quality(deployment, config.test_data_file.name),
        "newest": newest,
        "test_file_drift": resemblance,
        "story": market_story(history, deployment),
    }
