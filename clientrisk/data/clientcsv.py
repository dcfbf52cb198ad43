"""The client-data schema, and the one reader that turns a CSV into checked client rows.

A row is an observation of one client: `corporation` (an identifier, never a feature), three
numeric features and `exited`, its outcome. An empty `exited` (or no such column) means the
outcome is not known yet: the row is the latest observation of a client who is still with us.

The reader keeps the good rows and names every bad one as `file:line: reason`; a file that is
unusable as a whole is rejected with one reason. It parses with pyarrow's CSV reader and checks
with vectorised arrow functions, so a million rows cost about what reading them does, and it
never lets a hostile cell through: numbers too large for a float, non-finite tokens, rows with
the wrong number of fields, identifiers that are empty, absurdly long or hold control characters.
"""

from __future__ import annotations

import io
import logging
import re
from collections import namedtuple

from clientrisk.atomicfiles import display_name
from clientrisk.errors import DataError

logger = logging.getLogger(__name__)

ID_COLUMN = "corporation"
FEATURES = ("lastmonth_activity", "lastyear_activity", "number_of_employees")
TARGET = "exited"
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)
# Cells with these texts are missing values in a feature column (never in `corporation`).
MISSING_TOKENS = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None")
NOT_FINITE_TOKENS = ("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity")
NUMBER_PATTERN = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
CONTROL_PATTERN = r"[\x00-\x1f\x7f]"
# Longer identifiers are not client codes but junk (or an attack on whoever opens the file).
MAX_ID_LENGTH = 100
# A header with more columns is refused before anything is parsed (a few hundred KB of commas
# would otherwise keep the parser busy for many seconds).
MAX_COLUMNS = 256
# Rejected rows logged per file; all of them are counted.
MAX_LOGGED_REJECTIONS = 20
# A row longer than this is not client data; pyarrow needs a bound for one parsing block.
MAX_BLOCK_BYTES = 1 << 26
# The largest count a feature may hold. A float holds every whole number up to it exactly, and
# what the model derives from a count (twelve months of it, its logarithm, a fill from the other
# columns, the trend, the splines' extrapolation) stays finite and far from overflowing.
MAX_COUNT = 1e15
MAX_COUNT_TEXT = f"{MAX_COUNT:,.0f}"


