"""Reading a database source's new rows into one batch of the store (see dbsource.py).

One query asks the source's columns (no rows), one reads the rows above the stored mark in the
order of the new-rows column, streamed (a server-side cursor on PostgreSQL) in chunks of
CHUNK_ROWS. Each chunk is checked as the cells of a file are and written to the batch as it
comes, so memory holds one chunk at a time, however many rows there are.
"""

from __future__ import annotations

import logging

from clientrisk.data.dbsource import (
    META_KEY,
    DatabaseSource,
    SourceProblem,
    connect,
    failure,
    from_clause,
    mark_record,
    mark_value,
    quoted,
    stored_read,
)

__all__ = ["CHUNK_ROWS", "ReadState", "check_chunk", "ingest_database", "read_parts"]

logger = logging.getLogger(__name__)

# Rows fetched, checked and written at a time: memory holds one chunk (about 10 MB of Python
# objects for 50,000 rows), and a million rows take 20 fetches.
CHUNK_ROWS = 50_000


# --- reading -------------------------------------------------------------------------------------


class ReadState:
    """What one read has seen so far: rows read and rejected, the first and last new-rows value."""

    def __init__(self) -> None:
        self.rows = 0
        self.accepted = 0
        self.rejections: list = []
        self.rejected = 0
        self.first = None
        self.last = None
        self.queries = 0
        self.chunks = 0
        self.at_or_below = 0  # rows at or below the mark now (late rows among them)


def source_columns(source: DatabaseSource, present: list[str]) -> tuple[str, dict]:
    """The source's actual name of the new-rows column and of each course column it has
    (matched regardless of case, as the database reports them).

    Raises:
        SourceProblem: a required column is missing: one line naming it.
    """
    from clientrisk.data.clientcsv import COLUMNS, TARGET

    by_lower = {name.lower(): name for name in present}
    where = f"{source.label} has no column"
    key = by_lower.get(source.column.lower())
    if key is None:
        raise SourceProblem(f"{where} {source.column} (input_new_rows_column)")
    found = {}
    for name in COLUMNS:
        wanted = source.columns.get(name, name)
        actual = by_lower.get(wanted.lower())
        if actual is None and name != TARGET:
            mapped = f" (input_columns maps {name} to it)" if name in source.columns else ""
            raise SourceProblem(f"{where} {wanted}{mapped}")
        if actual is not None:
            found[name] = actual
    return key, found


def read_parts(source: DatabaseSource, engine, mark, state: ReadState):
    """The rows above `mark`, checked, one frame per chunk of CHUNK_ROWS; `state` counts them.

    Three queries at most: the source's shape (no rows); with a mark, how many rows lie at or
    below it (to notice late rows); the rows, streamed (a server-side cursor on PostgreSQL), in
    the order of the new-rows column.
    """
    from sqlalchemy import text

    with engine.connect() as connection:
        state.queries += 1
        shape = connection.execute(text(f"SELECT * FROM {from_clause(engine, source)} WHERE 1 = 0"))
        present = list(shape.keys())
        shape.close()
        key, found = source_columns(source, present)
        names = ", ".join(quoted(engine, name) for name in [key, *found.values()])
        column = quoted(engine, key)
        where = f"FROM {from_clause(engine, source)} WHERE {column} IS NOT NULL"
        if mark is not None:
            state.queries += 1
            counted = connection.execute(
                text(f"SELECT count(*) {where} AND {column} <= :mark"), {"mark": mark}
            )
            state.at_or_below = counted.scalar()
        sql = f"SELECT {names} {where}"
        if mark is not None:
            sql += f" AND {column} > :mark"
        sql += f" ORDER BY {column}"
        state.queries += 1
        streamed = connection.execution_options(stream_results=True, max_row_buffer=CHUNK_ROWS)
        result = streamed.execute(text(sql), {"mark": mark} if mark is not None else {})
        for rows in result.partitions(CHUNK_ROWS):
            state.chunks += 1
            yield check_chunk(source, rows, list(found), state)


def check_chunk(source: DatabaseSource, rows, names: list[str], state: ReadState):
    """One chunk's rows (new-rows value first, then the course columns `names`), checked as a
    file's cells are; rejected rows are named by their new-rows value."""
    import pyarrow as pa

    from clientrisk.data.clientcsv import MAX_LOGGED_REJECTIONS, Rejection, check_text_columns

    columns = list(zip(*rows, strict=True))
    keys = columns[0]
    table = pa.table(
        {name: _texts(values) for name, values in zip(names, columns[1:], strict=True)}
    )
    frame, problems = check_text_columns(table)
    if len(frame) + len(problems) < len(keys):  # rows empty in every column: a file skips
        problems = sorted([*problems, *_empty_rows(table)])  # its blank lines, a table names them
    for position, reason in problems:
        if len(state.rejections) < MAX_LOGGED_REJECTIONS:
            where = f"{source.label}, row {source.column} {keys[position]}"
            state.rejections.append(Rejection(where, None, reason))
    state.rejected += len(problems)
    state.rows += len(keys)
    state.accepted += len(frame)
    state.first = keys[0] if state.first is None else state.first
    state.last = keys[-1]
    return frame


