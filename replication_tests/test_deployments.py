"""Every deployment carries every environment of replication.yaml, and the Helm values say what we promise.

The executors derive what they forward from the configuration; the static files (compose, the
instance config of the Docker deployment, the env file and the Kubernetes Secrets) cannot, so
this test reads them and names each variable an environment needs that a file lacks.
"""

from __future__ import annotations

import re

import dagster as dg
import pytest
import yaml

from replication.alerts.channels import VARIABLES as ALERT_VARIABLES
from replication.config import SOURCE, ReplicationConfig, load_config, names_for, parse_config
from replication.executors.k8s import AGE_SECRET_VARIABLE, SECRET_VARIABLE

from .docker_support import REPO

DEPLOY = REPO / "deploy"
SECRETS_EVERY_STEP_NEEDS = ["MASKING_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
AGE_IDENTITY = "SNAPSHOT_AGE_IDENTITY"


def database_variables(config: ReplicationConfig) -> dict[str, str]:
    """Each `N_DB_*` variable -> the database that needs it: production and every environment."""
    return {var: name for name in (SOURCE, *config.environment_names) for var in names_for(name).variables}


def k8s_secrets() -> dict[str, dict[str, str]]:
    documents = yaml.safe_load_all((DEPLOY / "k8s" / "secrets.example.yaml").read_text())
    return {doc["metadata"]["name"]: doc["stringData"] for doc in documents if doc and doc["kind"] == "Secret"}


def helm_values() -> dict:
    return yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())


def user_deployment_env() -> dict[str, str]:
    (deployment,) = helm_values()["dagster-user-deployments"]["deployments"]
    return {item["name"]: item["value"] for item in deployment["env"]}


def deployed_names() -> dict[str, set[str]]:
    """Each static file -> the variables it passes on."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    env_file = (DEPLOY / "replication.env.example").read_text()
    names = {
        "deploy/docker-compose.yml (x-replication-env)": set(compose["x-replication-env"]),
        "deploy/dagster.yaml (run_launcher env_vars)": set(instance["run_launcher"]["config"]["env_vars"]),
        "deploy/replication.env.example": set(re.findall(r"^([A-Z][A-Z0-9_]*)=", env_file, re.MULTILINE)),
    }
    env = user_deployment_env()
    secrets = k8s_secrets()
    names[f"deploy/k8s/secrets.example.yaml (Secret {env[SECRET_VARIABLE]})"] = set(secrets.get(env[SECRET_VARIABLE], {}))
    return names


def code_location_names() -> dict[str, set[str]]:
    """Each deployment -> the variables the code location's own process gets (where sensors run)."""
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    env_file = (DEPLOY / "replication.env.example").read_text()
    (deployment,) = helm_values()["dagster-user-deployments"]["deployments"]
    secrets = k8s_secrets()
    from_secrets = set().union(*(set(secrets.get(ref["name"], {})) for ref in deployment["envSecrets"]))
    return {
        "deploy/docker-compose.yml (code_location)": set(compose["services"]["code_location"]["environment"]),
        # Optional variables are shown commented out, for the operator to fill in.
        "deploy/replication.env.example": set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", env_file, re.MULTILINE)),
        "deploy/k8s/values.yaml (user deployment envSecrets)": from_secrets,
    }


def missing_from_deployments(config: ReplicationConfig) -> list[str]:
    """One line per variable a deployment file lacks, naming the file and who needs the variable."""
    needed = {**database_variables(config), **{name: "every step" for name in SECRETS_EVERY_STEP_NEEDS}}
    problems = []
    for where, names in deployed_names().items():
        for variable, needed_by in needed.items():
            if variable not in names and not (variable.startswith("AWS_") and "env.example" in where):
                problems.append(f"{where}: {variable} is missing ({needed_by} needs it)")
    return problems


def test_every_deployment_carries_every_environment_of_the_shipped_replication_yaml():
    config = load_config(REPO / "replication.yaml")
    assert missing_from_deployments(config) == []