class RejectedFile(DataError):
    """A data file that is unusable as a whole."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


class Rejection(namedtuple("Rejection", "file line reason")):
    """A row (or, with no line, a whole file) that could not be used."""

    __slots__ = ()

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


class ClientBatch(namedtuple("ClientBatch", "frame rejections")):
    """The valid rows of one CSV (a DataFrame in COLUMNS order: `corporation` text, the features
    float, `exited` a nullable small integer, missing where the outcome is not known yet) and
    what was wrong with the others (a list of Rejection)."""

    __slots__ = ()

    @property
    def labelled(self):
        """The rows with an outcome, `exited` as a plain integer."""
        return labelled_rows(self.frame)

    @property
    def current(self):
        """The rows without an outcome: clients still with us."""
        return self.frame[self.frame[TARGET].isna()].reset_index(drop=True)


def labelled_rows(frame):
    """The rows of `frame` with an outcome, `exited` as a plain integer."""
    known = frame[frame[TARGET].notna()]
    return known.assign(**{TARGET: known[TARGET].astype("int64")}).reset_index(drop=True)


# --- reading -------------------------------------------------------------------------------------


def read_client_csv(source, label: str | None = None, *, ids_required: bool = True) -> ClientBatch:
    """Read one client CSV (a path or its bytes), keeping the good rows and naming every bad one.

    Args:
        source: the file, or its content.
        label: names the source in messages (default: the file's name, or "data").
        ids_required: whether every row needs a `corporation` (client data) or not (rows sent
            only to be predicted). `exited` is optional either way.

    Raises:
        RejectedFile: the file as a whole is unusable (unreadable, not UTF-8 text, empty, a
            required column missing, too many columns, not parseable as CSV).
    """
    from pathlib import Path

    if label is None:
        label = "data" if isinstance(source, bytes) else display_name(Path(source).name)
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as error:
            raise RejectedFile(label, f"cannot read file: {error.strerror or error}") from None
    return parse_client_csv(data, label, ids_required=ids_required)


def parse_client_csv(data: bytes, label: str, *, ids_required: bool = True) -> ClientBatch:
    """The checked rows of a client CSV's bytes; see `read_client_csv`."""
    text_problem = _text_problem(data)
    if text_problem:
        raise RejectedFile(label, text_problem)
    data = data.removeprefix(b"\xef\xbb\xbf")
    header = _header(data, label)
    wanted = {name: position for position, name in enumerate(header) if name in COLUMNS}
    required = (ID_COLUMN, *FEATURES) if ids_required else FEATURES
    missing = [name for name in required if name not in wanted]
    if missing:
        raise RejectedFile(label, _missing_columns_reason(missing, header))
    spaces = b" " in data or b"\t" in data
    controls = b'"' in data or _has_control_bytes(data)
    if ids_required and not spaces and not controls:
        frame = _clean_frame(data, header, wanted)
        if frame is not None:
            return ClientBatch(frame, [])
    table, bad_records = _parse_table(data, header, wanted, label)
    lines = _record_lines(data, len(table), bad_records)
    rejections = [
        Rejection(
            label,
            lines.bad[number],
            ("a quote is never closed: " if unclosed else "")
            + f"expected {len(header)} fields, saw {count}",
        )
        for number, (count, unclosed) in bad_records.items()
    ]
    frame, problems = _check_rows(table, lines.good, ids_required, spaces=spaces, controls=controls)
    rejections += [Rejection(label, line, reason) for line, reason in problems]
    if frame.empty and not rejections:
        raise RejectedFile(label, "no data rows")
    rejections.sort(key=lambda rejection: rejection.line)
    return ClientBatch(frame, rejections)


def _has_control_bytes(data: bytes) -> bool:
    """Whether `data` holds a control byte that can end up inside a field of an unquoted file
    (any below 0x20 but the line ends, or 0x7f)."""
    import numpy as np

    codes = np.frombuffer(data, dtype=np.uint8)
    line_ends = np.count_nonzero(codes == 0x0A) + np.count_nonzero(codes == 0x0D)
    return np.count_nonzero(codes < 0x20) != line_ends or b"\x7f" in data


def _clean_frame(data: bytes, header: list[str], wanted: dict):
    """The rows of a file with nothing to reject, parsed straight into numbers; None when any
    cell is not as a clean file has it (the careful parse then finds and words the problems).

    Only for files without quotes, white space or control bytes: every cell is then its text.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    names = _positional_names(header)
    types = {names[wanted[name]]: pa.float64() for name in FEATURES}
    for name in (ID_COLUMN, TARGET):  # outcomes: only "" is missing there; checked below
        if name in wanted:
            types[names[wanted[name]]] = pa.string()
    try:
        table = _read_by_position(
            data,
            header,
            pacsv.ParseOptions(ignore_empty_lines=False),
            pacsv.ConvertOptions(
                include_columns=list(types),
                column_types=types,
                null_values=list(MISSING_TOKENS),
                strings_can_be_null=False,
            ),
            threads=True,
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None  # a cell that is not a number, a row of another length
    if not table.num_rows:
        return None
    lengths = pc.utf8_length(table.column(ID_COLUMN)).to_numpy(zero_copy_only=False)
    if lengths.min() == 0 or lengths.max() > MAX_ID_LENGTH:
        return None
    columns = {ID_COLUMN: table.column(ID_COLUMN).to_pandas()}
    for name in FEATURES:
        column = table.column(name)
        if pc.any(pc.is_nan(column)).as_py():  # a "NAN" text, not a missing token
            return None
        values = column.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            if np.isinf(values).any() or (values < 0).any() or (values > MAX_COUNT).any():
                return None
        columns[name] = values
    target = np.full(table.num_rows, np.nan)
    if TARGET in wanted:
        text = table.column(TARGET)
        if not pc.all(pc.is_in(text, value_set=pa.array(["", "0", "1"]))).as_py():
            return None
        target[pc.equal(text, "0").to_numpy(zero_copy_only=False)] = 0
        target[pc.equal(text, "1").to_numpy(zero_copy_only=False)] = 1
    frame = pd.DataFrame({**columns, TARGET: target})
    frame[TARGET] = frame[TARGET].astype("Int8")
    return frame[list(COLUMNS)]


def _text_problem(data: bytes) -> str | None:
    """Why `data` is not UTF-8 CSV text, or None."""
    if not data.strip():
        return "file is empty"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text; save the file as UTF-8 CSV"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return f"not UTF-8 text (line {line} has byte 0x{data[error.start]:02x})"
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        return f"not a text file (a NUL byte on line {line})"
    return None


def _header(data: bytes, label: str) -> list[str]:
    """The column names, stripped and lower-cased, checked for number and repeats."""
    import csv

    first_line = data.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    if first_line.count(",") + 1 > MAX_COLUMNS:
        raise RejectedFile(
            label, f"{first_line.count(',') + 1:,} columns in the header; at most {MAX_COLUMNS}"
        )
    try:
        header = next(csv.reader([first_line]), [])
    except csv.Error as error:
        raise RejectedFile(label, f"header is not CSV: {error}") from None
    names = [name.strip().lower() for name in header]
    if not any(names):
        raise RejectedFile(label, "the first line, the header, is empty")
    repeated = sorted({name for name in names if names.count(name) > 1 and name in COLUMNS})
    if repeated:
        raise RejectedFile(label, f"repeated column(s) in the header: {', '.join(repeated)}")
    return names


def _missing_columns_reason(missing: list[str], header: list[str]) -> str:
    shown = ", ".join(name[:40] for name in header[:8]) + (", ..." if len(header) > 8 else "")
    reason = f"missing required column(s): {', '.join(missing)} (the header has: {shown})"
    if len(header) == 1 and ";" in header[0]:
        reason += "; the file looks separated by ';': save it comma-separated"
    return reason


def _parse_table(data: bytes, header: list[str], wanted: dict, label: str):
    """Parse the wanted columns as text.

    Returns:
        (arrow table of the good records, {record number: (fields seen, whether a quote is
        left open)}), the header being record 1.
    """
    import pyarrow as pa
    from pyarrow import csv as pacsv

    bad_records: dict[int, int | None] = {}

    def on_bad_row(row) -> str:
        unclosed = row.text.count('"') % 2 == 1
        bad_records[row.number] = (row.actual_columns, unclosed)
        return "skip"

    # Blank lines are kept as rows of empty cells (dropped later), so that pyarrow's record
    # numbers, which start at 1 with the header, stay the line numbers.
    names = _positional_names(header)
    try:
        table = _read_by_position(
            data,
            header,
            pacsv.ParseOptions(
                invalid_row_handler=on_bad_row,
                ignore_empty_lines=False,
                newlines_in_values=b'"' in data,
            ),
            pacsv.ConvertOptions(
                include_columns=[names[position] for position in wanted.values()],
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
            threads=False,
        )
    except (pa.ArrowInvalid, pa.ArrowException) as error:
        reason = str(error).strip().splitlines()[0]
        raise RejectedFile(label, f"not readable as CSV: {reason}") from None
    return table, bad_records


def _positional_names(header: list[str]) -> list[str]:
    """Names for the columns by position (a header may repeat or lack names)."""
    return [f"column{position}" for position in range(len(header))]


def _read_by_position(data: bytes, header: list[str], parse_options, convert_options, *, threads):
    """pyarrow's reading of the CSV after its header, columns named by `_positional_names` and
    then renamed to the header's names. Single-threaded, the file is one block (bad-row numbers
    are then record numbers); with threads, two blocks, one per core."""
    from pyarrow import csv as pacsv

    size = len(data) // 2 + 1 if threads else len(data) + 1
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(
            column_names=_positional_names(header),
            skip_rows=1,
            use_threads=threads,
            block_size=min(max(1 << 20, size), MAX_BLOCK_BYTES),
        ),
        parse_options=parse_options,
        convert_options=convert_options,
    )
    return table.rename_columns([header[int(name[6:])] for name in table.column_names])


class RecordLines(namedtuple("RecordLines", "good bad")):
    """Line numbers: of each good record (a numpy array) and of each bad one (a dict)."""

    __slots__ = ()


def _record_lines(data: bytes, good_count: int, bad_records: dict) -> RecordLines:
    """The line of each record (the header is record 1): record n is on line n, unless a quoted
    value spans lines."""
    import numpy as np

    total = good_count + len(bad_records) + 1
    physical = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    if physical == total or b'"' not in data:
        starts = np.arange(1, total + 1)
    else:
        starts = _record_start_lines(data, total)
    is_bad = np.zeros(total, dtype=bool)
    is_bad[0] = True
    is_bad[[number - 1 for number in bad_records]] = True
    return RecordLines(starts[~is_bad], {number: int(starts[number - 1]) for number in bad_records})


def _record_start_lines(data: bytes, total: int):
    """The line each record starts on, found by the csv module (slow; only when quoted values
    span lines)."""
    import csv

    import numpy as np

    starts = []
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    line = 1
    for _ in reader:
        starts.append(line)
        line = reader.line_num + 1
    starts = (starts + [starts[-1] if starts else 1] * total)[:total]
    return np.asarray(starts)


# --- checking ------------------------------------------------------------------------------------

# What can be wrong with a cell, by column kind, in the order the checks run (the first wins).
ID_PROBLEMS = ("empty", "too long", "control")
NUMBER_PROBLEMS = ("text", "not finite", "too large", "negative")


def _check_rows(table, lines, ids_required: bool = True, *, spaces=True, controls=True):
    """Split parsed text rows into clean typed rows and (line, reason) problems.

    Vectorised: each check marks rows with a problem code, and words are made only for the
    rows that are rejected. `spaces` and `controls` say whether the text may hold white space
    or control characters at all (when not, those checks are skipped).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = table.num_rows
    problem = np.zeros(rows, dtype=np.int16)
    codes: list[tuple[str, str]] = [("", "")]

    def flag(mask, column: str, kind: str) -> None:
        codes.append((column, kind))
        problem[(problem == 0) & np.asarray(mask, dtype=bool)] = len(codes) - 1

    trimmed = {
        name: pc.utf8_trim_whitespace(table.column(name)) if spaces else table.column(name)
        for name in table.column_names
    }
    blank = None
    for text in trimmed.values():
        empty = pc.equal(text, "")
        blank = empty if blank is None else pc.and_(blank, empty)
    blank = blank.to_numpy(zero_copy_only=False)
    columns = {}
    lengths = None
    if ID_COLUMN in trimmed:
        ids = trimmed[ID_COLUMN]
        lengths = pc.utf8_length(ids).to_numpy(zero_copy_only=False)
        if ids_required:
            flag(lengths == 0, ID_COLUMN, "empty")
        flag(lengths > MAX_ID_LENGTH, ID_COLUMN, "too long")
        if controls:
            control = pc.match_substring_regex(ids, CONTROL_PATTERN)
            flag(control.to_numpy(zero_copy_only=False), ID_COLUMN, "control")
        columns[ID_COLUMN] = ids
    for name in FEATURES:
        values, kinds = _numbers(trimmed[name], MISSING_TOKENS)
        for kind in NUMBER_PROBLEMS:
            flag(kinds == NUMBER_PROBLEMS.index(kind) + 1, name, kind)
        columns[name] = values
    if TARGET in trimmed:
        values, kinds = _numbers(trimmed[TARGET], ("",))
        wrong = (kinds > 0) | ~(np.isnan(values) | (values == 0) | (values == 1))
        flag(wrong, TARGET, "outcome")
        columns[TARGET] = values
    else:
        columns[TARGET] = np.full(rows, np.nan)
    keep = ~blank & (problem == 0)
    problems = [
        (int(lines[i]), _reason(*codes[problem[i]], table, i, lengths))
        for i in np.flatnonzero(~blank & (problem > 0))
    ]
    kept = pa.array(keep)
    frame = pd.DataFrame(
        {name: np.asarray(values)[keep] for name, values in columns.items() if name != ID_COLUMN}
    )
    ids = columns[ID_COLUMN].filter(kept).to_pandas() if ID_COLUMN in columns else None
    frame.insert(0, ID_COLUMN, pd.Series([None] * len(frame), dtype="str") if ids is None else ids)
    frame[TARGET] = frame[TARGET].astype("Int8")
    return frame[list(COLUMNS)], problems


