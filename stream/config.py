"""Typed settings: the only place that reads environment variables.

Sources, strongest first: values passed in code (tests, the CLI), ``CAPI_STREAM_*`` environment
variables (nested with ``__``, e.g. ``CAPI_STREAM_DELIVERER__LINGER_MS=500``), a TOML config file
(``CAPI_STREAM_CONFIG`` or ``--config``), then the defaults below. Secrets are ``SecretStr``: they
print as ``**********`` and reach the wire only through ``.get_secret_value()`` at the sink.
Any librdkafka property passes through unchanged in ``kafka`` (all clients), ``consumer``,
``producer`` and ``admin``, so SASL and SSL work as librdkafka documents them; likewise any
property of confluent-kafka's Schema Registry client passes through in ``schema_registry``
(``basic.auth.user.info``, ``bearer.auth.*``, ``ssl.*``).

:func:`load_settings` (the CLI's way in) also refuses what the model alone cannot see: a
``CAPI_STREAM_*`` variable that names no setting, a variable that is not the JSON it must be,
a librdkafka property librdkafka rejects, and a registry property the registry client rejects.
Building :class:`Settings` reads and checks the credentials files (:mod:`stream.credentials`).
Each of these is one :class:`ConfigError` line, naming each problem where it was written
(``capi.toml: [deliverer] linger``, ``CAPI_STREAM_DELIVERER__LINGER``; :mod:`stream.config_errors`).
The command line's ``--bootstrap`` and ``--log-level`` win over every source
(:mod:`stream.command_line`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from stream import command_line
from stream.config_errors import Sources, read_toml, unknown_variable_problems
from stream.core.errors import ConfigError
from stream.credentials import Credentials
from stream.logs import librdkafka_logger

KafkaProps = dict[str, str | int | float | bool]
#: A client's whole librdkafka config: properties plus the ``logger`` object.
ClientConfig = dict[str, Any]

# the --config file of the settings being built (load_settings sets it for one construction)
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("capi_stream_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topics(_Section):
    """Topic names and how ``capi-stream topics create`` makes them."""

    raw: str = "capi.events.raw"
    enriched: str = "capi.events.enriched"
    dlq: str = "capi.events.dlq"
    ledger: str = "capi.deliveries"
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    retention_ms: int = Field(7 * 86_400_000, ge=-1)
    dlq_retention_ms: int = Field(30 * 86_400_000, ge=-1)


class Normalizer(_Section):
    """The normalize/hash stage."""

    group_id: str = "capi-normalizer"
    processing: Literal["exactly_once", "at_least_once"] = "exactly_once"
    transactional_id: str = "capi-normalizer"
    default_region: str = Field("US", min_length=2, max_length=2)
    default_pixel_id: str | None = None
    hash_external_id: bool = True
    max_future_skew_s: int = Field(60, ge=0)
    age_safety_margin_s: int = Field(3600, ge=0)
    poll_batch: int = Field(500, ge=1, le=100_000)
    poll_timeout_s: float = Field(0.5, gt=0)
    # a blocking librdkafka call (init/begin/send offsets/commit/abort, flush) that has not
    # returned after this long ends the process non-zero: its supervisor restarts it
    call_timeout_s: float = Field(30.0, gt=0)
    # /healthz turns red when the loop has not ticked for this long
    stall_timeout_s: float = Field(120.0, gt=0)


class Deliverer(_Section):
    """The windowed batcher that posts to the Graph API or a CAPI Gateway."""

    group_id: str = "capi-deliverer"
    destination: Literal["graph", "gateway"] = "graph"
    graph_url: str = "https://graph.facebook.com"
    api_version: str = Field("v25.0", pattern=r"^v[0-9]+\.[0-9]+$")
    partner_agent: str | None = "capi-stream"
    test_event_code: str | None = None
    production: bool = False
    gateway_url: str | None = None
    gateway_only: bool = True
    gateway_filter: str | None = Field(None, pattern=r"^[\w.]+:[\w]+$")
    max_events: int = Field(1000, ge=1, le=1000)
    max_bytes: int = Field(4_000_000, ge=10_000)
    linger_ms: int = Field(1000, ge=0)
    age_guard_s: int = Field(3600, ge=0)
    max_in_flight: int = Field(32, ge=1)
    max_in_flight_per_lane: int = Field(4, ge=1)
    request_timeout_s: float = Field(30.0, gt=0)
    retry_base_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    # above what can be in flight (max_in_flight x max_events) and in open windows: a healthy
    # stream never pauses (each pause drops librdkafka's prefetched records, and the first
    # records after a resume come about half a second later)
    max_pending: int = Field(40_000, ge=1000)
    resume_pending: int = Field(20_000, ge=0)
    commit_interval_s: float = Field(2.0, gt=0)
    # a partition whose watermark advanced is committed at most this often (coalesced)
    commit_min_interval_s: float = Field(0.25, ge=0)
    # re-sends of a batch Meta answered with events_received below the number sent, before the
    # unconfirmed events are dead-lettered as short_receipt
    short_receipt_retries: int = Field(3, ge=0)
    # static group membership: group.instance.id = "<group_id>-<host name>-<worker>", or
    # "<group_instance_id>-<worker>" when set here; static_membership=false turns it off
    static_membership: bool = True
    group_instance_id: str | None = None
    # /healthz turns red when the loop has not ticked for this long
    stall_timeout_s: float = Field(120.0, gt=0)
    revoke_timeout_s: float = Field(10.0, ge=0)
    ledger: bool = False


class Observability(_Section):
    """Metrics, health and logs."""

    metrics_port: int | None = Field(None, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"


class Settings(BaseSettings):
    """Everything capi-stream can be told; see README "Configuration" for each setting."""

    model_config = SettingsConfigDict(
        env_prefix="CAPI_STREAM_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    # how long topics create, publish and the stages wait at start for the cluster to answer
    kafka_connect_timeout_s: float = Field(30.0, gt=0)
    schema_registry_url: str | None = None
    # the Schema Registry client's own properties (auth, TLS), passed through unchanged
    schema_registry: KafkaProps = Field(default_factory=dict)
    wire_format: Literal["auto", "confluent", "schemaless"] = "auto"
    kafka: KafkaProps = Field(default_factory=dict)
    consumer: KafkaProps = Field(default_factory=dict)
    producer: KafkaProps = Field(default_factory=dict)
    admin: KafkaProps = Field(default_factory=dict)
    topics: Topics = Field(default_factory=Topics)
    normalizer: Normalizer = Field(default_factory=Normalizer)
    deliverer: Deliverer = Field(default_factory=Deliverer)
    observability: Observability = Field(default_factory=Observability)

    access_token: SecretStr | None = None
    access_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    access_tokens_file: Path | None = None
    app_secret: SecretStr | None = None
    app_secret_file: Path | None = None
    gateway_access_key: SecretStr | None = None

    # built from the four token/secret settings when the settings are; files are read then
    _credentials: Credentials = PrivateAttr()

    @field_validator("access_tokens", mode="before")
    @classmethod
    def _tokens_json(cls, value: Any) -> Any:
        # CAPI_STREAM_ACCESS_TOKENS='{"123": "EAAB..."}' arrives as a string
        return json.loads(value) if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files: explicit only
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - secrets come via *_file
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get() or os.environ.get("CAPI_STREAM_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    # -- derived values ----------------------------------------------------------------------

    @property
    def effective_wire_format(self) -> Literal["confluent", "schemaless"]:
        """``auto`` means the Confluent format when a registry is configured."""
        if self.wire_format == "auto":
            return "confluent" if self.schema_registry_url else "schemaless"
        return self.wire_format

    def model_post_init(self, context: Any, /) -> None:  # noqa: ARG002 - pydantic's signature
        """Read and check the credentials files now (:class:`ConfigError` naming the setting)."""
        self._credentials = Credentials(
            access_token=self.access_token, access_tokens=self.access_tokens,
            access_tokens_file=self.access_tokens_file, app_secret=self.app_secret,
            app_secret_file=self.app_secret_file,
        )  # fmt: skip

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Settings:
        """A copy; new credentials are read when the update touches a token or secret."""
        copy = super().model_copy(update=update, deep=deep)
        if update and _CREDENTIAL_FIELDS & set(update):
            copy.model_post_init(None)
        return copy

    @property
    def credentials(self) -> Credentials:
        """Tokens and the app secret, kept in memory, files re-read when they change."""
        return self._credentials

    def token_for(self, pixel_id: str) -> SecretStr | None:
        """The access token for a pixel: its own, else the default one (see Credentials)."""
        return self._credentials.token_for(pixel_id)

    def secret(self) -> SecretStr | None:
        """The app secret, from the setting or its file (see Credentials)."""
        return self._credentials.secret()

    # -- librdkafka dictionaries -------------------------------------------------------------
    # Every client the project builds gets its config from one of these three methods, so this
    # is the one place librdkafka's own log is routed: "logger" sends it through our logging,
    # levelled and rate-limited (stream.logs), instead of raw lines on stderr.

    def consumer_config(self, group_id: str, **extra: str | int | float | bool) -> ClientConfig:
        """A consumer's librdkafka config: our safe defaults, then the passthrough settings."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "isolation.level": "read_committed",
            **extra,
            **self.kafka,
            **self.consumer,
            "logger": librdkafka_logger(),
        }

    def producer_config(self, **extra: str | int | float | bool) -> ClientConfig:
        """A producer's librdkafka config: idempotent, ``acks=all``, then the passthrough."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            **extra,
            **self.kafka,
            **self.producer,
            "logger": librdkafka_logger(),
        }

    def admin_config(self) -> ClientConfig:
        """An admin client's librdkafka config."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            **self.kafka,
            **self.admin,
            "logger": librdkafka_logger(),
        }


