"""The history database: what the system ingested, ran, scored, judged, deployed and ranked.

One SQLite file (`history_db_path`, by default `history.db` in the ingested-data folder), opened
per use in WAL mode, so the API and a running pipeline read it while a step writes; or a
PostgreSQL database (`history_db_url`), which API processes on other hosts read as well. Every
change is one transaction: a process killed at any moment leaves the database as it was before
the change or after it, never in between. The schema has a version (`schema_version`) and one
migration function per version; opening a database migrates it.

Callers use the methods of `History`, named for what they ask; no SQL leaves this module. The
SQL is SQLite's; on PostgreSQL, `postgres.ServerConnection` takes the same statements (`?`
placeholders, INSERT OR REPLACE, BEGIN IMMEDIATE, rowid: see there), so a method is written
once for both. The deployment folder, not this database, says what is live: deployments are
mirrored here for the record.
"""

from __future__ import annotations

import json
import sqlite3
from collections import namedtuple
from contextlib import contextmanager
from pathlib import Path

from clientrisk.errors import PipelineError
from clientrisk.history import postgres
from clientrisk.timestamps import utc_now

BUSY_TIMEOUT_SECONDS = 30
# Outcome of a run that has started and not finished (yet, or ever: killed).
RUNNING = "running"
# The fact noted once an older project's files were taken over (see clientrisk/data/takeover.py).
TAKEN_OVER = "taken_over"
# Outcomes of runs that did nothing: consecutive ones with the same reason share one row.
QUIET_OUTCOMES = ("no new data", "busy")


# What a score records, in the order `scores()` gives it.
SCORE_FIELDS = (
    "scored_at",
    "model_sha256",
    "context",
    "dataset",
    "rows",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "run",
    "verdict",
)


class HistoryError(PipelineError):
    """The history database cannot be opened or is not one of ours."""


class HistoryBusy(HistoryError):
    """Another process holds a write transaction on the history database for longer than a run
    waits: the run gives up, to be retried (EX_TEMPFAIL)."""

    exit_code = 75


def _history_error(path: Path, error: sqlite3.Error, what: str = "") -> HistoryError:
    text = str(error)
    if "locked" in text or "busy" in text:
        return HistoryBusy(
            f"{path}: another process has held a write lock on the history database for"
            f" {BUSY_TIMEOUT_SECONDS} s; giving up, to be retried by the next run"
        )
    return HistoryError(f"{path}: {what}{text}")


class Batch(
    namedtuple(
        "Batch",
        "seq source sha256 arrived_at folder labelled_rows current_rows rejected_rows"
        " judged_at judged_by_run judgement",
    )
):
    """One ingested batch: an accepted input file, in arrival order."""

    __slots__ = ()


class InputFile(
    namedtuple(
        "InputFile",
        "name sha256 status batch rows_accepted rows_rejected seen_at note",
    )
):
    """An input file ingestion read, and what became of it (ingested, duplicate, rejected)."""

    __slots__ = ()


# Outcomes of runs that did not do their work.
FAILED_OUTCOMES = ("failed", "interrupted")
# What a run that did its work is not: failed, stopped, never started or still going.
NOT_SUCCESSES = (*FAILED_OUTCOMES, "busy", RUNNING)


class Alert(
    namedtuple("Alert", "key raised_at run subject text receivers delivered failures finished_at")
):
    """An alert raised for one event (`key`): the receivers it was for, those that took it,
    and why the others did not (a dict); `finished_at` is None while it is being delivered (or
    forever, when the process was killed meanwhile)."""

    __slots__ = ()


class Run(
    namedtuple(
        "Run",
        "id started_at finished_at last_finished_at repeats outcome reason seconds pid record",
    )
):
    """A run of fullprocess.py; `record` is its full record (a dict)."""

    __slots__ = ()


# --- schema --------------------------------------------------------------------------------------


SCHEMA_FILE = Path(__file__).with_name("schema.sql")