def _numbers(text, missing_tokens):
    """Parse a text column as floats.

    Returns:
        (numpy floats, NaN where missing or wrong; numpy codes: 0 fine or missing, else one
        more than the index of the problem in NUMBER_PROBLEMS).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = pc.is_in(text, value_set=pa.array(missing_tokens))
    given = pc.if_else(missing, pa.scalar(None, pa.string()), text)
    kinds = np.zeros(len(text), dtype=np.int8)
    try:
        # Fast path: every given cell is something arrow reads as a number.
        floats = pc.cast(given, pa.float64()).to_numpy(zero_copy_only=False)
        numeric = ~np.isnan(floats)
    except pa.ArrowInvalid:
        numeric_mask = pc.match_substring_regex(given, NUMBER_PATTERN).fill_null(False)
        numbers = pc.if_else(numeric_mask, given, pa.scalar(None, pa.string()))
        floats = pc.cast(numbers, pa.float64()).to_numpy(zero_copy_only=False)
        numeric = numeric_mask.to_numpy(zero_copy_only=False)
    given_mask = pc.is_valid(given).to_numpy(zero_copy_only=False)
    infinite = np.isinf(floats)
    if infinite.any() or (given_mask & ~numeric).any():
        lowered = pc.utf8_lower(given)
        named_infinity = pc.is_in(lowered, value_set=pa.array(NOT_FINITE_TOKENS))
        named_infinity = named_infinity.fill_null(False).to_numpy(zero_copy_only=False)
        kinds[given_mask & ~numeric & ~infinite] = 1
        kinds[infinite & named_infinity] = 2
        kinds[infinite & ~named_infinity] = 3
        kinds[given_mask & ~numeric & named_infinity] = 2
    with np.errstate(invalid="ignore"):
        kinds[(kinds == 0) & (floats > MAX_COUNT)] = 3
        kinds[(kinds == 0) & (floats < 0)] = 4
    floats = np.where(kinds == 0, floats, np.nan)
    return floats, kinds


def _reason(column: str, kind: str, table, index: int, lengths) -> str:
    """The words for a rejected cell."""
    if column == ID_COLUMN:
        if kind == "too long":
            return (
                f"{ID_COLUMN} is {int(lengths[index]):,} characters long (at most {MAX_ID_LENGTH})"
            )
        return (
            f"{ID_COLUMN} is empty"
            if kind == "empty"
            else f"{ID_COLUMN} contains a control character"
        )
    shown = _show(table.column(column)[index].as_py())
    if column == TARGET:
        return f"{TARGET} must be 0, 1 or empty, got {shown}"
    words = {
        "text": "is not a number",
        "not finite": "is not finite",
        "too large": f"is too large (at most {MAX_COUNT_TEXT})",
        "negative": "is negative",
    }
    return f"{column}: {shown} {words[kind]}"


def _show(value) -> str:
    """A cell as the user wrote it: a plain number, or quoted text (long text shortened)."""
    if value is None:
        return "nothing"
    text = value.strip()
    if not text:
        return "nothing"
    if len(text) > 40:
        return f"{text[:20]!r}… ({len(text):,} characters)"
    return text if re.fullmatch(NUMBER_PATTERN, text) else repr(text)


# --- rows stored before a check existed ----------------------------------------------------------


def unusable_mask(table):
    """Which rows of an arrow table of typed client rows hold a count the model cannot use (not
    finite, negative or above MAX_COUNT), as an arrow boolean array: rows stored by a version
    that did not check as much as the reader does now."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = pa.array([False] * table.num_rows, pa.bool_())
    for name in FEATURES:
        column = table.column(name)
        wrong = pc.or_(pc.invert(pc.is_finite(column)), pc.greater(column, MAX_COUNT))
        wrong = pc.or_(wrong, pc.less(column, 0)).fill_null(False)
        wrong = pc.and_(wrong, pc.invert(pc.is_nan(column).fill_null(True)))
        mask = pc.or_(mask, wrong)
    return mask


