"""What every step shares: the config, atomic writes, locks, leftovers and the command line.

A cron tick that finds nothing to do imports this module and `modelstore`, so both keep to the
cheapest of the standard library at module level (named tuples, not dataclasses); functions that
need pandas, or slower standard modules, import them when called.
"""

from __future__ import annotations

import fcntl
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
HISTORY_FILE = "history.db"
RUN_LOCK_FILE = "fullprocess.lock"
# Every time the pipeline writes: UTC, to the second.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SCORE_CHECKS = ("raw", "parametric", "nonparametric")
# Temporary files and folders carry the writer's process id after this marker, so that a later
# run can tell the leftovers of a killed process from the work of a living one.
TEMP_MARKER = ".tmp-"

REQUIRED_KEYS = (
    "input_folder_path",
    "output_folder_path",
    "test_data_path",
    "output_model_path",
    "prod_deployment_path",
)
# Optional paths and their defaults, relative to the config's folder (None: see load_config).
OPTIONAL_PATHS = {"log_folder_path": "logs", "history_db_path": None}


class Setting(namedtuple("Setting", "default help choices minimum", defaults=((), None))):
    """An optional config key that is not a path: its default fixes its type. Numbers must be
    above 0 unless a `minimum` (inclusive) says otherwise."""

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
    "settle_seconds": Setting(
        5.0, "input files changed more recently than this are left for the next run", minimum=0
    ),
    "keep_versions": Setting(10, "deployments kept (besides the live one and its predecessor)"),
}


class PipelineError(Exception):
    """A failure the user can act on: reported as one line, never as a traceback."""

    exit_code = 1


class ConfigError(PipelineError):
    """The config file is missing, unreadable or wrong."""

    exit_code = 2


class DataError(PipelineError):
    """Input data that cannot be used."""


class Stopped(BaseException):
    """The process was asked to stop (SIGTERM or SIGINT): unwinds every step, like Ctrl-C."""

    def __init__(self, signal_name: str, exit_code: int):
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = exit_code


# --- configuration -------------------------------------------------------------------------------


class Config(
    namedtuple(
        "Config",
        "path input_dir ingested_dir test_data_path model_dir deploy_dir log_dir history_path"
        " settings",
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

    @property
    def run_lock_file(self) -> Path:
        """Held by a fullprocess.py run from start to end."""
        return self.log_dir / RUN_LOCK_FILE


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
    path_keys = (*REQUIRED_KEYS, *OPTIONAL_PATHS)
    unknown = sorted(set(raw) - set(path_keys) - set(SETTINGS))
    if unknown:
        known = ", ".join([*path_keys, *SETTINGS])
        raise ConfigError(f"{path}: unknown key(s): {', '.join(unknown)} (known keys: {known})")
    values = {**{k: v for k, v in OPTIONAL_PATHS.items() if v is not None}, **raw}
    for key in path_keys:
        if key in values and (not isinstance(values[key], str) or not values[key].strip()):
            kind = "file" if key == "history_db_path" else "folder"
            raise ConfigError(f"{path}: '{key}' must be a non-empty {kind} path")
    base = path.parent
    folders = {key: (base / values[key]).resolve() for key in path_keys if key in values}
    if not folders["input_folder_path"].is_dir():
        raise ConfigError(
            f"{path}: input_folder_path '{folders['input_folder_path']}' is not an existing folder"
        )
    history = folders.get("history_db_path", folders["output_folder_path"] / HISTORY_FILE)
    if history.is_dir():
        raise ConfigError(f"{path}: history_db_path '{history}' is a folder, not a file")
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
        history_path=history,
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
        if spec.minimum is None and value <= 0:
            raise ConfigError(f"{path}: '{key}' must be greater than 0, not {value!r}")
        if spec.minimum is not None and value < spec.minimum:
            raise ConfigError(f"{path}: '{key}' must be at least {spec.minimum}, not {value!r}")
        return kind(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: '{key}' must be a non-empty text, not {value!r}")
    return value


def default_config_path() -> Path:
    """The config file named by the RISK_CONFIG environment variable, else `config.json`."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


# --- files ---------------------------------------------------------------------------------------


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


@contextmanager
def staging_folder(path: Path):
    """Make the folder `path` (a `temp_name`) for the block to fill and rename; if the block
    fails, remove it. One left by an earlier failure of this same process is removed first."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
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


# Text a spreadsheet would run as a formula starts with one of these.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text):
    """Text that a spreadsheet shows as text: a leading formula character gets a `'` before it."""
    if isinstance(text, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def write_csv(frame, path: str | os.PathLike) -> None:
    """Write a DataFrame as CSV atomically, for people to open: whole-number float columns
    without a trailing `.0`, and text that a spreadsheet would run as a formula neutralised.

    Written by pyarrow (tens of times faster than pandas) unless a text cell needs quoting.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    table = pa.Table.from_pandas(frame, preserve_index=False)
    columns, plain = [], True
    for column in table.columns:
        if pa.types.is_floating(column.type):
            column = _whole_numbers_as_integers(column)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            risky = pc.fill_null(pc.starts_with(column, FORMULA_STARTS[0]), False)
            for start in FORMULA_STARTS[1:]:
                risky = pc.or_(risky, pc.fill_null(pc.starts_with(column, start), False))
            quote, nothing = pa.scalar("'", column.type), pa.scalar("", column.type)
            column = pc.if_else(risky, pc.binary_join_element_wise(quote, column, nothing), column)
            plain = plain and not pc.any(pc.match_substring_regex(column, '[,"\r\n]')).as_py()
        columns.append(column)
    table = pa.table(columns, names=table.column_names)
    with atomic_path(path) as tmp_path:
        if plain and all(name.isidentifier() for name in table.column_names):
            with open(tmp_path, "wb") as handle:
                handle.write((",".join(table.column_names) + "\n").encode())
                options = pacsv.WriteOptions(include_header=False, quoting_style="none")
                pacsv.write_csv(table, handle, options)
        else:
            integers = lambda kind: pd.Int64Dtype() if pa.types.is_integer(kind) else None  # noqa: E731
            out = table.to_pandas(types_mapper=integers)
            out.to_csv(tmp_path, index=False, lineterminator="\n")


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


# --- the model's features ------------------------------------------------------------------------


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


# --- command line --------------------------------------------------------------------------------

# Loggers of libraries that chatter at debug level about their own workings.
NOISY_LOGGERS = ("matplotlib", "PIL", "urllib3", "fontTools")


def configure_logging(verbose: bool = False) -> None:
    """Human-readable, timestamped log lines on stderr; `verbose` adds this project's debug
    lines, never the libraries' own."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def stop_on_signals():
    """Turn SIGTERM and SIGINT into `Stopped`, so that a stopped step unwinds (temporary files
    removed, one line said) instead of dying mid-write or printing a traceback."""
    import signal

    def stop(number, frame):
        name = signal.Signals(number).name
        raise Stopped(name, 128 + number)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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
        with stop_on_signals():
            config = load_config(args.config)
            logger.debug("%s: config %s", args.script, config.path)
            result = step(config)
    except PipelineError as error:
        logger.error("%s: %s", args.script, error)
        return error.exit_code
    except OSError as error:
        logger.error("%s: %s", args.script, error)
        return 1
    except Stopped as stopped:
        logger.error(
            "%s: stopped by %s; nothing half-written was kept", args.script, stopped.signal_name
        )
        return stopped.exit_code
    print(result.summary)
    return 0
