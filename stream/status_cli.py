"""``capi-stream status --url URL``: a running deliver stage's lanes, as a table.

Reads the stage's ``/status`` (the metrics port; worker i of ``--workers`` serves port + i) and
prints one row per lane: state (running, throttled, halted) and since when, pending and in-flight
events, the oldest pending event's age, the last success, and the last error with Meta's code,
subcode, message and ``fbtrace_id``. ``--json`` prints the document as it came.

Exit code: 0 when the stage is ready, 1 when it is not (a halted lane, partitions not yet
assigned) or does not answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from stream.core.errors import CapiStreamError
from stream.core.status import halted_lines, table

#: The port the docker-compose stack and the README use for /metrics.
DEFAULT_URL = "http://127.0.0.1:9464"


def fetch(url: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The ``/status`` document of the stage at ``url`` (its base, or the full /status URL)."""
    full = url.rstrip("/")
    if not full.endswith("/status"):
        full += "/status"
    try:
        with urllib.request.urlopen(full, timeout=timeout_s) as resp:  # noqa: S310 - http(s) only
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise CapiStreamError(f"{full}: HTTP {exc.code} (is this a deliver stage?)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CapiStreamError(f"{full}: no answer ({reason})") from None
    except ValueError:
        raise CapiStreamError(f"{full}: the answer is not JSON") from None
    if not isinstance(doc, dict):
        raise CapiStreamError(f"{full}: the answer is not a status document")
    return doc


def run(args: argparse.Namespace) -> int:
    """The ``status`` command."""
    url = str(args.url)
    if not url.startswith(("http://", "https://")):
        raise CapiStreamError(f"--url {url}: give an http:// or https:// URL")
    doc = fetch(url)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(table(doc, now=time.time()))
        for line in halted_lines(doc):
            print(line, file=sys.stderr)
    return 0 if doc.get("ready") else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``capi-stream status`` (handler: :func:`run`)."""
    p = sub.add_parser(
        "status",
        help="show a running deliver stage's lanes: state, pending, Meta's last error",
        description=(__doc__ or "").replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"the stage's metrics address (default {DEFAULT_URL})")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the /status document as it came")
    p.set_defaults(handler=run)