_CREDENTIAL_FIELDS = frozenset(
    {"access_token", "access_tokens", "access_tokens_file", "app_secret", "app_secret_file"}
)
#: CAPI_STREAM_* variables the project reads that are not fields of Settings.
_NOT_FIELDS = frozenset({"config"})
_PREFIX = "CAPI_STREAM_"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings, turning any validation failure into one :class:`ConfigError`.

    The message names every bad setting where it was written (``capi.toml: [deliverer]
    linger``, ``CAPI_STREAM_DELIVERER__LINGER``, see :mod:`stream.config_errors`), suggests
    the closest name for an unknown one, and never echoes a value (it could be a token). Beyond
    what the model checks: every ``CAPI_STREAM_*`` variable must name a setting, and the
    librdkafka properties must be ones librdkafka accepts (checked by building each kind of
    client without a bootstrap server, so nothing connects).
    """
    overrides = _merge(command_line.overrides(), overrides)
    from_env = os.environ.get("CAPI_STREAM_CONFIG") or None
    path = config_file or (Path(from_env) if from_env else None)
    toml: tuple[str, dict[str, Any]] | None = None
    if path is not None:
        label = str(path) if config_file is not None else f"CAPI_STREAM_CONFIG={path}"
        if not path.is_file():
            raise ConfigError(f"config file {label} does not exist")
        toml = (str(path), read_toml(path, str(path)))
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigError(
            "; ".join(unknown_variable_problems(unknown, list(Settings.model_fields)))
        )
    token = _CONFIG_FILE.set(path)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        sources = Sources(Settings, overrides, os.environ, toml)
        raise ConfigError("; ".join(sources.problems(exc.errors()))) from None
    except SettingsError as exc:
        # pydantic-settings could not decode a variable as JSON; its cause holds the value
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"{_PREFIX}{field.group(1).upper()}" if field else "a CAPI_STREAM_ variable"
        raise ConfigError(f"{name}: not valid JSON") from None
    finally:
        _CONFIG_FILE.reset(token)
    check_librdkafka(settings)
    check_registry(settings)
    return settings


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, tables merged key by key (as the sources are)."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, Mapping) and isinstance(value, Mapping):
            merged[key] = _merge(below, value)
        else:
            merged[key] = value
    return merged


def check_registry(settings: Settings) -> None:
    """Build the Schema Registry client the settings will make, unconnected; :class:`ConfigError`
    naming ``CAPI_STREAM_SCHEMA_REGISTRY`` if it refuses a property (never echoing a value)."""
    if not settings.schema_registry:
        return
    from stream.kafka.registry import Registry  # only when a registry is set up: it is slow

    try:
        Registry(settings.schema_registry_url or "http://unset.invalid", settings.schema_registry)
    except OSError as exc:
        # a TLS file it names (ssl.ca.location, ...) cannot be read; ssl does not say which
        files = [f"{k}={v}" for k, v in settings.schema_registry.items() if k.endswith(".location")]
        problem = (
            f"{_PREFIX}SCHEMA_REGISTRY: cannot read a file it names ({', '.join(files)}): "
            f"{exc.strerror or type(exc).__name__}"
        )
        raise ConfigError(problem) from None
    except (ValueError, TypeError) as exc:
        text = str(exc)
        for value in settings.schema_registry.values():
            if str(value):
                text = text.replace(str(value), "**********")
        problem = f"{_PREFIX}SCHEMA_REGISTRY: the registry client refused it: {text}"
        raise ConfigError(problem) from None


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``CAPI_STREAM_*`` variables that name no setting (nested ones are the model's job)."""
    known = set(Settings.model_fields) | _NOT_FIELDS
    return sorted(
        key
        for key in environ
        if key.upper().startswith(_PREFIX)
        and key[len(_PREFIX) :].split("__", 1)[0].lower() not in known
    )


