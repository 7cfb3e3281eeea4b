"""Settings: environment and file sources, librdkafka passthrough, secrets that never print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream.config import Settings, load_settings
from stream.core.errors import ConfigError

TOKEN = "EAAB-secret-token-value"


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """CAPI_STREAM_ variables, nested with __, set the matching settings."""
    monkeypatch.setenv("CAPI_STREAM_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CAPI_STREAM_DELIVERER__LINGER_MS", "250")
    settings = load_settings()
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.deliverer.linger_ms == 250


def test_config_file_is_read_below_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TOML file sets values; the environment still wins over it."""
    monkeypatch.delenv("CAPI_STREAM_CONFIG", raising=False)
    conf = tmp_path / "capi.toml"
    conf.write_text('bootstrap_servers = "file:9092"\n[topics]\nraw = "file.raw"\n')
    monkeypatch.setenv("CAPI_STREAM_TOPICS__RAW", "env.raw")
    settings = load_settings(conf)
    assert settings.bootstrap_servers == "file:9092"
    assert settings.topics.raw == "env.raw"


def test_invalid_setting_names_the_variable() -> None:
    """An invalid value gives one ConfigError naming the setting as its environment variable."""
    with pytest.raises(ConfigError, match="CAPI_STREAM_DELIVERER__MAX_EVENTS"):
        load_settings(deliverer={"max_events": 5000})


def test_unknown_setting_is_rejected() -> None:
    """A misspelt setting is an error, not silently ignored."""
    with pytest.raises(ConfigError, match="LINGERMS"):
        load_settings(deliverer={"lingerms": 5})


def test_secret_never_prints() -> None:
    """Tokens and the app secret print as stars in repr, str and error texts."""
    settings = Settings(access_tokens={"1": TOKEN}, app_secret=TOKEN)
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())
    assert settings.token_for("1") is not None
    assert settings.token_for("1").get_secret_value() == TOKEN  # type: ignore[union-attr]


def test_invalid_secret_setting_does_not_echo_value() -> None:
    """A bad value of a secret-bearing setting is reported without the value."""
    with pytest.raises(ConfigError) as info:
        load_settings(access_tokens=TOKEN)
    assert TOKEN not in str(info.value)


def test_tokens_per_pixel_from_file(tmp_path: Path) -> None:
    """Tokens come from a JSON file per pixel; a pixel without one gets the default token."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"111": "tok-111"}')
    settings = Settings(access_tokens_file=tokens, access_token="tok-default")
    assert settings.token_for("111").get_secret_value() == "tok-111"  # type: ignore[union-attr]
    assert settings.token_for("222").get_secret_value() == "tok-default"  # type: ignore[union-attr]


def test_librdkafka_passthrough_reaches_client_configs() -> None:
    """SASL/SSL and any other librdkafka property pass through unchanged."""
    settings = Settings(
        kafka={"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"},
        consumer={"fetch.min.bytes": 1024},
        producer={"linger.ms": 5},
    )
    consumer = settings.consumer_config("g")
    producer = settings.producer_config()
    assert consumer["security.protocol"] == "SASL_SSL"
    assert consumer["fetch.min.bytes"] == 1024
    assert consumer["enable.auto.commit"] is False
    assert producer["linger.ms"] == 5
    assert producer["enable.idempotence"] is True
    assert settings.admin_config()["sasl.mechanism"] == "PLAIN"


def test_wire_format_auto_follows_registry() -> None:
    """With a registry the wire format is Confluent's; without one, schemaless."""
    assert Settings().effective_wire_format == "schemaless"
    assert Settings(schema_registry_url="http://r").effective_wire_format == "confluent"


