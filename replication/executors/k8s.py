"""k8s_job_executor: one Kubernetes Job per step, secrets from Kubernetes Secrets, never as values.

Every step pod gets its credentials with `envFrom` a Secret (`REPLICATION_K8S_SECRET`, default
`replication-credentials`): production's and every environment's `N_DB_*`, `MASKING_KEY` and the
AWS variables. The age identity lives in a Secret of its own (`REPLICATION_K8S_AGE_SECRET`,
default `replication-age-identity`), given only to the steps that decode snapshots: the
environments' loads and their checks. Dagster's own storage comes from the instance the Helm
chart mounts (its ConfigMap and its Postgres password Secret), which the executor inherits from
the K8sRunLauncher.
"""

from __future__ import annotations

import os

from dagster_k8s import k8s_job_executor

from ..config import CONFIG_TEXT_VARIABLE, ReplicationConfig, names_for
from ..engine.errors import ConfigurationError
from ..engine.storage.s3 import is_s3_url
from .steps import K8S_RESOURCES

DEFAULT_SECRET = "replication-credentials"
DEFAULT_AGE_SECRET = "replication-age-identity"
SECRET_VARIABLE = "REPLICATION_K8S_SECRET"
AGE_SECRET_VARIABLE = "REPLICATION_K8S_AGE_SECRET"
NAMESPACE_VARIABLE = "REPLICATION_K8S_NAMESPACE"
IMAGE_VARIABLE = "REPLICATION_IMAGE"


def decoding_ops(config: ReplicationConfig) -> list[str]:
    """The ops that read snapshot contents: every environment's load and its checks."""
    return [op for env in config.environment_names for op in (names_for(env).asset, names_for(env).checks)]


def k8s_executor_config(config: ReplicationConfig, environ: dict[str, str] | None = None) -> dict:
    """k8s_job_executor config from REPLICATION_* variables, with the Helm values' defaults."""
    environ = os.environ if environ is None else environ
    if not is_s3_url(config.snapshot.store):
        # Each step pod has its own disk: a folder written by prod_snapshot is gone for the loads.
        raise ConfigurationError(
            "REPLICATION_EXECUTOR=k8s runs every step in its own pod, and pods share no disk: set "
            "snapshot.store: s3://bucket/prefix in replication.yaml (with snapshot.s3.endpoint_url for "
            "MinIO, R2 or Ceph), or run with REPLICATION_EXECUTOR=docker on one host."
        )
    executor_config: dict = {
        # envFrom: the pod spec names the Secret; its values never pass through Dagster.
        "env_secrets": [environ.get(SECRET_VARIABLE) or DEFAULT_SECRET],
        # The configuration travels as text (it holds no secret), so every step runs with the
        # run's own, whatever file the image carries.
        "env_vars": [f"{CONFIG_TEXT_VARIABLE}={config.to_yaml()}"],
        # Lets the assets' RetryPolicy re-run a failed step as a new Job.
        "retries": {"enabled": {}},
        # Every step's share, also for ops Dagster's factories build without our tags (freshness checks).
        "step_k8s_config": {"container_config": {"resources": K8S_RESOURCES}},
    }
    if config.snapshot.encrypt_to:
        age_secret = {"secret_ref": {"name": environ.get(AGE_SECRET_VARIABLE) or DEFAULT_AGE_SECRET}}
        executor_config["per_step_k8s_config"] = {
            op: {"container_config": {"env_from": [age_secret]}} for op in decoding_ops(config)
        }
    # Without it the image comes from DAGSTER_CURRENT_IMAGE, which the Helm chart sets on the
    # user deployment to the image it runs.
    if environ.get(IMAGE_VARIABLE):
        executor_config["job_image"] = environ[IMAGE_VARIABLE]
    if environ.get(NAMESPACE_VARIABLE):
        executor_config["job_namespace"] = environ[NAMESPACE_VARIABLE]
    return executor_config


def build_k8s_executor(config: ReplicationConfig):
    return k8s_job_executor.configured(k8s_executor_config(config), name="replication_k8s")
