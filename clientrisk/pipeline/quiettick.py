"""The quiet cron tick, decided with the smallest parts of the standard library.

Most cron ticks find nothing new. The full decision (`fullprocess.decide`) reads the config, the
input folder, the history database and the live deployment; the modules that takes (json,
logging, pathlib, sqlite3) cost three times the start of Python itself. So when a full run
decides that nothing is new and no file is waiting, it leaves a stamp beside the config file
(`.config.json.quiet`): where everything is, what the config file, the input folder, the live
link and the report looked like, the history's change counter (`History.generation`) and the id
of the run row it recorded.

A quiet repeat is a run that did its work. When the last one ended longer ago than
`alert_no_success_hours` (cron stopped, then started again), the tick takes the full path,
which raises the alert.

The next tick without options, holding the run lock, compares: if every file looks the same and
the history has recorded nothing since but that run, the tick is that run again. It is recorded
as one more repeat of it (in the history database and as a line of `fullprocess.jsonl`), as the
full path would, and the process stops. Anything different, missing or unreadable: the full
decision runs, and decides again.

With a database source, the stamp also says how to ask the database for its newest new-rows
value (never the password: whether it comes from the config or the environment), and what the
full decision got. The tick asks that one small query with the standard library (sqlite3, or
pgwire.py for PostgreSQL; psycopg only for connection settings pgwire does not speak; never
SQLAlchemy), and a different answer, or none, means the full decision runs.

With the history on a PostgreSQL server (`history_db_url`), the stamp names it by its URL
without the password, and the tick records the repeat there in one batch of statements over
pgwire.py (psycopg only for connection settings pgwire does not speak): under the history's
write lock (the advisory lock of clientrisk/history/postgres.py), an UPDATE of the quiet run's
row that holds only if nothing but that run was recorded since. Its password comes from the
config file or the environment, as the full path takes it.
"""

from __future__ import annotations

import os
import sys
import time

STAMP_FORMAT = "quiet tick stamp 2"
CONFIG_ENV = "RISK_CONFIG"  # as in config.py
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # as timestamps.utc_now
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S %z"  # as cli.LOG_TIME_FORMAT
# Stamp lines that say where things are, and those that say what they looked like.
# `overdue`: alert_no_success_hours, in seconds.
PLACES = ("config", "input", "report", "live", "history", "lock", "runlog", "maxlog", "overdue")
# How to ask the database source (all empty without one); see dbsource.quiet_probe.
DATABASE_STATES = (
    "db_backend",
    "db_connect",
    "db_sql",
    "db_newest",
    "db_timeout",
    "db_password",
)
STATES = ("generation", "run", "outcome", "reason", "config_shown", *DATABASE_STATES)
# Stamp values that may hold tabs or new lines (a query over several lines), kept escaped.
ESCAPED = ("db_connect", "db_sql", "db_newest")
PASSWORD_ENV = "RISK_INPUT_DATABASE_PASSWORD"  # as in dbsource.py
NUMBERS = ("maxlog", "overdue", "generation", "run")
# The history on a server (as in clientrisk/history/postgres.py).
HISTORY_PASSWORD_ENV = "RISK_HISTORY_DATABASE_PASSWORD"
HISTORY_WRITE_LOCK_KEY = 0x7269736B68697374
HISTORY_BUSY_MILLISECONDS = 30_000


def config_path(script: str) -> str:
    """The config file a run of `script` without options reads (as config.default_config_path)."""
    beside = os.path.join(os.path.dirname(os.path.abspath(script)), "config.json")
    return os.path.abspath(os.environ.get(CONFIG_ENV) or beside)


def stamp_path(config: str) -> str:
    folder, name = os.path.split(config)
    return os.path.join(folder, f".{name}.quiet")


def _file_state(path: str) -> str:
    try:
        status = os.stat(path)
    except OSError:
        return "missing"
    return f"{status.st_size} {status.st_mtime_ns}"