def test_cli_exits_2_on_invalid_configuration() -> None:
    """The CLI reports bad configuration in one line and exits 2 before connecting."""
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "topics", "create"],
        env={"CAPI_STREAM_TOPICS__PARTITIONS": "0", "PATH": "/usr/bin"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "CAPI_STREAM_TOPICS__PARTITIONS" in proc.stderr


def test_unknown_top_level_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CAPI_STREAM_ variable that names no setting is refused (its value never shown);
    CAPI_STREAM_CONFIG, read by the loader itself, is not a field but is allowed."""
    monkeypatch.setenv("CAPI_STREAM_ACESS_TOKEN", TOKEN)
    monkeypatch.setenv("CAPI_STREAM_CONFIG", "")
    with pytest.raises(ConfigError, match="CAPI_STREAM_ACESS_TOKEN") as info:
        load_settings()
    assert TOKEN not in str(info.value)
    monkeypatch.delenv("CAPI_STREAM_ACESS_TOKEN")
    assert load_settings().bootstrap_servers


@pytest.mark.parametrize("name", ["ACCESS_TOKENS", "KAFKA", "CONSUMER", "TOPICS"])
def test_malformed_json_variable_names_it(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A JSON-valued variable that is not JSON is one ConfigError naming it, without its value."""
    monkeypatch.setenv(f"CAPI_STREAM_{name}", '{"1": "' + TOKEN)
    with pytest.raises(ConfigError, match=f"^CAPI_STREAM_{name}: not valid JSON$") as info:
        load_settings()
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("section", ["kafka", "consumer", "producer", "admin"])
def test_unknown_librdkafka_property_names_its_section(section: str) -> None:
    """librdkafka refuses an unknown property when settings load: one ConfigError naming the
    section, before anything connects (the check builds clients without bootstrap servers)."""
    with pytest.raises(ConfigError, match=f'^CAPI_STREAM_{section.upper()}: .*"no.such.prop"'):
        load_settings(**{section: {"no.such.prop": 1}})


def test_invalid_librdkafka_value_is_not_echoed() -> None:
    """An invalid value is reported by property name only (it may be a password)."""
    with pytest.raises(ConfigError) as info:
        load_settings(kafka={"security.protocol": "not-a-protocol-" + TOKEN})
    assert "security.protocol" in str(info.value)
    assert TOKEN not in str(info.value)


def test_every_client_config_routes_librdkafka_logs() -> None:
    """Consumer, producer and admin configs carry the project's librdkafka logger, and a
    passthrough property cannot replace it."""
    from stream.logs import librdkafka_logger

    settings = Settings()
    for config in (settings.consumer_config("g"), settings.producer_config(),
                   settings.admin_config()):  # fmt: skip
        assert config["logger"] is librdkafka_logger()


def test_connect_timeout_setting() -> None:
    """kafka_connect_timeout_s defaults to 30 s and must be positive."""
    assert Settings().kafka_connect_timeout_s == 30.0
    with pytest.raises(ConfigError, match="CAPI_STREAM_KAFKA_CONNECT_TIMEOUT_S"):
        load_settings(kafka_connect_timeout_s=0)


def test_registry_properties_pass_through_unchanged() -> None:
    """``schema_registry`` reaches the registry client as given (auth, TLS), beside the URL."""
    from stream.kafka.registry import Registry

    conf = {"basic.auth.user.info": "user:pw", "timeout": 5}
    settings = load_settings(schema_registry_url="http://127.0.0.1:9", schema_registry=conf)
    assert settings.schema_registry == conf
    registry = Registry("http://127.0.0.1:9", settings.schema_registry)
    registry.close()


def test_unknown_registry_property_is_one_line_without_values() -> None:
    """A property the registry client does not know: :class:`ConfigError` naming
    CAPI_STREAM_SCHEMA_REGISTRY and the property, never a configured value."""
    with pytest.raises(ConfigError) as caught:
        load_settings(
            schema_registry_url="http://127.0.0.1:9",
            schema_registry={"basic.auth.user.info": "u:hunter2", "basic.auth.bogus": "x"},
        )
    text = str(caught.value)
    assert "CAPI_STREAM_SCHEMA_REGISTRY" in text
    assert "basic.auth.bogus" in text
    assert "hunter2" not in text


def test_unreadable_registry_tls_file_is_a_config_error(tmp_path: Path) -> None:
    """``ssl.ca.location`` naming no file: one line naming the setting and the path."""
    missing = tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match=r"CAPI_STREAM_SCHEMA_REGISTRY: cannot read .*ca\.pem"):
        load_settings(
            schema_registry_url="https://127.0.0.1:9",
            schema_registry={"ssl.ca.location": str(missing)},
        )


EXAMPLE = Path(__file__).resolve().parents[2] / "capi-stream.example.toml"


def _example_names() -> dict[str, set[str]]:
    """Section (``""`` for the top level) → the ``setting =`` names in it, commented or not."""
    import re

    found: dict[str, set[str]] = {"": set()}
    section = ""
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        if header := re.fullmatch(r"\[(\w+)\]\s*", line):
            section = header.group(1)
            found.setdefault(section, set())
        elif name := re.match(r"#?\s*(\w+)\s*=", line):
            found[section].add(name.group(1))
    return found


def test_example_configuration_loads_as_the_defaults() -> None:
    """``capi-stream.example.toml`` is valid as shipped, and its uncommented values are the
    defaults (so its comments tell the truth about what an absent setting means)."""
    settings = load_settings(EXAMPLE)
    assert settings.model_dump() == Settings().model_dump()


def test_example_configuration_names_every_setting() -> None:
    """Every setting of :class:`Settings` and of each section appears in the example (as a
    value or a commented line), and every section has its table."""
    from pydantic import BaseModel

    found = _example_names()
    missing = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names = found.get(name, set())
            missing.extend(f"{name}.{sub}" for sub in section.model_fields if sub not in names)
        elif field.default_factory is dict:
            if name not in found:  # a passthrough or per-pixel table
                missing.append(f"[{name}]")
        elif name not in found[""]:
            missing.append(name)
    assert not missing, f"not in capi-stream.example.toml: {missing}"


