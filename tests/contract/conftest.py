"""Ratings-store fixtures: the same store on a SQLite file and on a real PostgreSQL server started here."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from contract.ratings import RatingsStore

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")


def find_postgres_bindir() -> Path | None:
    """The newest directory holding initdb, pg_ctl and postgres (Debian keeps them off PATH)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        candidates.append(Path(bindir))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    return next((d for d in candidates if all((d / b).is_file() for b in SERVER_BINARIES)), None)


@dataclass(frozen=True)
class PostgresServer:
    socket_dir: Path
    port: int

    def url(self, database: str) -> str:
        """Unix socket, trust auth: no password and no TCP port to collide with other test runs."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}&port={self.port}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the session, stopped and deleted at the end."""
    bindir = find_postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found; apt-get install postgresql")
    # Under /tmp rather than pytest's tmp_path: when run as root the server runs as `postgres`, which could not
    # traverse pytest's 0700 parents. mkdtemp is 0700 too, but owned by whoever runs the server.
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    as_server_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_server_user = ["runuser", "-u", "postgres", "--"]

    def run(*args: str | Path) -> None:
        done = subprocess.run([*as_server_user, *map(str, args)], cwd=root, capture_output=True, text=True)
        if done.returncode != 0:
            log = root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{tail}")

    server = PostgresServer(socket_dir=root, port=5432)  # the socket is in our own directory: any port is free
    data = root / "data"
    run(bindir / "initdb", "-D", data, "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync")
    # No TCP, and no fsync: durability of a test cluster is not what these tests check.
    options = f"-k {root} -p {server.port} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    run(bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-o", options, "-w", "-t", "60", "start")
    try:
        yield server
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


_schema_names = (f"test_{i}" for i in itertools.count())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database: a fresh SQLite file, or a fresh PostgreSQL schema, per test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'missing-dir' / 'ratings.db'}"  # the store creates the directory
    server: PostgresServer = request.getfixturevalue("postgres_server")
    schema = next(_schema_names)
    admin = sa.create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    admin.dispose()
    # The store's unqualified `ratings` lands in this test's schema: a clean table in ms (a database takes 0.3 s).
    return f"{server.url('postgres')}&options=-csearch_path%3D{schema}"


@pytest.fixture
def store(store_url: str) -> Iterator[RatingsStore]:
    with RatingsStore(store_url) as store:
        store.create_schema()
        yield store