def unusable_reason(row) -> str:
    """Why one stored row (a mapping of its columns) cannot be used, worded as the reader words
    the same cell in a file."""
    import math

    for name in FEATURES:
        value = row[name]
        if value is None or value != value:
            continue
        if math.isinf(value):
            return f"{name}: {value} is not finite"
        if value > MAX_COUNT:
            return f"{name}: {value:g} is too large (at most {MAX_COUNT_TEXT})"
        if value < 0:
            return f"{name}: {value:g} is negative"
    return "usable"


# --- what the steps read -------------------------------------------------------------------------


def log_rejections(rejections: list[Rejection], label: str) -> None:
    """Log the first rejected rows as warnings and count the rest."""
    for rejection in rejections[:MAX_LOGGED_REJECTIONS]:
        logger.warning("%s", rejection)
    if len(rejections) > MAX_LOGGED_REJECTIONS:
        more = len(rejections) - MAX_LOGGED_REJECTIONS
        logger.warning("%s: %d more rejected rows not shown", label, more)


def read_labelled_csv(path):
    """The valid rows with an outcome of a CSV the pipeline relies on (the test data); bad rows
    are logged, rows without an outcome are left out and counted.

    Raises:
        DataError: the file is missing or unusable, or has no valid row with an outcome.
    """
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    batch = read_client_csv(path)
    log_rejections(batch.rejections, path.name)
    labelled = batch.labelled
    unknown = len(batch.frame) - len(labelled)
    if unknown:
        logger.info("%s: %d rows without an outcome (exited) left out", path.name, unknown)
    if labelled.empty:
        raise DataError(f"{path}: no valid rows with an outcome ({TARGET} 0 or 1)")
    return labelled


