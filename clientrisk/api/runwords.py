"""A run of fullprocess.py in one plain sentence, from its outcome and record, for the dashboard's
runs table (whose full reason, with its statistics, stays beside it)."""

from __future__ import annotations

import re

__all__ = ["run_sentence"]

# How a reason names the version it made live ("deployed v0002", "v0002 is live").
_DEPLOYED = re.compile(r"deployed (v\d+)|(v\d+) is live")
# How much of a failure's message the sentence repeats.
FAILURE_WORDS = 120


def run_sentence(outcome: str, reason: str, record: dict | None) -> str:
    """What a run did, in words a manager reads without the statistics.

    Args:
        outcome: the run's outcome ("redeployed", "no drift", ...).
        reason: the run's full reason, which says the version deployed when the record does not.
        record: the run's record as the history keeps it (empty or None for an old run).
    """
    record = record if isinstance(record, dict) else {}
    reason = reason or ""
    old = record.get("deployed_version") or "the live model"
    new_rows = record.get("new_rows")
    clients = f"{new_rows:,} new clients" if isinstance(new_rows, int) else "the new clients"
    if outcome == "bootstrapped":
        return f"First model trained and deployed: {_deployed(reason)}."
    if outcome == "redeployed":
        return _redeployed(record, reason, old)
    if outcome == "challenger kept out":
        rows = _compared_rows(record)
        return (
            f"{_cause(reason)}: a model retrained on the newest clients was worse than {old}"
            f" on {rows}, so {old} stays live."
        )
    if outcome == "too few rows to compare":
        return (
            f"{_cause(reason)}, but too few new clients with an outcome to compare a retrained"
            f" model on: {old} stays live."
        )
    if outcome == "no drift":
        return f"No drift: the model is still right on {clients}."
    if outcome == "insufficient data":
        return f"Too few new clients to judge the model on yet ({clients}): they wait for more."
    if outcome == "nothing to judge":
        return "New files, but no client with an outcome to judge the model on."
    if outcome == "no new data":
        return "No new data: nothing to do."
    if outcome == "busy":
        return "Another run was still going: this one did nothing."
    if outcome == "live model changed":
        return "The live model was changed by hand during this run: the retrained one is kept out."
    if outcome == "running":
        return "Running now."
    if outcome in ("failed", "interrupted"):
        text = reason if len(reason) <= FAILURE_WORDS else reason[: FAILURE_WORDS - 1] + "…"
        return f"The run {outcome}: {text}" if text else f"The run {outcome}."
    return reason or outcome


def _redeployed(record: dict, reason: str, old: str) -> str:
    new = _deployed(reason)
    stored = record.get("stored_model")
    if isinstance(stored, dict) and stored.get("label"):
        return (
            f"{_cause(reason)}: {stored['label']}, an earlier model, is live again: it predicts"
            f" the {_compared_rows(record)} best."
        )
    paired = (record.get("comparison") or {}).get("paired_log_loss") or {}
    if not paired:
        return (
            f"Too few clients with an outcome to test a model on: retrained on all of them and"
            f" deployed {new}."
        )
    how = "better than" if paired.get("verdict") == "better" else "as good as"
    return (
        f"{_cause(reason)}: retrained on the newest clients and deployed {new}, {how} {old} on"
        f" {_compared_rows(record)}."
    )


def _deployed(reason: str) -> str:
    """The version the run made live, as its reason names it."""
    found = _DEPLOYED.findall(reason)
    return next((name for pair in reversed(found) for name in pair if name), "a new model")


def _cause(reason: str) -> str:
    """Why the run retrained, from the start of its reason."""
    if reason.startswith("model drift"):
        return "The model drifted"
    if reason.startswith("data drift"):
        return "The clients' figures drifted"
    if reason.startswith("new data"):
        return "Enough new clients arrived"
    return "A retrain was due"


def _compared_rows(record: dict) -> str:
    paired = (record.get("comparison") or {}).get("paired_log_loss") or {}
    rows = paired.get("rows")
    if not isinstance(rows, int):
        against = (record.get("stored_model") or {}).get("against_live") or {}
        rows = against.get("rows")
    return f"{rows:,} new clients" if isinstance(rows, int) else "the newest clients"
