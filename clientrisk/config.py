"""The config file, its settings and the names of the artifacts the steps pass through folders.

A cron tick that finds nothing to do imports this module, so it keeps to the cheapest of the
standard library at module level (named tuples, not dataclasses).
"""

from __future__ import annotations

import json
import os
from collections import namedtuple
from pathlib import Path

from clientrisk.errors import ConfigError

# The folder that holds the package: in a checkout, the step scripts and `config.json` beside them.
PROJECT_DIR = Path(__file__).resolve().parent.parent
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
REPORT_FILE = "summary_report.pdf"
HISTORY_FILE = "history.db"
RUN_LOCK_FILE = "fullprocess.lock"
# How fullprocess.py judges the deployed model on new rows: against its own probabilities
# (`calibrated`), or against its past scores (the course's three checks).
HISTORY_CHECKS = ("raw", "parametric", "nonparametric")
DRIFT_CHECKS = ("calibrated", *HISTORY_CHECKS)

REQUIRED_KEYS = (
    "input_folder_path",
    "output_folder_path",
    "test_data_path",
    "output_model_path",
    "prod_deployment_path",
)
# Optional paths and their defaults, relative to the config's folder (None: see load_config).
OPTIONAL_PATHS = {"log_folder_path": "logs", "history_db_path": None, "contacts_folder_path": None}


class Setting(
    namedtuple(
        "Setting",
        "default help choices minimum check maximum kind",
        defaults=((), None, None, None, None),
    )
):
    """An optional config key that is not a path: its default fixes its type, or `kind` does
    when the default is None (unset). Numbers must be above 0 unless a `minimum` (inclusive)
    says otherwise, and at most a `maximum` if given. A text whose default is empty may be left
    empty (the feature it sets up is then off). A `dict` is a JSON object from names to
    non-empty texts. `check`, when given, is a function of the value that returns what is wrong
    with it (or None)."""

    __slots__ = ()


