"""The ``capi-stream`` command: parse, build settings, call library code, map errors to exits.

Exit codes: 0 success, 1 a failure while running (Kafka, delivery, bad records reported),
2 invalid configuration or usage (found before any record is read or sent: a bad setting, a
missing topic), 130 interrupted.

The global options (``--config``, ``--bootstrap``, ``--log-level``) may come before or after
the command (``capi-stream publish x.csv --bootstrap k:9092``): each subcommand's parser takes
them too, with no default of its own, so a value given after the command wins and one given
before is kept.
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


LOG_LEVELS = ("debug", "info", "warning", "error")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    from stream.config import load_settings

    # --bootstrap and --log-level reach load_settings through main's command_line block
    return load_settings(args.config, **overrides)


def _progress(line: str) -> None:
    print(f"capi-stream: {line}", file=sys.stderr, flush=True)


def _topics_create(args: argparse.Namespace) -> int:
    from stream.kafka.admin import create_topics
    from stream.kafka.cluster import wait_for_cluster
    from stream.logs import configure

    settings = _settings(args)
    configure(settings.observability.log_level, settings.observability.log_format)
    wait_for_cluster(settings, _progress)
    for result in create_topics(settings):
        print(f"{result.name}: {result.outcome}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from stream.check import run_check, summary
    from stream.logs import configure

    settings = _settings(args)
    configure("warning", settings.observability.log_format)

    def out(line: str) -> None:
        print(line, flush=True)

    problems = run_check(settings, out, pixels=args.pixel_id)
    print(summary(problems))
    return EXIT_OK if problems == 0 else EXIT_FAILURE


def _require_token(settings: Settings, stage_name: str) -> None:
    """The deliverer to Graph with no token at all would halt every lane at its first request."""
    from stream.check import has_token

    to_graph = stage_name == "deliver" and settings.deliverer.destination == "graph"
    if to_graph and not has_token(settings):
        raise ConfigError(
            "no access token: set CAPI_STREAM_ACCESS_TOKEN, CAPI_STREAM_ACCESS_TOKENS or "
            "CAPI_STREAM_ACCESS_TOKENS_FILE (or deliverer.destination=gateway)"
        )


def _supervised(args: argparse.Namespace, stage: str) -> int:
    """``--workers N``: N processes of one stage in one consumer group, restarted on crashes."""
    from stream.health import worker_port
    from stream.logs import configure
    from stream.supervise import cli_argv, run_workers

    settings = _settings(args)  # fail fast (exit 2) before starting any worker
    _require_token(settings, stage)
    o = settings.observability
    configure(o.log_level, o.log_format, role="supervisor", stage=stage)
    base = args.metrics_port
    if base is None:
        base = settings.observability.metrics_port
    head = [*(["--config", str(args.config)] if args.config else []),
            *(["--bootstrap", args.bootstrap] if args.bootstrap else []),
            *(["--log-level", args.log_level] if args.log_level else [])]  # fmt: skip

    def argv_for(i: int) -> list[str]:
        port = worker_port(base, i)
        return cli_argv(*head, stage, "--worker", str(i),
                        *(["--metrics-port", str(port)] if port is not None else []),
                        *(["--max-idle", str(args.max_idle)] if args.max_idle else []))  # fmt: skip

    return run_workers(args.workers, argv_for)


def _run_stage(args: argparse.Namespace, stage_name: str) -> int:
    from stream.core.sensors import NullSensor, Sensor
    from stream.health import HealthServer
    from stream.kafka.cluster import wait_for_cluster
    from stream.logs import configure, get_logger
    from stream.metrics import PrometheusSensor

    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {args.workers}")
    if args.worker < 0:
        raise ConfigError(f"--worker must be 0 or more, not {args.worker}")
    if args.workers > 1:
        return _supervised(args, stage_name)
    settings = _settings(args)
    _require_token(settings, stage_name)
    o = settings.observability
    configure(o.log_level, o.log_format, worker=args.worker, stage=stage_name)
    log = get_logger(f"capi_stream.{stage_name}")
    wait_for_cluster(settings, log.warning)
    port = args.metrics_port
    if port is None:
        port = settings.observability.metrics_port
    prometheus = PrometheusSensor() if port is not None else None
    sensor: Sensor = prometheus if prometheus is not None else NullSensor()
    stage: Any
    if stage_name == "normalize":
        from stream.normalizer import Normalizer

        stage = Normalizer(settings, worker=args.worker, sensor=sensor)
    else:
        from stream.deliver.stage import Deliverer

        stage = Deliverer(settings, worker=args.worker, sensor=sensor)
    health = None
    if port is not None:
        # /status once the stage reports one (a StageStatus from stream.core.status)
        report = getattr(stage, "status", None)
        status = (lambda: report().to_json()) if callable(report) else None
        health = HealthServer(
            port, prometheus, ready=stage.ready, alive=stage.alive, status=status
        ).start()
    stage.install_signal_handlers()
    try:
        stats = stage.run(max_idle_s=args.max_idle)
    finally:
        if health is not None:
            health.stop()
    counts = {k: v for k, v in vars(stats).items() if isinstance(v, int)}
    log.info("stage stopped", **counts)
    return EXIT_OK


def _normalize(args: argparse.Namespace) -> int:
    return _run_stage(args, "normalize")


def _deliver(args: argparse.Namespace) -> int:
    return _run_stage(args, "deliver")


def _stage_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers", type=int, default=1,
        help="run N supervised processes of this stage in one consumer group (crashed ones "
        "are restarted; SIGTERM drains all)",
    )  # fmt: skip
    parser.add_argument(
        "--worker", type=int, default=0,
        help="this process's worker slot: names the normalizer's transactional id, so a "
        "restarted worker fences its dead predecessor",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve /metrics, /healthz and /readyz on this port (worker i uses PORT+i); "
        "default: observability.metrics_port, else none",
    )  # fmt: skip
    parser.add_argument(
        "--max-idle", type=float, default=None, metavar="SECONDS",
        help="exit after this long with nothing to do (one-off runs); default: until SIGTERM",
    )  # fmt: skip


def _sim(args: argparse.Namespace) -> int:
    import json

    from stream.logs import configure
    from stream.sim import SimConfig, config_from_options, serve

    configure("info", "console")
    base = None
    if args.sim_config is not None:
        try:
            base = SimConfig.from_dict(json.loads(args.sim_config.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--sim-config: {type(exc).__name__}") from None
    secret = None
    if args.app_secret_file is not None:
        secret = args.app_secret_file.read_text(encoding="utf-8").strip()
    config = config_from_options(
        tokens=args.token, app_secret=secret, latency=args.latency, seed=args.seed,
        faults=args.fault, base=base, access_log=True if args.access_log else None,
    )  # fmt: skip
    serve(config, args.host, args.port, on_ready=lambda url: print(url, flush=True))
    return EXIT_OK


def _demo_bootstrap(args: argparse.Namespace) -> str | None:
    """The cluster the demo uses: ``--bootstrap``, else a configured ``bootstrap_servers``
    (``CAPI_STREAM_BOOTSTRAP_SERVERS`` or the file); None: the demo starts its own broker."""
    if args.bootstrap:
        return str(args.bootstrap)
    settings = _settings(args)
    return settings.bootstrap_servers if "bootstrap_servers" in settings.model_fields_set else None


def _demo(args: argparse.Namespace) -> int:
    from stream.demo import run_demo, summary
    from stream.logs import configure

    configure(args.log_level or "error", "console")
    bootstrap = _demo_bootstrap(args)
    on_cluster: dict[str, Any] = {"bootstrap": bootstrap} if bootstrap else {}
    result = run_demo(events=args.events, seed=args.seed, **on_cluster)
    print(summary(result))
    settled = result.delivered + sum(
        n for reason, n in result.dead_by_reason.items() if reason == "rejected_by_meta"
    )
    return EXIT_OK if settled == result.enriched else EXIT_FAILURE


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
    _global_options(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    topics = sub.add_parser("topics", help="manage the raw, enriched and dead-letter topics")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    create = topics_sub.add_parser(
        "create", help="create the topics with the configured partitions and retention (idempotent)"
    )
    create.set_defaults(handler=_topics_create)

    check = sub.add_parser(
        "check",
        help="validate the configuration, print it with secrets masked, and test Kafka, the "
        "registry and each pixel's token (reads only; sends no event)",
    )
    check.add_argument(
        "--pixel-id", action="append", default=[], metavar="PIXEL",
        help="also probe this pixel (repeatable); the configured ones are always probed",
    )  # fmt: skip
    check.set_defaults(handler=_check)

    normalize = sub.add_parser(
        "normalize",
        help="run the normalize/hash stage: raw topic to enriched topic and dead letters",
    )
    _stage_options(normalize)
    normalize.set_defaults(handler=_normalize)

    deliver = sub.add_parser(
        "deliver",
        help="run the deliver stage: enriched topic to the Graph API (or a CAPI Gateway)",
    )
    _stage_options(deliver)
    deliver.set_defaults(handler=_deliver)

    sim = sub.add_parser(
        "sim", help="run the CAPI simulator: a local Graph API events edge with fault injection"
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--port", type=int, default=8089, help="port (0: any free port)")
    sim.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN=PIXEL[,PIXEL]",
        help="an access token and the pixels it may write to (TOKEN=* for all); repeatable",
    )
    sim.add_argument(
        "--app-secret-file",
        type=Path,
        default=None,
        help="file holding the app secret; then appsecret_proof is required",
    )
    sim.add_argument(
        "--latency",
        default=None,
        help="added latency: 50, 10-100, lognormal:MEDIAN:SIGMA or pareto:SCALE:ALPHA",
    )
    sim.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    sim.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="inject a fault kind at a rate (http_500, code_1, throttle_4, hang, reset, ...)",
    )
    sim.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request: path, pixel, events, status, time (never a token)",
    )
    sim.add_argument(
        "--sim-config",
        type=Path,
        default=None,
        help="JSON file with the full simulator configuration",
    )
    sim.set_defaults(handler=_sim)

    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline on an embedded broker and the simulator, then summarize",
    )
    demo.add_argument("--events", type=int, default=3000, help="how many events to publish")
    demo.add_argument("--seed", type=int, default=42, help="seed of the sample and the faults")
    demo.set_defaults(handler=_demo)

    for register in _REGISTRARS:
        register(sub)
    _global_options_after(parser)
    return parser


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--config", type=Path, default=default,
        help="TOML settings file (else CAPI_STREAM_CONFIG)",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap", default=default,
        help="Kafka bootstrap servers (else CAPI_STREAM_BOOTSTRAP_SERVERS)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=default,
        help="log level (else observability.log_level)",
    )  # fmt: skip


def _global_options_after(parser: argparse.ArgumentParser) -> None:
    """Every subcommand, at every depth, takes the global options too. Their default is
    SUPPRESS: a subcommand that was not given one leaves the value parsed before it."""
    for action in parser._actions:  # argparse lists its subparsers nowhere else
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                _global_options(child, default=argparse.SUPPRESS)
                _global_options_after(child)


def _operator_tools() -> list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
]:
    from stream import dlq, publish, replay, status_cli
    from stream.quality import cli as quality_cli

    return [
        publish.add_parser,
        replay.add_parser,
        dlq.add_parser,
        status_cli.add_parser,
        quality_cli.add_parser,
    ]


# each operator tool adds its own subcommand, keeping this file thin
_REGISTRARS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = (
    _operator_tools()
)


def _error(text: str) -> None:
    """The one line a failed command ends with: JSON once JSON logs are set up, else text."""
    import logging

    from stream import logs

    if logs.json_configured():
        # through the standard library's handler: it stays even if structlog is reset
        logging.getLogger("capi_stream.cli").error(text)
    else:
        print(f"capi-stream: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    from stream import logs
    from stream.command_line import command_line

    if argv is None:  # the console script or python -m: this process is ours
        logs.own_process()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        with command_line(bootstrap_servers=args.bootstrap, log_level=args.log_level):
            return handler(args)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_CONFIG
    except CapiStreamError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
