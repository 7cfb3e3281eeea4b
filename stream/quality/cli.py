"""``capi-stream quality``: Meta's match quality next to what capi-stream sends.

* ``quality report`` (the default): one row per pixel and event name with Meta's Event Match
  Quality and per-key coverage (Dataset Quality API), our own coverage of the same keys in
  recent records of the enriched topic and the local match-key score (an estimate, not EMQ),
  Meta's event coverage against its goal, data freshness, and the most valuable fix.
  ``--json`` prints a document; ``--plot FILE.png`` also draws a chart (needs matplotlib).
* ``quality serve`` (or ``quality --serve``): polls Meta every ``--interval`` seconds (an hour
  by default, with backoff and Meta's rate limits respected) and serves the numbers as
  Prometheus gauges on ``--metrics-port``.

Pixels: those given with ``--pixel-id``, those with their own token, the default pixel, and for
the report every pixel seen in the enriched topic. Tokens are the deliver stage's.

Exit code of the report: 0, or 1 when Meta's numbers of some pixel could not be read.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stream.core.errors import ConfigError

if TYPE_CHECKING:
    from stream.config import Settings
    from stream.quality.client import DatasetQualityClient

EXIT_OK, EXIT_FAILURE = 0, 1


def _settings(args: argparse.Namespace) -> Settings:
    from stream.config import load_settings

    overrides: dict[str, Any] = {}
    if getattr(args, "bootstrap", None):
        overrides["bootstrap_servers"] = args.bootstrap
    return load_settings(getattr(args, "config", None), **overrides)


def _client(settings: Settings, http: Any, *, all_agents: bool) -> DatasetQualityClient:
    from stream.quality.client import DatasetQualityClient, agent_name

    d = settings.deliverer
    agent = None if all_agents else agent_name(d.partner_agent)
    return DatasetQualityClient(
        http, base_url=d.graph_url, version=d.api_version, token_for=settings.token_for,
        app_secret=settings.secret, agent=agent,
    )  # fmt: skip


def _configured_pixels(settings: Settings, extra: list[str]) -> list[str]:
    from stream.check import pixels_to_probe

    return pixels_to_probe(settings, extra)


def report(args: argparse.Namespace) -> int:
    """``capi-stream quality report``."""
    from stream.logs import configure
    from stream.quality import report as rep
    from stream.quality.client import build_client
    from stream.quality.local import LocalCoverage, read_local
    from stream.quality.model import DatasetQuality, PollFailure

    settings = _settings(args)
    configure("warning", settings.observability.log_format)
    if args.plot is not None:
        from stream.quality.plot import _pyplot

        _pyplot()  # a missing matplotlib fails before any work
    local = LocalCoverage({}, 0, 0, 0)
    if not args.no_local:
        local = read_local(
            settings, now_s=time.time(), window_s=args.window_hours * 3600.0,
            max_records=args.max_records,
        )  # fmt: skip
    pixels = _configured_pixels(settings, args.pixel_id)
    pixels += sorted({p for p, _ in local.coverage} - set(pixels))
    meta: list[DatasetQuality] = []
    failures: list[PollFailure] = []
    if not args.no_meta:
        with build_client(settings.deliverer.request_timeout_s) as http:
            client = _client(settings, http, all_agents=args.all_agents)
            for pixel in pixels:
                if failures and failures[-1].kind == "throttled":
                    # Meta's limit is the app's or the user's: the next call would be refused too
                    failures.append(PollFailure(pixel, "throttled", "not asked: rate limited"))
                    continue
                result = client.fetch(pixel, now=time.time())
                if isinstance(result, DatasetQuality):
                    meta.append(result)
                else:
                    failures.append(result)
    rows = rep.build_rows(local.coverage, meta)
    if args.json:
        info = {"topic": settings.topics.enriched, "window_hours": args.window_hours,
                "records": local.records, "counted": local.counted,
                "undecodable": local.undecodable}  # fmt: skip
        print(json.dumps(rep.to_json(rows, meta, failures, info), indent=2))
    else:
        if not args.no_local:
            print(f"local: {local.counted} events of the last {args.window_hours:g} h of "
                  f"{settings.topics.enriched} (SCORE is a local estimate, not Meta's EMQ; "
                  "key columns: ours/Meta in %)")  # fmt: skip
        print(rep.table(rows))
        for line in rep.notes(meta, failures):
            print(line)
    if args.plot is not None:
        from stream.quality.plot import plot

        plot(rows, args.plot)
        print(f"chart written to {args.plot}", file=sys.stderr)
    return EXIT_FAILURE if failures else EXIT_OK


def serve(args: argparse.Namespace) -> int:
    """``capi-stream quality serve``: poll Meta and export gauges until SIGTERM."""
    from stream.health import HealthServer
    from stream.logs import configure
    from stream.metrics import PrometheusSensor
    from stream.quality.client import build_client
    from stream.quality.exporter import Poller, QualityMetrics

    settings = _settings(args)
    o = settings.observability
    configure(o.log_level, o.log_format, stage="quality")
    pixels = _configured_pixels(settings, args.pixel_id)
    if not pixels:
        raise ConfigError(
            "quality serve: no pixel to poll (pass --pixel-id, or set access_tokens or "
            "normalizer.default_pixel_id)"
        )
    if args.interval <= 0:
        raise ConfigError(f"--interval must be positive, not {args.interval}")
    port = args.metrics_port if args.metrics_port is not None else o.metrics_port
    if port is None:
        raise ConfigError("quality serve: give --metrics-port (or observability.metrics_port)")
    metrics = QualityMetrics()
    stop = threading.Event()
    with build_client(settings.deliverer.request_timeout_s) as http:
        client = _client(settings, http, all_agents=args.all_agents)
        poller = Poller(lambda p: client.fetch(p, now=time.time()), pixels, metrics,
                        interval_s=args.interval)  # fmt: skip
        sensor = PrometheusSensor(registry=metrics.registry)
        with HealthServer(port, sensor, ready=lambda: poller.rounds > 0):
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            poller.run(stop)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """``capi-stream quality`` without an action: ``--serve`` serves, else the report."""
    return serve(args) if args.serve else report(args)


def _pixel_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--all-agents",
        action="store_true",
        help="Meta's numbers over every event of the dataset, not only those capi-stream sent "
        "(by default agent_name is the deliverer's partner_agent)",
    )
    p.add_argument(
        "--pixel-id",
        action="append",
        default=[],
        metavar="PIXEL",
        help="also this pixel (repeatable); configured ones are always included",
    )


def _report_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a JSON document instead of a table")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="also draw EMQ and key coverage per pixel (needs matplotlib)",
    )
    p.add_argument(
        "--window-hours",
        type=float,
        default=24.0,
        help="count keys in enriched records of this many hours (default 24)",
    )
    p.add_argument(
        "--max-records",
        type=int,
        default=100_000,
        help="read at most this many enriched records (default 100000)",
    )
    p.add_argument("--no-local", action="store_true", help="skip reading the enriched topic")
    p.add_argument("--no-meta", action="store_true", help="skip calling Meta (local numbers only)")


def _serve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics here (default observability.metrics_port)",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="seconds between polls when all is well (default 3600)",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``capi-stream quality`` (handler: :func:`run`; actions ``report`` and ``serve``)."""
    p = sub.add_parser(
        "quality",
        help="Meta's Event Match Quality and key coverage per pixel and event, beside ours",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--serve", action="store_true", help="the same as `quality serve`")
    _pixel_option(p)
    _report_options(p)
    _serve_options(p)
    p.set_defaults(handler=run)
    actions = p.add_subparsers(dest="quality_command", metavar="ACTION")
    rep = actions.add_parser("report", help="print the table (the default action)")
    _pixel_option(rep)
    _report_options(rep)
    rep.set_defaults(handler=report)
    srv = actions.add_parser("serve", help="poll Meta and export Prometheus gauges")
    _pixel_option(srv)
    _serve_options(srv)
    srv.set_defaults(handler=serve)
