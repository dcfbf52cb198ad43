"""Who to call: current clients ranked by the deployed model's probability that they leave, each
with the reasons for it, and what changed since the previous ranking.

Who is current is said in `current.py`: the latest roster less who left since, or without a
roster the stayers who never left.

Clients are ranked by their unrounded probability (ties, which then mean exactly equal
probabilities, by name). A client whose figures lie outside the range the model learnt from is
marked (`outside_range`): its risk is the model's guess from the nearest training clients.

Each client's reasons come from `reasons.py`.

The first `calls_per_week` clients (a setting; 0 marks none) are this week's calls, marked
"yes" in the column `call_this_week`.

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
from clientrisk.calllist import outcomes as past
from clientrisk.calllist.current import current_clients, current_rule
from clientrisk.calllist.reasons import (
    EFFECT_COLUMNS,
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
from clientrisk.data import batchstore, contacts
from clientrisk.data.clientcsv import FEATURES, ID_COLUMN, TARGET, read_labelled_csv
from clientrisk.deployment import modelstore
from clientrisk.errors import DataError, PipelineError
from clientrisk.history.database import KEEP_RANKINGS, open_history
from clientrisk.model import coverage, scoring
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
OUTSIDE_COLUMN = "outside_range"
# "yes" for the first `calls_per_week` clients of the list: this week's calls.
CALL_COLUMN = "call_this_week"
# "hold back" for the clients of the control group (`hold_back_share`): not to be called.
HOLD_COLUMN = "hold_back"
HOLD_WORDS = "hold back"
# The probability as the model gave it, which the list is sorted by (not written to the CSV).
EXACT_COLUMN = "exact probability"


# --- reasons -------------------------------------------------------------------------------------


# --- current clients and the ranking -------------------------------------------------------------


def rank_clients(model, clients: pd.DataFrame) -> pd.DataFrame:
    """Current clients, highest probability of leaving first, with their reasons as text, each
    factor's effect (columns EFFECT_COLUMNS, not written to the CSV), both for the first
    REASONED_CLIENTS (below them the effects are NaN: a longer list is predicted once per
    client, and only its head is explained, which costs five predictions a client), and the
    features outside the range the model learnt from (OUTSIDE_COLUMN, "" for none)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    explain_all = len(clients) <= REASONED_CLIENTS
    if explain_all:
        labels, probabilities, effects, values, typical = explain(model, clients)
    else:
        labels, probabilities = predict_in_blocks(model, clients)
    # Sorted by the probability as the model gave it: shown to six decimals, many clients would
    # tie and be ordered by name.
    keys = pa.table(
        {
            "probability": probabilities,
            ID_COLUMN: pa.array(clients[ID_COLUMN].array, type=pa.string()),
        }
    )
    order = pc.sort_indices(
        keys, sort_keys=[("probability", "descending"), (ID_COLUMN, "ascending")]
    ).to_numpy()
    # Shown to six decimals, and never a certain 0 or 1: no client is sure to leave or to stay.
    shown = np.clip(probabilities.round(6), 1e-6, 1 - 1e-6)
    ranked = clients.iloc[order].reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    ranked = ranked.assign(probability=shown[order], predicted_exit=labels[order])
    exact = probabilities[order]
    if explain_all:
        effects, values = effects[order], values[order]
    else:  # the head's figures and effects; only the head's are put in words below
        _, _, head_effects, values, typical = explain(model, ranked.iloc[:REASONED_CLIENTS])
        effects = np.full((len(ranked), len(EFFECT_COLUMNS)), np.nan)
        effects[:REASONED_CLIENTS] = head_effects
    head = slice(0, REASONED_CLIENTS)
    texts_of = reason_columns(effects[head], values[head], typical, exact[head])
    for column, texts in zip(REASON_COLUMNS, texts_of, strict=True):
        # Empty below the head, made by arrow (a reindex of millions of rows takes seconds).
        filled = pa.concat_arrays(
            [
                pa.array(texts, pa.large_string()),
                pa.repeat(pa.scalar("", pa.large_string()), len(ranked) - len(texts)),
            ]
        )
        ranked[column] = pd.Series(pd.array(filled, dtype="str"), index=ranked.index)
    ranked[OUTSIDE_COLUMN] = pd.Series(
        _outside_names(model, ranked[list(FEATURES)]), index=ranked.index, dtype="str"
    )
    for position, column in enumerate(EFFECT_COLUMNS):
        ranked[column] = effects[:, position]
    ranked[EXACT_COLUMN] = exact
    return ranked


def _outside_names(model, figures: pd.DataFrame) -> list[str]:
    """For each client, the features outside the range the model learnt from ("" for none)."""
    outside = coverage.outside_mask(model, figures.to_numpy(dtype=float, na_value=np.nan))
    names = [""] * len(outside)
    for index in np.flatnonzero(outside.any(axis=1)):
        names[index] = ", ".join(
            name for name, out in zip(coverage.FEATURE_NAMES, outside[index], strict=True) if out
        )
    return names