def _link_state(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "missing"


def looks(places: dict) -> list[str]:
    """What the files a quiet decision rests on look like, one line each."""
    lines = [
        f"~config\t{_file_state(places['config'])}",
        f"~report\t{_file_state(places['report'])}",
        f"~live\t{_link_state(places['live'])}",
    ]
    try:
        entries = sorted(os.scandir(places["input"]), key=lambda entry: entry.name)
    except OSError:
        return [*lines, "~input\tunreadable"]
    for entry in entries:
        try:
            status = entry.stat()
        except OSError:
            lines.append(f"~entry\t{entry.name}\tunreadable")
            continue
        lines.append(f"~entry\t{entry.name}\t{status.st_size} {status.st_mtime_ns}")
    return lines


def write_stamp(config: str, places: dict, states: dict) -> None:
    """Leave the stamp of a quiet decision (atomically; a stamp that cannot be written only
    means the next tick decides in full)."""
    values = {**places, **states}
    values.update({key: _escape(str(values[key])) for key in ESCAPED if key in values})
    if any("\n" in str(value) or "\t" in str(value) for value in values.values()):
        return
    text = "\n".join(
        [STAMP_FORMAT, *(f"{key}\t{values[key]}" for key in PLACES + STATES), *looks(places)]
    )
    path = stamp_path(config)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        # File names that are not UTF-8 reach Python as surrogates: kept as their own bytes.
        with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text + "\n")
        os.replace(temporary, path)
    except OSError:
        import contextlib

        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _read_stamp(config: str) -> tuple[dict, list[str]] | None:
    try:
        with open(stamp_path(config), encoding="utf-8", errors="surrogateescape") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    if not lines or lines[0] != STAMP_FORMAT:
        return None
    values, seen = {}, []
    for line in lines[1:]:
        if line.startswith("~"):
            seen.append(line)
        else:
            key, _, value = line.partition("\t")
            values[key] = value
    if any(key not in values for key in PLACES + STATES) or values["config"] != config:
        return None
    try:
        values.update({key: int(values[key]) for key in NUMBERS})
    except ValueError:
        return None
    values.update({key: _unescape(values[key]) for key in ESCAPED})
    return values, seen


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _unescape(text: str) -> str:
    out, chars = [], iter(text)
    for char in chars:
        if char == "\\":
            following = next(chars, "")
            out.append({"t": "\t", "n": "\n", "r": "\r"}.get(following, following))
        else:
            out.append(char)
    return "".join(out)


