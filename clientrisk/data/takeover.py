"""Taking over a project that an earlier version of this system ran, with no row lost.

Earlier versions rebuilt `finaldata.csv` from whatever was in the input folder and kept their
history in text files: `ingestedfiles.txt`, `scorehistory.csv`, `fullprocess.jsonl`, and the
deployment folder's `checkedfiles.txt`. The first run with a history database takes them over:

* each ingested file still in the input folder, unchanged, becomes a batch of its own, in the
  order of the old record and with its old ingestion time;
* the rows of the old `finaldata.csv` that no such file holds (their files were moved away)
  become one batch before them, so every row the old data had is kept;
* the files the old record names are known (not ingested again), and those the deployed model
  was trained on or a run had judged are judged;
* old scores and runs are copied into the database.

Done once per database (the `taken_over` fact), under the ingestion lock.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import namedtuple
from pathlib import Path

from clientrisk.atomicfiles import sha256_file
from clientrisk.errors import PipelineError
from clientrisk.history.database import TAKEN_OVER
from clientrisk.timestamps import parse_utc, utc_now

logger = logging.getLogger(__name__)

CHECKED_FILE = "checkedfiles.txt"
OLD_RECORD_FIELDS = ("file", "sha256", "rows_accepted", "rows_rejected", "ingested_at", "status")
LEFTOVER_SOURCE = "finaldata.csv (taken over)"


class OldEntry(
    namedtuple("OldEntry", "file sha256 rows_accepted rows_rejected ingested_at status note")
):
    """One line of an old `ingestedfiles.txt` or `checkedfiles.txt`."""

    __slots__ = ()


def read_old_record(path: Path) -> list[OldEntry]:
    """Entries of an old tab-separated record of files; a missing file is an empty record."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: cannot read: {error}") from None
    rows = [line.split("\t") for line in text.splitlines() if line.strip() and line[0] != "#"]
    if not rows or tuple(rows[0][: len(OLD_RECORD_FIELDS)]) != OLD_RECORD_FIELDS:
        return []
    entries = []
    for number, cells in enumerate(rows[1:], start=2):
        try:
            file, sha256, accepted, rejected, ingested_at, status, *rest = cells
            entries.append(
                OldEntry(
                    file,
                    sha256,
                    int(accepted),
                    int(rejected),
                    ingested_at,
                    status,
                    rest[0] if rest else "",
                )
            )
        except ValueError:
            logger.warning("%s: record line %d unreadable, skipped", path, number)
    return entries


def take_over(config, history) -> None:
    """Bring an older project's data and history into the store and the database, once.

    The batches are stored first, then everything is recorded in one transaction; if that
    never happens (a killed process), the next call starts again from the stored files. The
    caller holds the ingestion lock.
    """
    if history.fact(TAKEN_OVER):
        return
    created = history.fact("created_at") or utc_now()
    data = None
    if not history.batches() and not history.known_files() and _old_final_data(config):
        data = _store_old_data(config)
    scores = _old_scores(config, created)
    runs = _old_runs(config, created)
    notes = []
    with history.transaction():
        if data is not None:
            notes.append(_record_old_data(history, *data))
        for row in scores:
            history.record_score(
                row, row["model_sha256"], row["context"], row["dataset"], scored_at=row["scored_at"]
            )
        for record in runs:
            history.finish_run(None, record)
        notes += [f"{len(scores)} scores"] if scores else []
        notes += [f"{len(runs)} runs"] if runs else []
        history.note_fact(TAKEN_OVER, f"{utc_now()}: {', '.join(notes) or 'nothing to take over'}")
    if notes:
        logger.info("took over the earlier project's %s", ", ".join(notes))


def _old_final_data(config) -> bool:
    """Whether `finaldata.csv` is an earlier version's (no batch column)."""
    path = config.final_data_file
    try:
        with open(path, encoding="utf-8") as handle:
            header = handle.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(header.strip()) and "batch" not in header.strip().split(",")


