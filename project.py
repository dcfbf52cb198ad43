"""What every step shares: the config, the client-data schema, atomic writes and the command line.

A cron tick that finds nothing to do imports this module and `modelstore`, so both keep to the
cheapest of the standard library at module level (named tuples, not dataclasses); functions that
need pandas, or slower standard modules, import them when called.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import sys
import time
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG_PATH = PROJECT_DIR / "config.json"
CONFIG_ENV = "RISK_CONFIG"

ID_COLUMN = "corporation"
FEATURES = ("lastmonth_activity", "lastyear_activity", "number_of_employees")
TARGET = "exited"
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)
# Rejected rows logged per file; all are counted in the ingestion record.
MAX_LOGGED_REJECTIONS = 20
# Cells with these texts are missing values in a numeric column (never in `corporation`).
MISSING_TOKENS = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None")

# Artifacts the steps pass to each other through the folders.
MODEL_FILE = "trainedmodel.pkl"
MODEL_METADATA_FILE = "trainedmodel.json"
TRAINING_SAMPLE_FILE = "trainingsample.csv"
SCORE_FILE = "latestscore.txt"
METRICS_FILE = "scoremetrics.json"
SCORE_HISTORY_FILE = "scorehistory.csv"
FINAL_DATA_FILE = "finaldata.csv"
RECORD_FILE = "ingestedfiles.txt"
DIAGNOSTICS_FILE = "diagnostics.json"
# Every time the pipeline writes: UTC, to the second.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SCORE_CHECKS = ("raw", "parametric", "nonparametric")

REQUIRED_KEYS = (
    "input_folder_path",
    "output_folder_path",
    "test_data_path",
    "output_model_path",
    "prod_deployment_path",
)
OPTIONAL_FOLDERS = {"log_folder_path": "logs"}


class Setting(namedtuple("Setting", "default help choices", defaults=((),))):
    """An optional config key that is not a folder: its default fixes its type."""

    __slots__ = ()


SETTINGS = {
    "timing_repeats": Setting(3, "times ingestion and training are run to time them"),
    "dependency_timeout_seconds": Setting(5.0, "longest wait for the package index, in all"),
    "package_index_url": Setting("https://pypi.org/pypi", "JSON API asked for latest versions"),
    "api_max_request_bytes": Setting(16 * 2**20, "largest request body the API accepts"),
    "drift_check": Setting(
        "parametric",
        "how fullprocess.py judges the deployed model's score on new data",
        choices=SCORE_CHECKS,
    ),
    "min_batch_rows": Setting(100, "fewest new rows for a drift verdict"),
    "retrain_on_data_drift": Setting(False, "retrain when features drift, even if the score holds"),
}


class PipelineError(Exception):
    """A failure the user can act on: reported as one line, never as a traceback."""

    exit_code = 1


class ConfigError(PipelineError):
    """The config file is missing, unreadable or wrong."""

    exit_code = 2


class DataError(PipelineError):
    """Input data that cannot be used."""


class RejectedFile(DataError):
    """A data file that is unusable as a whole."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


# --- configuration -------------------------------------------------------------------------------


class Config(
    namedtuple(
        "Config",
        "path input_dir ingested_dir test_data_path model_dir deploy_dir log_dir settings",
    )
):
    """The project's folders, resolved against the folder that holds the config file, and its
    settings. Immutable; `config._replace(model_dir=...)` gives a changed copy."""

    __slots__ = ()

    @property
    def test_data_file(self) -> Path:
        """The hold-out CSV: `test_data_path` if it names a file, else its `testdata.csv`."""
        if self.test_data_path.suffix.lower() == ".csv":
            return self.test_data_path
        return self.test_data_path / "testdata.csv"

    @property
    def final_data_file(self) -> Path:
        return self.ingested_dir / FINAL_DATA_FILE

    @property
    def ingestion_record_file(self) -> Path:
        return self.ingested_dir / RECORD_FILE


