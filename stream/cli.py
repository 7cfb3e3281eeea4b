"""The ``capi-stream`` command: parse, build settings, call library code, map errors to exits.

Exit codes: 0 success, 1 a failure while running (Kafka, delivery, bad records reported),
2 invalid configuration or usage (before anything connects), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.core.errors import CapiStreamError, ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

if TYPE_CHECKING:
    from stream.config import Settings

Handler = Callable[[argparse.Namespace], int]


def _version() -> str:
    try:
        return version("capi-stream")
    except PackageNotFoundError:  # running from a checkout without installing
        return "0+unknown"


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    from stream.config import load_settings

    if getattr(args, "bootstrap", None):
        overrides["bootstrap_servers"] = args.bootstrap
    return load_settings(args.config, **overrides)


def _topics_create(args: argparse.Namespace) -> int:
    from stream.kafka.admin import create_topics

    settings = _settings(args)
    for result in create_topics(settings):
        print(f"{result.name}: {result.outcome}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="capi-stream",
        description=(
            "Deliver conversion events from Kafka to Meta's Conversions API: normalize and hash "
            "customer data, batch by pixel, post with retries, commit offsets only after delivery."
        ),
    )
    parser.add_argument("--version", action="version", version=f"capi-stream {_version()}")
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML settings file (else CAPI_STREAM_CONFIG)"
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        help="Kafka bootstrap servers (else CAPI_STREAM_BOOTSTRAP_SERVERS)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    topics = sub.add_parser("topics", help="manage the raw, enriched and dead-letter topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser(
        "create", help="create the topics with the configured partitions and retention (idempotent)"
    )
    create.set_defaults(handler=_topics_create)

    for register in _REGISTRARS:
        register(sub)
    return parser


# each command module adds itself here, keeping this file thin
_REGISTRARS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"capi-stream: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except CapiStreamError as exc:
        print(f"capi-stream: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