def test_example_configuration_shows_sasl_and_mtls() -> None:
    """The Kafka table shows SASL_SSL with SCRAM and mTLS (commented out)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for line in ('# "security.protocol" = "SASL_SSL"', '# "sasl.mechanisms" = "SCRAM-SHA-512"',
                 '# "security.protocol" = "SSL"', '# "ssl.certificate.location"',
                 '# "ssl.key.location"'):  # fmt: skip
        assert line in text


# -- where a problem was written ------------------------------------------------------------


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.upper().startswith("CAPI_STREAM_")]:
        monkeypatch.delenv(key)


def test_unknown_key_in_the_file_is_named_with_its_table_and_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``capi.toml: [deliverer] linger: unknown setting (did you mean linger_ms?)``; a
    top-level key has no table; a key nothing resembles gets no suggestion."""
    _clean_env(monkeypatch)
    conf = tmp_path / "capi.toml"
    conf.write_text('bootstrap_server = "k:9092"\n[deliverer]\nlinger = 5\nzzz = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    problems = str(info.value).split("; ")
    assert f"{conf}: [deliverer] linger: unknown setting (did you mean linger_ms?)" in problems
    assert f"{conf}: bootstrap_server: unknown setting (did you mean bootstrap_servers?)" in (
        problems
    )
    assert f"{conf}: [deliverer] zzz: unknown setting" in problems


def test_bad_value_in_the_file_is_named_without_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value of the wrong type in the file: its table and key, never the value; a quoted
    passthrough key keeps its quotes."""
    _clean_env(monkeypatch)
    conf = tmp_path / "capi.toml"
    conf.write_text(f'[topics]\npartitions = "{TOKEN}"\n[kafka]\n"sasl.password" = ["{TOKEN}"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    text = str(info.value)
    assert f"{conf}: [topics] partitions: Input should be a valid integer" in text
    assert f'{conf}: [kafka] "sasl.password": Input should be a valid string, a valid ' in text
    assert TOKEN not in text


def test_toml_syntax_error_names_line_and_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file tomllib cannot parse: the file, the line and the column, in one line."""
    _clean_env(monkeypatch)
    conf = tmp_path / "capi.toml"
    conf.write_text('[deliverer]\nlinger_ms = 5\ntest_event_code = "TEST\n')
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    assert str(info.value).startswith(f"{conf}: invalid TOML at line 3, column ")


def test_problems_are_blamed_on_the_source_that_gave_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable is named by its name (nested, or the key inside a JSON table); the file by
    its table; a variable that overrides the file takes the blame for the value used."""
    _clean_env(monkeypatch)
    conf = tmp_path / "capi.toml"
    conf.write_text("[topics]\npartitions = 3\nretention_ms = -5\n")
    monkeypatch.setenv("CAPI_STREAM_TOPICS__PARTITIONS", "0")
    monkeypatch.setenv("CAPI_STREAM_DELIVERER__LINGER", "5")
    monkeypatch.setenv("CAPI_STREAM_NORMALIZER", '{"pool_batch": 5}')
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    problems = str(info.value).split("; ")
    assert "CAPI_STREAM_TOPICS__PARTITIONS: Input should be greater than or equal to 1" in problems
    assert f"{conf}: [topics] retention_ms: Input should be greater than or equal to -1" in (
        problems
    )
    assert (
        "CAPI_STREAM_DELIVERER__LINGER: unknown setting "
        "(did you mean CAPI_STREAM_DELIVERER__LINGER_MS?)"
    ) in problems
    assert "CAPI_STREAM_NORMALIZER: pool_batch: unknown setting (did you mean poll_batch?)" in (
        problems
    )


def test_unknown_variable_suggests_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A top-level variable that names no setting gets the closest one's variable."""
    _clean_env(monkeypatch)
    monkeypatch.setenv("CAPI_STREAM_BOOTSTRAP_SERVER", "k:9092")
    with pytest.raises(
        ConfigError,
        match=r"^CAPI_STREAM_BOOTSTRAP_SERVER: unknown setting "
        r"\(did you mean CAPI_STREAM_BOOTSTRAP_SERVERS\?\)$",
    ):
        load_settings()


def test_missing_file_from_the_variable_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CAPI_STREAM_CONFIG naming no file is an error (it was silently ignored)."""
    _clean_env(monkeypatch)
    monkeypatch.setenv("CAPI_STREAM_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match=r"CAPI_STREAM_CONFIG=.*none\.toml does not exist"):
        load_settings()


def test_command_line_options_win_over_every_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside ``command_line``, --bootstrap and --log-level beat the file and the variables,
    and the log level merges into the file's [observability] table."""
    from stream.command_line import command_line

    _clean_env(monkeypatch)
    conf = tmp_path / "capi.toml"
    conf.write_text('bootstrap_servers = "file:9092"\n[observability]\nmetrics_port = 9300\n')
    monkeypatch.setenv("CAPI_STREAM_OBSERVABILITY__LOG_LEVEL", "error")
    with command_line(bootstrap_servers="cli:9092", log_level="debug"):
        settings = load_settings(conf)
    assert settings.bootstrap_servers == "cli:9092"
    assert settings.observability.log_level == "debug"
    assert settings.observability.metrics_port == 9300
    assert load_settings(conf).observability.log_level == "error"  # only inside the block
