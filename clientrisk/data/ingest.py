"""Ingest new client CSVs from the input folder into the append-only store, as batches.

Each new file becomes a batch, kept under `output_folder_path` with its arrival number and time,
its name and SHA-256, whatever later happens to the file. Rows with an outcome (`exited` 0 or 1)
are kept apart from rows without one (current clients). Bad files and rows are skipped with a
`file:line: reason` message; the good ones go through. `finaldata.csv`, `currentclients.csv` and
`ingestedfiles.txt` are then compiled from the store.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from clientrisk.atomicfiles import exclusive_lock, remove_leftovers
from clientrisk.config import Config
from clientrisk.data import batchstore, exports, takeover
from clientrisk.data.clientcsv import RejectedFile, log_rejections, parse_client_csv
from clientrisk.errors import DataError
from clientrisk.history.database import Batch, InputFile, open_history
from clientrisk.timestamps import utc_now

logger = logging.getLogger(__name__)


@dataclass
class IngestionResult:
    new_batches: list[Batch] = field(default_factory=list)
    recorded: list[InputFile] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    database_problem: str | None = None
    files_seen: int = 0
    batches_stored: int = 0
    final_rows: int | None = None
    final_data_path: Path | None = None

    @property
    def summary(self) -> str:
        labelled = sum(batch.labelled_rows for batch in self.new_batches)
        current = sum(batch.current_rows for batch in self.new_batches)
        rejected_rows = sum(entry.rows_rejected for entry in self.recorded)
        rejected_files = sum(entry.status == "rejected" for entry in self.recorded)
        duplicates = sum(entry.status == "duplicate" for entry in self.recorded)
        if self.new_batches:
            seqs = [batch.seq for batch in self.new_batches]
            from_database = sum(batch.source.startswith("database ") for batch in self.new_batches)
            files = len(seqs) - from_database
            sources = ", ".join(
                text
                for text in (
                    f"{files} new file(s)" if files else "",
                    "the database's new rows" if from_database else "",
                )
                if text
            )
            what = (
                f"ingested {sources} as batch {_span(seqs)}: {labelled} rows with"
                f" an outcome, {current} current clients"
            )
        else:
            what = "no new file to ingest"
        extras = [
            f"{rejected_rows} rows rejected" if rejected_rows else "",
            f"{rejected_files} file(s) rejected" if rejected_files else "",
            f"{duplicates} duplicate file(s)" if duplicates else "",
            f"{len(self.waiting)} file(s) left for the next run" if self.waiting else "",
        ]
        extras = [text for text in extras if text]
        if self.final_rows is None:
            compiled = f"{self.final_data_path} is up to date"
        else:
            compiled = f"{self.final_rows} distinct rows with an outcome -> {self.final_data_path}"
        return (
            f"{what}{' (' + ', '.join(extras) + ')' if extras else ''};"
            f" {self.batches_stored} batches stored; {compiled}"
        )


def _span(seqs: list[int]) -> str:
    return str(seqs[0]) if len(seqs) == 1 else f"{seqs[0]}-{seqs[-1]}"


def adopt_unregistered_batches(config: Config, history) -> list[int]:
    """Register batch folders that a killed ingestion stored but never recorded."""
    registered = {batch.seq for batch in history.batches()}
    adopted = []
    for seq, folder in sorted(batchstore.stored_batch_folders(config.ingested_dir).items()):
        if seq in registered:
            continue
        meta = batchstore.read_batch_meta(folder)
        entry = meta.get("input_file")
        with history.transaction():
            history.add_batch(batch_of(meta))
            if entry is not None:
                history.record_input_file(InputFile(**{**entry, "batch": seq}))
        logger.warning("%s: batch %d was stored but not recorded; recorded now", folder, seq)
        adopted.append(seq)
    return adopted


def batch_of(meta: dict) -> Batch:
    """The history's record of a stored batch, from its batch.json."""
    return Batch(
        meta["seq"],
        meta["source"],
        meta["sha256"],
        meta["arrived_at"],
        batchstore.batch_folder_name(meta["seq"]),
        meta["labelled_rows"],
        meta["current_rows"],
        meta["rejected_rows"],
        None,
        None,
        None,
    )


def ingest_file(config: Config, history, candidate, data: bytes, sha256: str, known_contents: dict):
    """Read one new input file (`data`, whose SHA-256 is `sha256`) and store it as a batch, or
    record why not.

    Returns:
        (the input-file entry recorded, the new batch or None).
    """
    now = utc_now()
    if sha256 in known_contents:
        note = f"same content as {known_contents[sha256]}"
        logger.info("%s: %s; its rows are counted once", candidate.name, note)
        entry = InputFile(candidate.name, sha256, "duplicate", None, 0, 0, now, note)
        history.record_input_file(entry)
        return entry, None
    try:
        batch = parse_client_csv(data, candidate.name)
    except RejectedFile as error:
        logger.warning("%s", error)
        entry = InputFile(candidate.name, sha256, "rejected", None, 0, 0, now, error.reason)
        history.record_input_file(entry)
        return entry, None
    log_rejections(batch.rejections, candidate.name)
    rejected = len(batch.rejections)
    if batch.frame.empty:
        note = f"no valid rows ({rejected} rejected)"
        logger.warning("%s: %s", candidate.name, note)
        entry = InputFile(candidate.name, sha256, "rejected", None, 0, rejected, now, note)
        history.record_input_file(entry)
        return entry, None
    seq = (
        max(history.last_batch_seq(), *batchstore.stored_batch_folders(config.ingested_dir), 0) + 1
    )
    entry = InputFile(candidate.name, sha256, "ingested", seq, len(batch.frame), rejected, now, "")
    meta = {
        "seq": seq,
        "source": candidate.name,
        "sha256": sha256,
        "arrived_at": now,
        "rejected_rows": rejected,
        "input_file": entry._asdict(),
    }
    stored = batchstore.read_batch_meta(
        batchstore.store_batch(config.ingested_dir, meta, batch.frame)
    )
    new_batch = batch_of(stored)
    with history.transaction():
        history.add_batch(new_batch)
        history.record_input_file(entry)
    logger.debug("%s: batch %d, %d rows", candidate.name, seq, len(batch.frame))
    return entry, new_batch


