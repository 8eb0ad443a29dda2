"""The compose deployment comes up, serves the UI and runs a partition with steps in containers."""

import json
import subprocess
import uuid

import pytest

from .conftest import free_port
from .docker_support import REPO, build_image, remove, require_docker, step_containers
from .helpers import ASSETS, JOB, PARTITION
from .webserver_support import launch_run, wait_for_code_location, wait_for_run

pytestmark = pytest.mark.docker
COMPOSE = str(REPO / "deploy" / "docker-compose.yml")
PROVISION = """
import os
from pathlib import Path
from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import Account, provision_source, provision_target
server = EmbeddedPostgres(Path('/var/lib/postgresql/data'), 5432, password=os.environ['POSTGRES_PASSWORD'])
provision_source(server, Account('prod', 'prod_reader', 'prod-Pw-2'), scale=0.05)
for env in ('dev', 'staging', 'qa'):
    provision_target(server, Account(env, env + '_loader', env + '-Pw-3'))
"""


# Runs inside the storage container, which has the package: the engine's own checksum per table.
FINGERPRINTS = """
import json, os, psycopg
from replication.engine.pg.catalog import list_tables, table_columns
from replication.engine.pg.session import libpq_options
from replication.engine.verify.checksum import content_checksum
result = {}
for db in ('prod', 'dev', 'staging', 'qa'):
    with psycopg.connect(host='127.0.0.1', dbname=db, user='postgres', password=os.environ['POSTGRES_PASSWORD'],
                         options=libpq_options()) as conn:
        result[db] = {t.key: content_checksum(conn, t, [c.name for c in table_columns(conn, t)]) for t in list_tables(conn)}
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    require_docker()
    build_image()
    suffix = uuid.uuid4().hex[:8]
    project, network, volume, port = f"replctest{suffix}", f"replication_ctest_{suffix}", f"replication_ctest_snap_{suffix}", free_port()
    env_file = tmp_path_factory.mktemp("compose") / "replication.env"
    # This test's own databases live in the storage server; a real deployment points at its own.
    values = {"DAGSTER_PG_PASSWORD": "storage-Pw-9", "DAGSTER_UI_PORT": str(port), "MASKING_KEY": "compose-mask-key",
              "REPLICATION_DOCKER_NETWORK": network, "REPLICATION_SNAPSHOT_VOLUME": volume}
    for env, user, password in [("PROD", "prod_reader", "prod-Pw-2"), ("DEV", "dev_loader", "dev-Pw-3"),
                                ("STAGING", "staging_loader", "staging-Pw-3"), ("QA", "qa_loader", "qa-Pw-3")]:
        values.update({f"{env}_DB_CONNECTION": f"dagster_storage:5432/{env.lower()}", f"{env}_DB_USER": user,
                       f"{env}_DB_PASSWORD": password})
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    compose = ["docker-compose", "-p", project, "-f", COMPOSE, "--env-file", str(env_file)]
    try:
        subprocess.run([*compose, "up", "-d"], check=True, capture_output=True, text=True, timeout=300)
        storage = f"{project}_dagster_storage_1"
        subprocess.run(["docker", "exec", "-e", "PYTHONWARNINGS=ignore", storage, "python", "-c", PROVISION],
                       check=True, capture_output=True, text=True, timeout=300)
        yield {"url": f"http://127.0.0.1:{port}", "network": network, "storage": storage}
    finally:
        remove(network, volume)  # first, while the run and step containers are still on the network
        subprocess.run([*compose, "down", "-v"], capture_output=True, timeout=300)


def test_compose_deployment_runs_a_partition_with_steps_in_containers(deployment):
    entry = wait_for_code_location(deployment["url"])
    assert (entry["name"], entry["locationOrLoadError"]["__typename"]) == ("replication", "RepositoryLocation")
    run_id = launch_run(deployment["url"], JOB, PARTITION)
    assert wait_for_run(deployment["url"], run_id)["status"] == "SUCCESS"
    steps = {c["step"]: (c["nano_cpus"], c["memory"], c["exit_code"]) for c in step_containers(deployment["network"])}
    assert set(ASSETS) <= set(steps)  # and every asset check step, each in its own container
    assert set(steps.values()) == {(1_000_000_000, 536870912, 0)}
    compare = subprocess.run(["docker", "exec", "-e", "PYTHONWARNINGS=ignore", deployment["storage"], "python", "-c", FINGERPRINTS],
                             check=True, capture_output=True, text=True)
    fingerprints = json.loads(compare.stdout)
    assert fingerprints["prod"]["shop.order_items"][0] > 0
    # The image ships replication.yaml: Staging exact; Dev and QA subsets (10% and 25% of the
    # customers) with shop.customers masked; products, downstream of no root, whole in both.
    assert fingerprints["staging"] == fingerprints["prod"]
    for env in ("dev", "qa"):
        assert 0 < fingerprints[env]["shop.customers"][0] < fingerprints["prod"]["shop.customers"][0]
        assert fingerprints[env]["shop.products"] == fingerprints["prod"]["shop.products"]
    assert fingerprints["dev"]["shop.customers"][0] < fingerprints["qa"]["shop.customers"][0]
