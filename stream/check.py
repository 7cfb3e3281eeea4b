"""``capi-stream check``: is this configuration ready to run? Every answer from the real thing.

In order, each step printing one line per finding (``name: ok (...)`` or ``name: <problem>``):

1. the configuration: valid (an invalid one never gets here: the CLI exits 2 with one line),
   then every effective setting, one ``key = value`` line each, with every secret masked:
   the tokens, the app secret, the Gateway key, and each passed-through Kafka or registry
   property that holds one (:func:`is_secret_property`); a URL's ``user:password@`` too;
2. Kafka: the cluster answers, and each topic the stages use exists (partitions) or why not
   (missing, or not authorized);
3. the schema registry, when configured: an authenticated read of its subjects;
4. the destination: for Graph, each configured pixel is read with the token the deliverer would
   use (``GET /{version}/{pixel_id}?fields=id,name``: no event is sent), naming what is wrong
   (:mod:`stream.core.probe`); for a Gateway, whether it answers at all.

Exit code: 0 when nothing is wrong, 1 when something is (each problem has its line).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from stream.config import Settings
from stream.core.errors import CapiStreamError
from stream.core.probe import pixel_verdict

if TYPE_CHECKING:
    from stream.kafka.cluster import TopicState
    from stream.sinks.probe import Prober

MASK: Final = "**********"

# property names (librdkafka's, the registry client's) whose value is a secret
_SECRET_PROPERTY: Final = re.compile(
    r"password|passphrase|secret|user\.info|credentials(?!\.source)|token|oauthbearer\.config"
    r"|private|\.pem$|jaas",
    re.IGNORECASE,
)
#: Passed-through sections whose keys are properties of a client, not our settings.
PASSTHROUGH: Final = ("kafka", "consumer", "producer", "admin", "schema_registry")

Out = Callable[[str], None]


def is_secret_property(name: str) -> bool:
    """True when a client property's value is a secret (``sasl.password``, ``ssl.key.pem``,
    ``basic.auth.user.info``, ``bearer.auth.token``, ``sasl.oauthbearer.client.secret`` ...).

    >>> is_secret_property("sasl.password"), is_secret_property("sasl.username")
    (True, False)
    """
    return _SECRET_PROPERTY.search(name) is not None


def mask_url(url: str) -> str:
    """``https://user:pw@host/x`` → ``https://**********@host/x``; other URLs unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as ``(dotted key, printable value)``, secrets masked, sorted by key."""
    rows: list[tuple[str, str]] = []
    for key, value in settings.model_dump().items():
        rows.extend(_flatten(key, value, passthrough=key in PASSTHROUGH))
    return sorted(rows)


def _flatten(key: str, value: Any, *, passthrough: bool) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        if not value:
            yield key, "{}"
        for sub, item in value.items():
            if passthrough and is_secret_property(str(sub)):
                yield f'{key}."{sub}"', MASK
            else:
                name = f'{key}."{sub}"' if passthrough or "." in str(sub) else f"{key}.{sub}"
                yield from _flatten(name, item, passthrough=False)
        return
    yield key, _printable(key, value)


def _printable(key: str, value: Any) -> str:
    if isinstance(value, SecretStr):
        return MASK
    if value is None:
        return "(unset)"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return f'"{mask_url(value)}"' if key.endswith("url") else f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pixels_to_probe(settings: Settings, extra: Sequence[str] = ()) -> list[str]:
    """The pixels the deliverer is known to send to: asked for, with their own token, default."""
    found: list[str] = [*extra, *settings.access_tokens]
    if settings.credentials.tokens_file is not None:
        found.extend(settings.credentials.tokens_file.get())
    if settings.normalizer.default_pixel_id:
        found.append(settings.normalizer.default_pixel_id)
    return list(dict.fromkeys(p.strip() for p in found if p.strip()))


def has_token(settings: Settings) -> bool:
    """True when some access token is configured (the deliverer to Graph needs one)."""
    return bool(
        settings.access_token is not None or settings.access_tokens or settings.access_tokens_file
    )


def run_check(settings: Settings, out: Out, *, pixels: Sequence[str] = ()) -> int:
    """Run every check, printing with ``out``; the number of problems found."""
    out("configuration: valid")
    for key, value in effective_settings(settings):
        out(f"  {key} = {value}")
    problems = _kafka(settings, out)
    problems += _registry(settings, out)
    problems += _destination(settings, out, pixels)
    return problems


def _topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.raw, t.enriched, t.dlq, *([t.ledger] if settings.deliverer.ledger else [])]