def load_config(path: str | os.PathLike) -> Config:
    """Read and check a config file.

    Raises:
        ConfigError: naming the file and the problem.
    """
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a JSON object with the keys {', '.join(REQUIRED_KEYS)}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise ConfigError(f"{path}: missing required key(s): {', '.join(missing)}")
    folder_keys = (*REQUIRED_KEYS, *OPTIONAL_FOLDERS)
    unknown = sorted(set(raw) - set(folder_keys) - set(SETTINGS))
    if unknown:
        known = ", ".join([*folder_keys, *SETTINGS])
        raise ConfigError(f"{path}: unknown key(s): {', '.join(unknown)} (known keys: {known})")
    values = {**OPTIONAL_FOLDERS, **raw}
    for key in folder_keys:
        if not isinstance(values[key], str) or not values[key].strip():
            raise ConfigError(f"{path}: '{key}' must be a non-empty folder path")
    base = path.parent
    folders = {key: (base / values[key]).resolve() for key in folder_keys}
    if not folders["input_folder_path"].is_dir():
        raise ConfigError(
            f"{path}: input_folder_path '{folders['input_folder_path']}' is not an existing folder"
        )
    settings = {
        key: _check_setting(path, key, raw.get(key, spec.default)) for key, spec in SETTINGS.items()
    }
    return Config(
        path=path,
        input_dir=folders["input_folder_path"],
        ingested_dir=folders["output_folder_path"],
        test_data_path=folders["test_data_path"],
        model_dir=folders["output_model_path"],
        deploy_dir=folders["prod_deployment_path"],
        log_dir=folders["log_folder_path"],
        settings=settings,
    )


def _check_setting(path: Path, key: str, value):
    """`value` if it suits setting `key`, else ConfigError naming the file, key and expectation."""
    spec = SETTINGS[key]
    kind = type(spec.default)
    if spec.choices:
        if value not in spec.choices:
            options = ", ".join(repr(choice) for choice in spec.choices)
            raise ConfigError(f"{path}: '{key}' must be one of {options}, not {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: '{key}' must be true or false, not {value!r}")
        return value
    if kind in (int, float):
        whole = kind is int
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            what = "a whole number" if whole else "a number"
            raise ConfigError(f"{path}: '{key}' must be {what}, not {value!r}")
        if value <= 0:
            raise ConfigError(f"{path}: '{key}' must be greater than 0, not {value!r}")
        return kind(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: '{key}' must be a non-empty text, not {value!r}")
    return value


def default_config_path() -> Path:
    """The config file named by the RISK_CONFIG environment variable, else `config.json`."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


# --- files ---------------------------------------------------------------------------------------


def list_input_files(input_dir: Path) -> list[Path]:
    """The CSV files in `input_dir`, by name; hidden files (uploads in progress) are left out."""
    return sorted(
        path
        for path in Path(input_dir).iterdir()
        if path.suffix.lower() == ".csv" and path.is_file() and not path.name.startswith(".")
    )


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


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one step.

    Readers see the old file or the new one, never a part-written one. On an exception the
    temporary file is removed and `path` is left as it was. The temporary name keeps the suffix
    so that writers which infer the format from it (matplotlib) still work.
    """
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.chmod(tmp_path, _default_file_mode())
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp_path:
        tmp_path.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


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


def utc_now() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return time.strftime(TIME_FORMAT, time.gmtime())


def parse_utc(text):
    """A time the pipeline wrote, as an aware datetime; None for anything else."""
    from datetime import UTC, datetime

    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def write_csv(frame, path: str | os.PathLike) -> None:
    """Write a DataFrame as CSV atomically, whole-number float columns without a trailing `.0`."""
    import pandas as pd

    out = frame.copy()
    for name in out.columns:
        values = out[name]
        if pd.api.types.is_float_dtype(values) and values.dropna().mod(1).eq(0).all():
            out[name] = values.astype("Int64")
    with atomic_path(path) as tmp_path:
        out.to_csv(tmp_path, index=False, lineterminator="\n")


def read_json(path: str | os.PathLike, what: str):
    """Read a JSON file the pipeline wrote, or raise PipelineError naming it and `what` it is."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: cannot read {what}: {error}") from None


# --- the ingestion record ------------------------------------------------------------------------

RECORD_FIELDS = (
    "file",
    "sha256",
    "rows_accepted",
    "rows_rejected",
    "ingested_at",
    "status",
    "note",
)
RECORD_HEADER = (
    "# Files read by ingestion.py, one per line, tab-separated. status: ingested | rejected |"
    " duplicate (same content as another file, rows counted once)."
)


class IngestedFile(namedtuple("IngestedFile", RECORD_FIELDS, defaults=("",))):
    """One line of `ingestedfiles.txt`."""

    __slots__ = ()


def format_ingestion_record(entries: list[IngestedFile], header: str = RECORD_HEADER) -> str:
    """The text of a record of files: a comment line, the field names, one line per file."""
    lines = [header, "\t".join(RECORD_FIELDS)]
    for entry in entries:
        cells = [str(getattr(entry, name)) for name in RECORD_FIELDS]
        lines.append("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in cells))
    return "\n".join(lines) + "\n"


def read_ingestion_record(path: str | os.PathLike) -> list[IngestedFile]:
    """Parse `ingestedfiles.txt`; a missing file is an empty record."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = [
        (number, line.split("\t"))
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and line[0] != "#"
    ]
    if not rows:
        return []
    if tuple(rows[0][1]) != RECORD_FIELDS:
        raise PipelineError(f"{path}: not a record of files (header {rows[0][1]})")
    entries = []
    for number, cells in rows[1:]:
        try:
            file, sha256, accepted, rejected, ingested_at, status, note = cells
            entries.append(
                IngestedFile(file, sha256, int(accepted), int(rejected), ingested_at, status, note)
            )
        except ValueError:
            raise PipelineError(f"{path}: malformed line {number}: {cells}") from None
    return entries


