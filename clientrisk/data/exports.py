"""What ingestion compiles from the store for people and the course's steps to read.

In `output_folder_path`: `finaldata.csv` (every row with an outcome, in arrival order, exact
duplicates once, the first, with the batch it came in), `currentclients.csv` (likewise, the rows
without an outcome) and `ingestedfiles.txt` (every input file read and what became of it). A
new batch's distinct rows are appended to the CSV files when they are as the last compile left
them (`exports.json` says so); otherwise they are compiled again from every batch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from clientrisk.atomicfiles import (
    atomic_write_json,
    atomic_write_text,
    spreadsheet_safe,
)
from clientrisk.config import FINAL_DATA_FILE, RECORD_FILE
from clientrisk.data import batchstore
from clientrisk.data.clientcsv import MAX_COUNT

logger = logging.getLogger(__name__)

CURRENT_CLIENTS_FILE = "currentclients.csv"
EXPORTS_STAMP_FILE = "exports.json"
# Stored rows that the model cannot use, each with the reason.
SET_ASIDE_FILE = "setasiderows.csv"
MAX_LOGGED_SET_ASIDE = 20


# The record of input files: one tab-separated line each (control characters in a cell, as in
# a file name, are written as escapes: \t, \n).
RECORD_FIELDS = (
    "file",
    "sha256",
    "rows_accepted",
    "rows_rejected",
    "ingested_at",
    "status",
    "note",
    "batch",
)
RECORD_HEADER = (
    "# Input files read by ingestion.py, one per line, tab-separated. status: ingested (kept as"
    " batch N) | duplicate (same content as another file) | rejected (see note)."
)


def escape_cell(value) -> str:
    """A record cell on one line: control characters escaped (as file names are in messages),
    text that a spreadsheet would run as a formula neutralised."""
    text = "" if value is None else str(value)
    if not text.isprintable():
        text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return spreadsheet_safe(text)


def format_record(entries) -> str:
    """The text of `ingestedfiles.txt` from history.InputFile entries."""
    lines = [RECORD_HEADER, "\t".join(RECORD_FIELDS)]
    for entry in entries:
        cells = (
            entry.name,
            entry.sha256,
            entry.rows_accepted,
            entry.rows_rejected,
            entry.seen_at,
            entry.status,
            entry.note,
            "" if entry.batch is None else entry.batch,
        )
        lines.append("\t".join(escape_cell(cell) for cell in cells))
    return "\n".join(lines) + "\n"


def exports_stamp(history) -> dict:
    """What the exports are made from: the newest batch, the number of input files read and the
    bound on counts the rows were checked against (stored rows above it are set aside)."""
    return {
        "through_batch": history.last_batch_seq(),
        "input_files": len(history.known_files()),
        "max_count": MAX_COUNT,
    }


def _read_exports_stamp(ingested_dir: Path) -> dict | None:
    try:
        stamp = json.loads((Path(ingested_dir) / EXPORTS_STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def exports_current(ingested_dir: Path, history) -> bool:
    stamp = _read_exports_stamp(ingested_dir)
    if stamp is None:
        return False
    needed = (FINAL_DATA_FILE, CURRENT_CLIENTS_FILE, RECORD_FILE)
    present = all((Path(ingested_dir) / name).is_file() for name in needed)
    expected = exports_stamp(history)
    return present and {key: stamp.get(key) for key in expected} == expected


def _file_state(path: Path) -> list[int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


def write_exports(ingested_dir: Path, history, final_data_path: Path) -> int:
    """Compile `finaldata.csv`, `currentclients.csv` and `ingestedfiles.txt` from the store.

    When the CSV files are as the last compile left them (size and time) and only batches
    newer than it have come in, their new distinct rows are appended (to a copy, renamed over
    the file) instead of compiling everything again: a new batch costs what it holds plus a look
    at the stored client codes, not a rewrite of the whole history.

    Returns:
        The rows in `finaldata.csv`.
    """
    seqs = [batch.seq for batch in history.batches()]
    current_path = Path(ingested_dir) / CURRENT_CLIENTS_FILE
    stamp = _read_exports_stamp(ingested_dir) or {}
    earlier = [seq for seq in seqs if seq <= stamp.get("through_batch", 0)]
    appendable = (
        bool(earlier)
        and stamp.get("max_count") == MAX_COUNT
        and stamp.get("batches") == len(earlier)
        and stamp.get("final_file") == [str(final_data_path), *(_file_state(final_data_path) or [])]
        and stamp.get("current_file") == _file_state(current_path)
    )
    if appendable:
        newer = [seq for seq in seqs if seq > stamp["through_batch"]]
        try:
            final_rows = stamp["final_rows"] + _append_new_rows(
                ingested_dir, earlier, newer, batchstore.OUTCOMES_FILE, final_data_path
            )
            current_rows = stamp["current_rows"] + _append_new_rows(
                ingested_dir, earlier, newer, batchstore.CURRENT_FILE, current_path
            )
        except ValueError as error:  # columns of an older version: compile it all again
            logger.info("%s; compiling the exports again", error)
            appendable = False
    if not appendable:
        final_rows, current_rows = _compile_exports(ingested_dir, seqs, final_data_path)
    atomic_write_text(Path(ingested_dir) / RECORD_FILE, format_record(history.input_files()))
    atomic_write_json(
        Path(ingested_dir) / EXPORTS_STAMP_FILE,
        {
            **exports_stamp(history),
            "batches": len(seqs),
            "final_file": [str(final_data_path), *(_file_state(final_data_path) or [])],
            "final_rows": final_rows,
            "current_file": _file_state(current_path),
            "current_rows": current_rows,
        },
    )
    logger.debug(
        "%s: %d rows with an outcome, %d current-client rows (%s)",
        final_data_path,
        final_rows,
        current_rows,
        "appended" if appendable else "compiled",
    )
    return final_rows


def _compile_exports(ingested_dir: Path, seqs, final_data_path: Path) -> tuple[int, int]:
    from clientrisk.atomicfiles import write_csv

    _write_set_aside(ingested_dir, seqs)
    labelled = batchstore.labelled_history(ingested_dir, seqs)
    write_csv(labelled, final_data_path)
    current = _distinct_current(batchstore.current_observations(ingested_dir, seqs))
    write_csv(current, Path(ingested_dir) / CURRENT_CLIENTS_FILE)
    return len(labelled), len(current)


def _write_set_aside(ingested_dir: Path, seqs) -> None:
    """Name the stored rows that the model cannot use (stored before the reader refused them) in
    the log and in `setasiderows.csv`; every step leaves them out."""
    from clientrisk.atomicfiles import write_csv
    from clientrisk.data.clientcsv import ID_COLUMN

    path = Path(ingested_dir) / SET_ASIDE_FILE
    rows = batchstore.set_aside_rows(ingested_dir, seqs)
    if rows.empty:
        path.unlink(missing_ok=True)
        return
    for row in rows.head(MAX_LOGGED_SET_ASIDE).to_dict("records"):
        logger.warning(
            "batch %d: client %s: %s; row set aside (listed in %s)",
            row[batchstore.BATCH_COLUMN],
            escape_cell(row[ID_COLUMN]),
            row["reason"],
            path,
        )
    if len(rows) > MAX_LOGGED_SET_ASIDE:
        logger.warning("%d more stored rows set aside (%s)", len(rows) - MAX_LOGGED_SET_ASIDE, path)
    write_csv(rows, path)


def _distinct_current(rows):
    from clientrisk.data import rowkeys

    return rowkeys.drop_duplicates(rows, rows.columns)


def _append_new_rows(ingested_dir: Path, earlier, newer, which: str, path: Path) -> int:
    """Append to `path` the rows of batches `newer` as the full compile would list them; the
    number appended. Rows with an outcome: those that repeat neither one another nor a row of
    batches `earlier`. Current clients: each batch's rows, its repeated rows once.

    Raises:
        ValueError: the file's columns are not those of the rows (nothing is written).
    """
    from clientrisk.atomicfiles import write_csv
    from clientrisk.data import rowkeys
    from clientrisk.data.clientcsv import COLUMNS, ID_COLUMN, TARGET

    new = batchstore.read_rows(ingested_dir, newer, which)
    if which == batchstore.CURRENT_FILE:
        new = _distinct_current(new.drop(columns=[TARGET]))
    else:
        new = rowkeys.drop_duplicates(new, COLUMNS)
        # Only earlier rows of the same clients can repeat a new row.
        new = batchstore.without_rows(new, _earlier_rows_of(ingested_dir, earlier, new[ID_COLUMN]))
        new = new.assign(**{TARGET: new[TARGET].astype("int64")})
    if len(new):
        write_csv(new, path, append_to=path)
    return len(new)


def _earlier_rows_of(ingested_dir: Path, seqs, clients):
    """The stored rows with an outcome of batches `seqs` whose client is one of `clients`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from clientrisk.data.clientcsv import ID_COLUMN

    wanted = pa.array(clients.unique(), type=pa.string())
    return batchstore.read_rows(
        ingested_dir,
        seqs,
        batchstore.OUTCOMES_FILE,
        where=lambda table: pc.is_in(table[ID_COLUMN], value_set=wanted),
    )