def held_back(clients, share: float) -> np.ndarray:
    """Which `clients` are held back from calls when `share` of each list is: drawn at random
    once per client from a hash of its code, so that a client held back on one list is held
    back on every list (and a list's control group is a fair share of it)."""
    codes = pd.Series(clients, dtype="str")
    if share <= 0 or not len(codes):
        return np.zeros(len(codes), dtype=bool)
    hashes = pd.util.hash_pandas_object(codes, index=False).to_numpy()
    return hashes < np.uint64(share * 2.0**64)


def mark_calls(ranked: pd.DataFrame, calls_per_week: int, hold_back_share: float = 0.0):
    """`ranked` with CALL_COLUMN: "yes" for its first `calls_per_week` clients not held back, ""
    for the others; and with a control group (`hold_back_share` above 0) HOLD_COLUMN: "hold
    back" for the clients held back from calls (`held_back`), "" for the others."""
    marks = np.full(len(ranked), "", dtype=object)
    hold = held_back(ranked[ID_COLUMN].to_numpy(), hold_back_share)
    marks[np.flatnonzero(~hold)[: max(calls_per_week, 0)]] = "yes"
    ranked = ranked.assign(**{CALL_COLUMN: pd.Series(marks, index=ranked.index, dtype="str")})
    if hold_back_share > 0:
        words = np.where(hold, HOLD_WORDS, "")
        ranked = ranked.assign(**{HOLD_COLUMN: pd.Series(words, index=ranked.index, dtype="str")})
    return ranked


def csv_columns(ranked: pd.DataFrame) -> list[str]:
    extra = [batchstore.BATCH_COLUMN] if batchstore.BATCH_COLUMN in ranked.columns else []
    calls = [CALL_COLUMN] if CALL_COLUMN in ranked.columns else []
    calls += [HOLD_COLUMN] if HOLD_COLUMN in ranked.columns else []
    return [
        "rank",
        ID_COLUMN,
        "probability",
        "predicted_exit",
        *REASON_COLUMNS,
        OUTSIDE_COLUMN,
        *calls,
        *FEATURES,
        *extra,
    ]


def top_entries(ranked: pd.DataFrame, typical: np.ndarray, count: int = TOP_CLIENTS) -> list[dict]:
    """The top of the ranking for people: rank, client, probability, reasons, whether its
    figures lie outside the range the model learnt from (and the note saying so), whether it is
    one of this week's calls, its figures."""
    top = ranked.head(count)
    values = top[list(FEATURES)].to_numpy(dtype=float)
    exact = top[EXACT_COLUMN] if EXACT_COLUMN in top.columns else top["probability"]
    found = reasons(top[list(EFFECT_COLUMNS)].to_numpy(), values, typical, exact.to_numpy())
    outside = top[OUTSIDE_COLUMN] if OUTSIDE_COLUMN in top.columns else [""] * len(top)
    calls = top[CALL_COLUMN] if CALL_COLUMN in top.columns else [""] * len(top)
    held = top[HOLD_COLUMN] if HOLD_COLUMN in top.columns else [""] * len(top)
    return [
        {
            "rank": int(rank),
            ID_COLUMN: client,
            "probability": float(probability),
            "reasons": items,
            OUTSIDE_COLUMN: names.split(", ") if names else [],
            "note": coverage.outside_text(names.split(", ") if names else []),
            CALL_COLUMN: call == "yes",
            HOLD_COLUMN: hold == HOLD_WORDS,
            **{name: _plain(value) for name, value in zip(FEATURES, row, strict=True)},
        }
        for rank, client, probability, items, names, call, hold, row in zip(
            top["rank"],
            top[ID_COLUMN],
            top["probability"],
            found,
            outside,
            calls,
            held,
            values,
            strict=True,
        )
    ]


def _plain(value):
    return None if pd.isna(value) else float(value)


# --- what changed, and the figures for the boss --------------------------------------------------


def changes(
    previous: dict | None, ranked: pd.DataFrame, previous_clients=None, outcomes=None
) -> dict:
    """What changed since the previous ranking: new in the top, biggest risers, who left.

    Args:
        previous: the previous ranking as the history keeps it (its first entries).
        previous_clients: every client on the previous list (by default, those of its entries).
        outcomes: the stored rows with an outcome, to tell a client of the previous top who
            left the company from one the latest roster no longer lists.
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
    left_company = _exited(outcomes, [client for client, _ in previous_top])
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
                "now": f"rank {int(ranks[position])}"
                if position >= 0
                else "left (latest record: exited)"
                if client in left_company
                else "no longer a current client (not on the latest roster)",
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


def _exited(outcomes, clients: list) -> set:
    """Which of a few `clients` have a recorded exit among `outcomes` (all, without them)."""
    if outcomes is None:
        return set(clients)
    found = batchstore.codes_in(outcomes[ID_COLUMN], clients)
    exited = outcomes[TARGET].to_numpy(dtype="float64", na_value=np.nan) == 1
    return set(outcomes.loc[found & exited, ID_COLUMN])


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
    probabilities,
    training_rows: float | None = None,
    calibration: dict | None = None,
    z: float = INTERVAL_Z,
) -> dict:
    """The expected number of leavers (the sum of the probabilities) with a 95 % interval (or
    the one `z` standard errors wide).

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
    spread = z * math.sqrt(variance) if len(p) else 0.0
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


