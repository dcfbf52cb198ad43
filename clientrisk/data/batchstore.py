"""The ingested-data store: every accepted input file kept as a batch, in arrival order, for good.

Layout of `output_folder_path`:

    batches/000001/        one folder per batch, never changed once complete:
                           outcomes.arrow (rows with `exited`), current.arrow (rows without
                           an outcome: clients still with us), both Arrow IPC files compressed
                           with LZ4, and batch.json (its arrival number and time, source file
                           name and SHA-256, row counts, file checksums); batches stored by
                           earlier versions keep outcomes.parquet and current.parquet
    history.db             the history database (see history/database.py), which indexes the batches
    finaldata.csv          compiled from the store: every row with an outcome, in arrival order,
                           exact duplicates once (the first), with the batch it came in
    currentclients.csv     likewise, the rows without an outcome
    ingestedfiles.txt      every input file read and what became of it (these three: exports.py)

A batch is assembled in a hidden folder and renamed into place when whole, then registered in
the history database; a batch folder that a killed process never registered is registered by
the next ingestion from its own batch.json. What happens to the input files afterwards (moved,
deleted, rewritten, unreadable) changes nothing stored. Scanning the input folder uses only the
standard library, because a cron tick with nothing to do scans it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import namedtuple
from pathlib import Path

from clientrisk.atomicfiles import (
    atomic_write_json,
    display_name,
    fsync_dir,
    fsync_file,
    read_json,
    sha256_file,
    staging_folder,
    temp_name,
)
from clientrisk.errors import DataError

logger = logging.getLogger(__name__)

BATCHES_DIR = "batches"
OUTCOMES_FILE = "outcomes.arrow"
CURRENT_FILE = "current.arrow"
# Batches stored by earlier versions hold their rows in Parquet files of these names, read as
# they are. Arrow IPC with LZ4 is written in half the time of Parquet with LZ4 and read in a
# fifth, for 1.5 times the bytes (zstd: smaller, but no faster to write than Parquet).
PARQUET_FILES = {OUTCOMES_FILE: "outcomes.parquet", CURRENT_FILE: "current.parquet"}
BATCH_META_FILE = "batch.json"
BATCH_COLUMN = "batch"
LOCK_FILE = ".ingestion.lock"
# In the log folder: the looks at input files not settled yet (see scan_input_folder).
LOOKS_FILE = "settling.json"
# Input files that are not files (a folder, a broken link) are recorded with this hash.
NO_CONTENT = "-"


# --- the input folder (standard library only) ----------------------------------------------------


class InputCandidate(
    namedtuple("InputCandidate", "name path problem retry settles_at", defaults=(None,))
):
    """A `*.csv` entry of the input folder. `name` is its display name (the key in the records);
    `problem` is None for a file to read, else why it is not read, and `retry` whether a later
    run will try again (a file still being written) or it is refused for good (a folder);
    `settles_at`, for a file still being written, when it is settled if it does not change."""

    __slots__ = ()


def scan_input_folder(
    input_dir: Path, settle_seconds: float, looks_path: Path | None = None
) -> list[InputCandidate]:
    """Every non-hidden `*.csv` entry of the input folder, by name, with what stands in its way.

    Hidden files are uploads in progress (write `.name.csv`, then rename it to `name.csv`). A
    file is settled when its time is `settle_seconds` old, or when it looks as it did (size,
    time, inode) at a look at least that long ago: `looks_path` keeps the looks at files not
    settled yet, so that a file dated in the future (written before the clock was set back, or
    by a machine whose clock is ahead) is read once it stops changing.
    """
    input_dir = Path(input_dir)
    root = os.path.realpath(input_dir)
    now = time.time()
    earlier = _read_looks(looks_path)
    found, looks = [], {}
    for entry in sorted(os.scandir(input_dir), key=lambda item: item.name):
        if entry.name.startswith(".") or not entry.name.lower().endswith(".csv"):
            continue
        name = display_name(entry.name)
        problem, retry, look = _entry_problem(entry, root, now, settle_seconds, earlier.get(name))
        if look is not None:
            looks[name] = look
        settles_at = _settles_at(entry, now, settle_seconds) if retry else None
        found.append(InputCandidate(name, Path(entry.path), problem, retry, settles_at))
    if looks_path is not None and looks != earlier:
        try:
            atomic_write_json(looks_path, looks)
        except OSError as error:  # then a file dated in the future waits one more run
            logger.debug("%s: %s", looks_path, error)
    return found


def scan_settled_input_folder(
    input_dir: Path, settle_seconds: float, looks_path: Path | None = None, sleep=time.sleep
) -> list[InputCandidate]:
    """`scan_input_folder`, after waiting within the run for files still being written.

    A file copied in just before the run is read by it: the run waits until such a file has not
    changed for `settle_seconds`, as long as it changed no later than `settle_seconds` after the
    run began (so at most twice `settle_seconds` in all). A file that still changes after that
    is left for the next run, and so is one dated in the future (judged across runs).
    """
    give_up = time.time() + settle_seconds
    while True:
        candidates = scan_input_folder(input_dir, settle_seconds, looks_path)
        now = time.time()
        waiting = [
            item
            for item in candidates
            if item.settles_at is not None and item.settles_at - settle_seconds <= give_up
        ]
        if not waiting or now > give_up + settle_seconds:
            return candidates
        wake = min(item.settles_at for item in waiting)
        logger.info(
            "%s: still being written; waiting %.1f s for it to settle",
            ", ".join(item.name for item in waiting),
            max(wake - now, 0),
        )
        sleep(max(wake - now, 0) + 0.01)


def _settles_at(entry, now: float, settle_seconds: float) -> float | None:
    """When a file changed in the last `settle_seconds` is settled if it does not change again;
    None for anything else (a file dated in the future is judged across runs)."""
    try:
        changed = os.stat(entry.path).st_mtime
    except OSError:
        return None
    return changed + settle_seconds if 0 <= now - changed < settle_seconds else None


def _read_looks(looks_path: Path | None) -> dict:
    if looks_path is None:
        return {}
    try:
        looks = json.loads(looks_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return looks if isinstance(looks, dict) else {}


def _entry_problem(entry, root: str, now: float, settle_seconds: float, earlier):
    """(why the entry is not read now or None, whether to try again later, the look to keep
    while it is not settled or None)."""
    import stat

    if entry.is_symlink():
        target = os.path.realpath(entry.path)
        if not os.path.exists(target):
            return "a broken link; not read", False, None
        if os.path.commonpath([root, target]) != root:
            return "a link to a file outside the input folder; not read", False, None
    try:
        status = os.stat(entry.path)
    except OSError as error:
        return f"cannot be examined: {error.strerror or error}; will try again", True, None
    if stat.S_ISDIR(status.st_mode):
        return "a folder, not a file; not read", False, None
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file (a pipe, socket or device); not read", False, None
    age = now - status.st_mtime
    if age >= settle_seconds:
        return None, False, None
    state = [status.st_size, status.st_mtime_ns, status.st_ino]
    same = isinstance(earlier, list) and len(earlier) == 4 and earlier[:3] == state
    looked_at = earlier[3] if same and isinstance(earlier[3], (int, float)) else now
    if looked_at > now:  # the clock was set back since that look: it counts from now
        looked_at = now
    if now - looked_at >= settle_seconds and same:
        return None, False, [*state, looked_at]  # kept: by its time it is not settled yet
    if age < 0:
        why = (
            f"dated {-age:.0f} s in the future (a clock set back?); read once it has not"
            f" changed for {settle_seconds:g} s"
        )
    else:
        why = f"still being written (changed {age:.0f} s ago)"
    return f"{why}; left for the next run", True, [*state, looked_at]


def read_input_bytes(path: Path) -> bytes:
    """A regular file's bytes, opened without blocking (a pipe swapped in meanwhile is refused).

    Raises:
        OSError: the file cannot be opened or read, or is no longer a regular file.
    """
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "no longer a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


# --- batches -------------------------------------------------------------------------------------


def batches_dir(ingested_dir: Path) -> Path:
    return Path(ingested_dir) / BATCHES_DIR


def batch_folder_name(seq: int) -> str:
    return f"{seq:06d}"


def store_batch(ingested_dir: Path, meta: dict, frame) -> Path:
    """Write one batch (its outcomes apart from its current clients) in a single rename.

    Args:
        meta: what batch.json records: seq, source, sha256, arrived_at, input file entry.
        frame: the batch's valid rows (clientdata's columns).

    Returns:
        The batch's folder.
    """
    return store_batch_parts(ingested_dir, meta["seq"], [frame], lambda: meta)


def store_batch_parts(
    ingested_dir: Path, seq: int, parts, meta_of, keep_empty=lambda: False
) -> Path | None:
    """Write one batch from its rows in parts (frames in clientdata's columns, each written as it
    comes, so memory holds one part at a time), in a single rename once every part is written.

    Args:
        seq: the batch's number.
        parts: an iterable of frames; an exception it raises leaves nothing stored.
        meta_of: called once every part is written, for what batch.json records (source,
            sha256, arrived_at...); a missing `sha256` is made from the files' checksums.
        keep_empty: asked when the parts held no row: whether to store the empty batch all the
            same (a database read whose rows were all rejected keeps its range so).

    Returns:
        The batch's folder, or None when the parts held no row and no empty batch is kept.
    """
    root = batches_dir(ingested_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = batch_folder_name(seq)
    staging = root / temp_name(name)
    final = root / name
    try:
        meta = _write_parts(staging, final, seq, parts, meta_of, keep_empty)
    except _NothingStored:
        return None
    fsync_dir(root)
    logger.debug("%s: stored batch %d from %s", final, seq, meta["source"])
    return final


def _write_parts(staging: Path, final: Path, seq: int, parts, meta_of, keep_empty) -> dict:
    """Fill the staging folder from the parts and rename it to `final`; batch.json's record."""
    import hashlib

    import pyarrow as pa
    import pyarrow.compute as pc

    from clientrisk.data.clientcsv import TARGET

    options = pa.ipc.IpcWriteOptions(compression="lz4")
    labelled = total = 0
    with staging_folder(staging):
        writers = {
            file_name: pa.ipc.new_file(staging / file_name, store_schema(), options=options)
            for file_name in (OUTCOMES_FILE, CURRENT_FILE)
        }
        try:
            for frame in parts:
                table = _table(frame)
                known = pc.is_valid(table.column(TARGET))
                writers[OUTCOMES_FILE].write_table(table.filter(known))
                writers[CURRENT_FILE].write_table(table.filter(pc.invert(known)))
                labelled += pc.count(table.column(TARGET)).as_py()  # outcomes known
                total += table.num_rows
        finally:
            for writer in writers.values():
                writer.close()
        if not total and not keep_empty():
            raise _NothingStored
        files = {}
        for file_name in writers:
            fsync_file(staging / file_name)
            files[file_name] = sha256_file(staging / file_name)
        meta = {"seq": seq, **meta_of()}
        if "sha256" not in meta:
            text = json.dumps(files, sort_keys=True).encode()
            meta["sha256"] = hashlib.sha256(text).hexdigest()
        counts = {"labelled_rows": labelled, "current_rows": total - labelled}
        atomic_write_json(staging / BATCH_META_FILE, {**meta, **counts, "files": files})
        os.rename(staging, final)
    return meta


