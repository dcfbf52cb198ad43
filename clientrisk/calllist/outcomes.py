"""How each past call list did, once later batches brought outcomes for the clients it named.

A list is made from the batches up to one (`through_batch`); an outcome since is a row of a later
batch for a client on the list, and a client left when any such row says so. For the top 20, 50
and 100 of each list and for the whole list (as far as the history keeps its entries): how many
clients have an outcome since, how many of them left, how many the list expected among them (the
sum of their probabilities, with the interval of `ranking.expected_leavers`) and how many the
base rate would give (the share who left among every client of that list with an outcome since:
what calling clients at random from the list would have found). And the realized calibration by
risk band: the share who left against the probability the list gave them.

Lists made from the same batches by the same model name the same clients: the first of them
stands for all. A list whose clients were called is affected by the calls: a call that keeps a
client makes the list look worse than it was, so the figures say so.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from clientrisk.data import batchstore
from clientrisk.data.clientcsv import ID_COLUMN, TARGET
from clientrisk.timestamps import parse_utc

TOPS = (20, 50, 100)
# Risk bands of the realized calibration (probability, as a share).
BANDS = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
# An alert on a past list's parts looks at four of them (top 20, 50, 100, whole list): each
# at 5 % / 4 two-sided (Bonferroni), so that a list that did as it said alerts in 5 % of cases
# at most, not in one of five.
ALARM_Z = 2.497705
# Past lists shown (the newest with an outcome since).
SHOWN_LISTS = 5
CALLS_CAVEAT = (
    "A list whose clients were called is affected by the calls: a call that kept a client makes"
    " the list look less right than it was, so these figures understate it where calls worked."
)
CALLS_CAVEAT_SHORT = (
    "Calls change who leaves: where they worked, the list looks less right than it was."
)


NOT_AN_EXPERIMENT = (
    "This is not an experiment: the managers chose whom to call, and what made them choose may"
    " itself change who leaves; clients of similar risk are compared to lessen that, not to"
    " remove it. Holding back a random share of each list (hold_back_share) makes it one."
)
AN_EXPERIMENT = (
    "An experiment: the clients held back were drawn at random, so the difference is what being"
    " on the list for calls did, whether or not each was reached."
)


def past_lists(
    rankings: list[dict],
    outcomes: pd.DataFrame,
    interval,
    limit: int = SHOWN_LISTS,
    contacts=None,
    held_back=None,
):
    """How each past list did, newest first (at most `limit`, each with an outcome since).

    Args:
        rankings: the history's rankings (`History.rankings`), with their entries.
        outcomes: every stored row with an outcome, with its batch.
        interval: (probabilities, model_version) -> the expected leavers with an interval
            (`ranking.expected_leavers` with that model's training rows).
        contacts: the clients the managers contacted (`contacts.Contacts`), if known.
        held_back: (clients, share) -> which of them a list with that hold-back share held
            back from calls.
    """
    batches = outcomes[batchstore.BATCH_COLUMN].to_numpy()
    newest = int(batches.max()) if len(batches) else None
    seen, found = set(), []
    for ranking in sorted(rankings, key=lambda ranking: ranking["id"]):
        key = (ranking["through_batch"], ranking["model_sha256"])
        if key in seen or not ranking["entries"]:
            continue
        seen.add(key)
        if newest is not None and newest > ranking["through_batch"]:  # an outcome since
            found.append(ranking)
    shown = []
    for ranking in found[::-1][:limit]:  # the later rows of these only: no copy for the rest
        since = outcomes_since(ranking, outcomes[batches > ranking["through_batch"]])
        result = how_it_did(ranking, since, interval)
        calls = did_the_calls_help(ranking, since, contacts, held_back)
        if calls is not None:
            result["calls"] = calls
        shown.append(result)
    return shown


class Since(NamedTuple):
    """A past list's clients (in its order) and probabilities, whether a later row has each
    one's outcome and whether one says it left, and the batches those rows came in."""

    clients: list
    probabilities: np.ndarray
    has_outcome: np.ndarray
    left: np.ndarray
    batches: list[int]


def outcomes_since(ranking: dict, later: pd.DataFrame) -> Since:
    clients = [entry[1] for entry in ranking["entries"]]
    probabilities = np.array([entry[2] for entry in ranking["entries"]], dtype=float)
    rows = later[batchstore.codes_in(later[ID_COLUMN], clients)]
    exited = rows[TARGET].to_numpy(dtype="float64", na_value=np.nan) == 1
    left_clients = set(rows.loc[exited, ID_COLUMN])
    seen_clients = set(rows[ID_COLUMN])
    has_outcome = np.fromiter((client in seen_clients for client in clients), bool, len(clients))
    left = np.fromiter((client in left_clients for client in clients), bool, len(clients))
    batches = sorted(int(seq) for seq in later[batchstore.BATCH_COLUMN].unique())
    return Since(clients, probabilities, has_outcome, left, batches)


def how_it_did(ranking: dict, since: Since, interval) -> dict:
    """One list's figures (see the module's docstring) against the rows of later batches."""
    clients, probabilities, has_outcome, left = since[:4]
    observed = int(has_outcome.sum())
    base_rate = float(left.sum() / observed) if observed else None
    sizes = [top for top in TOPS if top < len(clients)] + [len(clients)]
    parts = []
    for size in sizes:
        mask = has_outcome[:size]
        part = {
            "top": size if len(parts) < len(sizes) - 1 else None,  # None: the whole list (kept)
            "clients": size,
            "estimated_share": round(float(probabilities[:size].mean()), 4),
            "with_outcome": int(mask.sum()),
            "left": int(left[:size].sum()),
        }
        if part["with_outcome"]:
            expected = interval(probabilities[:size][mask], ranking["model_version"])
            wide = interval(probabilities[:size][mask], ranking["model_version"], z=ALARM_Z)
            part.update(
                expected=expected["expected"],
                low=expected["low"],
                high=expected["high"],
                share_left=round(part["left"] / part["with_outcome"], 4),
                at_base_rate=round(part["with_outcome"] * base_rate, 1),
                verdict=_verdict(part["left"], expected),
                alarm=_verdict(part["left"], wide) != "as expected",
            )
        parts.append(part)
    return {
        "ranking": ranking["id"],
        "made_at": ranking["made_at"],
        "model_version": ranking["model_version"],
        "through_batch": ranking["through_batch"],
        "clients": ranking["clients"],
        "kept": len(clients),
        "outcome_batches": since.batches,
        "base_rate": None if base_rate is None else round(base_rate, 4),
        "parts": parts,
        "bands": _bands(probabilities[has_outcome], left[has_outcome]),
    }


def did_the_calls_help(ranking: dict, since: Since, contacts, held_back) -> dict | None:
    """The leaving rate of the clients of a past list who were called (contacted, or with a
    control group: not held back) against those who were not, of similar risk: within each risk
    band that holds both, weighed by the called clients of the band. With a contacts file only
    the part of the list the calls reached counts (down to the lowest-ranked client contacted).
    None without contacts and without a control group."""
    share = ranking.get("hold_back_share") or 0.0
    if contacts is None and not share:
        return None
    clients, probabilities, has_outcome, left = since[:4]
    made = parse_utc(ranking["made_at"])
    contacted = (
        np.array(contacts.contacted_since(clients, made.date()), dtype=bool)
        if contacts is not None and made is not None
        else np.zeros(len(clients), dtype=bool)
    )
    reach = int(np.flatnonzero(contacted).max()) + 1 if contacted.any() else len(clients)
    if share and held_back is not None:
        called = ~np.asarray(held_back(clients, share), dtype=bool)
        experiment = True
    else:
        called = contacted
        experiment = False
    within = np.zeros(len(clients), dtype=bool)
    within[:reach] = True
    compared = _compare(probabilities, left, called, has_outcome & within)
    return {
        "experiment": experiment,
        "hold_back_share": share,
        "reach": reach,
        "contacted": int(contacted.sum()),
        **compared,
        "caveat": AN_EXPERIMENT if experiment else NOT_AN_EXPERIMENT,
    }


def _compare(probabilities, left, called, counted) -> dict:
    """Called against not called among the `counted` clients, band by band (see above)."""
    index = np.clip(np.searchsorted(BANDS, probabilities, side="right") - 1, 0, len(BANDS) - 2)
    found = {
        "called": int((called & counted).sum()),
        "called_left": int((called & counted & left).sum()),
        "not_called": int((~called & counted).sum()),
        "not_called_left": int((~called & counted & left).sum()),
    }
    rows, called_rate, other_rate, variance = [], 0.0, 0.0, 0.0
    for band in range(len(BANDS) - 1):
        mine = counted & (index == band)
        yes, no = mine & called, mine & ~called
        if yes.any() and no.any():
            rows.append((yes.sum(), left[yes].sum(), no.sum(), left[no].sum()))
    matched = sum(row[0] for row in rows)
    for n_yes, left_yes, n_no, left_no in rows:
        weight = n_yes / matched
        called_rate += weight * left_yes / n_yes
        other_rate += weight * left_no / n_no
        # Each rate's variance with one leaver and one stayer added (never 0 for 0 of n).
        for count, leavers in ((n_yes, left_yes), (n_no, left_no)):
            rate = (leavers + 1) / (count + 2)
            variance += weight**2 * rate * (1 - rate) / count
    if not rows:
        return {**found, "matched": 0}
    difference = called_rate - other_rate
    spread = 1.959964 * float(np.sqrt(variance))
    return {
        **found,
        "matched": int(matched),
        "called_rate": round(float(called_rate), 4),
        "similar_rate": round(float(other_rate), 4),
        "difference": round(float(difference), 4),
        "low": round(float(difference - spread), 4),
        "high": round(float(difference + spread), 4),
    }


def calls_sentence(calls: dict) -> str:
    """The comparison in words."""
    who, others = (
        ("not held back", "held back") if calls["experiment"] else ("contacted", "not contacted")
    )
    if not calls.get("matched"):
        return (
            f"Did the calls help? Not yet to be said: {calls['called']:,} {who} and"
            f" {calls['not_called']:,} {others} clients have an outcome since, too few of"
            " similar risk on both sides."
        )
    change = calls["difference"] * 100
    return (
        f"Did the calls help? Of the {calls['matched']:,} {who} clients with an outcome since,"
        f" {calls['called_rate']:.0%} left; of the {others} clients of similar risk,"
        f" {calls['similar_rate']:.0%}: a difference of {change:+.0f} points (95 %:"
        f" {calls['low'] * 100:+.0f} to {calls['high'] * 100:+.0f}). {calls['caveat']}"
    )


def _verdict(left: int, expected: dict) -> str:
    if left > expected["high"]:
        return "more than expected"
    if left < expected["low"]:
        return "fewer than expected"
    return "as expected"


def _bands(probabilities: np.ndarray, left: np.ndarray) -> list[dict]:
    """The realized share who left in each risk band that holds a client with an outcome."""
    bands = []
    index = np.clip(np.searchsorted(BANDS, probabilities, side="right") - 1, 0, len(BANDS) - 2)
    for band in range(len(BANDS) - 1):
        mask = index == band
        if mask.any():
            bands.append(
                {
                    "band": f"{BANDS[band] * 100:.0f}-{BANDS[band + 1] * 100:.0f} %",
                    "clients": int(mask.sum()),
                    "expected_share": round(float(probabilities[mask].mean()), 4),
                    "share_left": round(float(left[mask].mean()), 4),
                }
            )
    return bands


def list_name(found: dict) -> str:
    """'the list of 2 March 2026 (v0002)'."""
    made = parse_utc(found["made_at"])
    day = f"{made.day} {made:%B %Y}" if made else found["made_at"]
    return f"the list of {day} ({found['model_version']}, through batch {found['through_batch']})"


def sentences(found: dict) -> list[str]:
    """A few plain sentences of how one past list did."""
    name = list_name(found)
    lines = []
    for part in found["parts"]:
        if part["top"] is None:
            kept = (
                f"all {part['clients']:,} clients on {name}"
                if found["kept"] == found["clients"]
                else f"the first {part['clients']:,} of its {found['clients']:,} clients"
                f" (the history keeps no more of {name})"
            )
            head = f"Of {kept}"
        else:
            head = f"Of the {part['top']} clients at the top of {name}"
        if not part["with_outcome"]:
            lines.append(f"{head}, none has an outcome since.")
            continue
        line = (
            f"{head}, {part['with_outcome']:,} have an outcome since: {part['left']:,} left,"
            f" {part['expected']:,.1f} were expected ({part['low']:,}–{part['high']:,})"
        )
        if part["top"] is not None:
            line += f", {part['at_base_rate']:,.1f} at the base rate"
        lines.append(f"{line}: {part['verdict']}.")
        name = "that list"
    return lines


def outside_interval(found: dict) -> list[dict]:
    """The parts of a past list whose leavers fell outside what the list expected."""
    return [part for part in found["parts"] if part.get("verdict", "as expected") != "as expected"]


def alarms(found: dict) -> list[dict]:
    """The parts of a past list whose leavers fell so far outside what it expected that the
    four parts together would do so by chance in 5 % of lists (ALARM_Z): worth an alert."""
    return [part for part in found["parts"] if part.get("alarm")]