def refuse_entry(history, candidate, known: set) -> InputFile | None:
    """Record an entry that is not a file to read (a folder, a broken link), once."""
    if (candidate.name, batchstore.NO_CONTENT) in known:
        logger.debug("%s: %s (known)", candidate.name, candidate.problem)
        return None
    logger.warning("%s: %s", candidate.name, candidate.problem)
    entry = InputFile(
        candidate.name, batchstore.NO_CONTENT, "rejected", None, 0, 0, utc_now(), candidate.problem
    )
    history.record_input_file(entry)
    return entry


def ingest_new_files(config: Config, history) -> IngestionResult:
    """Read every new input file (the caller holds the ingestion lock)."""
    result = IngestionResult()
    known = history.known_files()
    known_contents = {}
    for entry in history.input_files():
        if entry.status in ("ingested", "duplicate") and entry.sha256 != batchstore.NO_CONTENT:
            known_contents.setdefault(entry.sha256, entry.name)
    candidates = batchstore.scan_settled_input_folder(
        config.input_dir, config.settings["settle_seconds"], config.log_dir / batchstore.LOOKS_FILE
    )
    result.files_seen = len(candidates)
    logger.debug("%s: %d CSV entries", config.input_dir, len(candidates))
    for candidate in candidates:
        if candidate.problem and candidate.retry:
            logger.warning("%s: %s", candidate.name, candidate.problem)
            result.waiting.append(candidate.name)
            continue
        if candidate.problem:
            entry = refuse_entry(history, candidate, known)
            result.recorded += [entry] if entry else []
            continue
        try:
            data = batchstore.read_input_bytes(candidate.path)
        except OSError as error:
            reason = error.strerror or str(error)
            logger.warning(
                "%s: cannot read: %s; will try again on the next run", candidate.name, reason
            )
            result.waiting.append(candidate.name)
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        if (candidate.name, sha256) in known:
            logger.debug("%s: already read", candidate.name)
            continue
        entry, batch = ingest_file(config, history, candidate, data, sha256, known_contents)
        known.add((entry.name, entry.sha256))
        if batch is not None:
            known_contents[entry.sha256] = entry.name
            result.new_batches.append(batch)
        result.recorded.append(entry)
    return result


def ingest_database_rows(config: Config, history, result: IngestionResult) -> None:
    """Read the database source's new rows (if the config names one) as one batch; a problem is
    one line in `result.waiting`, tried again by the next run."""
    if not config.settings.get("input_database_url"):
        return
    from clientrisk.data import dbread, dbsource

    try:
        source = dbsource.source_of(config.settings, config.path.parent)
        entry, batch = dbread.ingest_database(config, history, source)
    except dbsource.SourceProblem as problem:
        logger.warning("%s; nothing of it is stored: the next run tries again", problem)
        result.database_problem = str(problem)
        result.waiting.append(str(problem))
        return
    if batch is not None:
        result.new_batches.append(batch)
        result.recorded.append(entry)


def run(config: Config) -> IngestionResult:
    """Ingest the new input files and bring the compiled files up to date.

    Raises:
        DataError: no usable row has ever been ingested; nothing is written then.
    """
    with (
        exclusive_lock(config.ingested_dir / batchstore.LOCK_FILE),
        open_history(config.history_location) as history,
    ):
        remove_leftovers([config.ingested_dir, batchstore.batches_dir(config.ingested_dir)])
        takeover.take_over(config, history)
        adopt_unregistered_batches(config, history)
        result = ingest_new_files(config, history)
        ingest_database_rows(config, history, result)
        result.batches_stored = len(history.batches())
        result.final_data_path = config.final_data_file
        if not result.batches_stored:
            raise DataError(f"{config.input_dir}: {_nothing_ingested(result)}")
        if not exports.exports_current(config.ingested_dir, history):
            result.final_rows = exports.write_exports(
                config.ingested_dir, history, config.final_data_file
            )
    return result


def _nothing_ingested(result: IngestionResult) -> str:
    if result.database_problem and not result.files_seen:
        return f"no CSV files to ingest, and {result.database_problem}"
    if not result.files_seen:
        return "no CSV files to ingest"
    if result.waiting:
        return f"nothing ingested yet; left for the next run: {', '.join(result.waiting)}"
    return "no usable rows in any CSV file"