def test_a_fourth_environment_without_its_variables_is_named_with_each_file_that_lacks_them():
    config = parse_config({"environments": {"dev": {}, "staging": {}, "qa": {}, "perf": {}}}, "test config")
    problems = missing_from_deployments(config)
    files = list(deployed_names())
    assert len(files) == 4
    assert problems == [f"{where}: PERF_DB_{kind} is missing (perf needs it)"
                        for where in files for kind in ("CONNECTION", "USER", "PASSWORD")]
    print("\n".join(problems))


def test_helm_values_run_steps_under_k8s_one_run_at_a_time_within_3600_s():
    values = helm_values()
    env = user_deployment_env()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert env["REPLICATION_EXECUTOR"] == "k8s"
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "replication"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}  # runs select the same executor
    image = deployment["image"]
    assert values["dagsterWebserver"]["image"] == values["dagsterDaemon"]["image"] == image  # one image
    # replication.yaml from a ConfigMap, mounted over the image's copy.
    (mount,) = deployment["volumeMounts"]
    assert (mount["mountPath"], mount["subPath"]) == ("/opt/dagster/app/replication.yaml", "replication.yaml")
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert (coordinator["enabled"], coordinator["type"]) == (True, "QueuedRunCoordinator")
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == 1
    # Dagster itself accepts the run_monitoring block the chart writes from dagsterDaemon.runMonitoring.
    chart = values["dagsterDaemon"]["runMonitoring"]
    monitoring = {"enabled": chart["enabled"], "start_timeout_seconds": chart["startTimeoutSeconds"],
                  "max_runtime_seconds": chart["maxRuntimeSeconds"], "poll_interval_seconds": chart["pollIntervalSeconds"]}
    assert "additionalInstanceConfig" not in values  # one place for the limit, never written twice
    with dg.instance_for_test(overrides={"run_monitoring": monitoring}) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == 3600
    # Storage: an existing Postgres, its password in a Secret and nowhere in the values.
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]


def test_helm_values_name_only_secrets_the_example_defines_and_hold_no_secret():
    values, env, secrets = helm_values(), user_deployment_env(), k8s_secrets()
    launcher_secrets = [s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]]
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    code_location_secrets = [s["name"] for s in deployment["envSecrets"]]
    referenced = {env[SECRET_VARIABLE], env[AGE_SECRET_VARIABLE], values["global"]["postgresqlSecretName"],
                  *launcher_secrets, *code_location_secrets}
    assert referenced == set(secrets)
    assert not set(code_location_secrets) & {env[SECRET_VARIABLE], env[AGE_SECRET_VARIABLE]}  # no database secret
    assert launcher_secrets == [env[SECRET_VARIABLE]]  # the run worker resolves the resources' variables
    assert AGE_IDENTITY in secrets[env[AGE_SECRET_VARIABLE]]
    assert AGE_IDENTITY not in secrets[env[SECRET_VARIABLE]]  # only the loaders get the age identity
    assert "postgresql-password" in secrets[values["global"]["postgresqlSecretName"]]
    text = (DEPLOY / "k8s" / "values.yaml").read_text()
    secret_names = set().union(*secrets.values())
    assert not [name for name in secret_names if re.search(rf"\b{name}\s*:", text)]


@pytest.mark.parametrize("path", ["k8s/values.yaml", "k8s/secrets.example.yaml", "docker-compose.yml", "dagster.yaml"])
def test_deployment_files_parse(path):
    assert list(yaml.safe_load_all((DEPLOY / path).read_text()))


def test_every_deployment_gives_the_code_location_the_alert_variables_and_runs_never_get_them():
    alert_variables = [name for names in ALERT_VARIABLES.values() for name in names]
    assert "SLACK_BOT_TOKEN" in alert_variables and "ALERT_WEBHOOK_URL" in alert_variables
    missing = [f"{where}: {name} is missing (the alert sensors read it)"
               for where, names in code_location_names().items() for name in alert_variables if name not in names]
    assert missing == []
    # Runs and steps send nothing: the run launcher and the steps' Secret do not carry them.
    given_to_runs = {where: names & set(alert_variables) for where, names in deployed_names().items()
                     if "run_launcher" in where or "secrets.example" in where}
    assert given_to_runs == {where: set() for where in given_to_runs}