def _empty_rows(table) -> list[tuple[int, str]]:
    import numpy as np
    import pyarrow.compute as pc

    empty = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        empty &= pc.equal(pc.utf8_trim_whitespace(column), "").to_numpy(zero_copy_only=False)
    return [(int(position), "every column is empty") for position in np.flatnonzero(empty)]


def _texts(values):
    """A column of database values as the text a CSV would hold ("" for NULL)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        array = pa.array(values)
        if pa.types.is_boolean(array.type):
            array = pc.cast(array, pa.int8())
        array = pc.cast(array, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        array = pa.array([None if value is None else str(value) for value in values], pa.string())
    return array.fill_null("")


def ingest_database(config, history, source: DatabaseSource):
    """Read the source's new rows into one batch, or record nothing (when there are none).

    Returns:
        (the input-file entry recorded, the new batch), or (None, None) for no new rows.

    Raises:
        SourceProblem: the read failed; nothing of it is stored.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from clientrisk.data import batchstore
    from clientrisk.data.clientcsv import log_rejections
    from clientrisk.history.database import InputFile
    from clientrisk.timestamps import utc_now

    earlier = stored_read(config.ingested_dir, history, source) or {}
    mark = mark_value(earlier["last"]) if earlier else None
    seq = max(history.last_batch_seq(), *batchstore.stored_batch_folders(config.ingested_dir), 0)
    seq += 1
    state, now, entry = ReadState(), utc_now(), {}

    def meta_of() -> dict:
        late = _late_rows(source, mark, earlier, state)
        note = _read_note(source, mark, state) + (f", {late} late rows not read" if late else "")
        sha256 = _batch_sha256(source, mark, state)
        fields = (source.label, sha256, "ingested", seq, state.accepted, state.rejected, now, note)
        entry["file"] = InputFile(*fields)
        return {
            "source": source.label,
            "sha256": sha256,
            "arrived_at": now,
            "rejected_rows": state.rejected,
            "input_file": entry["file"]._asdict(),
            META_KEY: {
                "identity": source.identity,
                "after": None if mark is None else mark_record(mark),
                "first": mark_record(state.first),
                "last": mark_record(state.last),
                "rows": state.rows,
                # Rows at or below this batch's last value, as far as the reads have seen.
                "rows_through": state.at_or_below + state.rows,
                "late_rows": late,
                "queries": state.queries,
            },
        }

    engine = connect(source)
    try:
        parts = read_parts(source, engine, mark, state)
        folder = batchstore.store_batch_parts(
            config.ingested_dir, seq, parts, meta_of, keep_empty=lambda: state.rows > 0
        )
    except SQLAlchemyError as error:
        after = "" if mark is None else f" after {source.column} {mark}"
        read = f"reading the rows{after} ({state.rows} read; none stored)"
        raise failure(source, engine, error, read) from None
    finally:
        engine.dispose()
    log_rejections(state.rejections, source.label)
    if state.rejected > len(state.rejections):
        logger.warning("%s: %d rejected rows in all", source.label, state.rejected)
    if folder is None:
        logger.debug("%s: no new rows%s", source.label, "" if mark is None else f" after {mark}")
        return None, None
    from clientrisk.data.ingest import batch_of

    batch = batch_of(batchstore.read_batch_meta(folder))
    with history.transaction():
        history.add_batch(batch)
        history.record_input_file(entry["file"])
    logger.info("%s: batch %d, %s", source.label, seq, entry["file"].note)
    return entry["file"], batch


def _late_rows(source: DatabaseSource, mark, earlier: dict, state: ReadState) -> int:
    """How many rows at or below the mark arrived since the last read, warned of once: rows
    reading by the mark never reads (see dbsource.py)."""
    late = state.at_or_below - earlier.get("rows_through", state.at_or_below)
    if late > 0:
        logger.warning(
            "%s: %d rows with %s at or below %s arrived after rows above them were read; they"
            " are not read (new rows are those above the highest value read: use an id the"
            " database fills as rows are inserted)",
            source.label,
            late,
            source.column,
            mark,
        )
    return max(late, 0)


def _read_note(source: DatabaseSource, mark, state: ReadState) -> str:
    return (
        f"{state.rows} rows with {source.column} {state.first} to {state.last}"
        + ("" if mark is None else f" (after {mark})")
        + (f", {state.rejected} rejected" if state.rejected else "")
    )


def _batch_sha256(source: DatabaseSource, mark, state: ReadState) -> str:
    """What names the batch: the source, and the range and count of rows it read."""
    import hashlib

    text = f"{source.identity}\n{mark!r}\n{state.first!r}\n{state.last!r}\n{state.rows}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