def _migrate_to_1(db: sqlite3.Connection) -> None:
    """The first schema, from `schema.sql`."""
    _execute_script(db, SCHEMA_FILE.read_text(encoding="utf-8"))
    db.execute("INSERT INTO facts (key, value) VALUES ('created_at', ?)", (utc_now(),))


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    """Run SQL statements one by one, inside the caller's transaction (unlike `executescript`,
    which commits first, so a migration killed half-way would leave half a schema)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_to_2(db: sqlite3.Connection) -> None:
    """Scores of new data keep the verdict on them: the history checks' baseline leaves out
    the scores of batches judged as drifted (which would otherwise lower it for good)."""
    db.execute("ALTER TABLE scores ADD COLUMN verdict TEXT")


# Tables whose every change counts as a change of what the system knows (see `generation`): all
# but the record of runs, and the entries of rankings (which change only with their ranking).
COUNTED_TABLES = (
    "batches",
    "input_files",
    "scores",
    "drift_checks",
    "deployments",
    "challengers",
    "reports",
    "rankings",
    "facts",
)


def _migrate_to_3(db: sqlite3.Connection) -> None:
    """A counter of changes, kept by triggers, so that a quiet cron tick can tell with one query
    that nothing but runs has been recorded since it last looked (see quiettick.py)."""
    db.execute("CREATE TABLE changes (generation INTEGER NOT NULL)")
    db.execute("INSERT INTO changes (generation) VALUES (0)")
    if isinstance(db, postgres.ServerConnection):
        db.count_changes(COUNTED_TABLES)
        return
    for table in COUNTED_TABLES:
        for action in ("INSERT", "UPDATE", "DELETE"):
            db.execute(
                f"CREATE TRIGGER count_{action.lower()}_{table} AFTER {action} ON {table}"
                " BEGIN UPDATE changes SET generation = generation + 1; END"
            )


def _migrate_to_4(db: sqlite3.Connection) -> None:
    """A ranking keeps the share of its clients held back from calls (the control group), so
    that how its calls did is judged with the share it was made with."""
    db.execute("ALTER TABLE rankings ADD COLUMN hold_back_share REAL NOT NULL DEFAULT 0")


def _migrate_to_5(db: sqlite3.Connection) -> None:
    """Alerts: one row per event (its key), with what each receiver made of it. Events already
    recorded before alerts existed are not alerted: the newest ids of what alerts watch are
    noted (`ALERTS_FROM`), and only later ones count."""
    db.execute(
        "CREATE TABLE alerts (key TEXT PRIMARY KEY, raised_at TEXT NOT NULL, run INTEGER,"
        " subject TEXT NOT NULL, text TEXT NOT NULL, receivers TEXT NOT NULL DEFAULT '',"
        " delivered TEXT NOT NULL DEFAULT '', failures TEXT NOT NULL DEFAULT '{}',"
        " finished_at TEXT)"
    )
    start = {
        "drift_check": db.execute("SELECT coalesce(max(id), 0) FROM drift_checks").fetchone()[0],
        "deployment": db.execute("SELECT coalesce(max(id), 0) FROM deployments").fetchone()[0],
        "challenger": db.execute("SELECT coalesce(max(rowid), 0) FROM challengers").fetchone()[0],
        "ranking": db.execute("SELECT coalesce(max(id), 0) FROM rankings").fetchone()[0],
        "run": db.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0],
    }
    db.execute("INSERT INTO facts (key, value) VALUES (?, ?)", (ALERTS_FROM, json.dumps(start)))


# The fact that says from which ids on events are alerted (see _migrate_to_5).
ALERTS_FROM = "alerts_from"
MIGRATIONS = (_migrate_to_1, _migrate_to_2, _migrate_to_3, _migrate_to_4, _migrate_to_5)
SCHEMA_VERSION = len(MIGRATIONS)
# Full rankings kept (their summaries are kept for ever): enough to say what changed.
KEEP_RANKINGS = 20


def _schema_version(db: sqlite3.Connection) -> int:
    if isinstance(db, postgres.ServerConnection):
        exists = db.table_exists("schema_version")
    else:
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
    if not exists:
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return row[0] if row else 0


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION, one migration (and one transaction) at a time."""
    version = _schema_version(db)
    if version > SCHEMA_VERSION:
        raise HistoryError(
            f"{path}: schema version {version} is newer than this code knows"
            f" ({SCHEMA_VERSION}); update the code"
        )
    while version < SCHEMA_VERSION:
        with _transaction(db):
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = _schema_version(db)
            if version >= SCHEMA_VERSION:
                break
            MIGRATIONS[version](db)
            version += 1
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))