def check_librdkafka(settings: Settings) -> None:
    """Build each kind of client the settings will make, unconnected; :class:`ConfigError` if
    librdkafka refuses a property (naming the section that holds it)."""
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("capi_stream.librdkafka.check")
    if not quiet.handlers:  # drops the "no bootstrap.servers" notices of these throwaway clients
        quiet.propagate = False
        quiet.addHandler(logging.NullHandler())
    producers = [settings.producer_config()]
    if settings.normalizer.processing == "exactly_once":
        producers.append(settings.producer_config(**{"transactional.id": "capi-stream-check"}))
    checks: list[tuple[Any, ClientConfig, tuple[str, ...]]] = [
        (Consumer, settings.consumer_config("capi-stream-check"), ("kafka", "consumer")),
        *((Producer, config, ("kafka", "producer")) for config in producers),
        (AdminClient, settings.admin_config(), ("kafka", "admin")),
    ]
    for client_type, config, sections in checks:
        unconnected = {
            **{k: v for k, v in config.items() if k not in _SERVERS},
            "logger": quiet,
        }
        try:
            client = client_type(unconnected)
        except KafkaException as exc:
            err: Any = exc.args[0] if exc.args else None
            text = err.str() if hasattr(err, "str") else str(exc)
            raise ConfigError(_librdkafka_problem(settings, sections, text)) from None
        if isinstance(client, Consumer):
            client.close()


_SERVERS = ("bootstrap.servers", "metadata.broker.list")


def _librdkafka_problem(settings: Settings, sections: tuple[str, ...], text: str) -> str:
    """One line naming the section that holds the refused property, without its value."""
    named = set(re.findall(r'"([^"]+)"', text))
    holders = [s for s in sections if named & set(getattr(settings, s))] or list(sections)
    where = " or ".join(f"{_PREFIX}{s.upper()}" for s in holders)
    # 'Invalid value "hunter2" for configuration property "sasl.password"': drop the value
    text = re.sub(r'Invalid value "[^"]*"', "Invalid value", text)
    return f"{where}: librdkafka refused it: {text}"
