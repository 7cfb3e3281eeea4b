"""The CAPI simulator with its request journal on, in its own process, for the benchmarks.

``capi-stream sim`` keeps no journal; the latency benchmark needs one to tell when each event
reached "Meta" (the time a request arrived and was answered, and the event ids in it). This
runs the same simulator (:class:`stream.sim.Simulator`), prints its URL on the first line of
stdout like ``capi-stream sim``, and on SIGUSR1 writes the journal as JSON to ``--journal``:
``[[pixel_id, arrived_at, answered_at, events_sent, [event_id, ...]], ...]`` (Unix seconds).
SIGTERM stops it. Faults, stats and reset go through the usual ``/_sim/`` admin routes.

    python -m bench.journal_sim --token TOKEN --latency 50 --journal /tmp/journal.json
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from types import FrameType

import orjson


def main() -> None:
    from stream.sim import SimConfig, Simulator
    from stream.sim.config import FaultConfig, Latency

    parser = argparse.ArgumentParser(prog="python -m bench.journal_sim")
    parser.add_argument("--token", required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--journal", type=Path, required=True)
    args = parser.parse_args()
    latency = Latency.parse(f"{args.latency:g}") if args.latency else Latency()
    config = SimConfig(
        tokens={args.token: frozenset({"*"})},
        journal=True,
        faults=FaultConfig(latency=latency),
    )
    sim = Simulator(config, port=0).start()
    stop = threading.Event()

    def dump(_: int, __: FrameType | None) -> None:
        rows = [
            [e.pixel_id, e.arrived_at, e.answered_at, e.sent, [k[1] for k in e.keys]]
            for e in sim.journal()
        ]
        tmp = args.journal.with_suffix(".part")
        tmp.write_bytes(orjson.dumps(rows))
        os.replace(tmp, args.journal)

    signal.signal(signal.SIGUSR1, dump)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(sim.url, flush=True)
    while not stop.wait(0.5):
        pass
    sim.stop()


if __name__ == "__main__":
    main()
