"""replication.yaml: validation with messages that name the key, defaults, and the environment names."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from replication.config import ReplicationConfig, config_path, env_vars_for, load_config, parse_config
from replication.definitions import build_definitions
from replication.engine.errors import ConfigurationError
from replication.executors.docker import docker_executor_config

from .helpers import ASSETS, JOB, PARTITION

REPO = Path(__file__).resolve().parents[1]


def error_for(data) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(data, "replication.yaml")
    return str(caught.value)


def test_the_shipped_file_masks_dev_and_qa_and_keeps_staging_exact():
    shipped = load_config(REPO / "replication.yaml")
    assert shipped.environment_names == ReplicationConfig().environment_names == ["dev", "staging", "qa"]
    assert shipped.snapshot == ReplicationConfig().snapshot
    assert shipped.environments["staging"].mask == {} and shipped.environments["staging"].personal_data_policy == "allow"
    for env in ("dev", "qa"):
        assert shipped.environments[env].mask["shop.customers.email"].strategy == "email"
        assert shipped.environments[env].personal_data_policy == "error"


def test_the_configuration_round_trips_as_text_for_step_containers(monkeypatch):
    import yaml

    shipped = load_config(REPO / "replication.yaml")
    assert parse_config(yaml.safe_load(shipped.to_yaml())) == shipped
    monkeypatch.setenv("REPLICATION_CONFIG_YAML", shipped.to_yaml())
    assert load_config() == shipped


def test_env_vars_for_names_the_three_variables():
    assert env_vars_for("uat") == ("UAT_DB_CONNECTION", "UAT_DB_USER", "UAT_DB_PASSWORD")
    assert env_vars_for("prod").password == "PROD_DB_PASSWORD"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"snapshot": {"inclde": ["*"]}}, "snapshot.inclde: unknown key; the keys allowed here are: include, exclude"),
        ({"snaphot": {}}, "snaphot: unknown key; the keys allowed here are: snapshot, environments"),
        ({"environments": {"dev": {"maks": {}}}},
         "environments.dev.maks: unknown key; the keys allowed here are: mask, unmasked_pii, blocking_sessions, lock_wait"),
        ({"environments": {"dev": {"blocking_sessions": "kill"}}},
         "environments.dev.blocking_sessions: Input should be 'wait', 'fail' or 'terminate'"),
        ({"environments": {"dev": {"lock_wait": "soon"}}}, "environments.dev.lock_wait: 'soon' is not a duration"),
        ({"environments": {"dev": {"lock_wait": "2h"}}}, "environments.dev.lock_wait: '2h' is out of range"),
        ({"environments": {"dev": {"lock_wait": 0}}}, "environments.dev.lock_wait: 0 is out of range"),
        ({"environments": {"dev": {"blocking_sessions": "fail", "lock_wait": 60}}},
         "environments.dev: lock_wait has no effect with blocking_sessions: fail"),
        ({"snapshot": {"preview": "all"}}, "snapshot.preview: Input should be 'none', 'masked' or 'raw'"),
        ({"environments": {"dev": {"mask": {"shop.customers.email": "emial"}}}}, "unknown strategy 'emial'"),
        ({"environments": {"dev": {"mask": {"email": "email"}}}}, "must name a column as schema.table.column"),
        ({"environments": {"dev": {"unmasked_pii": "maybe"}}}, "environments.dev.unmasked_pii: Input should be 'error', 'warn' or 'allow'"),
        ({"snapshot": {"keep": -1}}, "snapshot.keep: Input should be greater than or equal to 0"),
        ({"snapshot": {"backfill_missing": "skip"}}, "snapshot.backfill_missing: Input should be 'capture' or 'refuse'"),
        ({"snapshot": {"jobs": 0}}, "snapshot.jobs: Input should be greater than or equal to 1"),
        ({"snapshot": {"jobs": "two"}}, "snapshot.jobs: Input should be a valid integer"),
        ({"snapshot": {"store": "gs://bucket/x"}}, "snapshot.store: 'gs://bucket/x': the store is a folder path or s3://bucket/prefix"),
        ({"snapshot": {"store": "s3://B/x"}}, "snapshot.store: 's3://B/x' does not name a bucket"),
        ({"snapshot": {"s3": {"endpoint_url": "http://minio:9000"}}},
         "snapshot: s3: applies only to store: s3://bucket/prefix"),
        ({"snapshot": {"store": "s3://bucket/x", "s3": {"endpoint_url": "minio:9000"}}},
         "snapshot.s3.endpoint_url: 'minio:9000' is not an endpoint"),
        ({"snapshot": {"store": "s3://bucket/x", "s3": {"regon": "eu-west-1"}}},
         "snapshot.s3.regon: unknown key; the keys allowed here are: endpoint_url, region, checksums"),
        ({"snapshot": {"store": "s3://bucket/x", "s3": {"checksums": "sometimes"}}},
         "snapshot.s3.checksums: Input should be 'auto', 'when_required' or 'when_supported'"),
        ({"snapshot": {"compression": "gzip"}}, "snapshot.compression: Input should be 'zstd' or 'none'"),
        ({"snapshot": {"compression_level": 40}}, "snapshot.compression_level: Input should be less than or equal to 19"),
        ({"snapshot": {"encrypt_to": ["age1notakey"]}}, "snapshot.encrypt_to: entry 1 (age1notakey...) is not an age recipient"),
        ({"environments": {"Dev QA": {}}}, "'Dev QA' is not a valid environment name"),
        ({"environments": {"Staging": {}}}, "write 'staging' instead"),
        ({"environments": {"2nd": {}}}, "write 'env_2nd' instead"),
        ({"environments": {"prod": {}}}, "'prod' is production's own name"),
        ({"environments": {}}, "environments: at least one environment is needed"),
        ({"environments": None}, "environments: at least one environment is needed"),
        ({"snapshot": {"include": []}}, 'snapshot.include: an empty list selects nothing; write ["*"]'),
        ({"snapshot": {"exclude": [""]}}, "snapshot.exclude: a pattern is empty"),
        (["dev"], "the top level must be a mapping"),
        ({"environments": {"dev": {"subset": {"shop.customers": {"percent": 0}}}}},
         "environments.dev.subset: shop.customers: percent 0 is out of range; write a number above 0 and at most 100"),
        ({"environments": {"dev": {"subset": {"shop.customers": {"percent": 120}}}}}, "percent 120 is out of range"),
        ({"environments": {"dev": {"subset": {"customers": {"percent": 5}}}}},
         "'customers' must name a table as schema.table, e.g. shop.customers"),
        ({"environments": {"dev": {"subset": {"shop.customers": {"pct": 5}}}}},
         "shop.customers: {'pct': 5} is not a subset rule; write {percent: N} (above 0, at most 100) or {where:"),
        ({"environments": {"dev": {"subset": {"shop.orders": {"where": " "}}}}}, "shop.orders: where needs a condition"),
        ({"environments": {"dev": {"subset": ["shop.customers"]}}}, "subset is a mapping of schema.table to a rule"),
        ({"environments": {"dev": {"load": "swop"}}}, "environments.dev.load: Input should be 'auto', 'swap' or 'in_place'"),
        ({"environments": {"dev": {"jobs": 0}}}, "environments.dev.jobs: Input should be greater than or equal to 1"),
        ({"environments": {"dev": {"jobs": 64}}}, "environments.dev.jobs: Input should be less than or equal to 16"),
        ({"snapshot": {"split_larger_than": "1 parsec"}},
         "snapshot.split_larger_than: '1 parsec' is not a size; write bytes or a number with MB or GB"),
        ({"snapshot": {"split_larger_than": "64kB"}}, "snapshot.split_larger_than: '64kB' is below 1MB"),
        ({"environments": {"dev": {"schema": "sharde"}}},
         "environments.dev.schema: Input should be 'strict', 'shared', 'add' or 'production'"),
        ({"environments": {"dev": {"schema_mode": "shared"}}},
         "environments.dev.schema_mode: unknown key; the keys allowed here are: mask, unmasked_pii, blocking_sessions, "
         "lock_wait, subset, load, jobs, schema, keep"),
        ({"environments": {"dev": {"keep": {"feature_flags": "all"}}}},
         "'feature_flags' must name a table as schema.table, e.g. public.feature_flags"),
        ({"environments": {"dev": {"keep": {"public.users": {"where": "x"}}}}},
         "public.users: keep takes all, or a condition on the table's rows as a string"),
        ({"environments": {"dev": {"keep": ["public.users"]}}}, "keep is a mapping of schema.table to all or a condition"),
        ({"alerts": {"slak": {"channel": "#ops"}}},
         "alerts.slak: unknown key; the keys allowed here are: slack, webhook, email, stale_after, ui_url"),
        ({"alerts": {"slack": {}}}, "alerts.slack.channel: required here, and missing"),
        ({"alerts": {"slack": {"channel": "data-ops"}}}, "'data-ops' is not a channel: write its name with # (\"#data-ops\")"),
        ({"alerts": {"slack": {"channel": "#ops", "token": "xoxb-1"}}},
         "alerts.slack.token: unknown key; the keys allowed here are: channel, api_url"),
        ({"alerts": {"webhook": {"url": "https://hooks.example/x"}}},
         "alerts.webhook.url: unknown key; no keys are allowed here yet (write {})"),
        ({"alerts": {"email": {"to": []}}}, "alerts.email.to: write the addresses to send to"),
        ({"alerts": {"email": {"to": ["oncall"]}}}, "alerts.email.to: 'oncall' is not a mail address"),
        ({"alerts": {"stale_after": "30s"}}, "alerts.stale_after: '30s' is below a minute"),
        ({"alerts": {"stale_after": "a day"}}, "alerts.stale_after: 'a day' is not a duration"),
        ({"alerts": {"ui_url": "dagster.internal"}}, "alerts.ui_url: 'dagster.internal' is not an address"),
    ],
)
def test_invalid_configuration_names_the_key_and_the_fix(data, expected):
    message = error_for(data)
    assert message.startswith("replication.yaml")
    assert expected in message


def test_load_settings_default_to_auto_with_two_connections_and_read_sizes():
    config = parse_config({"snapshot": {"split_larger_than": "256MB"},
                           "environments": {"dev": {}, "staging": {"load": "swap", "jobs": 4}, "qa": {"load": "in_place"}}})
    assert (config.environments["dev"].load, config.environments["dev"].jobs) == ("auto", 2)
    assert (config.environments["staging"].load, config.environments["staging"].jobs) == ("swap", 4)
    assert config.environments["qa"].load == "in_place"
    assert config.snapshot.split_larger_than == 256 << 20
    assert parse_config({}).snapshot.split_larger_than == 1 << 30
    assert parse_config({"snapshot": {"split_larger_than": None}}).snapshot.split_larger_than is None


def test_schema_and_keep_default_to_strict_and_nothing_kept():
    config = parse_config({"environments": {"dev": {}, "staging": {"schema": "production",
                                                                   "keep": {"public.flags": " all ", "public.users": "id < 10"}}}})
    assert (config.environments["dev"].schema_mode, config.environments["dev"].keep) == ("strict", {})
    assert config.environments["staging"].schema_mode == "production"
    assert config.environments["staging"].keep == {"public.flags": "all", "public.users": "id < 10"}


def test_alerts_default_to_no_channel_stale_after_26_hours_and_read_each_channel():
    defaults = parse_config({}).alerts
    assert (defaults.channels, defaults.stale_after, defaults.ui_url) == ([], 26 * 3600, "http://localhost:3000")
    # `webhook:` with nothing after it reads as None: the channel is wanted, with no settings.
    config = parse_config(yaml.safe_load("""
