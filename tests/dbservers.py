"""A throw-away PostgreSQL server for the tests: Debian's `initdb` and `pg_ctl` in a temporary
folder, listening on a free loopback port and a socket in that folder, stopped at the end.

As root, PostgreSQL refuses to run, so the server runs as the `postgres` user (`runuser`). A
machine without the programs, or without that user, gets a reason instead of a server; the
tests that need one then skip, naming it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "postgres"
# The role the tests read as; its password has characters a URL must escape.
USER = "risk"
PASSWORD = "pa:ss@w/rd%1"


@dataclass
class PostgresServer:
    folder: Path
    port: int
    bin_dir: Path
    run_as: list[str]
    tls: bool = False  # whether it offers TLS (with a certificate of its own, made by openssl)

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def admin_connect(self, dbname: str = "postgres"):
        """A psycopg connection as the superuser, over the socket (autocommit)."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname,
            autocommit=True,
        )  # fmt: skip

    def url(self, dbname: str, password: bool = True) -> str:
        """The SQLAlchemy URL of database `dbname` for USER over TCP."""
        from urllib.parse import quote

        secret = f":{quote(PASSWORD, safe='')}" if password else ""
        return f"postgresql+psycopg://{USER}{secret}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, name: str) -> None:
        with self.admin_connect() as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            db.execute(f'CREATE DATABASE "{name}" OWNER {USER}')

    def stop(self) -> None:
        pg_ctl = str(self.bin_dir / "pg_ctl")
        command = [pg_ctl, "stop", "-D", str(self.folder / "data"), "-m", "immediate", "-w"]
        subprocess.run([*self.run_as, *command], capture_output=True, check=False, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: PostgreSQL's own (Debian keeps them out of PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    for folder in candidates:
        if all(os.access(Path(folder) / name, os.X_OK) for name in ("initdb", "pg_ctl")):
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server() -> PostgresServer | str:
    """A running server, or why there can be none here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return "PostgreSQL's initdb and pg_ctl are not installed (Debian package postgresql)"
    run_as: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "runuser is missing (PostgreSQL refuses to run as root)"
        try:
            import pwd

            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"no '{SUPERUSER}' user to run PostgreSQL as (it refuses to run as root)"
        run_as = ["runuser", "-u", SUPERUSER, "--"]
    folder = Path(tempfile.mkdtemp(prefix="risk-pg-"))
    (folder / "socket").mkdir()
    if run_as:
        for path in (folder, folder / "socket"):
            shutil.chown(path, SUPERUSER, SUPERUSER)
    server = PostgresServer(folder, free_port(), bin_dir, run_as)
    try:
        _init_and_start(server)
    except (OSError, subprocess.SubprocessError) as error:
        server.stop()
        return f"PostgreSQL did not start: {str(error).strip().splitlines()[-1][:200]}"
    return server


def _init_and_start(server: PostgresServer) -> None:
    data, log = server.folder / "data", server.folder / "server.log"
    pwfile = server.folder / "superuser.pw"
    pwfile.write_text("unused-superuser-password\n")
    if server.run_as:
        shutil.chown(pwfile, SUPERUSER, SUPERUSER)
    run = [*server.run_as]
    subprocess.run(
        [*run, str(server.bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--no-sync",
         "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    options = (
        f"-p {server.port} -k {server.socket_dir} -c listen_addresses=127.0.0.1"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    if _make_certificate(server):
        folder = server.folder
        options += f" -c ssl=on -c ssl_cert_file={folder}/server.crt"
        options += f" -c ssl_key_file={folder}/server.key"
        server.tls = True
    subprocess.run(
        [*run, str(server.bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(log),
         "-o", options, "-w", "-t", "60"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            with server.admin_connect() as db:
                db.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _make_certificate(server: PostgresServer) -> bool:
    """A self-signed certificate for the server, so that connections over TCP use TLS as they
    would to a real server (libpq and the quiet tick ask for it first); False without openssl."""
    if shutil.which("openssl") is None:
        return False
    crt, key = server.folder / "server.crt", server.folder / "server.key"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(crt)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    if made.returncode:
        return False
    key.chmod(0o600)
    if server.run_as:
        for path in (crt, key):
            shutil.chown(path, SUPERUSER, SUPERUSER)
    return True
