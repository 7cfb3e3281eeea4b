"""Where each stage's CPU goes, per event: µs per component of the hot path.

Each stage runs twice over the same input in its own fresh process:

1. **Unprofiled**: the stage's CPU per event (every thread), split by reading each thread's CPU
   time from ``/proc/self/task`` (librdkafka's own threads are named ``rdk:*``; the rest are
   Python's), and the time spent in the cyclic garbage collector (``gc.callbacks``).
2. **Profiled**: cProfile in every Python thread (``threading.setprofile`` starts one per thread)
   with a per-thread CPU clock, so a blocking wait counts nothing. Each function's own time goes
   to a component by its module (:data:`COMPONENTS`); the shares of the Python threads' time are
   then applied to the unprofiled run's Python µs per event (profiling inflates small calls
   more than large ones: read the shares as estimates, the totals as measured).

The deliver stage runs against the simulator at 50 ms; the normalize stage in exactly-once
mode, in a process that normalized other events first (tables built at first use are a one-off
of a stage's first records, not the hot path). Functions compiled with Cython (fastavro's
reader and writer) count under the Python function that called them (the codec).
"""

from __future__ import annotations

import cProfile
import gc
import os
import pstats
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import SimProcess, bench_settings, create_topics, in_child, log, stage_names

#: (component, parts of the file name, parts of the function name): a function's own time goes
#: to the first component with a part in its file name or its name.
COMPONENTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Kafka client calls (confluent_kafka)", ("/confluent_kafka/",), ("cimpl",)),
    ("Avro (fastavro via stream/core/codec; envelope writer, routing and prefix readers)",
     ("fastavro", "core/codec.py", "core/envelope.py", "core/avro_prefix.py", "core/routing.py"),
     ("fastavro",)),
    ("phone parsing (phonenumbers)", ("/phonenumbers/",), ()),
    ("SHA-256 (hashlib)", ("hashlib",), ("sha256", "openssl")),
    ("JSON (orjson)", (), ("orjson",)),
    ("normalize rules (stream/core/normalize)", ("/core/normalize/",), ()),  # NORMALIZE_RULES
    ("validation (stream/core/validate)", ("core/validate.py",), ()),
    ("event_id (stream/core/event_id)", ("core/event_id.py",), ()),
    ("HTTP client (httpx, httpcore, h11, anyio, sniffio)",
     ("/httpx/", "/httpcore/", "/h11/", "/anyio/", "/sniffio/"), ()),
    ("asyncio loop, sockets, selectors", ("/asyncio/", "selectors.py"),
     ("_socket", "epoll", "_asyncio")),
    ("threads, queues, futures (hand-offs)",
     ("threading.py", "queue.py", "concurrent/futures"), ("_thread", "_queue")),
    ("logging and metrics",
     ("stream/logs.py", "stream/metrics.py", "/structlog/", "/logging/", "prometheus"), ()),
    ("deliver stage (stream/deliver, poll bridge)",
     ("/stream/deliver", "kafka/poll_bridge.py"), ()),
    ("normalize stage loop, enrich (stream/normalizer, core/enrich)",
     ("stream/normalizer.py", "core/enrich.py"), ()),
    ("Kafka seam (stream/kafka: records, consumer, producer)", ("/stream/kafka/",), ()),
    ("match-quality counts (stream/match_report, stream/quality)",
     ("stream/match_report.py", "/stream/quality/"), ()),
    ("country tables (pycountry)", ("/pycountry/",), ()),
    ("dataclass-made methods (__init__, __hash__, __eq__ of frozen records)", ("<string>",), ()),
    ("isinstance against ABCs (abc)", ("<frozen abc>",), ()),
    ("imports at first use (importlib)", ("<frozen importlib",), ()),
    ("request bodies (core/payload)", ("core/payload.py",), ()),
    ("windows (core/window)", ("core/window.py",), ()),
    ("settlement, offsets (core/settlement, core/offsets)",
     ("core/settlement.py", "core/offsets.py"), ()),
    ("delivery rules, answers (core/delivery_rules, core/graph_response, core/retry)",
     ("core/delivery_rules.py", "core/graph_response.py", "core/retry.py"), ()),
    ("other core", ("/stream/core/",), ()),
)  # fmt: skip
NORMALIZE_RULES = "normalize rules (stream/core/normalize)"
#: Built-in functions (``str.lower``, ``dict.get``…): their time counts for their callers.
BUILTINS = "Python built-ins and standard library"
OTHER = "other Python"