alerts:
  slack: {channel: "#data-ops"}
  webhook:
  email: {to: oncall@example.com}
  stale_after: 2d
  ui_url: https://dagster.example.com/
""")).alerts
    assert config.channels == ["slack", "webhook", "email"]
    assert (config.slack.channel, config.slack.api_url) == ("#data-ops", "https://slack.com/api/")
    assert config.email.to == ["oncall@example.com"]
    assert (config.stale_after, config.ui_url) == (2 * 86400, "https://dagster.example.com")
    assert parse_config(yaml.safe_load(parse_config({"alerts": config.model_dump()}).to_yaml())).alerts == config


def test_the_alerts_shown_in_the_readme_are_valid():
    readme = (REPO / "README.md").read_text()
    blocks = [block for block in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL) if block.startswith("alerts:")]
    assert len(blocks) >= 1
    for block in blocks:
        assert parse_config(yaml.safe_load(block)).alerts.channels


def test_lock_settings_read_durations_and_default_per_policy():
    config = parse_config({"environments": {"dev": {"blocking_sessions": "terminate"}, "qa": {"lock_wait": "3m"},
                                            "uat": {"blocking_sessions": "fail"}, "staging": {"lock_wait": 90}}})
    policies = {name: env.lock_policy for name, env in config.environments.items()}
    assert {name: (p.blocking_sessions, p.patience) for name, p in policies.items()} == {
        "dev": ("terminate", 30), "qa": ("wait", 180), "uat": ("fail", 5), "staging": ("wait", 90)}
    assert ReplicationConfig().environments["dev"].lock_policy.patience == 180
    assert parse_config({"environments": {"dev": {"lock_wait": "1.5 min"}}}).environments["dev"].lock_wait == 90


def test_every_problem_is_listed_at_once():
    message = error_for({"snapshot": {"include": [], "exlude": []}, "environments": {"QA": {}}})
    assert "snapshot.include" in message and "snapshot.exlude" in message and "'QA'" in message


def test_bare_environment_key_means_an_empty_mapping(tmp_path):
    path = tmp_path / "replication.yaml"
    path.write_text("environments:\n  dev:\n  uat: {}\n")
    assert load_config(path).environment_names == ["dev", "uat"]


def test_broken_yaml_and_missing_file_are_explained(tmp_path, monkeypatch):
    path = tmp_path / "replication.yaml"
    path.write_text("environments:\n  dev: {\n")
    with pytest.raises(ConfigurationError, match=r"is not valid YAML at line \d+"):
        load_config(path)
    monkeypatch.setenv("REPLICATION_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigurationError, match="REPLICATION_CONFIG points at .*nope.yaml, which is not a file"):
        config_path()


def test_without_a_file_the_definitions_hold_the_four_default_assets(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REPLICATION_CONFIG", "SNAPSHOT_DIR")}
    script = "from replication import defs; print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(sorted(ASSETS))


def test_a_typo_stops_the_code_location_from_loading(tmp_path):
    bad = tmp_path / "replication.yaml"
    bad.write_text("snapshot:\n  include: ['*']\nenvironments:\n  dev: {}\n  staging: {maks: {}}\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")},
           "DAGSTER_HOME": str(tmp_path), "REPLICATION_CONFIG": str(bad)}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "environments.staging.maks: unknown key" in output


def test_a_fourth_environment_follows_from_one_line():
    config = parse_config({"environments": {"dev": {}, "staging": {}, "qa": {}, "uat": {}}})
    defs = build_definitions(config)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {*ASSETS, "uat_db"}
    assert "uat_db_target" in defs.resources
    job = defs.resolve_job_def("database_replication_fanout")
    assert job.description == "Daily replication from production to Dev, Staging, QA and UAT."
    assert job.tags["fan-out"] == "dev-staging-qa-uat"
    environ = {name: "x" for env in ("prod", "dev", "staging", "qa", "uat") for name in env_vars_for(env)}
    forwarded = docker_executor_config(config, environ)["env_vars"]
    assert {"UAT_DB_CONNECTION", "UAT_DB_USER", "UAT_DB_PASSWORD"} <= set(forwarded)
    assert f"REPLICATION_CONFIG_YAML={config.to_yaml()}" in forwarded


def test_uat_added_through_the_file_alone_is_replicated_end_to_end(cluster, replication_env, tmp_path):
    """A user's whole change: one line in replication.yaml and three variables, then the Dagster CLI."""
    cluster.add_environment("uat")
    config = tmp_path / "replication.yaml"
    config.write_text(Path(os.environ["REPLICATION_CONFIG"]).read_text() + "  uat: {}\n")
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, **cluster.env_vars(), "REPLICATION_CONFIG": str(config), "DAGSTER_HOME": str(home)}
    assert {"UAT_DB_CONNECTION", "UAT_DB_USER", "UAT_DB_PASSWORD"} <= set(env)
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "replication", "-j", JOB,
         "--tags", json.dumps({"dagster/partition": PARTITION})],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "uat: 5 tables" in output
    prod = cluster.fingerprints("prod")
    assert prod["shop.order_items"][0] > 0
    for name in ("dev", "staging", "qa", "uat"):
        assert cluster.fingerprints(name) == prod, name


def test_every_name_of_an_environment_comes_from_one_place():
    from replication.config import names_for

    uat = names_for("uat")
    assert (uat.asset, uat.resource, uat.checks, uat.display) == ("uat_db", "uat_db_target", "uat_db_checks", "UAT")
    assert tuple(uat.variables) == ("UAT_DB_CONNECTION", "UAT_DB_USER", "UAT_DB_PASSWORD")
    assert names_for("prod").resource == "prod_db"