SETTINGS = {
    "timing_repeats": Setting(
        3, "times diagnostics.py --time-on-copy runs ingestion and training to time them"
    ),
    "dependency_timeout_seconds": Setting(5.0, "longest wait for the package index, in all"),
    "package_index_url": Setting(
        "https://pypi.org/pypi", "JSON API asked for latest versions and vulnerabilities"
    ),
    "api_max_request_bytes": Setting(16 * 2**20, "largest request body the API accepts"),
    "api_body_timeout_seconds": Setting(
        30.0,
        "longest a client may take to send a request body (408 after: a slow client holds a"
        " server thread this long at most)",
    ),
    "api_max_reason_rows": Setting(
        100_000,
        "most rows one /prediction explains with reasons (413 above: ask with reasons=false,"
        " or split the rows)",
    ),
    "api_proxy_hops": Setting(
        0,
        "reverse proxies in front of the API whose X-Forwarded-For and X-Forwarded-Proto are"
        " trusted (0: none; the dashboard's cookie is Secure when the request came over HTTPS)",
        minimum=0,
    ),
    "drift_check": Setting(
        "calibrated",
        "how fullprocess.py judges the deployed model on new data",
        choices=DRIFT_CHECKS,
    ),
    "min_batch_rows": Setting(100, "fewest new rows for a drift verdict"),
    "min_comparison_rows": Setting(
        100,
        "fewest held-out newest rows to compare a retrained model on; with fewer, it is compared"
        " out of fold on every newest row, and a store with fewer rows than this retrains on all",
        minimum=1,
    ),
    "retrain_on_data_drift": Setting(False, "retrain when features drift, even if the score holds"),
    "settle_seconds": Setting(
        5.0,
        "an input file is read once it has not changed for this long: a run waits for files"
        " copied in just before it; one still changing this long after the run began (or dated"
        " in the future and not unchanged for this long across runs) is left for the next run",
        minimum=0,
    ),
    "keep_versions": Setting(10, "deployments kept (besides the live one and its predecessor)"),
    "tuning_rows": Setting(
        20_000,
        "above this many rows, training tunes on a stratified sample of this size (fits on all)",
    ),
    "calls_per_week": Setting(
        0,
        "calls the client managers make a week: the first this many of the call list are marked"
        " as this week's calls (0: none marked)",
        minimum=0,
    ),
    "hold_back_share": Setting(
        0.0,
        "share of each call list held back from calls at random (marked 'hold back' in"
        " riskranking.csv; the same clients on every list), so that how the calls did is"
        " measured as an experiment (0: none held back)",
        minimum=0,
        maximum=0.5,
    ),
    "retrain_growth": Setting(
        1.0,
        "retrain once this many times the live model's training rows have arrived since (0: never)",
        minimum=0,
    ),
    "alert_webhook_url": Setting(
        "",
        "where alerts are POSTed as JSON (`text` for Slack or Mattermost, and the event's fields);"
        " empty: no webhook",
        check=lambda value: _url_problem(value),
    ),
    "alert_email_to": Setting(
        "",
        "addresses alerts are e-mailed to, separated by commas; empty: no e-mail",
        check=lambda value: _addresses_problem(value),
    ),
    "alert_email_from": Setting(
        "",
        "the sender of alert e-mails (empty: clientrisk@ this machine's name)",
        check=lambda value: _addresses_problem(value, single=True),
    ),
    "alert_smtp_host": Setting(
        "", "the SMTP server alert e-mails go through (needed with alert_email_to)"
    ),
    "alert_smtp_port": Setting(
        587,
        "its port (STARTTLS is used when the server offers it; 465: TLS from the start)",
        check=lambda value: None if value <= 65535 else "a port from 1 to 65535",
    ),
    "alert_smtp_user": Setting(
        "",
        "the user name for the SMTP login (empty: alert_email_from); the password comes from"
        " the RISK_ALERT_SMTP_PASSWORD environment variable, never from this file",
    ),
    "alert_timeout_seconds": Setting(
        10.0,
        "longest a run spends delivering its alerts, all retries included; a receiver that does"
        " not answer by then is recorded as failed and the run goes on",
    ),
    "alert_no_success_hours": Setting(
        1.0,
        "alert when no run has succeeded for this long (checked by every tick and by /health)",
    ),
    # A database as a second source of client rows (clientrisk/data/dbsource.py).
    "input_database_url": Setting(
        None,
        "a database to read new client rows from, as an SQLAlchemy URL (sqlite:///path or"
        " postgresql+psycopg://user@host/name); its password may be left to"
        " RISK_INPUT_DATABASE_PASSWORD",
        kind=str,
    ),
    "input_table": Setting(None, "the table of the database to read (or input_query)", kind=str),
    "input_query": Setting(
        None, "a SELECT whose rows are read instead of a table (or input_table)", kind=str
    ),
    "input_new_rows_column": Setting(
        None,
        "the column that says which rows are new: an id or a timestamp that only increases",
        kind=str,
    ),
    "input_columns": Setting(
        {},
        "the database's column for each course column whose name differs (a JSON object)",
        kind=dict,
    ),
    "input_query_timeout_seconds": Setting(
        60.0,
        "longest the database may take to connect, and to answer one query or fetch",
    ),
    # The history database on a PostgreSQL server (clientrisk/history/postgres.py).
    "history_db_url": Setting(
        None,
        "the history database on a PostgreSQL server, as postgresql://user@host:port/name"
        " (instead of the history_db_path file); its password may be left to"
        " RISK_HISTORY_DATABASE_PASSWORD",
        kind=str,
    ),
}
# The URL schemes history_db_url takes (as clientrisk/history/postgres.py SCHEMES).
HISTORY_URL_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
# The SMTP password for alert e-mails: read from the environment, never written anywhere.
SMTP_PASSWORD_ENV = "RISK_ALERT_SMTP_PASSWORD"
# Settings whose value an error message never repeats.
SECRET_SETTINGS = ("alert_webhook_url",)


def _url_problem(value: str) -> str | None:
    from urllib.parse import urlsplit

    if not value:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return "an http:// or https:// URL with a valid port"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an http:// or https:// URL with a host name"
    return None


def _addresses_problem(value: str, single: bool = False) -> str | None:
    addresses = [item.strip() for item in value.split(",")] if value else []
    if single and len(addresses) > 1:
        return "one e-mail address"
    for address in addresses:
        name, at, domain = address.rpartition("@")
        if not (name and at and domain) or any(char.isspace() for char in address):
            return f"e-mail addresses such as name@example.com ({address!r} is not one)"
    return None


