"""The CAPI simulator: a real HTTP server that behaves like the Graph API events edge.

It validates as Meta does (docs/capi.md), deduplicates per pixel on (event_name, event_id) within
48 hours, records what it accepted, and injects faults (latency, error codes, throttles,
outages, hangs, resets, short receipts, poison rules) deterministically from a seed. Tests
start it with :class:`Simulator`; ``capi-stream sim`` runs :func:`serve`.

Modules: ``config`` (settings), ``validate`` (Meta's rules), ``faults`` (the per-request draw),
``graph`` (wire shapes), ``state`` (the record), ``app`` (routes), ``server`` (HTTP/1.1),
``simulator`` (running it).
"""

from stream.sim.config import (
    FAULT_KINDS,
    FaultConfig,
    Latency,
    PoisonRule,
    SimConfig,
    config_from_options,
)
from stream.sim.simulator import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_VERSION,
    Simulator,
    SimulatorError,
    serve,
)
from stream.sim.state import EventKey, JournalEntry, Stats
from stream.sim.validate import Invalid, validate_request

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_VERSION",
    "FAULT_KINDS",
    "EventKey",
    "FaultConfig",
    "Invalid",
    "JournalEntry",
    "Latency",
    "PoisonRule",
    "SimConfig",
    "Simulator",
    "SimulatorError",
    "Stats",
    "config_from_options",
    "serve",
    "validate_request",
]