class _NothingStored(Exception):
    """Raised inside the staging folder to remove it when the parts held no row."""


def store_schema():
    """The columns of every stored file, whatever types the rows came in."""
    import pyarrow as pa

    from clientrisk.data.clientcsv import FEATURES, ID_COLUMN, TARGET

    fields = [(ID_COLUMN, pa.string()), *[(name, pa.float64()) for name in FEATURES]]
    return pa.schema([*fields, (TARGET, pa.int8())])


def _table(rows):
    import pyarrow as pa

    from clientrisk.data.clientcsv import COLUMNS

    # One thread: for a batch's few columns pyarrow's pool costs more than it saves.
    table = pa.Table.from_pandas(rows[list(COLUMNS)], preserve_index=False, nthreads=1)
    return table.cast(store_schema())


def read_batch_meta(folder: Path) -> dict:
    return read_json(folder / BATCH_META_FILE, "batch record")


def stored_batch_folders(ingested_dir: Path) -> dict[int, Path]:
    """Complete batch folders (with their batch.json) by number."""
    root = batches_dir(ingested_dir)
    if not root.is_dir():
        return {}
    return {
        int(path.name): path
        for path in root.iterdir()
        if path.name.isdigit() and (path / BATCH_META_FILE).is_file()
    }


def read_rows(ingested_dir: Path, seqs, which: str = OUTCOMES_FILE, where=None, usable=True):
    """The stored rows of batches `seqs`, in arrival order, with a `batch` column.

    Each file is checked against the checksum its batch recorded. `where`, given the arrow table
    of all the rows, says which to keep (all, by default). Rows that an earlier version stored
    with a count the model cannot use are left out unless `usable` is False (`set_aside_rows`
    lists them, with their reasons).

    Raises:
        DataError: a batch is missing or one of its files changed after it was stored.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from clientrisk.data.clientcsv import COLUMNS, ID_COLUMN, TARGET, unusable_mask

    tables = []
    for seq in sorted(seqs):
        folder = batches_dir(ingested_dir) / batch_folder_name(seq)
        path = _rows_file(folder, which)
        try:
            expected = read_batch_meta(folder)["files"][path.name]
            actual = sha256_file(path)
        except (OSError, KeyError, TypeError, DataError) as error:
            raise DataError(f"{path}: stored batch {seq} is unreadable: {error}") from None
        if actual != expected:
            raise DataError(
                f"{path}: changed after it was stored (SHA-256 {actual[:12]}… recorded"
                f" {expected[:12]}…); restore the batch folder from a backup"
            )
        table = _read_table(path).cast(store_schema())
        column = pa.array(np.full(table.num_rows, seq, dtype=np.int64))
        tables.append(table.append_column(BATCH_COLUMN, column))
    if not tables:
        frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in COLUMNS})
        frame[ID_COLUMN] = frame[ID_COLUMN].astype("str")
        frame[TARGET] = frame[TARGET].astype("Int8")
        return frame.assign(**{BATCH_COLUMN: pd.Series(dtype="int64")})
    table = pa.concat_tables(tables)
    if where is not None:  # once for all batches: a lookup set is built once, not per batch
        table = table.filter(where(table))
    if usable:
        unusable = unusable_mask(table)
        if pc.any(unusable).as_py():
            logger.debug("%d stored rows set aside", pc.sum(unusable).as_py())
            table = table.filter(pc.invert(unusable))
    return table.to_pandas()


def set_aside_rows(ingested_dir: Path, seqs):
    """The stored rows (with an outcome or not) that the model cannot use, with a `reason`
    column: rows an earlier version stored before the reader refused them."""
    import pandas as pd

    from clientrisk.data.clientcsv import unusable_mask, unusable_reason

    found = [
        read_rows(ingested_dir, seqs, which, where=unusable_mask, usable=False)
        for which in (OUTCOMES_FILE, CURRENT_FILE)
    ]
    rows = pd.concat(found, ignore_index=True).sort_values(BATCH_COLUMN, kind="stable")
    reasons = [unusable_reason(row) for row in rows.to_dict("records")]
    return rows.assign(reason=pd.Series(reasons, index=rows.index, dtype="str"))


def _rows_file(folder: Path, which: str) -> Path:
    """The file of a batch folder holding `which` rows: Arrow IPC, or Parquet in a batch stored
    by an earlier version."""
    path = folder / which
    older = folder / PARQUET_FILES.get(which, which)
    return older if not path.exists() and older.exists() else path


def _read_table(path: Path):
    """The rows of one stored file: Arrow IPC, or Parquet for a batch stored before."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    import pyarrow.feather as feather

    return feather.read_table(path, memory_map=False)


