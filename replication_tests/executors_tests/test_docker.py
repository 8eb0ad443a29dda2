"""Steps in their own containers under docker_executor, on the real Docker engine."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from replication.alerts import build_freshness_checks
from replication.config import ReplicationConfig, env_vars_for, load_config
from replication.demo.embedded import EmbeddedPostgres
from replication.demo.provision import Account, provision_source, provision_storage, provision_target
from replication.executors.docker import docker_executor_config

from ..conftest import ENVIRONMENTS, FAST_SETTINGS, SEED_SCALE, free_port, server_fingerprints
from ..docker_support import IMAGE, REPO, build_image, create_network, create_volume, remove, require_docker, step_containers
from ..helpers import ASSETS, JOB, PARTITION

# One container per asset step, per asset's check step, and per environment's freshness check.
STEPS = sorted([*ASSETS, *(f"{asset}_checks" for asset in ASSETS),
                *(check.node_def.name for check in build_freshness_checks(load_config()))])

pytestmark = pytest.mark.docker


def test_executor_config_limits_forwarding_volume_and_retries():
    environ = {"PROD_DB_PASSWORD": "x", "REPLICATION_IMAGE": "img:1", "REPLICATION_DOCKER_NETWORK": "net"}
    config = docker_executor_config(ReplicationConfig(), environ)
    kwargs = config["container_kwargs"]
    assert (kwargs["nano_cpus"], kwargs["mem_limit"]) == (1_000_000_000, "512m")
    assert kwargs["volumes"] == {"replication_snapshots": {"bind": "/snapshots", "mode": "rw"}}
    assert config["env_vars"] == ["PROD_DB_PASSWORD", "SNAPSHOT_DIR=/snapshots",
                                  f"REPLICATION_CONFIG_YAML={ReplicationConfig().to_yaml()}"]
    assert (config["image"], config["network"], config["retries"]) == ("img:1", "net", {"enabled": {}})


@pytest.fixture(scope="module")
def docker_setup(tmp_path_factory):
    require_docker()
    build_seconds = build_image()
    network, gateway, subnet = create_network("replication-test")
    volume = create_volume("replication-test-snapshots")
    root = tmp_path_factory.mktemp("docker-pg")
    # Step containers reach this server through the network's gateway address.
    server = EmbeddedPostgres(root / "pg", free_port(), settings=FAST_SETTINGS,
                              extra_listen=(gateway,), allow_networks=(subnet,)).start()
    accounts = {"dagster": Account("dagster", "dagster", "dagster-Pw-1"), "prod": Account("prod", "prod_reader", "prod-Pw-2")}
    accounts.update({env: Account(env, f"{env}_loader", f"{env}-Pw-3") for env in ENVIRONMENTS})
    provision_storage(server, accounts["dagster"])
    provision_source(server, accounts["prod"], scale=SEED_SCALE)
    for env in ENVIRONMENTS:
        provision_target(server, accounts[env])
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": gateway, "DAGSTER_PG_PORT": str(server.port), "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": accounts["dagster"].password,
        "REPLICATION_EXECUTOR": "docker", "REPLICATION_IMAGE": IMAGE,
        "REPLICATION_DOCKER_NETWORK": network, "REPLICATION_SNAPSHOT_VOLUME": volume,
    }
    for name, account in accounts.items():
        if name != "dagster":
            names = env_vars_for(name)
            env[names.connection] = f"{gateway}:{server.port}/{account.database}"
            env[names.user] = account.user
            env[names.password] = account.password
    try:
        yield {"env": env, "server": server, "accounts": accounts, "network": network, "build_seconds": build_seconds,
               "gateway": gateway}
    finally:
        remove(network, volume)
        server.stop()


def execute(env: dict, partition: str = PARTITION) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "replication", "-j", JOB,
         "--tags", json.dumps({"dagster/partition": partition})],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
    )


def test_one_container_per_step_with_limits_and_exact_copies(docker_setup, capsys):
    setup = docker_setup
    result = execute(setup["env"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    containers = step_containers(setup["network"])
    with capsys.disabled():
        print(f"\nimage build: {setup['build_seconds']:.1f} s")
        for c in sorted(containers, key=lambda c: c["created"]):
            print(f"{c['name']}  step={c['step']}  NanoCpus={c['nano_cpus']}  Memory={c['memory']}  exit={c['exit_code']}")
    steps = [c["step"] for c in containers]
    assert sorted(steps) == STEPS
    for c in containers:
        assert (c["nano_cpus"], c["memory"], c["exit_code"], c["status"]) == (1_000_000_000, 512 * 1024 * 1024, 0, "exited")
    prod = server_fingerprints(setup["server"], "prod")
    for env in ENVIRONMENTS:
        assert server_fingerprints(setup["server"], env) == prod
    for password in (a.password for a in setup["accounts"].values()):
        assert password not in result.stdout + result.stderr


def test_briefly_unreachable_target_is_retried_and_the_run_succeeds(docker_setup):
    """QA refuses connections for the first attempt; the RetryPolicy runs the step again in a new container."""
    setup = docker_setup
    # Only the delay is shortened, through the test's environment (test_definitions checks the
    # shipped 300 s); the policy itself stays.
    env = {**setup["env"], "REPLICATION_RETRY_DELAY_SECONDS": "5"}
    before = {c["name"] for c in step_containers(setup["network"])}
    with setup["server"].connect() as admin:
        admin.execute("ALTER DATABASE qa WITH ALLOW_CONNECTIONS false")
    reopened = threading.Event()

    def reopen_after_first_failure():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            failed = [c for c in step_containers(setup["network"]) if c["name"] not in before and c["step"] == "qa_db"
                      and c["status"] == "exited"]
            if failed:
                break
            time.sleep(0.5)
        with setup["server"].connect() as admin:
            admin.execute("ALTER DATABASE qa WITH ALLOW_CONNECTIONS true")
        reopened.set()

    worker = threading.Thread(target=reopen_after_first_failure)
    worker.start()
    try:
        result = execute(env, "2026-11-24")
    finally:
        worker.join()
        with setup["server"].connect() as admin:
            admin.execute("ALTER DATABASE qa WITH ALLOW_CONNECTIONS true")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The step containers write their events straight to Dagster's storage: read them there.
    with setup["server"].connect("dagster") as storage:
        retries = storage.execute(
            "SELECT event FROM event_logs WHERE dagster_event_type = 'STEP_UP_FOR_RETRY' AND step_key = 'qa_db'"
        ).fetchall()
    assert len(retries) == 1 and "will be retried" in retries[0][0]
    qa_attempts = [c for c in step_containers(setup["network"]) if c["name"] not in before and c["step"] == "qa_db"]
    # docker_executor names a retry's container after the attempt: dagster-step-<hash>-1.
    assert len(qa_attempts) == 2 and sum(c["name"].endswith("-1") for c in qa_attempts) == 1
    assert server_fingerprints(setup["server"], "qa") == server_fingerprints(setup["server"], "prod")


def test_steps_in_containers_read_and_write_an_encrypted_snapshot_in_an_s3_store(docker_setup, tmp_path, capsys):
    """No shared disk needed: every step container (1 CPU, 512 MiB) reaches moto's S3 server through
    the network's gateway, with the AWS variables and the age identity forwarded by the executor."""
    import boto3
    from moto.server import ThreadedMotoServer
    from pyrage import x25519

    setup = docker_setup
    port = free_port()
    store = ThreadedMotoServer(ip_address=setup["gateway"], port=port, verbose=False)
    store.start()
    try:
        endpoint = f"http://{setup['gateway']}:{port}"
        credentials = {"AWS_ACCESS_KEY_ID": "docker-steps", "AWS_SECRET_ACCESS_KEY": "docker-steps-secret",
                       "AWS_DEFAULT_REGION": "us-east-1"}
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
        s3.create_bucket(Bucket="replication-docker")
        identity = x25519.Identity.generate()
        config = tmp_path / "replication.yaml"
        config.write_text(
            "snapshot:\n  store: s3://replication-docker/snapshots\n"
            f"  s3: {{endpoint_url: '{endpoint}'}}\n  encrypt_to: ['{identity.to_public()}']\n"
            "environments:\n  dev: {}\n  staging: {}\n  qa: {}\n")
        env = {**setup["env"], **credentials, "REPLICATION_CONFIG": str(config),
               "SNAPSHOT_AGE_IDENTITY": str(identity)}
        before = {c["name"] for c in step_containers(setup["network"])}
        result = execute(env, partition="2026-11-21")
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        containers = [c for c in step_containers(setup["network"]) if c["name"] not in before]
        assert sorted(c["step"] for c in containers) == STEPS
        for c in containers:
            assert (c["memory"], c["exit_code"]) == (512 * 1024 * 1024, 0)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="replication-docker")["Contents"]]
        with capsys.disabled():
            print(f"\nobjects written by the step containers: {sorted(keys)}")
        assert "snapshots/prod_snapshot_20261121/manifest.json" in keys
        assert all(k.endswith((".csv.zst.age", "schema.sql.zst.age", "manifest.json")) for k in keys), keys
        prod = server_fingerprints(setup["server"], "prod")
        for name in ENVIRONMENTS:
            assert server_fingerprints(setup["server"], name) == prod
        output = result.stdout + result.stderr
        assert str(identity) not in output and credentials["AWS_SECRET_ACCESS_KEY"] not in output
    finally:
        store.stop()


