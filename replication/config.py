"""`replication.yaml`: the environments and the table selection, validated when the definitions load.

Every environment named here becomes asset `N_db`, resource `N_db_target` and the variables
`N_DB_CONNECTION`, `N_DB_USER`, `N_DB_PASSWORD`; nothing else in the code lists environments.
A typo is an error naming the key, never a silently ignored setting. A later setting is one
field on one of these models.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .engine.errors import ConfigurationError
from .engine.pg.locks import LockPolicy
from .engine.privacy.mask import NAMED, STRATEGY_HELP, WITH_ARGUMENT, MaskRule
from .engine.storage import parse_recipients
from .engine.storage.s3 import CHECKSUM_MODES, is_s3_url
from .engine.subset.plan import SubsetRule

CONFIG_VARIABLE = "REPLICATION_CONFIG"
# The configuration itself, as YAML: how a launched step container gets exactly the configuration
# the run was launched with, whatever file its image holds.
CONFIG_TEXT_VARIABLE = "REPLICATION_CONFIG_YAML"
DEFAULT_CONFIG_NAME = "replication.yaml"
DEFAULT_ENVIRONMENTS = ("dev", "staging", "qa")
SOURCE = "prod"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# How a name is written in prose, where title case would read wrong.
_DISPLAY_NAMES = {"qa": "QA", "uat": "UAT", "sit": "SIT", "perf": "Perf"}


class EnvVarNames(NamedTuple):
    """The three variables that place and authenticate one database."""

    connection: str
    user: str
    password: str


def env_vars_for(name: str) -> EnvVarNames:
    """`dev` -> DEV_DB_CONNECTION, DEV_DB_USER, DEV_DB_PASSWORD (and `prod` for production)."""
    prefix = f"{name.upper()}_DB"
    return EnvVarNames(f"{prefix}_CONNECTION", f"{prefix}_USER", f"{prefix}_PASSWORD")


def display_name(name: str) -> str:
    return _DISPLAY_NAMES.get(name, name.replace("_", " ").title())


@dataclass(frozen=True)
class EnvironmentNames:
    """Every name one database goes by, in one place: `dev` -> asset `dev_db`, resource
    `dev_db_target`, checks step `dev_db_checks`, variables `DEV_DB_*`, "Dev" in prose.
    Production (`prod`) is read through resource `prod_db` and has no asset of its own."""

    name: str

    @property
    def asset(self) -> str:
        return f"{self.name}_db"

    @property
    def resource(self) -> str:
        return f"{SOURCE}_db" if self.name == SOURCE else f"{self.name}_db_target"

    @property
    def checks(self) -> str:
        return f"{self.asset}_checks"

    @property
    def variables(self) -> EnvVarNames:
        return env_vars_for(self.name)

    @property
    def display(self) -> str:
        return display_name(self.name)


def names_for(name: str) -> EnvironmentNames:
    return EnvironmentNames(name)


def _http_url(value: str, what: str, example: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{value!r} is not {what}; write {example}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Settings(_Strict):
    """Where an S3-compatible store answers, when it is not AWS's default endpoint (MinIO, R2, Ceph)."""

    endpoint_url: str | None = None
    region: str | None = None
    # S3's optional checksums: auto sends them to AWS and leaves them out for any other endpoint,
    # whose stores often refuse them (see engine/storage/s3.py); the manifest's sha256 is the proof.
    checksums: Literal[CHECKSUM_MODES] = "auto"

    @field_validator("endpoint_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        return value if value is None else _http_url(value, "an endpoint", "http(s)://host[:port], e.g. http://minio:9000")


class SnapshotSettings(_Strict):
    """What `prod_snapshot` captures and where and how it is stored; the asset config's
    include/exclude override the selection for one run."""

    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    keep: int = Field(default=7, ge=0)
    backfill_missing: Literal["capture", "refuse"] = "capture"
    jobs: int = Field(default=2, ge=1, le=16)
    # A plain table larger than this on disk is captured in parts of about this size by ctid
    # ranges, so several connections share it (pgcopydb's --split-tables-larger-than); null: never.
    split_larger_than: int | None = Field(default=1 << 30)
    # What the snapshot's materialization shows of its largest table: nothing, the columns that
    # no environment masks and that do not look personal (the default), or every column.
    preview: Literal["none", "masked", "raw"] = "masked"
    # A folder (default: $SNAPSHOT_DIR, else /tmp) or s3://bucket/prefix. Credentials come from the
    # AWS chain (variables, profile, role), never from this file.
    store: str | None = None
    s3: S3Settings | None = None
    compression: Literal["zstd", "none"] = "zstd"
    compression_level: int = Field(default=3, ge=1, le=19)
    # age recipients (public keys, age1...): the snapshot step encrypts to them; loaders decrypt
    # with SNAPSHOT_AGE_IDENTITY.
    encrypt_to: list[str] = Field(default_factory=list)

    @field_validator("split_larger_than", mode="before")
    @classmethod
    def _split_size(cls, value):
        if value is None:
            return None
        size = _bytes(value)
        if size < 1 << 20:
            raise ValueError(f"{value!r} is below 1MB: parts that small cost more than they save")
        return size

    @field_validator("store")
    @classmethod
    def _store_form(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if "://" in value and not is_s3_url(value):
            raise ValueError(f"{value!r}: the store is a folder path or s3://bucket/prefix")
        if is_s3_url(value) and not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", value):
            raise ValueError(f"{value!r} does not name a bucket; write s3://bucket/prefix")
        return value

    @field_validator("encrypt_to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        for position, recipient in enumerate(value):
            try:
                parse_recipients([recipient])
            except Exception:  # noqa: BLE001 - pyrage's own error types
                raise ValueError(f"entry {position + 1} ({recipient[:12]}...) is not an age recipient (age1...); "
                                 "write the public key that `age-keygen -y` prints") from None
        return [r.strip() for r in value]

    @model_validator(mode="after")
    def _s3_with_s3_store(self):
        if self.s3 is not None and not is_s3_url(self.store):
            raise ValueError("s3: applies only to store: s3://bucket/prefix; remove it or set store")
        return self

    @field_validator("include")
    @classmethod
    def _include_not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError('an empty list selects nothing; write ["*"] for every table')
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _patterns_not_blank(cls, value: list[str]) -> list[str]:
        if any(not pattern.strip() for pattern in value):
            raise ValueError("a pattern is empty; write schema.table, table or a glob such as shop.*")
        return value




def _mask_rule(key: str, value) -> MaskRule:
    if value is None:  # `birthday: null` reads as None in YAML; it means the null strategy
        return MaskRule("null")
    if isinstance(value, str):
        if value not in NAMED:
            raise ValueError(f"{key}: unknown strategy {value!r}; write {STRATEGY_HELP}")
        return MaskRule(value)
    if isinstance(value, dict) and len(value) == 1:
        (kind, argument), = value.items()
        if kind == "sql" and isinstance(argument, str) and argument.strip():
            return MaskRule("sql", argument)
        if kind == "constant" and not isinstance(argument, (dict, list)):
            return MaskRule("constant", argument)
    raise ValueError(f"{key}: {value!r} is not a masking rule; write {STRATEGY_HELP}")


_SUBSET_HELP = "write {percent: N} (above 0, at most 100) or {where: <SQL condition on the table's columns>}"


def _subset_rule(key: str, value) -> SubsetRule:
    schema, _, table = key.partition(".")
    if not schema or not table:
        raise ValueError(f"{key!r} must name a table as schema.table, e.g. shop.customers")
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("percent", "where"):
        raise ValueError(f"{key}: {value!r} is not a subset rule; {_SUBSET_HELP}")
    (kind, argument), = value.items()
    if kind == "percent":
        if isinstance(argument, bool) or not isinstance(argument, (int, float)) or not 0 < argument <= 100:
            raise ValueError(f"{key}: percent {argument!r} is out of range; write a number above 0 and at most 100")
        return SubsetRule(percent=float(argument))
    if not isinstance(argument, str) or not argument.strip():
        raise ValueError(f"{key}: where needs a condition, e.g. where: \"created_at >= now() - interval '90 days'\"")
    return SubsetRule(where=argument.strip())


_DURATION = re.compile(r"^\s*(?P<n>\d+(\.\d+)?)\s*(?P<unit>s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Loads must finish within the run's 3600 s limit: a bound close to it would only move the failure.
MAX_LOCK_WAIT_SECONDS = 1800


_SIZE = re.compile(r"^\s*(?P<n>\d+(\.\d+)?)\s*(?P<unit>[kmgt]i?b?)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _bytes(value) -> int:
    """`1073741824`, `512MB`, `1GB`, `2 GiB` -> bytes (binary units either way, as PostgreSQL's settings)."""
    if isinstance(value, bool):
        raise ValueError("write a size such as 512MB or 1GB")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; write bytes or a number with MB or GB (512MB, 1GB)")
    unit = (match["unit"] or "b")[0].lower()
    return int(float(match["n"]) * _UNIT_BYTES.get(unit, 1))


def _seconds(value) -> float:
    """`90`, `90s`, `3m`, `3 min`, `1h`, `2d` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("write a duration such as 180, 90s or 3m")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write seconds (180) or a number with s, m or h (90s, 3m)")
    return float(match["n"]) * _UNIT_SECONDS[(match["unit"] or "s")[0]]


class EnvironmentSettings(_Strict):
    """One target environment: `{}` is an exact copy; `mask:` replaces personal columns on the way in."""

    mask: dict[str, MaskRule] = Field(default_factory=dict)
    unmasked_pii: Literal["error", "warn", "allow"] | None = None
    # Other sessions holding locks on this environment's replicated tables: wait for them (up to
    # lock_wait), fail at once naming them, or end them after lock_wait (Dev and QA).
    blocking_sessions: Literal["wait", "fail", "terminate"] = "wait"
    lock_wait: float | None = None
    # Roots (schema.table) and their rule: the environment keeps those rows and every row they need.
    subset: dict[str, SubsetRule] = Field(default_factory=dict)
    # swap: build beside the live tables and switch in a moment; in_place: one transaction that
    # readers wait for; auto: swap where the switch can carry everything, else in place, saying why.
    load: Literal["auto", "swap", "in_place"] = "auto"
    # Connections that fill the environment at once (a swap's; a load in place uses one).
    jobs: int = Field(default=2, ge=1, le=16)
    # What happens when production's definitions and the environment's differ: strict fails
    # naming the difference; shared loads what both have; add creates what production added;
    # production makes the replicated tables production's exactly.
    # (`schema` in replication.yaml; named otherwise here, as pydantic models have a .schema().)
    schema_mode: Literal["strict", "shared", "add", "production"] = Field(default="strict", alias="schema")
    # Rows the environment owns, carried across each refresh: schema.table -> all (the table is
    # never replaced) or a condition on its rows (an SQL boolean expression).
    keep: dict[str, str] = Field(default_factory=dict)

    @field_validator("keep", mode="before")
    @classmethod
    def _keep_rules(cls, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("keep is a mapping of schema.table to all or a condition, e.g. "
                             "public.users: \"email LIKE '%@example.test'\"")
        rules = {}
        for key, rule in value.items():
            if "." not in str(key):
                raise ValueError(f"{key!r} must name a table as schema.table, e.g. public.feature_flags")
            if not isinstance(rule, str) or not rule.strip():
                raise ValueError(f"{key}: keep takes all, or a condition on the table's rows as a string "
                                 "(an SQL boolean expression)")
            rules[str(key)] = rule.strip()
        return rules

    @field_validator("lock_wait", mode="before")
    @classmethod
    def _duration(cls, value):
        if value is None:
            return None
        seconds = _seconds(value)
        if not 1 <= seconds <= MAX_LOCK_WAIT_SECONDS:
            raise ValueError(f"{value!r} is out of range: between 1 s and {MAX_LOCK_WAIT_SECONDS} s (30 minutes)")
        return seconds

    @model_validator(mode="after")
    def _lock_wait_applies(self):
        if self.lock_wait is not None and self.blocking_sessions == "fail":
            raise ValueError("lock_wait has no effect with blocking_sessions: fail, which gives up after a few "
                             "seconds; remove it, or choose wait or terminate")
        return self

    @property
    def lock_policy(self) -> LockPolicy:
        return LockPolicy(self.blocking_sessions, self.lock_wait)

    @field_validator("mask", mode="before")
    @classmethod
    def _rules(cls, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("mask is a mapping of schema.table.column to a rule, e.g. shop.customers.email: email")
        rules = {}
        for key, rule in value.items():
            table, _, column = str(key).rpartition(".")
            if "." not in table or not column:
                raise ValueError(f"{key!r} must name a column as schema.table.column, e.g. shop.customers.email")
            rules[str(key)] = rule if isinstance(rule, MaskRule) else _mask_rule(str(key), rule)
        return rules

    @field_validator("subset", mode="before")
    @classmethod
    def _subset_rules(cls, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("subset is a mapping of schema.table to a rule, e.g. shop.customers: {percent: 5}")
        return {str(key): rule if isinstance(rule, SubsetRule) else _subset_rule(str(key), rule)
                for key, rule in value.items()}

    @property
    def personal_data_policy(self) -> str:
        """What an unmasked personal-looking column does: error where a mask: section exists, else allow."""
        return self.unmasked_pii or ("error" if self.mask else "allow")

    def rules(self) -> dict[str, dict[str, MaskRule]]:
        """{schema.table: {column: rule}}, the engine's form of `mask:`."""
        by_table: dict[str, dict[str, MaskRule]] = {}
        for key, rule in self.mask.items():
            table, _, column = key.rpartition(".")
            by_table.setdefault(table, {})[column] = rule
        return by_table


# What an alert needs that is not secret; tokens, the webhook's address and the mail server's
# password come only from variables (replication/alerts/channels.py).
MIN_STALE_AFTER_SECONDS = 60
DEFAULT_STALE_AFTER_SECONDS = 26 * 3600
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class SlackAlerts(_Strict):
    """Messages to one Slack channel, posted with the bot token in SLACK_BOT_TOKEN."""

    channel: str
    # Slack's Web API; GovSlack answers at https://slack-gov.com/api/ (and the tests at a local server).
    api_url: str = "https://slack.com/api/"

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^(#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{6,})$", value):
            raise ValueError(f"{value!r} is not a channel: write its name with # (\"#data-ops\") or its ID (C0123456789)")
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = _http_url(value, "an address", "https://slack.com/api/")
        return value if value.endswith("/") else value + "/"


class WebhookAlerts(_Strict):
    """A JSON POST to the address in ALERT_WEBHOOK_URL (Teams, PagerDuty, Opsgenie, your own)."""


class EmailAlerts(_Strict):
    """Mail to these addresses through the server the ALERT_SMTP_* variables name."""

    to: list[str]

    @field_validator("to", mode="before")
    @classmethod
    def _addresses(cls, value):
        addresses = [value] if isinstance(value, str) else value
        if not isinstance(addresses, list) or not addresses:
            raise ValueError("write the addresses to send to, e.g. to: [oncall@example.com]")
        for address in addresses:
            if not isinstance(address, str) or not _ADDRESS.match(address.strip()):
                raise ValueError(f"{address!r} is not a mail address")
        return [address.strip() for address in addresses]


class AlertSettings(_Strict):
    """Who hears about a failed run, a failed blocking check or a stale environment, and when an
    environment counts as stale (also the freshness check every environment shows in the UI)."""

    slack: SlackAlerts | None = None
    webhook: WebhookAlerts | None = None
    email: EmailAlerts | None = None
    # An environment holding production older than this is stale (the age of the snapshot it holds).
    stale_after: float = DEFAULT_STALE_AFTER_SECONDS
    # Where people open the Dagster UI: each message links to its run there.
    ui_url: str = "http://localhost:3000"

    @model_validator(mode="before")
    @classmethod
    def _present_means_on(cls, value):
        # `webhook:` with nothing after it reads as None: the channel is wanted, with no settings.
        if isinstance(value, dict):
            return {key: ({} if key in ALERT_CHANNELS and setting is None else setting)
                    for key, setting in value.items()}
        return value

    @field_validator("stale_after", mode="before")
    @classmethod
    def _stale_after(cls, value):
        seconds = _seconds(value)
        if seconds < MIN_STALE_AFTER_SECONDS:
            raise ValueError(f"{value!r} is below a minute; write the age at which an environment is stale, "
                             "such as 26h (a day and the run's time)")
        return seconds

    @field_validator("ui_url")
    @classmethod
    def _ui_url(cls, value: str) -> str:
        return _http_url(value, "an address", "the UI's, e.g. https://dagster.example.com").rstrip("/")

    @property
    def channels(self) -> list[str]:
        return [name for name in ALERT_CHANNELS if getattr(self, name) is not None]


# Each channel's key under alerts: and the model of its settings.
ALERT_CHANNELS: dict[str, type[_Strict]] = {"slack": SlackAlerts, "webhook": WebhookAlerts, "email": EmailAlerts}


def _default_environments() -> dict[str, EnvironmentSettings]:
    return {name: EnvironmentSettings() for name in DEFAULT_ENVIRONMENTS}


class ReplicationConfig(_Strict):
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings)
    environments: dict[str, EnvironmentSettings] = Field(default_factory=_default_environments)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @field_validator("environments", mode="before")
    @classmethod
    def _environments_present(cls, value):
        if value is None or value == {}:
            raise ValueError("at least one environment is needed, for example `dev: {}`")
        if isinstance(value, dict):
            # `dev:` with nothing after it reads as None: the same as `dev: {}`.
            return {name: ({} if settings is None else settings) for name, settings in value.items()}
        return value

    @field_validator("environments")
    @classmethod
    def _names_valid(cls, value: dict[str, EnvironmentSettings]) -> dict[str, EnvironmentSettings]:
        for name in value:
            if name == SOURCE:
                raise ValueError(
                    f"{name!r} is production's own name (resource prod_db, variables PROD_DB_*); "
                    "name the environment after what it is, such as dev or uat"
                )
            if not _NAME.match(str(name)):
                suggestion = re.sub(r"[^a-z0-9_]+", "_", str(name).strip().lower()).strip("_") or "dev"
                if not suggestion[0].isalpha():
                    suggestion = f"env_{suggestion}"
                raise ValueError(
                    f"{name!r} is not a valid environment name: use lower-case letters, digits and "
                    f"underscores, starting with a letter, at most 40 characters (it becomes asset "
                    f"N_db and variables N_DB_*); write {suggestion!r} instead"
                )
        return value

    @property
    def environment_names(self) -> list[str]:
        return list(self.environments)

    @property
    def masked_columns(self) -> list[str]:
        """schema.table.column of every column some environment masks: never shown from production."""
        return sorted({key for env in self.environments.values() for key in env.mask})

    def to_yaml(self) -> str:
        """This configuration as replication.yaml text; parse_config(yaml.safe_load(it)) gives it back."""

        def rule(value: MaskRule):
            return value.strategy if value.strategy not in WITH_ARGUMENT else {value.strategy: value.value}

        data = {
            "snapshot": self.snapshot.model_dump(),
            "environments": {
                name: {
                    **({"mask": {k: rule(v) for k, v in env.mask.items()}} if env.mask else {}),
                    **({"unmasked_pii": env.unmasked_pii} if env.unmasked_pii else {}),
                    **({"blocking_sessions": env.blocking_sessions} if env.blocking_sessions != "wait" else {}),
                    **({"lock_wait": env.lock_wait} if env.lock_wait is not None else {}),
                    **({"subset": {k: ({"percent": v.percent} if v.percent is not None else {"where": v.where})
                                   for k, v in env.subset.items()}} if env.subset else {}),
                    **({"load": env.load} if env.load != "auto" else {}),
                    **({"jobs": env.jobs} if env.jobs != 2 else {}),
                    **({"schema": env.schema_mode} if env.schema_mode != "strict" else {}),
                    **({"keep": dict(env.keep)} if env.keep else {}),
                }
                for name, env in self.environments.items()
            },
            "alerts": self.alerts.model_dump(exclude_none=True),
        }
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key; {_known_keys(error['loc'])}"
    if error["type"] == "missing":
        return f"{where}: required here, and missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


def _known_keys(loc: tuple) -> str:
    model: type[BaseModel] = ReplicationConfig
    for part in loc[:-1]:
        if model is ReplicationConfig and part == "snapshot":
            model = SnapshotSettings
        elif model is SnapshotSettings and part == "s3":
            model = S3Settings
        elif model is ReplicationConfig and part == "environments":
            model = EnvironmentSettings
        elif model is ReplicationConfig and part == "alerts":
            model = AlertSettings
        elif model is AlertSettings and part in ALERT_CHANNELS:
            model = ALERT_CHANNELS[part]
        elif model is EnvironmentSettings:
            continue  # the environment's own name, or a mask key

    keys = ", ".join(field.alias or name for name, field in model.model_fields.items())
    return f"the keys allowed here are: {keys}" if keys else "no keys are allowed here yet (write {})"


def parse_config(data: object, origin: str = DEFAULT_CONFIG_NAME) -> ReplicationConfig:
    """Validate already-parsed YAML; every problem is listed, each with the key that holds it."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{origin}: the top level must be a mapping with `snapshot:`, `environments:` and `alerts:`.")
    try:
        return ReplicationConfig.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(error)}" for error in exc.errors())
        raise ConfigurationError(f"{origin} is not valid:\n{problems}") from None


def config_path(environ: dict[str, str] | None = None) -> Path | None:
    """`$REPLICATION_CONFIG`, else `replication.yaml` in the working directory, else None (defaults)."""
    environ = os.environ if environ is None else environ
    explicit = environ.get(CONFIG_VARIABLE, "").strip()
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigurationError(
                f"{CONFIG_VARIABLE} points at {path}, which is not a file: fix the path or unset it."
            )
        return path
    default = Path.cwd() / DEFAULT_CONFIG_NAME
    return default if default.is_file() else None


def load_config(path: Path | None = None) -> ReplicationConfig:
    """The validated configuration; without a file, dev, staging and qa with every table.

    `$REPLICATION_CONFIG_YAML`, when set, is the configuration itself and wins over any file.
    """
    text = os.environ.get(CONFIG_TEXT_VARIABLE, "")
    if path is None and text.strip():
        return parse_config(yaml.safe_load(text), CONFIG_TEXT_VARIABLE)
    path = config_path() if path is None else path
    if path is None:
        return ReplicationConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from None
    return parse_config(data, str(path))