def codes_in(values, others):
    """Which of `values` (client codes: a pandas Series, or a list) are among `others`, as a
    numpy mask, by one arrow hash set (pandas' isin on arrow strings loops in Python)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def codes(items):
        array = pa.array(getattr(items, "array", items), type=pa.string())
        return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array

    found = pc.is_in(codes(values), options=pc.SetLookupOptions(codes(others), skip_nulls=False))
    return found.to_numpy(zero_copy_only=False)


def without_rows(rows, others):
    """`rows` without those that appear in `others` (compared on every client column; only the
    rows of clients that `others` holds are compared), renumbered from 0."""
    import numpy as np

    from clientrisk.data.clientcsv import COLUMNS, ID_COLUMN

    columns = list(COLUMNS)
    candidates = np.flatnonzero(codes_in(rows[ID_COLUMN], others[ID_COLUMN]))
    marked = rows.iloc[candidates].merge(
        others[columns].drop_duplicates(), on=columns, how="left", indicator=True
    )
    seen = np.zeros(len(rows), dtype=bool)
    seen[candidates[(marked["_merge"] == "both").to_numpy()]] = True
    return rows[~seen].reset_index(drop=True)


def labelled_history(ingested_dir: Path, seqs):
    """Every row with an outcome of batches `seqs`, exact duplicates once (the first arrival):
    what training learns from. `exited` is a plain integer; `batch` says where each row came in.

    The newest answer is kept for the process (one fullprocess.py run asks for it up to five
    times: ingestion, the drift check, the window choice, training, diagnostics), and given
    again while the batch files are as they were (their size and time), as a copy the caller may
    change.
    """
    from clientrisk.data import rowkeys
    from clientrisk.data.clientcsv import COLUMNS, TARGET

    key = _history_key(ingested_dir, seqs)
    cached = _LABELLED.get("rows") if _LABELLED.get("key") == key else None
    if cached is None:
        rows = rowkeys.drop_duplicates(read_rows(ingested_dir, seqs, OUTCOMES_FILE), COLUMNS)
        cached = rows.assign(**{TARGET: rows[TARGET].astype("int64")})
        _LABELLED.clear()
        if key is not None:
            _LABELLED.update(key=key, rows=cached)
    # Copy-on-write: the copy costs nothing until the caller changes it.
    return cached.copy(deep=False)


_LABELLED: dict = {}


def _history_key(ingested_dir: Path, seqs):
    """The batches' outcome files as they are now (None when one cannot be looked at)."""
    states = []
    for seq in sorted(seqs):
        folder = batches_dir(ingested_dir) / batch_folder_name(seq)
        try:
            status = _rows_file(folder, OUTCOMES_FILE).stat()
        except OSError:
            return None
        states.append((seq, status.st_size, status.st_mtime_ns, status.st_ino))
    return (str(Path(ingested_dir).resolve()), tuple(states))


def stored_outcomes(config):
    """Every stored row with an outcome (exact duplicates once), and the batches.

    Returns:
        (rows with a `batch` column, the batches in arrival order).

    Raises:
        DataError: nothing has been ingested.
    """
    from clientrisk.history.database import open_history

    with open_history(config.history_location) as history:
        batches = history.batches()
    if not batches:
        raise DataError(f"{config.ingested_dir}: no ingested data; run ingestion.py first")
    data = labelled_history(config.ingested_dir, [batch.seq for batch in batches])
    logger.debug("read %d rows with an outcome from %d batches", len(data), len(batches))
    return data, batches


def fingerprint(batches) -> str:
    """One SHA-256 for a set of stored batches (each is immutable, known by number and hash)."""
    import hashlib

    text = "\n".join(f"{batch.seq}:{batch.sha256}" for batch in batches)
    return hashlib.sha256(text.encode()).hexdigest()


def current_observations(ingested_dir: Path, seqs):
    """Every row without an outcome of batches `seqs`, in arrival order, with its batch."""
    from clientrisk.data.clientcsv import TARGET

    return read_rows(ingested_dir, seqs, CURRENT_FILE).drop(columns=[TARGET])
