"""The dashboard's sign-in sessions, kept on the server side.

A session is a random id (the only thing its cookie holds: nothing derived from the token) with
a random CSRF token for the sign-out form, an expiry, and nothing else. The ids are stored
hashed in a small SQLite file that every gunicorn worker opens (`log_folder_path`
/dashboard-sessions.db), so any worker accepts a session, signing out deletes it everywhere,
and a copy of the file opens no session. The file also keeps a scrypt key of the token (salted,
slow to test guesses against); when the API starts with another token, every session ends.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path

SESSIONS_FILE = "dashboard-sessions.db"
SESSION_SECONDS = 8 * 3600  # a working day; then the token is asked for again
# scrypt's cost: about 50 ms and 16 MiB per guess (and once per worker start).
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 TEXT PRIMARY KEY,
    csrf TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS token_key (salt BLOB NOT NULL, key BLOB NOT NULL);
"""


def _hashed(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """The sessions of one project's dashboard, in `path`."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @contextmanager
    def _db(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=10, isolation_level=None)) as db:
            db.executescript(SCHEMA)
            yield db

    def bind_token(self, token: str) -> None:
        """End every session if they were opened with another token than `token`."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT salt, key FROM token_key").fetchone()
            if row is not None and hmac.compare_digest(_token_key(token, row[0]), row[1]):
                db.execute("COMMIT")
                return
            salt = secrets.token_bytes(16)
            db.execute("DELETE FROM sessions")
            db.execute("DELETE FROM token_key")
            db.execute("INSERT INTO token_key VALUES (?, ?)", (salt, _token_key(token, salt)))
            db.execute("COMMIT")

    def open(self) -> tuple[str, str]:
        """A new session: (its id, for the cookie; its CSRF token, for the sign-out form)."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?)",
                (_hashed(session_id), csrf, now + SESSION_SECONDS),
            )
        return session_id, csrf

    def csrf_of(self, session_id: str | None) -> str | None:
        """The CSRF token of a live session, or None when there is no such session (never
        opened, expired or ended)."""
        if not session_id:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT csrf FROM sessions WHERE id_sha256 = ? AND expires_at > ?",
                (_hashed(session_id), time.time()),
            ).fetchone()
        return row[0] if row else None

    def close(self, session_id: str | None) -> None:
        """End a session (a replay of its cookie opens nothing afterwards)."""
        if session_id:
            with self._db() as db:
                db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (_hashed(session_id),))


def _token_key(token: str, salt: bytes) -> bytes:
    return hashlib.scrypt(token.encode(), salt=salt, maxmem=64 * 1024 * 1024, **SCRYPT)