class Config(
    namedtuple(
        "Config",
        "path input_dir ingested_dir test_data_path model_dir deploy_dir log_dir history_path"
        " settings contacts_dir",
        defaults=(None,),
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
    def identity(self) -> dict:
        """Which configuration this is, as the API names it on /health: the config file's name
        and a fingerprint of where it lies (never the path itself, which /health, open to
        anyone, would give away)."""
        import hashlib

        where = os.path.realpath(self.path).encode("utf-8", "surrogateescape")
        return {"name": self.path.name, "id": hashlib.sha256(where).hexdigest()[:12]}

    @property
    def history_location(self) -> Path | str:
        """What `open_history` opens: the history_db_url if set, else the history_db_path file."""
        return self.settings.get("history_db_url") or self.history_path

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
    if settings["alert_email_to"] and not settings["alert_smtp_host"]:
        raise ConfigError(f"{path}: 'alert_smtp_host' must name an SMTP server for alert_email_to")
    _check_database_settings(path, settings)
    _check_history_url(path, settings, raw)
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
        contacts_dir=folders.get("contacts_folder_path"),
    )


def _check_setting(path: Path, key: str, value):
    """`value` if it suits setting `key`, else ConfigError naming the file, key and expectation."""
    spec = SETTINGS[key]
    kind = spec.kind or type(spec.default)
    if value is None and spec.default is None:
        return None
    if kind is dict:
        return _check_mapping(path, key, value)
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
        if spec.maximum is not None and value > spec.maximum:
            raise ConfigError(f"{path}: '{key}' must be at most {spec.maximum}, not {value!r}")
        return _checked(path, key, kind(value))
    if not isinstance(value, str) or not (value.strip() or spec.default == ""):
        raise ConfigError(f"{path}: '{key}' must be a non-empty text, not {value!r}")
    value = value.strip() if spec.default == "" else value
    return _checked(path, key, value)


def _checked(path: Path, key: str, value):
    """`value`, after the setting's own `check` (ConfigError naming the key if it fails)."""
    problem = SETTINGS[key].check(value) if SETTINGS[key].check else None
    if problem:
        # A chat tool's webhook URL is itself a secret: an error never repeats it.
        shown = "what it is" if key in SECRET_SETTINGS else repr(value)
        raise ConfigError(f"{path}: '{key}' must be {problem}, not {shown}")
    return value


def _check_mapping(path: Path, key: str, value) -> dict:
    if not isinstance(value, dict) or not all(
        isinstance(name, str) and isinstance(text, str) and text.strip()
        for name, text in value.items()
    ):
        raise ConfigError(
            f"{path}: '{key}' must be a JSON object of non-empty texts, not {value!r}"
        )
    return dict(value)


# The names the course gives the client columns (as clientrisk/data/clientcsv.py COLUMNS, which
# this module does not import: a quiet cron tick reads the config).
COURSE_COLUMNS = (
    "corporation",
    "lastmonth_activity",
    "lastyear_activity",
    "number_of_employees",
    "exited",
)
DATABASE_KEYS = ("input_table", "input_query", "input_new_rows_column", "input_columns")


def _check_database_settings(path: Path, settings: dict) -> None:
    """The database source's settings go together: a URL, a table or a query (not both), the
    new-rows column, and column names that are plain identifiers."""
    import re

    if settings["input_database_url"] is None:
        given = [key for key in DATABASE_KEYS if settings[key]]
        if given:
            raise ConfigError(f"{path}: {', '.join(given)} need(s) input_database_url")
        return
    if (settings["input_table"] is None) == (settings["input_query"] is None):
        raise ConfigError(
            f"{path}: input_database_url needs input_table or input_query (exactly one)"
        )
    if settings["input_new_rows_column"] is None:
        raise ConfigError(f"{path}: input_database_url needs input_new_rows_column")
    unknown = sorted(set(settings["input_columns"]) - set(COURSE_COLUMNS))
    if unknown:
        raise ConfigError(
            f"{path}: input_columns: unknown column(s) {', '.join(unknown)} (the course's"
            f" columns: {', '.join(COURSE_COLUMNS)})"
        )
    names = {
        "input_new_rows_column": settings["input_new_rows_column"],
        **{f"input_columns.{key}": value for key, value in settings["input_columns"].items()},
    }
    if settings["input_table"] is not None:
        names["input_table"] = settings["input_table"]
    identifier = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")
    for key, name in names.items():
        if not identifier.fullmatch(name) or ("." in name and key != "input_table"):
            raise ConfigError(
                f"{path}: '{key}' must be a plain name (letters, digits, _), not {name!r}"
            )


def _check_history_url(path: Path, settings: dict, raw: dict) -> None:
    """history_db_url is a PostgreSQL URL that names a database, and excludes
    history_db_path (shown without its password)."""
    url = settings["history_db_url"]
    if url is None:
        return
    from urllib.parse import urlsplit

    if "history_db_path" in raw:
        raise ConfigError(
            f"{path}: history_db_path and history_db_url are both set; keep one (the file, or"
            " the PostgreSQL database)"
        )
    scheme, _, rest = url.partition("://")
    try:
        parts = urlsplit("postgresql://" + rest)
        parts.port  # noqa: B018 (raises for a port that is not a number)
    except ValueError:
        parts = None
    if scheme.lower() not in HISTORY_URL_SCHEMES or parts is None or not parts.path.strip("/"):
        import re

        shown = re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)
        raise ConfigError(
            f"{path}: 'history_db_url' must be postgresql://user@host:port/database, not {shown!r}"
        )


def default_config_path(beside: str | os.PathLike | None = None) -> Path:
    """The config file named by the RISK_CONFIG environment variable, else `config.json` in the
    folder of the file `beside` (a step script), else beside the package."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if beside is None:
        return DEFAULT_CONFIG_PATH
    return Path(beside).resolve().parent / "config.json"