def _store_old_data(config):
    """Store the old ingested rows as batches.

    Returns:
        (batches with whether each was judged before, the old record's entries).
    """
    import shutil

    import pandas as pd

    from clientrisk.data import batchstore
    from clientrisk.data.clientcsv import COLUMNS, RejectedFile, parse_client_csv, read_client_csv

    # Batch folders without a database entry here can only come from an interrupted take-over.
    for folder in batchstore.stored_batch_folders(config.ingested_dir).values():
        shutil.rmtree(folder)
    old_rows = read_client_csv(config.final_data_file).labelled
    entries = read_old_record(config.ingestion_record_file)
    present = []
    for entry in entries:
        if entry.status != "ingested":
            continue
        try:
            data = batchstore.read_input_bytes(config.input_dir / entry.file)
            frame = parse_client_csv(data, entry.file).frame
        except (OSError, RejectedFile):
            continue
        if _sha256(data) == entry.sha256:
            present.append((entry, frame))
    covered = (
        pd.concat([frame for _, frame in present], ignore_index=True)
        if present
        else old_rows.iloc[:0]
    )
    covered = covered[list(COLUMNS)].dropna(subset=["exited"]).drop_duplicates()
    marked = old_rows.merge(
        covered.astype(old_rows.dtypes.to_dict()), on=list(COLUMNS), how="left", indicator=True
    )
    leftover = old_rows[(marked["_merge"] == "left_only").to_numpy()]
    judged = {
        (entry.file, entry.sha256)
        for path in (config.deploy_dir / "ingestedfiles.txt", config.deploy_dir / CHECKED_FILE)
        for entry in read_old_record(path)
    }
    times = [entry.ingested_at for entry in entries if entry.ingested_at] or [utc_now()]
    planned = []
    if len(leftover):
        planned.append(
            (LEFTOVER_SOURCE, sha256_file(config.final_data_file), min(times), leftover, True)
        )
    for entry, frame in present:
        was_judged = (entry.file, entry.sha256) in judged
        planned.append((entry.file, entry.sha256, entry.ingested_at, frame, was_judged))
    batches = []
    for seq, (source, sha256, arrived_at, frame, was_judged) in enumerate(planned, start=1):
        meta = {
            "seq": seq,
            "source": source,
            "sha256": sha256,
            "arrived_at": arrived_at,
            "rejected_rows": 0,
            "taken_over": True,
        }
        stored = batchstore.read_batch_meta(
            batchstore.store_batch(config.ingested_dir, meta, frame)
        )
        batches.append((stored, was_judged))
    return batches, entries


def _record_old_data(history, batches, entries) -> str:
    """Record the stored old batches and the old record's files (inside a transaction)."""
    from clientrisk.history.database import Batch, InputFile

    by_file = {(meta["source"], meta["sha256"]): meta["seq"] for meta, _ in batches}
    leftover_seq = next(
        (meta["seq"] for meta, _ in batches if meta["source"] == LEFTOVER_SOURCE), None
    )
    for meta, was_judged in batches:
        history.add_batch(
            Batch(
                meta["seq"],
                meta["source"],
                meta["sha256"],
                meta["arrived_at"],
                f"{meta['seq']:06d}",
                meta["labelled_rows"],
                meta["current_rows"],
                0,
                None,
                None,
                None,
            )
        )
        if was_judged:
            history.judge_batches([meta["seq"]], None, "judged before the take-over")
    for entry in entries:
        seq = by_file.get((entry.file, entry.sha256))
        if entry.status == "ingested" and seq is None:
            seq = leftover_seq
        status = (
            entry.status if entry.status in ("ingested", "duplicate", "rejected") else "rejected"
        )
        history.record_input_file(
            InputFile(
                entry.file,
                entry.sha256,
                status,
                seq,
                entry.rows_accepted,
                entry.rows_rejected,
                entry.ingested_at or utc_now(),
                entry.note,
            )
        )
    rows = sum(meta["labelled_rows"] for meta, _ in batches)
    return f"{len(batches)} batches of ingested data ({rows} rows)"


def _old_scores(config, created: str) -> list[dict]:
    """Scores of the old `scorehistory.csv` made before the database existed."""
    from clientrisk.config import SCORE_HISTORY_FILE

    rows = read_score_history(config.model_dir / SCORE_HISTORY_FILE)
    return [row for row in rows if row["scored_at"] <= created]


def _old_runs(config, created: str) -> list[dict]:
    """Run records of the old `fullprocess.jsonl` that finished before the database existed."""
    try:
        lines = (config.log_dir / "fullprocess.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        wanted = {"started_at", "finished_at", "outcome"}
        if isinstance(record, dict) and wanted <= set(record) and record["finished_at"] <= created:
            records.append(record)
    return records


def read_score_history(path: Path) -> list[dict]:
    """An earlier version's score history (or today's export of it), oldest first; scores as
    floats (None where absent).

    A damaged line (edited by hand, say) is skipped with a warning rather than stopping a run.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            for name in ("f1", "precision", "recall", "roc_auc"):
                row[name] = float(row[name]) if row.get(name) else None
            row["rows"] = int(row["rows"])
            readable = parse_utc(row["scored_at"]) is not None
        except (KeyError, TypeError, ValueError):
            readable = False
        if not readable:
            logger.warning("%s:%d: unreadable score line skipped", path.name, number)
            continue
        rows.append(row)
    return rows


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
