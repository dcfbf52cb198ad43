"""Files the pipeline writes: whole or not at all, under a lock, and what killed processes leave.

Every file a step writes appears in one rename (`atomic_path`), every folder it assembles too
(`staging_folder`); temporary names carry the writer's process id (`temp_name`), so that
`remove_leftovers` can tell what a killed process left from the work of a living one. Only the
standard library is imported at module level: a cron tick that finds nothing to do imports this.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from clientrisk.errors import PipelineError

logger = logging.getLogger(__name__)

# Temporary files and folders carry the writer's process id after this marker, so that a later
# run can tell the leftovers of a killed process from the work of a living one.
TEMP_MARKER = ".tmp-"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def display_name(name: str) -> str:
    """A file name fit for one log line, a record cell and a PDF: control characters and bytes
    that are not UTF-8 are written as escapes (`\\t`, `\\n`, `\\xff`), everything else as is."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def temp_name(name: str) -> str:
    """A hidden name for staging `name`, marked with this process's id."""
    return f".{name}{TEMP_MARKER}{os.getpid()}"


def naming_the_file(error: OSError, path: str | os.PathLike) -> OSError | None:
    """`error` again with `path` in its message, or None when it names a file already (a full
    disk or a failed write is reported for a descriptor, without a name)."""
    if error.filename is not None:
        return None
    if error.errno is not None and error.strerror:
        return OSError(error.errno, error.strerror, os.fspath(path))
    return OSError(f"{os.fspath(path)}: {error}")


@contextmanager
def staging_folder(path: Path):
    """Make the folder `path` (a `temp_name`) for the block to fill and rename; if the block
    fails, remove it. One left by an earlier failure of this same process is removed first."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    except OSError as error:
        shutil.rmtree(path, ignore_errors=True)
        named = naming_the_file(error, path)
        if named is None:
            raise
        raise named from error
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one step.

    Readers see the old file or the new one, never a part-written one. On an exception the
    temporary file is removed and `path` is left as it was; if the process is killed instead,
    `remove_leftovers` removes it later. The temporary name keeps the suffix so that writers
    which infer the format from it (matplotlib) still work.
    """
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f"{TEMP_MARKER}{os.getpid()}{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_file_mode())
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
    except OSError as error:
        tmp_path.unlink(missing_ok=True)
        named = naming_the_file(error, path)
        if named is None:
            raise
        raise named from error
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp_path:
        tmp_path.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def leftover_owner(name: str) -> int | None:
    """The process id in a temporary name (see `temp_name`, `atomic_path`), or None."""
    if not name.startswith(".") or TEMP_MARKER not in name:
        return None
    digits = name.rsplit(TEMP_MARKER, 1)[1].split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(folders) -> list[Path]:
    """Delete temporary files and folders that killed processes left in `folders`.

    Only names with a temporary marker whose process is gone are touched: a step running at
    the same time keeps its own.

    Returns:
        What was removed.
    """
    import shutil

    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            owner = leftover_owner(entry.name)
            if owner is None or owner == os.getpid() or process_alive(owner):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    for path in removed:
        logger.info("%s: removed, left by a process that was stopped", path)
    return removed


@contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = True):
    """Hold an exclusive lock on `path` for the `with` block.

    The operating system releases it when the process ends, however it ends, so a killed process
    never leaves a stale lock behind.

    Raises:
        BlockingIOError: `wait` is false and another process holds the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def lock_is_held(path: str | os.PathLike) -> bool:
    """Whether another process holds the lock on `path` right now."""
    try:
        with exclusive_lock(path, wait=False):
            return False
    except BlockingIOError:
        return True


# Text a spreadsheet would run as a formula starts with one of these.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text):
    """Text that a spreadsheet shows as text: a leading formula character gets a `'` before it."""
    if isinstance(text, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def write_csv(frame, path: str | os.PathLike, *, append_to: str | os.PathLike | None = None):
    """Write a DataFrame as CSV atomically, for people to open: whole-number float columns
    without a trailing `.0`, and text that a spreadsheet would run as a formula neutralised.

    Written by pyarrow (tens of times faster than pandas); when a text cell needs quoting, every
    text cell of the file is quoted. With
    `append_to` (a CSV with the same columns, usually `path` itself), `path` becomes that file
    with the rows added after its own, still in one rename.

    Raises:
        ValueError: the header of `append_to` is not that of the rows (nothing is written).
    """
    import csv
    import io
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    # One chunk per column: pandas' text columns may reach pyarrow in several chunks, some
    # empty, and pyarrow's CSV writer then writes raw buffer bytes in place of the first rows'
    # cells (a one-client list came out as eight NUL bytes and stray text).
    table = pa.Table.from_pandas(frame, preserve_index=False).combine_chunks()
    # One pattern for every formula start (each is one character), as RE2 reads a class.
    escapes = {"-": r"\-", "\t": r"\t", "\r": r"\r"}
    formula = "^[" + "".join(escapes.get(start, start) for start in FORMULA_STARTS) + "]"
    columns, plain = [], True
    for column in table.columns:
        if pa.types.is_floating(column.type):
            column = _whole_numbers_as_integers(column)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.match_substring_regex(column, formula), False)
            if pc.any(risky).as_py():
                quote, nothing = pa.scalar("'", column.type), pa.scalar("", column.type)
                joined = pc.binary_join_element_wise(quote, column, nothing)
                column = pc.if_else(risky, joined, column)
            plain = plain and not pc.any(pc.match_substring_regex(column, '[,"\r\n]')).as_py()
        columns.append(column)
    table = pa.table(columns, names=table.column_names)
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(table.column_names)
    # Text cells are quoted only when some cell needs it (a comma, a quote, a line break).
    quoting = "none" if plain else "needed"
    with atomic_path(path) as tmp_path:
        with open(tmp_path, "wb") as handle:
            handle.write(header.getvalue().encode())
            options = pacsv.WriteOptions(include_header=False, quoting_style=quoting)
            pacsv.write_csv(table, handle, options)
        if append_to is not None:
            written_header, _, rows = tmp_path.read_bytes().partition(b"\n")
            with open(append_to, "rb") as existing:
                if existing.readline().rstrip(b"\r\n") != written_header:
                    raise ValueError(f"{append_to}: its columns are not those of the new rows")
            shutil.copyfile(append_to, tmp_path)
            with open(tmp_path, "ab") as handle:
                handle.write(rows)


def _whole_numbers_as_integers(column):
    """A float column as integers when every value is whole and fits, else as it is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    known = pc.drop_null(column)
    if len(known) and not pc.all(pc.equal(pc.floor(known), known)).as_py():
        return column
    if len(known) and pc.max(pc.abs(known)).as_py() >= 2**53:
        return column
    return column.cast(pa.int64())


def read_json(path: str | os.PathLike, what: str):
    """Read a JSON file the pipeline wrote, or raise PipelineError naming it and `what` it is."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: cannot read {what}: {error}") from None
