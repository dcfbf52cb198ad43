"""Who to call: current clients ranked by the deployed model's probability that they leave, each
with the reasons for it, and what changed since the previous ranking.

A current client is one whose latest observation has no outcome yet, or whose latest outcome is
`exited` = 0; a client whose latest record says it left is never ranked. Latest means the newest
batch; within one batch a recorded exit wins over a row without an outcome, and a row without an
outcome over a recorded stay (it is the present observation), then the last line.

Each client's reasons come from `reasons.py`.

Writes `riskranking.csv` (every current client, highest risk first, with its reasons) and
`ranking.json` (the top, what changed, expected leavers, precision of the top on the test data)
to `output_model_path`, and keeps the ranking in the history database.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from clientrisk.atomicfiles import atomic_write_json, read_json, write_csv
from clientrisk.calllist.reasons import (
    EFFECT_COLUMNS,
    FACTORS,
    MIN_EFFECT,
    REASON_COLUMNS,
    explain,
    predict_in_blocks,
    reason_columns,
    reason_text,
    reasons,
    typical_values,
)
from clientrisk.config import DIAGNOSTICS_FILE, Config
from clientrisk.data import batchstore, rowkeys
from clientrisk.data.clientcsv import FEATURES, ID_COLUMN, TARGET, read_labelled_csv
from clientrisk.deployment import modelstore
from clientrisk.errors import DataError
from clientrisk.history.database import open_history
from clientrisk.model import scoring
from clientrisk.monitoring import judging
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)

RANKING_FILE = "riskranking.csv"
RANKING_SUMMARY_FILE = "ranking.json"
TOP_CLIENTS = 20
RISERS = 5
RISER_POOL = 100  # risers are looked for among the top of the list, where calls are made
PRECISION_AT = (20, 50, 100)
# Clients whose reasons are put in words (the head of the list, where calls are made; below it
# the reason columns are empty: words for millions of clients take minutes nobody reads).
REASONED_CLIENTS = 100_000
# Said of the previous list when it was made from the same batches as this one.
SAME_CLIENTS = object()
# Entries of a ranking the history keeps (enough to say who is new to the top and who rose).
KEEP_ENTRIES = 10_000
INTERVAL_Z = 1.959964  # 95 %


# --- reasons -------------------------------------------------------------------------------------


# --- current clients and the ranking -------------------------------------------------------------


def current_clients(ingested_dir: Path, seqs, outcomes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The latest observation of every client still with us, with the batch it came in.

    Args:
        outcomes: the stored rows with an outcome of `seqs` (with their batch), when the caller
            has read them already.
    """
    if outcomes is None:
        outcomes = batchstore.read_rows(ingested_dir, seqs, batchstore.OUTCOMES_FILE)
    present = batchstore.read_rows(ingested_dir, seqs, batchstore.CURRENT_FILE)
    rows = pd.concat([outcomes, present], ignore_index=True)
    target = rows[TARGET].to_numpy(dtype="float64", na_value=np.nan)
    # Within a batch: a recorded stay, then a row without an outcome, then a recorded exit; in
    # arrival order within each (one stable sort of an integer key, not a sort on three columns).
    tier = np.where(np.isnan(target), 1, np.where(target == 1, 2, 0))
    order = np.argsort(rows[batchstore.BATCH_COLUMN].to_numpy() * 3 + tier, kind="stable")
    rows, tier = rows.iloc[order], tier[order]
    last = ~rowkeys.duplicated(rows, [ID_COLUMN], keep="last")
    return rows[last & (tier != 2)].drop(columns=[TARGET]).reset_index(drop=True)


