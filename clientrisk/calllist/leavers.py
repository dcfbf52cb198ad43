"""How many of a call list's clients left, against how many its probabilities expected.

A ranking (`ranking.json`, and its entries in the history database) says how many of its
current clients are expected to leave, with a 95 % interval (`ranking.expected_leavers`). When a
later batch brings outcomes for some of those clients, the realized count among them is set
against the same interval made for just those clients (their probabilities, and the model's own
error for the rows it learnt from). A count outside it says the model no longer fits.
"""

from __future__ import annotations

import numpy as np

from clientrisk.calllist.ranking import effective_training_rows, expected_leavers
from clientrisk.data import batchstore
from clientrisk.data.clientcsv import ID_COLUMN, TARGET
from clientrisk.deployment import modelstore
from clientrisk.errors import PipelineError

__all__ = ["MIN_CLIENTS", "realized_against_expected"]

# Fewest listed clients with a later outcome for a verdict: below, the interval's normal
# approximation is too rough to alert on.
MIN_CLIENTS = 30
RANKINGS_LOOKED_AT = 5


def realized_against_expected(config, history, after_ranking: int = 0) -> dict | None:
    """The newest ranking (id above `after_ranking`, entries kept) made before the newest batch
    with outcomes: its clients whose outcome arrived since, how many of them left, and the
    interval their probabilities give. None when there is no such ranking or too few clients.
    """
    labelled = [batch.seq for batch in history.batches() if batch.labelled_rows]
    if not labelled:
        return None
    ranking = next(
        (
            item
            for item in history.rankings(limit=RANKINGS_LOOKED_AT)
            if item["id"] > after_ranking
            and item["through_batch"] is not None
            and item["through_batch"] < labelled[-1]
            and item["clients"]
            and len(item["entries"]) == item["clients"]
        ),
        None,
    )
    if ranking is None:
        return None
    later = [seq for seq in labelled if seq > ranking["through_batch"]]
    rows = batchstore.read_rows(config.ingested_dir, later, batchstore.OUTCOMES_FILE)
    probability = {corporation: p for _, corporation, p in ranking["entries"]}
    listed = rows[rows[ID_COLUMN].isin(list(probability))]
    if listed.empty:
        return None
    exited = listed[TARGET].to_numpy(dtype="float64", na_value=np.nan) == 1
    left = listed.assign(left=exited).groupby(ID_COLUMN)["left"].any()
    if len(left) < MIN_CLIENTS:
        return None
    interval = expected_leavers(
        [probability[corporation] for corporation in left.index],
        _training_rows(config, ranking["model_version"]),
    )
    return {
        "ranking": ranking["id"],
        "made_at": ranking["made_at"],
        "model_version": ranking["model_version"],
        "batches": later,
        "clients": len(left),
        "realized": int(left.sum()),
        "expected": interval["expected"],
        "low": interval["low"],
        "high": interval["high"],
    }


def _training_rows(config, label: str) -> float | None:
    version = modelstore.parse_version(label or "")
    if version is None:
        return None
    try:
        manifest = modelstore.get_deployment(config.deploy_dir, version).manifest
    except (PipelineError, OSError):
        return None
    return effective_training_rows(manifest)
