-- The history database's first schema (migration 1 in database.py; later versions migrate it).
-- One statement per change of the schema, each ended by a semicolon; no semicolon inside one.

CREATE TABLE batches (
    seq INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    arrived_at TEXT NOT NULL,
    folder TEXT NOT NULL,
    labelled_rows INTEGER NOT NULL,
    current_rows INTEGER NOT NULL,
    rejected_rows INTEGER NOT NULL,
    judged_at TEXT,
    judged_by_run INTEGER,
    judgement TEXT
);
CREATE TABLE input_files (
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ingested', 'duplicate', 'rejected')),
    batch INTEGER REFERENCES batches (seq),
    rows_accepted INTEGER NOT NULL,
    rows_rejected INTEGER NOT NULL,
    seen_at TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (name, sha256)
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    last_finished_at TEXT,
    repeats INTEGER NOT NULL DEFAULT 1,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    seconds REAL,
    pid INTEGER,
    record TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_by_outcome ON runs (outcome);
CREATE TABLE step_timings (
    run INTEGER NOT NULL REFERENCES runs (id),
    step TEXT NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (run, step)
);
CREATE TABLE scores (
    id INTEGER PRIMARY KEY,
    scored_at TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    context TEXT NOT NULL,
    dataset TEXT NOT NULL,
    rows INTEGER NOT NULL,
    f1 REAL,
    precision REAL,
    recall REAL,
    roc_auc REAL,
    run INTEGER
);
CREATE INDEX scores_by_model ON scores (model_sha256);
CREATE TABLE drift_checks (
    id INTEGER PRIMARY KEY,
    run INTEGER,
    checked_at TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    batches TEXT NOT NULL,
    rows INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('model', 'data')),
    verdict TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    action TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT NOT NULL,
    model_sha256 TEXT,
    f1 REAL,
    reason TEXT NOT NULL DEFAULT '',
    UNIQUE (time, action, to_version)
);
CREATE TABLE challengers (
    model_sha256 TEXT NOT NULL,
    run INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('pending', 'deployed', 'kept out')),
    reason TEXT NOT NULL DEFAULT '',
    decided_at TEXT NOT NULL,
    PRIMARY KEY (model_sha256, run)
);
CREATE TABLE reports (
    id INTEGER PRIMARY KEY,
    made_at TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    model_version TEXT NOT NULL,
    through_batch INTEGER
);
CREATE TABLE rankings (
    id INTEGER PRIMARY KEY,
    made_at TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    model_version TEXT NOT NULL,
    through_batch INTEGER,
    clients INTEGER NOT NULL
);
CREATE TABLE facts (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE ranking_entries (
    ranking INTEGER NOT NULL REFERENCES rankings (id) ON DELETE CASCADE,
    rank INTEGER NOT NULL,
    corporation TEXT NOT NULL,
    probability REAL NOT NULL,
    PRIMARY KEY (ranking, rank)
);
