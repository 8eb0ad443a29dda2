"""Steps under k8s_job_executor: the Job that dagster-k8s builds for each step, as a cluster would receive it.

No cluster runs here. The executor's own step handler launches every step of a run against a
small HTTP server that answers the Kubernetes API's create-Job call and keeps the body it was
sent, so what is inspected is the manifest on the wire, built by dagster-k8s from our config.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.test_utils import create_run_for_test
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA, k8s_job_executor
from pyrage import x25519

from replication.alerts import build_freshness_checks
from replication.config import SOURCE, parse_config, names_for
from replication.definitions import build_definitions
from replication.engine.errors import ConfigurationError
from replication.executors import select_executor
from replication.executors.k8s import k8s_executor_config

from ..docker_support import REPO
from ..helpers import JOB, PARTITION

HELM_VALUES = yaml.safe_load((REPO / "deploy" / "k8s" / "values.yaml").read_text())
IMAGE = "registry.example.com/replication-code:0.1.0"
NAMESPACE = "replication"
IDENTITY = x25519.Identity.generate()
# What the step pods must get from Secrets and never see as a value in a manifest.
SECRETS = {
    **{var: f"{env}-{kind}-Secret-{uuid.uuid4().hex[:6]}" for env in (SOURCE, "dev", "staging", "qa")
       for kind, var in zip(("connection", "user", "password"), names_for(env).variables)},
    "MASKING_KEY": "mask-Secret-" + uuid.uuid4().hex,
    "AWS_ACCESS_KEY_ID": "AKIA" + uuid.uuid4().hex[:16].upper(),
    "AWS_SECRET_ACCESS_KEY": "aws-Secret-" + uuid.uuid4().hex,
    "SNAPSHOT_AGE_IDENTITY": str(IDENTITY),
    "DAGSTER_PG_PASSWORD": "storage-Secret-" + uuid.uuid4().hex,
}


def s3_config(encrypted: bool):
    snapshot = {"store": "s3://replication-snapshots/prod", "s3": {"endpoint_url": "http://minio.internal:9000"}}
    if encrypted:
        snapshot["encrypt_to"] = [str(IDENTITY.to_public())]
    return parse_config({"snapshot": snapshot, "environments": {
        "dev": {"mask": {"shop.customers.email": "email"}}, "staging": {}, "qa": {}}}, "test config")


class KubernetesApi(BaseHTTPRequestHandler):
    """The one call a step launch makes: POST /apis/batch/v1/namespaces/{ns}/jobs, answered 201."""

    jobs: list[tuple[str, dict]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.jobs.append((self.path, json.loads(body)))
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def kubernetes_api(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), KubernetesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}],
    }))
    try:
        yield str(kubeconfig)
    finally:
        server.shutdown()


@pytest.fixture
def k8s_instance(kubernetes_api):
    # The run launcher the Helm chart configures (deploy/k8s/values.yaml): the instance ConfigMap,
    # Dagster's Postgres password Secret, DAGSTER_HOME; here with a kubeconfig instead of in-cluster.
    launcher = {"instance_config_map": "replication-dagster-instance",
                "postgres_password_secret": "dagster-postgresql-secret",
                "dagster_home": "/opt/dagster/dagster_home", "job_namespace": NAMESPACE,
                "service_account_name": "replication-dagster",
                "env_secrets": [secret["name"] for secret in HELM_VALUES["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]],
                "load_incluster_config": False, "kubeconfig_file": kubernetes_api}
    with dg.instance_for_test(overrides={"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher",
                                                          "config": launcher}}) as instance:
        yield instance


@pytest.fixture
def run_worker_secrets(monkeypatch):
    """The run pod's environment: the credentials Secret, and (the worst case) the age identity too."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def launch_every_step(instance, config, environ: dict[str, str]) -> dict[str, dict]:
    """Each step of a run of the job, launched by k8s_job_executor's step handler: step key -> Job.

    Called where the run worker's Secret is set (SECRETS): planning the run resolves every
    resource's variables, as it does in the run pod.
    """
    job_def = InMemoryJob(build_definitions(config).resolve_job_def(JOB))
    origin = ReconstructableRepository.for_module("replication.definitions", "defs", container_image=IMAGE) \
        .get_reconstructable_job(JOB).get_python_origin()
    processed = process_config(resolve_to_config_type(_K8S_EXECUTOR_CONFIG_SCHEMA), k8s_executor_config(config, environ))
    assert processed.success, processed.errors  # dagster-k8s accepts the config we build
    executor = k8s_job_executor.executor_creation_fn(InitExecutorContext(
        job=job_def, executor_def=k8s_job_executor, executor_config=processed.value, instance=instance))
    run = create_run_for_test(instance, job_name=JOB, job_code_origin=origin, tags={"dagster/partition": PARTITION})
    plan = create_execution_plan(job_def, tags=run.tags)
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(job=job_def, dagster_run=run, instance=instance,
                           execution_plan=plan, raise_on_error=True, retry_mode=RetryMode.ENABLED),
        log_manager=create_context_free_log_manager(instance, run), executor=executor, output_capture=None)
    KubernetesApi.jobs.clear()
    keys = [step.key for step in plan.steps]
    for key in keys:
        context = StepHandlerContext(instance=instance, plan_context=plan_context, steps=plan.steps,
                                     execute_step_args=ExecuteStepArgs(origin, run.run_id, [key]), dagster_run=run)
        list(executor._step_handler.launch_step(context))  # noqa: SLF001 (the executor's own handler)
    assert [path for path, _ in KubernetesApi.jobs] == [f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"] * len(keys)
    return {job["metadata"]["labels"]["dagster/op"]: job for _, job in KubernetesApi.jobs}


def containers(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def secret_sources(container: dict) -> list[str]:
    return [source["secretRef"]["name"] for source in container.get("envFrom", []) if "secretRef" in source]


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_every_step_is_a_job_with_its_limits_the_image_and_secrets_only_by_reference(k8s_instance, run_worker_secrets,
                                                                                      encrypted):
    config = s3_config(encrypted)
    jobs = launch_every_step(k8s_instance, config, environ={})
    checks = [names_for(env).checks for env in config.environment_names]
    freshness = [check.node_def.name for check in build_freshness_checks(config)]
    assert set(jobs) == {"prod_snapshot", "prod_snapshot_checks", *(names_for(e).asset for e in config.environment_names),
                         *checks, *freshness}
    decoding = {op for env in config.environment_names for op in (names_for(env).asset, names_for(env).checks)}
    for step, job in jobs.items():
        container = containers(job)
        assert container["resources"] == {"limits": {"cpu": "1", "memory": "512Mi"},
                                          "requests": {"cpu": "1", "memory": "512Mi"}}, step
        assert container["image"] == IMAGE, step
        expected = ["replication-credentials"] + (["replication-age-identity"] if encrypted and step in decoding else [])
        assert secret_sources(container) == expected, step
        env = {item["name"]: item for item in container["env"]}
        # Dagster's storage password: a reference to the chart's Secret, as the K8sRunLauncher makes it.
        assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret"
        assert not any(name in env and "value" in env[name] for name in SECRETS), step
        assert parse_config(yaml.safe_load(env["REPLICATION_CONFIG_YAML"]["value"]), "step") == config
        # The manifest, and the step's arguments that travel in it compressed.
        step_args = zlib.decompress(base64.b64decode(env["DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"]["value"])).decode()
        assert step in step_args
        text = json.dumps(job) + step_args
        assert not [name for name, value in SECRETS.items() if value in text], step
        assert job["spec"]["backoffLimit"] == 0  # a retry is Dagster's (RetryPolicy), never the Job's
    print(json.dumps(trimmed(jobs["dev_db"]), indent=2))


def trimmed(job: dict) -> dict:
    """A step's Job cut to what the closing note quotes: resources, env and secret references."""
    container = containers(job)
    env = [{**item, "value": item["value"][:40] + "..."} if len(item.get("value", "")) > 40 else item
           for item in container["env"]]
    return {"kind": job["kind"], "metadata": {"name": job["metadata"]["name"], "labels": job["metadata"]["labels"]},
            "spec": {"backoffLimit": job["spec"]["backoffLimit"], "template": {"spec": {"containers": [{
                "image": container["image"], "args": container["args"], "resources": container["resources"],
                "envFrom": container["envFrom"], "env": env}]}}}}


def test_image_namespace_and_secret_names_come_from_configuration(k8s_instance, run_worker_secrets):
    environ = {"REPLICATION_IMAGE": "registry.example.com/replication-code:2026-11-30",
               "REPLICATION_K8S_SECRET": "acme-replication", "REPLICATION_K8S_AGE_SECRET": "acme-age"}
    jobs = launch_every_step(k8s_instance, s3_config(encrypted=True), environ)
    assert {containers(job)["image"] for job in jobs.values()} == {environ["REPLICATION_IMAGE"]}
    # After the run launcher's own (deploy/k8s/values.yaml), which every step inherits.
    assert secret_sources(containers(jobs["prod_snapshot"])) == ["replication-credentials", "acme-replication"]
    assert secret_sources(containers(jobs["qa_db"])) == ["replication-credentials", "acme-replication", "acme-age"]
    config = k8s_executor_config(s3_config(encrypted=False), {"REPLICATION_K8S_NAMESPACE": "etl"})
    assert (config["job_namespace"], config["retries"]) == ("etl", {"enabled": {}})


def test_k8s_refuses_a_snapshot_folder_because_pods_share_no_disk():
    folder = parse_config({"snapshot": {"store": "/snapshots"}, "environments": {"dev": {}}}, "test config")
    with pytest.raises(ConfigurationError, match=r"pods share no disk: set snapshot.store: s3://bucket/prefix"):
        k8s_executor_config(folder, {})


def test_the_code_location_loads_with_the_k8s_executor_selected(tmp_path, monkeypatch):
    """As the Helm chart's code server starts it: no credentials, only REPLICATION_EXECUTOR and the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "PROD_", "DEV_", "STAGING_", "QA_"))}
    env.update(DAGSTER_HOME=str(tmp_path), REPLICATION_EXECUTOR="k8s", REPLICATION_CONFIG_YAML=s3_config(True).to_yaml())
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr
    monkeypatch.setenv("REPLICATION_EXECUTOR", "k8s")
    assert select_executor(s3_config(False)).name == "replication_k8s"
    monkeypatch.setenv("REPLICATION_EXECUTOR", "kubernetess")
    with pytest.raises(ConfigurationError, match="REPLICATION_EXECUTOR='kubernetess' is not an executor; write one of "
                                                 "local, docker, k8s"):
        select_executor(s3_config(False))