def estimated_performance(ranked: pd.DataFrame) -> dict:
    """What the live model's own probabilities imply about the list before any outcome arrives
    (confidence-based estimation): the share of leavers among its top 20, 50 and 100, and the
    precision, recall and F1 of its flags (the expected confusion counts: a flagged client is a
    true alarm with its probability). Such an estimate holds only while the probabilities do:
    it cannot see a change in how clients behave, which only outcomes show."""
    column = EXACT_COLUMN if EXACT_COLUMN in ranked.columns else "probability"
    p = ranked[column].to_numpy(dtype=float)
    flagged = ranked["predicted_exit"].to_numpy() == 1
    true_alarms, false_alarms = p[flagged].sum(), (1 - p[flagged]).sum()
    missed = p[~flagged].sum()
    estimate = {f"top_{k}": round(float(p[:k].mean()), 4) for k in PRECISION_AT if k <= len(p)}
    if len(p):
        flags = true_alarms + false_alarms
        estimate.update(
            precision=round(float(true_alarms / flags), 4) if flags else None,
            recall=round(float(true_alarms / (true_alarms + missed)), 4) if p.sum() else None,
            f1=round(float(2 * true_alarms / (2 * true_alarms + false_alarms + missed)), 4)
            if p.sum()
            else None,
            flagged=int(flagged.sum()),
        )
    estimate["caveat"] = (
        "estimated from the model's own probabilities: right while they are, blind to a change"
        " in how clients behave until outcomes arrive"
    )
    return estimate


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
    with open_history(config.history_location) as history:
        batches = history.batches()
        kept = history.rankings(limit=KEEP_RANKINGS)
        previous = next(iter(kept), None)
        calibration = judging.latest_calibration(config, history, deployment)
    if not batches:
        raise DataError(f"{config.ingested_dir}: no ingested data; run ingestion.py first")
    seqs = [batch.seq for batch in batches]
    if outcomes is None:
        outcomes = batchstore.read_rows(config.ingested_dir, seqs, batchstore.OUTCOMES_FILE)
    clients = current_clients(config.ingested_dir, seqs, outcomes)
    calls_per_week = config.settings.get("calls_per_week", 0)
    share = config.settings.get("hold_back_share", 0.0)
    ranked = mark_calls(rank_clients(model, clients), calls_per_week, share)
    contacted = contacts.read_contacts(config.contacts_dir)
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
        "current_rule": current_rule(batches),
        "outside_range": int((ranked[OUTSIDE_COLUMN] != "").sum()),
        "calls_this_week": int((ranked[CALL_COLUMN] == "yes").sum()),
        "hold_back_share": share,
        "held_back": int((ranked[HOLD_COLUMN] != "").sum()) if share else 0,
        "contacts": None if contacted is None else contacted.summary(),
        "top": top_entries(ranked, typical),
        "changes": changes(
            previous, ranked, _clients_of(config, previous, seqs, outcomes), outcomes
        ),
        "expected_leavers": expected_leavers(
            ranked["probability"], effective_training_rows(deployment.manifest), calibration
        ),
        "precision": _test_precision(config, model),
        "estimated": estimated_performance(ranked),
        "past_lists": _past_lists(config, kept, outcomes, contacted),
        "calls_caveat": past.CALLS_CAVEAT,
    }
    write_csv(ranked[csv_columns(ranked)], config.model_dir / RANKING_FILE)
    with open_history(config.history_location) as history:
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
            hold_back_share=share,
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


def _past_lists(config: Config, rankings: list[dict], outcomes: pd.DataFrame, contacted=None):
    """How each past list did (`outcomes.past_lists`), each interval with its own model's
    training rows where that deployment is still kept (chance alone where it is not)."""
    rows = {}

    def interval(probabilities, version: str, z: float = INTERVAL_Z) -> dict:
        if version not in rows:
            rows[version] = _training_rows_of(config, version)
        return expected_leavers(probabilities, rows[version], z=z)

    return past.past_lists(rankings, outcomes, interval, contacts=contacted, held_back=held_back)


def _training_rows_of(config: Config, version: str) -> float | None:
    number = modelstore.parse_version(version)
    try:
        deployment = modelstore.get_deployment(config.deploy_dir, number)
    except (PipelineError, TypeError):  # pruned, or not a version name: chance alone
        return None
    return effective_training_rows(deployment.manifest)


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