def component(filename: str, name: str) -> str:
    """The component a function's own time counts under."""
    for label, files, names in COMPONENTS:
        if any(part in filename for part in files) or any(part in name for part in names):
            if label == NORMALIZE_RULES:  # the biggest part of the normalize stage: by module
                return f"{label}: {Path(filename).name}"
            return label
    if filename == "~" or filename.startswith(_STDLIB):
        return BUILTINS
    return OTHER


#: The standard library's own modules (``re``, ``functools``, ``enum``…) count for their callers
#: too, unless a component above names them (asyncio, threading, logging).
_STDLIB = sysconfig.get_paths()["stdlib"]


# -- measuring inside the stage's process -----------------------------------------------------


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads: librdkafka's (``rdk:*``) and the rest."""
    tick = os.sysconf("SC_CLK_TCK")
    split = {"librdkafka": 0.0, "python": 0.0}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        split["librdkafka" if name.startswith("rdk:") else "python"] += seconds
    return split


class _GcClock:
    """Wall time inside the cyclic collector (``gc.callbacks``): it runs on the CPU throughout."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:  # noqa: ARG002
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began
            self.collections += 1


class _Profiles:
    """cProfile in this thread and in every thread started from now on (per-thread CPU clock)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.other: dict[str, float] = {}
        self.top: dict[str, float] = {}
        threading.setprofile(self._start_in_thread)
        self._start()

    def _start(self) -> None:
        profile = cProfile.Profile(time.thread_time)
        self.profiles.append(profile)
        profile.enable()

    def _start_in_thread(self, *_: Any) -> None:
        sys.setprofile(None)
        self._start()

    def components(self) -> dict[str, float]:
        """Own CPU seconds per component, over every thread's profile."""
        threading.setprofile(None)
        self.profiles[0].disable()
        totals: dict[str, float] = {}
        self.other.clear()  # what "other Python" holds, by function
        self.top.clear()  # every function's own time, for the heaviest few
        for profile in self.profiles:
            profile.disable()
            stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
            for (filename, _, name), (_, _, tottime, _, callers) in stats.items():
                label = component(filename, name)
                where = f"{Path(filename).name}:{name}"
                self.top[where] = self.top.get(where, 0.0) + tottime
                if label == OTHER:
                    where = f"{Path(filename).name}:{name}"
                    self.other[where] = self.other.get(where, 0.0) + tottime
                if label != BUILTINS or not callers:
                    totals[label] = totals.get(label, 0.0) + tottime
                    continue
                # a built-in (str.lower, re.match, dict.get…) counts for whoever called it
                for (c_file, _, c_name), caller in callers.items():
                    by = component(c_file, c_name)
                    by = OTHER if by == BUILTINS else by  # called from the library itself
                    totals[by] = totals.get(by, 0.0) + caller[2]
        return totals


def _deliver(settings: Any, expected: int) -> tuple[Any, Callable[[], Any]]:
    from bench.common import deliverer_class
    from bench.deliver_bench import DoneSensor

    sensor = DoneSensor(expected)
    stage = deliverer_class()(settings, sensor=sensor)
    sensor.stage = stage
    return stage, stage.run


class _AllDone:
    """The normalize stage's sensor: stops the stage once ``expected`` records are committed."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.consumed = 0
        self.stage: Any = None

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:  # noqa: ARG002
        if name == "consumed":
            self.consumed += int(value)
            if self.consumed >= self.expected:
                self.stage.stop()

    def gauge(self, name: str, value: float, **labels: str) -> None:
        """Nothing."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Nothing."""


def _normalize(settings: Any, expected: int) -> tuple[Any, Callable[[], Any]]:
    from stream.normalizer import Normalizer

    sensor = _AllDone(expected)
    stage = Normalizer(settings, sensor=sensor)
    sensor.stage = stage
    return stage, stage.run