# --- client data ---------------------------------------------------------------------------------


class Rejection(namedtuple("Rejection", "file line reason")):
    """A row (or, with no line, a whole file) that could not be used."""

    __slots__ = ()

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


class ClientBatch(namedtuple("ClientBatch", "frame rejections")):
    """The valid rows of one CSV file (a DataFrame: corporation text, features float, exited int)
    and what was wrong with the others (a list of Rejection)."""

    __slots__ = ()


def read_client_csv(
    source: str | os.PathLike | bytes, *, labelled: bool = True, label: str | None = None
) -> ClientBatch:
    """Read one client CSV (a path or its bytes), keeping the good rows and naming every bad one.

    A row with a non-numeric or negative feature is rejected on its own, and in `labelled` data
    (for training and scoring) so is one with an empty corporation or an `exited` other than 0/1.
    Missing feature values are kept. Unlabelled data (to predict) needs only the features.

    Args:
        source: the file, or its content.
        labelled: whether `exited` is required (for training and scoring) or not (to predict).
        label: names the source in messages (default: the file's name).

    Raises:
        RejectedFile: the file as a whole is unusable (unreadable, empty, a column missing).
    """
    import csv

    import pandas as pd

    if label is None:
        label = "data" if isinstance(source, bytes) else Path(source).name
    required = COLUMNS if labelled else FEATURES
    try:
        raw, lines, ragged = _read_raw_csv(source)
    except UnicodeDecodeError:
        raise RejectedFile(label, "not a UTF-8 text file") from None
    except pd.errors.EmptyDataError:
        raise RejectedFile(label, "file is empty") from None
    except (pd.errors.ParserError, ValueError, csv.Error) as error:
        raise RejectedFile(label, f"not readable as CSV: {str(error).strip()}") from None
    except OSError as error:
        raise RejectedFile(label, f"cannot read file: {error.strerror or error}") from None
    raw.columns = [str(name).strip() for name in raw.columns]
    if len(set(raw.columns)) != len(raw.columns):
        raise RejectedFile(label, "repeated column names in the header")
    missing = [name for name in required if name not in raw.columns]
    if missing:
        raise RejectedFile(label, f"missing required column(s): {', '.join(missing)}")
    # Blank lines are read as rows and dropped here, not by the parser, so line numbers hold.
    raw.index = pd.Index(lines) if lines is not None else pd.RangeIndex(2, len(raw) + 2)
    raw = raw[~raw.apply(_is_blank).all(axis=1)]
    if raw.empty and not ragged:
        raise RejectedFile(label, "no data rows")
    frame, problems = validate_client_rows(raw, labelled=labelled)
    problems = sorted([*ragged, *problems])
    rejections = [Rejection(label, int(line), reason) for line, reason in problems]
    return ClientBatch(frame=frame.reset_index(drop=True), rejections=rejections)