def _kafka(settings: Settings, out: Out) -> int:
    from stream.kafka.cluster import describe_topics, wait_for_cluster

    servers = settings.bootstrap_servers
    try:
        wait_for_cluster(settings, lambda line: out(f"kafka: {line}"))
        state = describe_topics(settings, _topics(settings), settings.kafka_connect_timeout_s)
    except CapiStreamError as exc:
        out(f"kafka: {exc}")
        return 1
    out(f"kafka: ok ({state.brokers} broker{'s' * (state.brokers != 1)} at {servers})")
    lines = topic_lines(state.topics)
    for line in lines:
        out(line)
    return sum(1 for topic in state.topics if not topic.exists)


def topic_lines(topics: Iterable[TopicState]) -> list[str]:
    """One line per topic: its partitions, or what is wrong and what to do about it."""
    lines = []
    for topic in topics:
        if topic.exists:
            lines.append(f"topic {topic.name}: ok ({topic.partitions} partitions)")
        elif topic.error == "UNKNOWN_TOPIC_OR_PART":
            lines.append(f"topic {topic.name}: missing (create it: capi-stream topics create)")
        elif topic.error == "TOPIC_AUTHORIZATION_FAILED":
            lines.append(f"topic {topic.name}: not authorized (grant this principal DESCRIBE, "
                         "READ and WRITE on it)")  # fmt: skip
        else:
            lines.append(f"topic {topic.name}: {topic.error}")
    return lines


def _registry(settings: Settings, out: Out) -> int:
    url = settings.schema_registry_url
    if url is None:
        out(f"schema registry: not configured (wire format {settings.effective_wire_format})")
        return 0
    from stream.kafka.registry import Registry

    registry = Registry(url, {"max.retries": 0, "timeout": 10, **settings.schema_registry})
    try:
        subjects = registry.subjects()
    except CapiStreamError as exc:
        out(f"schema registry: {mask_url(url)}: {exc}")
        return 1
    finally:
        registry.close()
    out(f"schema registry: ok ({len(subjects)} subjects at {mask_url(url)})")
    return 0


def _destination(settings: Settings, out: Out, extra: Sequence[str]) -> int:
    from stream.sinks.probe import Prober

    with Prober(settings.deliverer.request_timeout_s) as prober:
        if settings.deliverer.destination == "gateway":
            return _gateway(settings, out, prober)
        return _graph(settings, out, prober, extra)


def _gateway(settings: Settings, out: Out, prober: Prober) -> int:
    url = settings.deliverer.gateway_url
    if not url:
        out("gateway: deliverer.gateway_url is not set")
        return 1
    answer = prober.reach(url)
    key = "set" if settings.gateway_access_key is not None else "not set"
    if answer.transport_error is not None:
        verdict = pixel_verdict("-", answer.status, answer.body, answer.transport_error)
        out(f"gateway: {mask_url(url)}: {verdict.problem}")
        return 1
    out(f"gateway: reachable at {mask_url(url)} (HTTP {answer.status}; access key {key}; the "
        "Gateway has no read-only probe of a pixel)")  # fmt: skip
    return 0


def _graph(settings: Settings, out: Out, prober: Prober, extra: Sequence[str]) -> int:
    d = settings.deliverer
    if not has_token(settings):
        out("pixels: no access token configured: deliver refuses to start (set "
            "access_token, access_tokens or access_tokens_file)")  # fmt: skip
        return 1
    pixels = pixels_to_probe(settings, extra)
    if not pixels:
        out("pixels: none configured to probe (pass --pixel-id, or set access_tokens or "
            "normalizer.default_pixel_id)")  # fmt: skip
        return 0
    secret = settings.secret()
    problems = 0
    for pixel in pixels:
        token = settings.token_for(pixel)
        if token is None:
            out(f"pixel {pixel}: no token (no access_tokens entry and no default access_token)")
            problems += 1
            continue
        answer = prober.pixel(
            d.graph_url, version=d.api_version, pixel_id=pixel,
            token=token.get_secret_value(),
            app_secret=secret.get_secret_value() if secret is not None else None,
        )  # fmt: skip
        verdict = pixel_verdict(pixel, answer.status, answer.body, answer.transport_error)
        out(verdict.line())
        problems += 0 if verdict.ok else 1
    return problems


def summary(problems: int) -> str:
    """The last line: ``check: ok`` or how many problems were found."""
    if problems == 0:
        return "check: ok"
    return f"check: {problems} problem{'s' * (problems != 1)} found"