def measure_child(kind: str, settings: Any, expected: int, profiled: bool) -> dict[str, Any]:
    """Child process: one stage over ``expected`` events; CPU per event and its parts."""
    build = _deliver if kind == "deliver" else _normalize
    if kind == "normalize":
        from bench.normalize_bench import warm_process

        warm_process()  # the hot path, not the tables built on the first records
    stage, run = build(settings, expected)
    gc_clock = _GcClock()
    gc.callbacks.append(gc_clock)
    profiles = _Profiles() if profiled else None
    cpu0, threads0 = time.process_time(), _thread_cpu()
    # the threads' CPU is read before the stage closes its clients (their threads end then)
    closing: dict[str, Any] = {}
    original_stop = stage.stop

    def stop() -> None:
        closing.setdefault("threads", _thread_cpu())
        closing.setdefault("cpu", time.process_time())
        original_stop()

    stage.stop = stop
    stats = run()
    parts = profiles.components() if profiles else {}
    other = sorted(profiles.other.items(), key=lambda kv: -kv[1])[:12] if profiles else []
    top = sorted(profiles.top.items(), key=lambda kv: -kv[1])[:20] if profiles else []
    gc.callbacks.remove(gc_clock)
    threads = closing.get("threads") or _thread_cpu()
    cpu = closing.get("cpu") or time.process_time()
    consumed = getattr(stats, "consumed", expected) or expected
    return {
        "events": consumed,
        "cpu_us_per_event": round((cpu - cpu0) / consumed * 1e6, 2),
        "librdkafka_us_per_event": round(
            (threads["librdkafka"] - threads0["librdkafka"]) / consumed * 1e6, 2
        ),
        "python_threads_us_per_event": round(
            (threads["python"] - threads0["python"]) / consumed * 1e6, 2
        ),
        "gc_us_per_event": round(gc_clock.seconds / consumed * 1e6, 2),
        "gc_collections": gc_clock.collections,
        "profiled_seconds": {k: round(v, 4) for k, v in parts.items()},
        "other_python_top_seconds": [(where, round(v, 4)) for where, v in other],
        "functions_top_own_seconds": [(where, round(v, 4)) for where, v in top],
    }


# -- the benchmark ----------------------------------------------------------------------------


def _table(plain: dict[str, Any], profiled: dict[str, Any]) -> dict[str, Any]:
    """µs per event per component: the profile's shares of the Python threads' time, applied to
    the unprofiled run's Python µs (GC taken out first: it is measured on its own)."""
    parts = profiled["profiled_seconds"]
    total = sum(parts.values()) or 1.0
    python_us = max(plain["python_threads_us_per_event"] - plain["gc_us_per_event"], 0.0)
    rows = {
        label: round(seconds / total * python_us, 2)
        for label, seconds in sorted(parts.items(), key=lambda kv: -kv[1])
    }
    return {
        "cpu_us_per_event": plain["cpu_us_per_event"],
        "components_us_per_event": {
            **rows,
            "cyclic GC": plain["gc_us_per_event"],
            "librdkafka's own threads": plain["librdkafka_us_per_event"],
        },
        "shares_of_python_time_profiled": {
            label: round(seconds / total, 3) for label, seconds in parts.items()
        },
        "unprofiled": plain,
        "profiled": {k: v for k, v in profiled.items() if k != "profiled_seconds"},
    }


def run(bootstrap: str, *, events: int) -> dict[str, Any]:
    from bench import deliver_bench, normalize_bench
    from bench.common import pixel_ids, produce

    data: dict[str, Any] = {"events": events}
    # normalize: raw records of the normalize benchmark's generator
    inputs = normalize_bench.make_inputs(events)
    raw_topic = unique_topic(bootstrap, "raw")
    produce(bootstrap, raw_topic, ((None, r.value) for r in inputs.records))
    runs = {}
    for profiled in (False, True):
        names = stage_names(raw=raw_topic)
        create_topics(bootstrap, [names["enriched"], names["dlq"]], 6)
        settings = bench_settings(bootstrap, names)
        runs[profiled] = in_child(measure_child, "normalize", settings, events, profiled)
    data["normalize"] = _table(runs[False], runs[True])
    log(f"breakdown normalize: {data['normalize']['components_us_per_event']}")
    # deliver: enriched records at 50 ms
    topic = deliver_bench.produce_topic(
        bootstrap, deliver_bench.enriched_pairs(events, pixel_ids(8))
    )
    sim = SimProcess(latency_ms=50.0).start()
    try:
        for profiled in (False, True):
            sim.reset()
            settings = deliver_bench.deliver_settings(bootstrap, topic, sim.url)
            runs[profiled] = in_child(measure_child, "deliver", settings, events, profiled)
    finally:
        sim.stop()
    data["deliver"] = _table(runs[False], runs[True])
    log(f"breakdown deliver: {data['deliver']['components_us_per_event']}")
    return data


def unique_topic(bootstrap: str, name: str) -> str:
    from bench.common import unique

    topic = unique(name)
    create_topics(bootstrap, [topic], 6)
    return topic