def run(argv: list[str], config: str) -> int | None:
    """Record this tick as a repeat of the last quiet run and return 0, when nothing has changed
    since it; None when the full decision has to run (or cannot be skipped safely).

    Args:
        argv: the command line's options (any option means a full run).
        config: the config file a run without options reads (`config_path`).
    """
    if argv:
        return None
    started = time.monotonic()
    stamp = _read_stamp(config)
    if stamp is None:
        return None
    values, seen = stamp
    import fcntl

    try:
        lock = os.open(values["lock"], os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # a run is going on: the full path records this one as busy
        if looks(values) != seen:
            return None
        try:
            if os.path.getsize(values["runlog"]) > values["maxlog"]:
                return None  # the full path rotates the run log
        except OSError:
            return None
        if values["db_backend"] and _newest_in_database(values) != values["db_newest"]:
            return None
        return _record_repeat(values, started)
    finally:
        os.close(lock)


def _newest_in_database(values: dict) -> str | None:
    """The repr of the database source's newest new-rows value now, asked with the driver
    itself; None when it cannot be asked (the full decision then says why)."""
    try:
        timeout = float(values["db_timeout"])
        if values["db_backend"] == "sqlite":
            import sqlite3
            from urllib.parse import quote

            where = f"file:{quote(values['db_connect'])}?mode=ro"
            db = sqlite3.connect(where, uri=True, timeout=timeout)
            try:
                return repr(db.execute(values["db_sql"]).fetchone()[0])
            finally:
                db.close()
        if values["db_backend"] == "postgresql":
            import json

            from clientrisk.pipeline import pgwire

            params = json.loads(values["db_connect"])
            password = _database_password(values)
            return repr(pgwire.first_cell(params, password, values["db_sql"], timeout))
        if values["db_backend"] != "psycopg":
            return None
        import psycopg

        extra = {"connect_timeout": max(1, round(timeout))}
        extra["options"] = f"-c statement_timeout={round(timeout * 1000)}"
        password = _database_password(values)
        if password:
            extra["password"] = password
        with psycopg.connect(values["db_connect"], **extra) as db:
            return repr(db.execute(values["db_sql"]).fetchone()[0])
    except Exception:  # any failure: the full decision runs and names it
        return None


def _database_password(values: dict) -> str | None:
    if values["db_password"] == "env":
        return os.environ.get(PASSWORD_ENV)
    if values["db_password"] != "config":
        return None
    import json
    from urllib.parse import unquote, urlsplit

    with open(values["config"], encoding="utf-8") as handle:
        password = urlsplit(json.load(handle)["input_database_url"]).password
    return None if password is None else unquote(password)


def _open_history(values: dict):
    """(connection, placeholder, statements that begin a write, errors) of the history the
    stamp names, or None when there is none to open."""
    where = values["history"]
    if where.startswith("postgresql://"):
        import psycopg

        password = _history_password(values)
        db = psycopg.connect(
            where,
            autocommit=True,
            connect_timeout=10,
            options=f"-c lock_timeout={HISTORY_BUSY_MILLISECONDS}",
            **({"password": password} if password else {}),
        )
        begin = ("BEGIN", f"SELECT pg_advisory_xact_lock({HISTORY_WRITE_LOCK_KEY})")
        return db, "%s", begin, psycopg.Error
    import sqlite3

    if not os.path.exists(where):
        return None
    db = sqlite3.connect(where, timeout=30, isolation_level=None)
    db.execute("PRAGMA synchronous = NORMAL")
    return db, "?", ("BEGIN IMMEDIATE",), sqlite3.Error


def _wire_params(url: str) -> dict | None:
    """What pgwire.py needs to reach the history server at `url`, or None for a URL with
    settings it does not speak (then psycopg is used)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if set(query) - {"sslmode", "host"} or query.get("sslmode", "prefer") not in (
        "disable",
        "allow",
        "prefer",
        "require",
    ):
        return None
    return {
        "host": query.get("host") or parts.hostname,
        "port": parts.port,
        "dbname": unquote(parts.path.lstrip("/")),
        "user": unquote(parts.username or ""),
        "sslmode": query.get("sslmode"),
    }


def _escaped(text: str) -> str:
    """`text` as an SQL string literal that reads the same whatever the server's settings."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _repeat_on_server(values: dict, params: dict, started_at: str, record: str, overdue: str):
    """Add the repeat to the quiet run's row on the history server, in one batch over
    pgwire.py: True if recorded, False if something else was recorded since (or the row is
    overdue), None if the server could not be asked."""
    from clientrisk.pipeline import pgwire

    sql = (
        "BEGIN;"
        f" DO $$BEGIN PERFORM pg_advisory_xact_lock({HISTORY_WRITE_LOCK_KEY}); END$$;"
        " UPDATE runs SET repeats = repeats + 1,"
        f" last_finished_at = {_escaped(started_at)}, record = {_escaped(record)}"
        f" WHERE id = {int(values['run'])} AND outcome = {_escaped(values['outcome'])}"
        f" AND reason = {_escaped(values['reason'])} AND id = (SELECT max(id) FROM runs)"
        f" AND (SELECT generation FROM changes) = {int(values['generation'])}"
        f" AND coalesce(last_finished_at, '') >= {_escaped(overdue)} RETURNING id;"
        " COMMIT"
    )
    try:
        answer = pgwire.first_cell(
            params, _history_password(values), sql, HISTORY_BUSY_MILLISECONDS / 1000
        )
    except Exception:  # not asked, refused or cut off: the full decision runs and says why
        return None
    return answer is not None


def _history_password(values: dict) -> str | None:
    """The history server's password: the config's history_db_url's, else the environment's."""
    import json
    from urllib.parse import unquote, urlsplit

    with open(values["config"], encoding="utf-8") as handle:
        url = json.load(handle)["history_db_url"]
    password = urlsplit("postgresql://" + url.split("://", 1)[1]).password
    if password is not None:
        return unquote(password)
    return os.environ.get(HISTORY_PASSWORD_ENV) or None


def _record_repeat(values: dict, started: float) -> int | None:
    now = time.gmtime()
    started_at = time.strftime(TIME_FORMAT, now)
    seconds = round(time.monotonic() - started, 3)
    record = (
        f'{{"started_at": "{started_at}", "steps": {{}},'
        f' "outcome": {_json_string(values["outcome"])},'
        f' "reason": {_json_string(values["reason"])}, "finished_at": "{started_at}",'
        f' "seconds": {seconds}'
    )
    run_id = values["run"]
    # Times as the pipeline writes them sort as text: no parsing needed.
    overdue = time.strftime(TIME_FORMAT, time.gmtime(time.time() - values["overdue"]))
    params = values["history"].startswith("postgresql://") and _wire_params(values["history"])
    if params:
        if not _repeat_on_server(values, params, started_at, record + "}", overdue):
            return None
        return _log_repeat(values, record, run_id)
    try:
        opened = _open_history(values)
    except Exception:  # any failure to open: the full decision runs and names it
        return None
    if opened is None:
        return None
    db, mark, begin, errors = opened
    try:
        for statement in begin:
            db.execute(statement)
        generation = db.execute("SELECT generation FROM changes").fetchone()[0]
        last = db.execute(
            "SELECT id, outcome, reason, last_finished_at FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if (
            last is None
            or (generation, last[:3])
            != (values["generation"], (run_id, values["outcome"], values["reason"]))
            or (last[3] or "") < overdue
        ):
            db.rollback()
            return None
        update = (
            "UPDATE runs SET repeats = repeats + 1, last_finished_at = ?, record = ? WHERE id = ?"
        )
        db.execute(
            update.replace("?", mark),
            (started_at, record + "}", run_id),
        )
        db.commit()
    except errors:
        return None
    finally:
        db.close()
    return _log_repeat(values, record, run_id)


def _log_repeat(values: dict, record: str, run_id: int) -> int:
    """The repeat's line in the run log, and on stderr: 0, or 1 if the log cannot be written."""
    config = _json_string(values["config_shown"])
    line = f'{{"config": {config}, {record[1:]}, "run_id": {run_id}}}\n'
    try:
        handle = os.open(values["runlog"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(handle, line.encode())
        finally:
            os.close(handle)
    except OSError as error:
        _log("ERROR", f"fullprocess: cannot add to {values['runlog']}: {error.strerror}")
        return 1
    _log("INFO", f"{values['outcome']}: {values['reason']}")
    return 0


def _json_string(text: str) -> str:
    """`text` as a JSON string, as json.dumps writes it (ASCII only), without importing json
    (which imports re)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    out.append('"')
    return "".join(out)


def _log(level: str, message: str) -> None:
    sys.stderr.write(f"{time.strftime(LOG_TIME_FORMAT)} {level} {message}\n")