def read_unlabelled_csv(source, label: str | None = None):
    """Client rows to predict from a CSV (a path or its bytes), all valid or none.

    Raises:
        DataError: naming the first bad line (and how many more there are) or the whole file.
    """
    batch = read_client_csv(source, label, ids_required=False)
    if batch.rejections:
        raise problems_error([str(rejection) for rejection in batch.rejections])
    return batch.frame.drop(columns=[TARGET])


def problems_error(problems: list[str]) -> DataError:
    """One error for a list of problems: the first, and how many more."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return DataError(f"{problems[0]}{more}")


def check_text_columns(table):
    """Check rows given as text (an arrow table of string columns named as COLUMNS; `exited`
    may be absent) exactly as the cells of a client CSV are checked.

    Returns:
        (clean rows in COLUMNS order, [(row position, reason)]).
    """
    import numpy as np

    return _check_rows(table, np.arange(table.num_rows), ids_required=True)


def validate_records(frame):
    """Check a DataFrame of client rows (indexed by record number) as the CSV reader would.

    Returns:
        (clean rows, [(record number, reason)]).
    """
    import pyarrow as pa

    columns = [name for name in COLUMNS if name in frame.columns]
    texts = {
        name: pa.array(
            ["" if value is None or value != value else str(value) for value in frame[name]],
            pa.string(),
        )
        for name in columns
    }
    return _check_rows(pa.table(texts), frame.index.to_numpy(), ids_required=False)