# A 100 MiB text and a 100 MiB JSON log (jsonb), each stored by zstd in a few kilobytes.
APP_LOGS = "CREATE TABLE public.app_logs (id int PRIMARY KEY, body text, doc jsonb)"
APP_LOGS_DATA = """
INSERT INTO public.app_logs SELECT g, 'line ' || g, jsonb_build_object('n', g) FROM generate_series(1, 100) g;
INSERT INTO public.app_logs VALUES (1000, repeat('Compressible, "quoted" log line; ', 3276800), NULL);
INSERT INTO public.app_logs SELECT 2000, NULL, (SELECT jsonb_agg(jsonb_build_object('level', 'info', 'message',
       'request served, "ok"', 'status', 200)) FROM generate_series(1, 1700000));
"""


def test_values_that_compress_1000_to_1_pass_through_512_mib_step_containers(docker_setup, capsys):
    """The snapshot, the three loads and their checks, each in a container limited to 512 MiB, under
    the default zstd: every step exits 0 and every environment equals production."""
    setup = docker_setup
    server, accounts = setup["server"], setup["accounts"]
    with server.connect(accounts["prod"].database) as conn:
        conn.execute(APP_LOGS)
        conn.execute(APP_LOGS_DATA)
        conn.execute(f"GRANT SELECT ON public.app_logs TO {accounts['prod'].user}")
    for env in ENVIRONMENTS:
        with server.connect(accounts[env].database, user=accounts[env].user, password=accounts[env].password) as conn:
            conn.execute(APP_LOGS)
    try:
        before = {c["name"] for c in step_containers(setup["network"])}
        result = execute(setup["env"], partition="2026-11-19")
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        containers = [c for c in step_containers(setup["network"]) if c["name"] not in before]
        with capsys.disabled():
            print("\n" + "\n".join(f"{c['step']}: Memory={c['memory']} exit={c['exit_code']}" for c in containers))
        assert sorted(c["step"] for c in containers) == STEPS
        assert all((c["memory"], c["exit_code"]) == (512 * 1024 * 1024, 0) for c in containers), containers
        prod = server_fingerprints(server, "prod")
        assert prod["public.app_logs"][0] == 102
        for env in ENVIRONMENTS:
            assert server_fingerprints(server, env) == prod
    finally:
        for name in ("prod", *ENVIRONMENTS):
            with server.connect(accounts[name].database) as conn:
                conn.execute("DROP TABLE IF EXISTS public.app_logs")