def log_rejections(rejections: list[Rejection], label: str) -> None:
    """Log the first rejected rows as warnings and count the rest."""
    for rejection in rejections[:MAX_LOGGED_REJECTIONS]:
        logger.warning("%s", rejection)
    if len(rejections) > MAX_LOGGED_REJECTIONS:
        more = len(rejections) - MAX_LOGGED_REJECTIONS
        logger.warning("%s: %d more rejected rows not shown", label, more)


def read_labelled_csv(path: str | os.PathLike):
    """The valid labelled rows of a CSV the pipeline relies on; bad rows are logged.

    Raises:
        DataError: the file is missing or unusable, or has no valid row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    batch = read_client_csv(path)
    log_rejections(batch.rejections, path.name)
    if batch.frame.empty:
        raise DataError(f"{path}: no valid rows")
    return batch.frame


def read_unlabelled_csv(source: str | os.PathLike | bytes, label: str | None = None):
    """Client rows to predict from a CSV (a path or its bytes), all valid or none.

    Raises:
        DataError: naming the first bad line (and how many more there are) or the whole file.
    """
    batch = read_client_csv(source, labelled=False, label=label)
    if batch.rejections:
        raise problems_error([str(rejection) for rejection in batch.rejections])
    return batch.frame


def problems_error(problems: list[str]) -> DataError:
    """One error for a list of problems: the first, and how many more."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return DataError(f"{problems[0]}{more}")


def client_features(values):
    """What the model sees, from the imputed raw columns (and any missing-value indicators after).

    Logarithms for the heavy-tailed counts; the trend, last month against a twelfth of last year
    on that scale, which is what leaving follows; and dormancy (no activity last month) as a flag
    of its own, with a neutral trend, because a silent client's risk does not grow with how
    active it was before. Lives here, not in training.py, because pickled models refer to it by
    module and training.py also runs as `__main__`.
    """
    import numpy as np

    values = np.asarray(values, dtype=float)
    month, year = values[:, 0], values[:, 1]
    dormant = month == 0
    trend = np.where(dormant, 0.0, np.log1p(month) - np.log1p(year / 12))
    logs = np.log1p(values[:, :3])
    return np.column_stack([logs, trend, dormant, values[:, 3:]])


def _is_blank(column):
    import pandas as pd

    blank = column.isna()
    if not pd.api.types.is_numeric_dtype(column):
        blank |= column.astype("string").str.strip().fillna("") == ""
    return blank


def _read_raw_csv(source: Path | bytes):
    """Read a client CSV with numbers parsed where a whole column is numeric.

    Returns:
        (frame, line numbers of its rows or None when row i is on line i + 2, ragged-row problems).
    """
    import pandas as pd

    options = {
        "skip_blank_lines": False,
        "keep_default_na": False,
        "na_values": {name: list(MISSING_TOKENS) for name in (*FEATURES, TARGET)},
        "dtype": {ID_COLUMN: str},
        "encoding": "utf-8-sig",
        "skipinitialspace": True,
    }
    try:
        return pd.read_csv(_binary(source), **options), None, []
    except pd.errors.ParserError:
        # Ragged rows: read with the csv module so that each bad row is named by its line.
        return _read_ragged_csv(source)