@contextmanager
def _transaction(db: sqlite3.Connection):
    """One write transaction, taken at once so that it never has to wait half-way.

    Raises:
        HistoryBusy: another process held its write lock for longer than BUSY_TIMEOUT_SECONDS.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as error:
        raise _history_error(_db_path(db), error) from None
    try:
        yield db
        db.commit()
    except sqlite3.OperationalError as error:
        db.rollback()
        if "full" in str(error) or "disk I/O" in str(error):  # named, as any failed write
            raise _history_error(_db_path(db), error, "cannot write: ") from None
        raise
    except BaseException:
        db.rollback()
        raise


def _db_path(db: sqlite3.Connection) -> Path | str:
    if isinstance(db, postgres.ServerConnection):
        return db.where
    return Path(db.execute("PRAGMA database_list").fetchone()[2])


# --- the database --------------------------------------------------------------------------------


class History:
    """An open history database; use `open_history` to get one."""

    def __init__(self, db: sqlite3.Connection | postgres.ServerConnection, path: Path | str):
        self.db = db
        self.path = path  # the file, or the server's URL without its password

    def transaction(self):
        """A write transaction spanning several calls: all of them happen, or none."""
        return _transaction(self.db)

    @contextmanager
    def _writing(self):
        if self.db.in_transaction:
            yield self.db
        else:
            with _transaction(self.db):
                yield self.db

    def _rows(self, sql: str, parameters=()) -> list[sqlite3.Row]:
        return self.db.execute(sql, parameters).fetchall()

    # --- batches and input files

    def batches(self) -> list[Batch]:
        """Every ingested batch, in arrival order."""
        return [
            Batch(*row) for row in self._rows(f"SELECT {_fields(Batch)} FROM batches ORDER BY seq")
        ]

    def last_batch_seq(self) -> int:
        return self.db.execute("SELECT coalesce(max(seq), 0) FROM batches").fetchone()[0]

    def add_batch(self, batch: Batch) -> None:
        with self._writing() as db:
            db.execute(f"INSERT INTO batches ({_fields(Batch)}) VALUES ({_marks(Batch)})", batch)

    def input_files(self) -> list[InputFile]:
        """Every input file ingestion read, in the order it was first seen."""
        return [
            InputFile(*row)
            for row in self._rows(
                f"SELECT {_fields(InputFile)} FROM input_files ORDER BY seen_at, rowid"
            )
        ]

    def known_files(self) -> set[tuple[str, str]]:
        """(name, SHA-256) of every input file already read, whatever became of it."""
        return {(name, sha) for name, sha in self._rows("SELECT name, sha256 FROM input_files")}

    def record_input_file(self, entry: InputFile) -> None:
        with self._writing() as db:
            db.execute(
                f"INSERT OR REPLACE INTO input_files ({_fields(InputFile)})"
                f" VALUES ({_marks(InputFile)})",
                entry,
            )

    def pending_batches(self, after_seq: int) -> list[Batch]:
        """Batches not judged yet that arrived after `after_seq` (what the live model saw)."""
        rows = self._rows(
            f"SELECT {_fields(Batch)} FROM batches WHERE judgement IS NULL AND seq > ?"
            " ORDER BY seq",
            (after_seq,),
        )
        return [Batch(*row) for row in rows]

    def judge_batches(self, seqs, run: int | None, judgement: str) -> None:
        """Record the verdict on batches, so that no later run judges them again."""
        with self._writing() as db:
            db.executemany(
                "UPDATE batches SET judged_at = ?, judged_by_run = ?, judgement = ? WHERE seq = ?",
                [(utc_now(), run, judgement, seq) for seq in seqs],
            )

    # --- runs

    def start_run(self, pid: int, started_at: str, config: str) -> int:
        """Record that a run has started; until it finishes, its outcome is `running`."""
        with self._writing() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, outcome, pid, record) VALUES (?, ?, ?, ?)",
                (started_at, RUNNING, pid, json.dumps({"config": config})),
            )
            return cursor.lastrowid

    def finish_run(self, run_id: int | None, record: dict) -> int:
        """Store a run's record: update its `running` row, or add one (a run that never started
        one, such as a quiet tick). Consecutive quiet runs with the same reason share a row.

        Returns:
            The run's id.
        """
        text = json.dumps(record, default=str)
        outcome, reason = record["outcome"], record.get("reason", "")
        with self._writing() as db:
            if run_id is None and outcome in QUIET_OUTCOMES:
                last = db.execute(
                    "SELECT id, outcome, reason FROM runs ORDER BY id DESC LIMIT 1"
                ).fetchone()
                if last and (last[1], last[2]) == (outcome, reason):
                    db.execute(
                        "UPDATE runs SET repeats = repeats + 1, last_finished_at = ?,"
                        " record = ? WHERE id = ?",
                        (record["finished_at"], text, last[0]),
                    )
                    return last[0]
            if run_id is None:
                run_id = db.execute(
                    "INSERT INTO runs (started_at, outcome) VALUES (?, ?)",
                    (record["started_at"], RUNNING),
                ).lastrowid
            db.execute(
                "UPDATE runs SET finished_at = ?, last_finished_at = ?, outcome = ?, reason = ?,"
                " seconds = ?, record = ? WHERE id = ?",
                (
                    record["finished_at"],
                    record["finished_at"],
                    outcome,
                    reason,
                    record.get("seconds"),
                    text,
                    run_id,
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO step_timings (run, step, seconds) VALUES (?, ?, ?)",
                [(run_id, step, seconds) for step, seconds in record.get("steps", {}).items()],
            )
            return run_id

    def unfinished_runs(self, other_than: int | None = None) -> list[Run]:
        """Runs still marked `running`: killed, when the caller holds the run lock."""
        rows = self._rows(
            f"SELECT {_fields(Run)} FROM runs WHERE outcome = ? AND id IS DISTINCT FROM ?"
            " ORDER BY id",
            (RUNNING, other_than),
        )
        return [_run(row) for row in rows]

    def mark_interrupted(self, run: Run, reason: str) -> None:
        record = {**run.record, "outcome": "interrupted", "reason": reason}
        with self._writing() as db:
            db.execute(
                "UPDATE runs SET outcome = 'interrupted', reason = ?, record = ? WHERE id = ?",
                (reason, json.dumps(record, default=str), run.id),
            )

    def latest_runs(self, limit: int = 20) -> list[Run]:
        """The newest runs first."""
        rows = self._rows(f"SELECT {_fields(Run)} FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_run(row) for row in rows]

    def step_seconds(self, step: str, limit: int = 5) -> list[float]:
        """How long `step` took in the newest runs that ran it, newest first."""
        rows = self._rows(
            "SELECT seconds FROM step_timings WHERE step = ? ORDER BY run DESC LIMIT ?",
            (step, limit),
        )
        return [row[0] for row in rows]

    # --- scores and checks

    def record_score(
        self,
        metrics: dict,
        model_sha256: str,
        context: str,
        dataset: str,
        run: int | None = None,
        scored_at: str | None = None,
        verdict: str | None = None,
    ) -> None:
        """Record a score; `verdict` is the drift verdict on the data it was scored on."""
        with self._writing() as db:
            db.execute(
                "INSERT INTO scores (scored_at, model_sha256, context, dataset, rows, f1,"
                " precision, recall, roc_auc, run, verdict)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    scored_at or utc_now(),
                    model_sha256,
                    context,
                    dataset,
                    metrics["rows"],
                    metrics.get("f1"),
                    metrics.get("precision"),
                    metrics.get("recall"),
                    metrics.get("roc_auc"),
                    run,
                    verdict,
                ),
            )

    def scores(self, model_sha256: str | None = None) -> list[dict]:
        """Recorded scores, oldest first: all, or those of one model."""
        sql = f"SELECT {', '.join(SCORE_FIELDS)} FROM scores"
        rows = (
            self._rows(sql + " ORDER BY id")
            if model_sha256 is None
            else self._rows(sql + " WHERE model_sha256 = ? ORDER BY id", (model_sha256,))
        )
        return [dict(zip(SCORE_FIELDS, row, strict=True)) for row in rows]

    def record_drift(
        self,
        run: int | None,
        model_sha256: str,
        batches,
        rows: int,
        kind: str,
        verdict: str,
        detail: dict,
    ) -> None:
        with self._writing() as db:
            db.execute(
                "INSERT INTO drift_checks (run, checked_at, model_sha256, batches, rows, kind,"
                " verdict, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run,
                    utc_now(),
                    model_sha256,
                    ",".join(str(seq) for seq in batches),
                    rows,
                    kind,
                    verdict,
                    json.dumps(detail, default=str),
                ),
            )

    def drift_checks(self, limit: int = 50) -> list[dict]:
        """The newest drift verdicts first."""
        rows = self._rows(
            "SELECT run, checked_at, model_sha256, batches, rows, kind, verdict, detail"
            " FROM drift_checks ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = ("run", "checked_at", "model_sha256", "batches", "rows", "kind", "verdict")
        return [
            {**dict(zip(names, row[:7], strict=True)), "detail": json.loads(row[7])} for row in rows
        ]

    def deciding_check(self, model_sha256: str, kind: str) -> dict | None:
        """The drift check (`model` or `data`) of the run that deployed a model, or None."""
        row = self.db.execute(
            "SELECT d.run, d.checked_at, d.batches, d.rows, d.verdict, d.detail"
            " FROM challengers c JOIN drift_checks d ON d.run = c.run"
            " WHERE c.model_sha256 = ? AND c.verdict = 'deployed' AND d.kind = ?"
            " ORDER BY d.id DESC LIMIT 1",
            (model_sha256, kind),
        ).fetchone()
        if row is None:
            return None
        names = ("run", "checked_at", "batches", "rows", "verdict")
        return {**dict(zip(names, row[:5], strict=True)), "detail": json.loads(row[5])}

    # --- models and deployments

    def record_challenger(self, model_sha256: str, run: int, verdict: str, reason: str = ""):
        with self._writing() as db:
            db.execute(
                "INSERT OR REPLACE INTO challengers (model_sha256, run, verdict, reason,"
                " decided_at) VALUES (?, ?, ?, ?, ?)",
                (model_sha256, run, verdict, reason, utc_now()),
            )

    def challenger_verdict(self, model_sha256: str):
        """(verdict, reason, run) of the newest comparison of a model, or None."""
        return self.db.execute(
            "SELECT verdict, reason, run FROM challengers WHERE model_sha256 = ?"
            " ORDER BY rowid DESC LIMIT 1",
            (model_sha256,),
        ).fetchone()

    def challengers(self, limit: int = 10, verdict: str | None = None) -> list[dict]:
        """The newest challenger verdicts first (of one verdict, when given), in the order they
        were decided, whatever the clock said (a verdict replaced is decided anew)."""
        names = ("model_sha256", "run", "verdict", "reason", "decided_at")
        where, parameters = ("WHERE verdict = ?", (verdict,)) if verdict else ("", ())
        rows = self._rows(
            f"SELECT {', '.join(names)} FROM challengers {where} ORDER BY rowid DESC LIMIT ?",
            (*parameters, limit),
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def sync_deployments(self, changes: list[dict]) -> int:
        """Mirror the deployment folder's history (dicts as `modelstore.read_history` gives).

        Returns:
            How many changes were new here.
        """
        with self._writing() as db:
            cursor = db.executemany(
                "INSERT OR IGNORE INTO deployments (time, action, from_version, to_version,"
                " model_sha256, f1, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        change.get("time"),
                        change.get("action"),
                        change.get("from_version"),
                        change.get("to_version"),
                        change.get("model_sha256"),
                        _float(change.get("f1")),
                        change.get("reason", ""),
                    )
                    for change in changes
                    if change.get("time") and change.get("to_version")
                ],
            )
            return cursor.rowcount

    def deployments(self) -> list[dict]:
        """Every change of what is live, in the order they happened (as recorded: a clock set
        back in between does not reorder them)."""
        names = ("time", "action", "from_version", "to_version", "model_sha256", "f1", "reason")
        rows = self._rows(f"SELECT {', '.join(names)} FROM deployments ORDER BY id")
        return [dict(zip(names, row, strict=True)) for row in rows]

    # --- reports and rankings

    def record_reports(self, model_sha256: str, model_version: str, through_batch: int) -> None:
        with self._writing() as db:
            db.execute(
                "INSERT INTO reports (made_at, model_sha256, model_version, through_batch)"
                " VALUES (?, ?, ?, ?)",
                (utc_now(), model_sha256, model_version, through_batch),
            )

    def latest_reports(self):
        """(model_sha256, through_batch, made_at) of the newest complete reports, or None."""
        return self.db.execute(
            "SELECT model_sha256, through_batch, made_at FROM reports ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def record_ranking(
        self,
        model_sha256: str,
        model_version: str,
        through_batch: int,
        entries,
        clients=None,
        hold_back_share: float = 0.0,
    ) -> int:
        """Keep a ranking of `clients` clients (by default, as many as entries): `entries` are
        (rank, corporation, probability), the first ones or all; `hold_back_share` of its
        clients were held back from calls. Only the newest KEEP_RANKINGS keep their entries."""
        entries = list(entries)
        clients = len(entries) if clients is None else clients
        with self._writing() as db:
            ranking = db.execute(
                "INSERT INTO rankings (made_at, model_sha256, model_version, through_batch,"
                " clients, hold_back_share) VALUES (?, ?, ?, ?, ?, ?)",
                (utc_now(), model_sha256, model_version, through_batch, clients, hold_back_share),
            ).lastrowid
            db.executemany(
                "INSERT INTO ranking_entries (ranking, rank, corporation, probability)"
                " VALUES (?, ?, ?, ?)",
                [(ranking, *entry) for entry in entries],
            )
            db.execute("DELETE FROM ranking_entries WHERE ranking <= ?", (ranking - KEEP_RANKINGS,))
            return ranking

    def latest_ranking(self):
        """(model_sha256, through_batch) of the newest ranking, or None."""
        return self.db.execute(
            "SELECT model_sha256, through_batch FROM rankings ORDER BY id DESC LIMIT 1"
        ).fetchone()

    def rankings(self, limit: int = 2) -> list[dict]:
        """The newest rankings first, each with its entries (if still kept) in rank order."""
        summaries = self._rows(
            "SELECT id, made_at, model_sha256, model_version, through_batch, clients,"
            " hold_back_share FROM rankings ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = (
            "id",
            "made_at",
            "model_sha256",
            "model_version",
            "through_batch",
            "clients",
            "hold_back_share",
        )
        result = []
        for summary in summaries:
            entries = self._rows(
                "SELECT rank, corporation, probability FROM ranking_entries WHERE ranking = ?"
                " ORDER BY rank",
                (summary[0],),
            )
            result.append({**dict(zip(names, summary, strict=True)), "entries": entries})
        return result

    def fact(self, key: str):
        """A value the system noted once (such as when it took over an older project)."""
        row = self.db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def note_fact(self, key: str, value: str) -> None:
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO facts (key, value) VALUES (?, ?)", (key, value))

    # --- what alerts watch, and the alerts

    def last_success(self) -> Run | None:
        """The newest run that did its work (whatever it decided), or None."""
        marks = ", ".join("?" * len(NOT_SUCCESSES))
        rows = self._rows(
            f"SELECT {_fields(Run)} FROM runs WHERE outcome NOT IN ({marks})"
            " ORDER BY id DESC LIMIT 1",
            NOT_SUCCESSES,
        )
        return _run(rows[0]) if rows else None

    def failed_streak(self, limit: int = 100) -> list[Run]:
        """The runs that failed or were interrupted since the last one that did its work,
        oldest first (busy ticks and the run going on are passed over)."""
        streak = []
        for row in self._rows(
            f"SELECT {_fields(Run)} FROM runs WHERE outcome NOT IN ('busy', ?)"
            " ORDER BY id DESC LIMIT ?",
            (RUNNING, limit),
        ):
            if row[5] not in FAILED_OUTCOMES:
                break
            streak.append(_run(row))
        return streak[::-1]

    def failed_streaks(self, after: int = 0, limit: int = 100) -> list[list[Run]]:
        """Streaks of two or more runs in a row that failed or were interrupted, among the
        newest `limit` runs with an id above `after` (busy ticks and a run going on are passed
        over), oldest first. A killed run is marked interrupted only by the next run, which may
        succeed: so streaks are looked for behind the newest run too."""
        rows = self._rows(
            f"SELECT {_fields(Run)} FROM runs WHERE outcome NOT IN ('busy', ?) AND id > ?"
            " ORDER BY id DESC LIMIT ?",
            (RUNNING, after, limit),
        )
        streaks, current = [], []
        for row in reversed(rows):
            if row[5] in FAILED_OUTCOMES:
                current.append(_run(row))
                continue
            if len(current) >= 2:
                streaks.append(current)
            current = []
        if len(current) >= 2:
            streaks.append(current)
        return streaks

    def run_counts(self) -> dict[str, int]:
        """How many runs ended with each outcome, quiet repeats counted one by one."""
        rows = self._rows("SELECT outcome, sum(repeats) FROM runs GROUP BY outcome")
        return {row[0]: row[1] for row in rows}

    def drift_found(self, after: int = 0, limit: int = 50) -> list[dict]:
        """Drift checks with a `drift` verdict whose id is above `after`, newest first."""
        rows = self._rows(
            "SELECT id, run, checked_at, batches, rows, kind, detail FROM drift_checks"
            " WHERE verdict = 'drift' AND id > ? ORDER BY id DESC LIMIT ?",
            (after, limit),
        )
        names = ("id", "run", "checked_at", "batches", "rows", "kind")
        return [
            {**dict(zip(names, row[:6], strict=True)), "detail": json.loads(row[6])} for row in rows
        ]

    def drift_runs(self) -> int:
        """How many runs (or checks outside a run) found drift."""
        return self.db.execute(
            "SELECT count(DISTINCT coalesce(run, -id)) FROM drift_checks WHERE verdict = 'drift'"
        ).fetchone()[0]

    def changes_of_live(self, after: int = 0, limit: int = 20) -> list[dict]:
        """Deployments and rollbacks whose id is above `after`, newest first."""
        names = ("id", "time", "action", "from_version", "to_version", "f1", "reason")
        rows = self._rows(
            f"SELECT {', '.join(names)} FROM deployments WHERE id > ? ORDER BY id DESC LIMIT ?",
            (after, limit),
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def kept_out(self, after: int = 0, limit: int = 20) -> list[dict]:
        """Challengers kept out, decided after row `after`, newest first."""
        names = ("rowid", "model_sha256", "run", "reason", "decided_at")
        rows = self._rows(
            f"SELECT {', '.join(names)} FROM challengers WHERE verdict = 'kept out' AND rowid > ?"
            " ORDER BY rowid DESC LIMIT ?",
            (after, limit),
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def alerts_from(self) -> dict:
        """The ids after which events are alerted (see _migrate_to_4)."""
        try:
            return json.loads(self.fact(ALERTS_FROM) or "{}")
        except ValueError:
            return {}

    def claim_alert(self, key: str, run: int | None, subject: str, text: str, receivers) -> bool:
        """Record that the alert for event `key` is raised now, unless it was before.

        Returns:
            Whether it is new (and so is to be delivered).
        """
        with self._writing() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO alerts (key, raised_at, run, subject, text, receivers)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, utc_now(), run, subject, text, ",".join(receivers)),
            )
            return cursor.rowcount == 1

    def finish_alert(self, key: str, delivered, failures: dict) -> None:
        """Record which receivers took an alert and why the others did not."""
        with self._writing() as db:
            db.execute(
                "UPDATE alerts SET delivered = ?, failures = ?, finished_at = ? WHERE key = ?",
                (",".join(delivered), json.dumps(failures), utc_now(), key),
            )

    def alerts(self, limit: int = 20) -> list[Alert]:
        """The newest alerts first."""
        rows = self._rows(
            f"SELECT {_fields(Alert)} FROM alerts ORDER BY raised_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [_alert(row) for row in rows]

    def failed_deliveries(self) -> int:
        """How many alerts at least one receiver did not take."""
        return self.db.execute("SELECT count(*) FROM alerts WHERE failures != '{}'").fetchone()[0]

    def generation(self) -> int:
        """A number that grows with every change to what the system knows (runs aside)."""
        return self.db.execute("SELECT generation FROM changes").fetchone()[0]

    def last_run_id(self) -> int | None:
        return self.db.execute("SELECT max(id) FROM runs").fetchone()[0]

    def integrity_problems(self) -> list[str]:
        """What SQLite's own check finds wrong (nothing, for a healthy database); on PostgreSQL,
        which checks its own pages, whether the rows the history keeps one of are there."""
        if isinstance(self.db, postgres.ServerConnection):
            return self.db.integrity_problems()
        found = [row[0] for row in self._rows("PRAGMA integrity_check")]
        return [] if found == ["ok"] else found


def _fields(kind) -> str:
    return ", ".join(kind._fields)


def _marks(kind) -> str:
    return ", ".join("?" * len(kind._fields))


def _run(row) -> Run:
    record = json.loads(row[-1]) if row[-1] else {}
    return Run(*row[:-1], record)


def _alert(row) -> Alert:
    receivers, delivered = (tuple(part for part in text.split(",") if part) for text in row[5:7])
    try:
        failures = json.loads(row[7])
    except ValueError:
        failures = {}
    return Alert(*row[:5], receivers, delivered, failures, row[8])


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@contextmanager
def open_history(where: str | Path):
    """The history database at `where`, created and migrated as needed, closed after use:
    a file's path, or a PostgreSQL URL (`postgres.is_server_url`).

    Raises:
        HistoryError: the file or server cannot be opened or is not a history database.
    """
    if postgres.is_server_url(where):
        db = postgres.connect(where, BUSY_TIMEOUT_SECONDS)
        try:
            _migrate(db, db.where)
            yield History(db, db.where)
        finally:
            db.close()
        return
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    except sqlite3.Error as error:
        raise HistoryError(f"{path}: cannot open the history database: {error}") from None
    try:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            _migrate(db, path)
        except sqlite3.DatabaseError as error:
            raise _history_error(path, error, "not a usable history database: ") from None
        try:
            yield History(db, path)
        except sqlite3.Error as error:
            raise _history_error(path, error) from None
    finally:
        db.close()