def rank_clients(model, clients: pd.DataFrame) -> pd.DataFrame:
    """Current clients, highest probability of leaving first, with their reasons as text and
    each factor's effect (columns EFFECT_COLUMNS, not written to the CSV), both for the first
    REASONED_CLIENTS (below them the effects are NaN: a longer list is predicted once per
    client, and only its head is explained, which costs four predictions a client)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    explain_all = len(clients) <= REASONED_CLIENTS
    if explain_all:
        labels, probabilities, effects, values, typical = explain(model, clients)
    else:
        labels, probabilities = predict_in_blocks(model, clients)
    # Six decimals, and never a certain 0 or 1: no client is sure to leave or to stay.
    shown = np.clip(probabilities.round(6), 1e-6, 1 - 1e-6)
    keys = pa.table(
        {"probability": shown, ID_COLUMN: pa.array(clients[ID_COLUMN].array, type=pa.string())}
    )
    order = pc.sort_indices(
        keys, sort_keys=[("probability", "descending"), (ID_COLUMN, "ascending")]
    ).to_numpy()
    ranked = clients.iloc[order].reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    ranked = ranked.assign(probability=shown[order], predicted_exit=labels[order])
    if explain_all:
        effects, values = effects[order], values[order]
    else:  # the head's figures and effects; only the head's are put in words below
        _, _, head_effects, values, typical = explain(model, ranked.iloc[:REASONED_CLIENTS])
        effects = np.full((len(ranked), len(FACTORS)), np.nan)
        effects[:REASONED_CLIENTS] = head_effects
    head = slice(0, REASONED_CLIENTS)
    for column, texts in zip(
        REASON_COLUMNS, reason_columns(effects[head], values[head], typical), strict=True
    ):
        # Empty below the head, made by arrow (a reindex of millions of rows takes seconds).
        filled = pa.concat_arrays(
            [
                pa.array(texts, pa.large_string()),
                pa.repeat(pa.scalar("", pa.large_string()), len(ranked) - len(texts)),
            ]
        )
        ranked[column] = pd.Series(pd.array(filled, dtype="str"), index=ranked.index)
    for position, column in enumerate(EFFECT_COLUMNS):
        ranked[column] = effects[:, position]
    return ranked


def csv_columns(ranked: pd.DataFrame) -> list[str]:
    extra = [batchstore.BATCH_COLUMN] if batchstore.BATCH_COLUMN in ranked.columns else []
    return ["rank", ID_COLUMN, "probability", "predicted_exit", *REASON_COLUMNS, *FEATURES, *extra]


def top_entries(ranked: pd.DataFrame, typical: np.ndarray, count: int = TOP_CLIENTS) -> list[dict]:
    """The top of the ranking for people: rank, client, probability, reasons, its figures."""
    top = ranked.head(count)
    values = top[list(FEATURES)].to_numpy(dtype=float)
    found = reasons(top[list(EFFECT_COLUMNS)].to_numpy(), values, typical)
    return [
        {
            "rank": int(rank),
            ID_COLUMN: client,
            "probability": float(probability),
            "reasons": items,
            **{name: _plain(value) for name, value in zip(FEATURES, row, strict=True)},
        }
        for rank, client, probability, items, row in zip(
            top["rank"], top[ID_COLUMN], top["probability"], found, values, strict=True
        )
    ]


def _plain(value):
    return None if pd.isna(value) else float(value)


# --- what changed, and the figures for the boss --------------------------------------------------


def changes(previous: dict | None, ranked: pd.DataFrame, previous_clients=None) -> dict:
    """What changed since the previous ranking: new in the top, biggest risers, who left.

    Args:
        previous: the previous ranking as the history keeps it (its first entries).
        previous_clients: every client on the previous list (by default, those of its entries).
    """
    if previous is None:
        return {"previous": None}
    before = {
        client: {"rank": rank, "probability": probability}
        for rank, client, probability in previous["entries"]
    }
    clients = ranked[ID_COLUMN]
    ranks, probabilities = ranked["rank"].to_numpy(), ranked["probability"].to_numpy()
    # Only the head of the list is looked at client by client.
    head = min(len(ranked), max(TOP_CLIENTS, RISER_POOL))
    now = {
        clients.iat[index]: (int(ranks[index]), float(probabilities[index]))
        for index in range(head)
    }
    new_in_top = [
        {
            "rank": rank,
            ID_COLUMN: client,
            "probability": probability,
            "previous_rank": before[client]["rank"] if client in before else None,
        }
        for client, (rank, probability) in list(now.items())[:TOP_CLIENTS]
        if client not in before or before[client]["rank"] > TOP_CLIENTS
    ]
    risers = []
    for client, (rank, probability) in list(now.items())[:RISER_POOL]:
        if client in before:
            rise = probability - before[client]["probability"]
            if rise >= MIN_EFFECT:
                risers.append(
                    {
                        "rank": rank,
                        ID_COLUMN: client,
                        "probability": probability,
                        "previous_rank": before[client]["rank"],
                        "previous_probability": before[client]["probability"],
                        "rise": round(rise, 6),
                    }
                )
    risers = sorted(risers, key=lambda item: (-item["rise"], item["rank"]))[:RISERS]
    previous_top = [
        (client, entry["rank"]) for client, entry in before.items() if entry["rank"] <= TOP_CLIENTS
    ]
    positions = _positions(clients, [client for client, _ in previous_top])
    if previous_clients is None:
        previous_clients = list(before)
    if previous_clients is SAME_CLIENTS:
        staying = len(clients)
        previous_count = len(clients)
    else:
        staying = len(clients) - _count_not_in(clients, previous_clients)
        previous_count = len(previous_clients)
    return {
        "previous": {
            "made_at": previous["made_at"],
            "model_version": previous["model_version"],
            "through_batch": previous["through_batch"],
            "clients": previous["clients"],
        },
        "new_in_top": new_in_top,
        "risers": risers,
        "left_list": previous_count - staying,
        "left_top": [
            {
                ID_COLUMN: client,
                "previous_rank": rank,
                "now": "left (latest record: exited)"
                if position < 0
                else f"rank {int(ranks[position])}",
            }
            for (client, rank), position in zip(previous_top, positions, strict=True)
            if position < 0 or ranks[position] > TOP_CLIENTS
        ],
        "joined_list": len(clients) - staying,
    }


def _positions(clients: pd.Series, wanted: list) -> list[int]:
    """Where each of a few `wanted` clients is in `clients` (-1: not there), without a hash table
    of all of them."""
    found = np.flatnonzero(batchstore.codes_in(clients, wanted))
    at = {clients.iat[index]: index for index in found}
    return [at.get(client, -1) for client in wanted]


def _count_not_in(values, others) -> int:
    """How many of `values` (client codes) are not among `others`."""
    return int((~batchstore.codes_in(values, others)).sum()) if len(values) else 0


def _clients_of(config: Config, previous: dict | None, seqs, outcomes):
    """Every client on the previous list: the history keeps only its first KEEP_ENTRIES, so a
    longer list is made again from the batches it was made from (which never change). None:
    the entries are the whole list; SAME_CLIENTS: made from the same batches as this one."""
    if previous is None or previous["clients"] <= KEEP_ENTRIES:
        return None
    if previous["through_batch"] == seqs[-1]:  # made from the same batches: the same clients
        return SAME_CLIENTS
    through = [seq for seq in seqs if seq <= previous["through_batch"]]
    if outcomes is not None:
        outcomes = outcomes[outcomes[batchstore.BATCH_COLUMN] <= previous["through_batch"]]
    return current_clients(config.ingested_dir, through, outcomes)[ID_COLUMN]


def expected_leavers(
    probabilities, training_rows: float | None = None, calibration: dict | None = None
) -> dict:
    """The expected number of leavers (the sum of the probabilities) with a 95 % interval.

    Three errors make the interval: chance (each client leaves or not as its probability says:
    a sum of independent Bernoulli draws); the model's own (its probabilities, learnt from
    `training_rows` rows, or as many as their age weights amount to, are right on average only
    up to the standard error of their mean, which for a roster of N clients moves the count by
    N times it); and how far the model was off on the newest rows it was judged on
    (`calibration`, judging.latest_calibration): the relative error of its forecast count
    there, when that error is more than chance would make, or whenever that judgement found a
    drift still unresolved; the interval then widens by that share of the count and says so.
    Without `training_rows` only chance is counted. Normal approximation throughout.
    """
    p = np.asarray(probabilities, dtype=float)
    expected = float(p.sum())
    chance = float((p * (1 - p)).sum())
    model = len(p) ** 2 * float((p * (1 - p)).mean()) / training_rows if training_rows else 0.0
    off, note = _calibration_error(calibration)
    variance = chance + model + (off * expected) ** 2
    spread = INTERVAL_Z * math.sqrt(variance) if len(p) else 0.0
    return {
        "clients": len(p),
        "expected": round(expected, 1),
        "low": max(0, math.floor(expected - spread)),
        "high": math.ceil(expected + spread),
        "share": round(expected / len(p), 4) if len(p) else None,
        "includes_model_error": bool(training_rows),
        "widened": note,
    }


def _calibration_error(calibration: dict | None) -> tuple[float, str | None]:
    """(relative error of the forecast count on the newest judged rows, why it counts) or
    (0, None) when it is within chance and no unresolved drift was found there."""
    if not calibration or not calibration.get("expected_rate"):
        return 0.0, None
    rows, expected, observed = (
        calibration["rows"],
        calibration["expected_rate"],
        calibration["observed_rate"],
    )
    off = observed / expected - 1
    noise = math.sqrt(expected * (1 - expected) / rows) / expected if rows else math.inf
    if not calibration.get("drift") and abs(off) <= INTERVAL_Z * noise:
        return 0.0, None
    words = "too few" if off >= 0 else "too many"
    why = (
        "a drift found there is not yet resolved"
        if calibration.get("drift")
        else "more than chance would make"
    )
    if calibration.get("drift"):
        off = max(abs(off), noise)
    return abs(off), (
        f"widened: on the {rows:,} newest clients with an outcome (batches"
        f" {calibration['batches']}) the model forecast {abs(off) * 100:.0f} % {words}"
        f" leavers; {why}"
    )


def precision_at(model, test: pd.DataFrame) -> dict:
    """How many of the top k clients of the test data, by probability, really left."""
    probabilities = scoring.predict(model, test)["probability"].to_numpy()
    truth = test[TARGET].to_numpy().astype(int)
    order = np.argsort(-probabilities, kind="stable")
    table = {
        f"top_{k}": round(float(truth[order[:k]].mean()), 4) for k in PRECISION_AT if k <= len(test)
    }
    return {"rows": len(test), "base_rate": round(float(truth.mean()), 4), **table}


# --- the step ------------------------------------------------------------------------------------


@dataclasses.dataclass
class RankingResult:
    report: dict
    path: Path

    @property
    def summary(self) -> str:
        summary = self.report
        leavers = summary["expected_leavers"]
        lines = [
            f"{summary['clients']} current clients ranked by {summary['model_version']};"
            f" expected leavers {leavers['expected']:.0f} ({leavers['low']}-{leavers['high']})",
        ]
        for entry in summary["top"][:5]:
            why = "; ".join(reason_text(item) for item in entry["reasons"]) or "no single factor"
            lines.append(
                f"  {entry['rank']:>3} {entry[ID_COLUMN]} {entry['probability']:.2f}  {why}"
            )
        lines.append(f"-> {self.path}")
        return "\n".join(lines)


def run(
    config: Config, model=None, deployment=None, refresh: bool = True, outcomes=None
) -> RankingResult:
    """Rank the current clients with the deployed model; write the list and its summary.

    Args:
        model, deployment: the deployed model, when the caller has loaded it.
        refresh: also update the ranking part of an existing diagnostics.json of this model.
        outcomes: every stored row with an outcome, when the caller has read them already.
    """
    if model is None:
        model, deployment = modelstore.load_deployed_model(config.deploy_dir)
    with open_history(config.history_path) as history:
        batches = history.batches()
        previous = next(iter(history.rankings(limit=1)), None)
        calibration = judging.latest_calibration(config, history, deployment)
    if not batches:
        raise DataError(f"{config.ingested_dir}: no ingested data; run ingestion.py first")
    seqs = [batch.seq for batch in batches]
    clients = current_clients(config.ingested_dir, seqs, outcomes)
    ranked = rank_clients(model, clients)
    typical = typical_values(model)
    summary = {
        "made_at": utc_now(),
        "file": RANKING_FILE,
        "model_version": deployment.label,
        "model_sha256": deployment.manifest["model_sha256"],
        "through_batch": batches[-1].seq,
        "clients": len(ranked),
        "typical": dict(zip(FEATURES, typical.tolist(), strict=True)),
        "min_effect": MIN_EFFECT,
        "top": top_entries(ranked, typical),
        "changes": changes(previous, ranked, _clients_of(config, previous, seqs, outcomes)),
        "expected_leavers": expected_leavers(
            ranked["probability"], effective_training_rows(deployment.manifest), calibration
        ),
        "precision": _test_precision(config, model),
    }
    write_csv(ranked[csv_columns(ranked)], config.model_dir / RANKING_FILE)
    with open_history(config.history_path) as history:
        history.record_ranking(
            summary["model_sha256"],
            deployment.label,
            batches[-1].seq,
            zip(
                ranked["rank"].head(KEEP_ENTRIES).tolist(),
                ranked[ID_COLUMN].head(KEEP_ENTRIES).tolist(),
                ranked["probability"].head(KEEP_ENTRIES).tolist(),
                strict=True,
            ),
            clients=len(ranked),
        )
    path = config.model_dir / RANKING_SUMMARY_FILE
    atomic_write_json(path, summary)
    if refresh:
        _refresh_diagnostics(config, summary)
    logger.debug("ranked %d current clients -> %s", len(ranked), config.model_dir / RANKING_FILE)
    return RankingResult(summary, path)


def effective_training_rows(manifest: dict) -> float | None:
    """The rows a model learnt from, as many as their age weights amount to when weighted."""
    weighting = manifest.get("weighting") or {}
    return weighting.get("effective_rows") or manifest.get("training_rows")


def _test_precision(config: Config, model) -> dict | None:
    if not config.test_data_file.is_file():
        return None
    try:
        return precision_at(model, read_labelled_csv(config.test_data_file))
    except DataError as error:
        logger.warning("precision of the top on the test data: %s", error)
        return None


def _refresh_diagnostics(config: Config, summary: dict) -> None:
    """Keep the ranking part of an existing diagnostics.json in step with the newest ranking."""
    path = config.model_dir / DIAGNOSTICS_FILE
    if not path.is_file():
        return
    try:
        report = read_json(path, "diagnostics")
    except DataError:
        return
    if report.get("model", {}).get("sha256") != summary["model_sha256"]:
        return  # diagnostics of another model: diagnostics.py will write both again
    report["ranking"] = summary
    atomic_write_json(path, report)


def read_summary(config: Config) -> dict:
    return read_json(config.model_dir / RANKING_SUMMARY_FILE, "ranking summary")