def _binary(source: Path | bytes):
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _read_ragged_csv(source: Path | bytes):
    import csv

    import pandas as pd

    rows, lines, ragged = [], [], []
    binary = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    with io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = next(reader, None)
        if header is None:
            raise pd.errors.EmptyDataError
        for row in reader:
            if not row:
                continue
            if len(row) == len(header):
                rows.append(row)
                lines.append(reader.line_num)
            else:
                ragged.append((reader.line_num, f"expected {len(header)} fields, saw {len(row)}"))
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    missing = {name: dict.fromkeys(MISSING_TOKENS) for name in frame.columns if name != ID_COLUMN}
    return frame.replace(missing), lines, ragged


def validate_client_rows(raw, *, labelled: bool = True):
    """Split raw rows (indexed by line or record number) into clean rows and problems.

    Returns:
        (frame, problems): the clean rows in the schema's types, and (index, reason) pairs.
    """
    import numpy as np
    import pandas as pd

    problems: dict[int, str] = {}

    def reject(mask, reason_of):
        for index in raw.index[np.asarray(mask)]:
            problems.setdefault(int(index), reason_of(index))

    clean = pd.DataFrame(index=raw.index)
    if ID_COLUMN in raw.columns:
        ids = raw[ID_COLUMN].astype("string").str.strip()
        if labelled:
            reject(ids.isna() | (ids == ""), lambda i: f"{ID_COLUMN} is empty")
        clean[ID_COLUMN] = ids
    for name in FEATURES:
        values = raw[name]
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        given = values.notna()
        reject(
            given & numbers.isna(), lambda i, n=name: f"{n}: {_show(raw.at[i, n])} is not a number"
        )
        reject(np.isinf(numbers), lambda i, n=name: f"{n}: {_show(raw.at[i, n])} is not finite")
        reject(numbers < 0, lambda i, n=name: f"{n}: {_show(raw.at[i, n])} is negative")
        clean[name] = numbers
    if labelled:
        values = raw[TARGET]
        numbers = pd.to_numeric(values, errors="coerce")
        bad = ~numbers.isin([0, 1])
        reject(bad, lambda i: f"{TARGET} must be 0 or 1, got {_show(raw.at[i, TARGET])}")
        clean[TARGET] = numbers.where(~bad, 0).astype(int)
    keep = ~clean.index.isin(list(problems))
    return clean[keep], sorted(problems.items())


def _show(value) -> str:
    """A cell as the user wrote it: quoted text, or a plain number."""
    import pandas as pd

    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return repr(value)
        return value.strip()
    if pd.isna(value):
        return "nothing"
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


# --- command line --------------------------------------------------------------------------------


def configure_logging(verbose: bool = False) -> None:
    """Human-readable, timestamped log lines on stderr."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def build_parser(script: str, description: str | None):
    """An argument parser with the options every step script has.

    Args:
        script: the script's `__file__`, which names it in messages.
        description: the script's docstring; its first line becomes the help text.
    """
    import argparse

    summary = description.strip().splitlines()[0] if description else None
    parser = argparse.ArgumentParser(prog=Path(script).name, description=summary)
    parser.add_argument(
        "--config",
        type=Path,
        default=default_config_path(),
        help="config file; relative paths in it are resolved against its folder"
        f" (default: ${CONFIG_ENV}, else config.json beside the scripts)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    parser.set_defaults(script=Path(parser.prog).stem)
    return parser


def run_cli(args, step) -> int:
    """Load the config, run `step(config)` and print its one-line summary.

    Returns:
        The process exit code: 0, or the failure's own code after one line on stderr.
    """
    configure_logging(args.verbose)
    try:
        config = load_config(args.config)
        result = step(config)
    except PipelineError as error:
        logger.error("%s: %s", args.script, error)
        return error.exit_code
    except OSError as error:
        logger.error("%s: %s", args.script, error)
        return 1
    except KeyboardInterrupt:
        logger.error("%s: interrupted", args.script)
        return 130
    print(result.summary)
    return 0
