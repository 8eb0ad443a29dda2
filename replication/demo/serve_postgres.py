"""`python -m replication.demo.serve_postgres`: PostgreSQL in the foreground, for a container.

The Docker deployment's storage service uses this where no `postgres` image can be pulled; it
follows the official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB conventions, so a
registry user can swap in `postgres:16` without other changes.
"""

import os
import signal
import time
from pathlib import Path

from .embedded import EmbeddedPostgres
from .provision import ensure_database, ensure_role


def main() -> None:
    server = EmbeddedPostgres(
        Path(os.environ.get("PGDATA", "/var/lib/postgresql/data")),
        int(os.environ.get("PGPORT", "5432")),
        password=os.environ["POSTGRES_PASSWORD"],
        host="0.0.0.0",
        allow_networks=("0.0.0.0/0",),
    ).start()
    user, database = os.environ.get("POSTGRES_USER", "postgres"), os.environ.get("POSTGRES_DB", "postgres")
    with server.connect() as admin:
        if user != "postgres":
            ensure_role(admin, user, os.environ["POSTGRES_PASSWORD"])
        ensure_database(admin, database, user)
    print(f"PostgreSQL ready on port {server.port}", flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    while not stopping and server.running():
        time.sleep(1)
    server.stop()


if __name__ == "__main__":
    main()
