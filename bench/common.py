"""The shared harness of the benchmarks: inputs, timing, RSS, results, and the real servers.

Everything a benchmark needs that is not the thing it measures:

* :func:`raw_events`: realistic, distinct conversion events in the raw schema's shape, generated
  deterministically from a seed (accented names, US and international phones, some values already
  hashed, website, app and offline sources, several event names);
* :func:`sdk_event`: the same event as ``facebook-business`` SDK objects (``UserData``,
  ``CustomData``, ``AppData``, ``Event``), which is how an SDK user would hand it over;
* :func:`best_of` and :func:`median`: repeat, take medians (the machines are shared and noisy);
* :class:`RssSampler` and :func:`proc_status_mb`: resident memory from ``/proc``;
* :func:`kafka_broker` and :class:`SimProcess`: a real Apache Kafka on loopback and the CAPI
  simulator in its own process (so it never shares the GIL with what is measured);
* :func:`write_result`: one JSON file per benchmark with the command and the machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import random
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

#: Run in this order; ``outage`` last: it kills the broker and starts it again.
BENCHMARKS = (
    "normalize", "deliver", "latency", "breakdown", "workers", "publish", "replay", "dlq",
    "outage",
)  # fmt: skip
TOKEN = "bench-token"

# -- inputs -----------------------------------------------------------------------------------

FIRST_NAMES = (
    "José",
    "Zoë",
    "François",
    "Chloé",
    "Björn",
    "Siobhán",
    "Łukasz",
    "Renée",
    "Anaïs",
    "Søren",
    "Mary-Jane",
    "John",
    "Emma",
    "Liam",
    "Olivia",
    "Noah",
    "Ava",
    "Mateo",
    "Yūki",
    "Ольга",
    "Ingrid",
    "Aurélie",
    "Jürgen",
    "Dvořák",
    "Hélène",
    "Nuño",
    "Ségolène",
    "Kai",
    "Priya",
    "Wei",
)
LAST_NAMES = (
    "Müller",
    "O'Brien",
    "García",
    "Núñez",
    "Dvořák",
    "Smith",
    "Johnson",
    "Nguyen",
    "Kowalski",
    "Ångström",
    "da Silva",
    "Van der Berg",
    "Schäfer",
    "Lefèvre",
    "Østergaard",
    "Brown",
    "Patel",
    "Rossi",
    "Fernández",
    "Jørgensen",
    "Łęcki",
    "Çelik",
    "Williams",
    "Kim",
    "Taylor",
)
DOMAINS = (
    "gmail.com",
    "yahoo.co.uk",
    "outlook.fr",
    "web.de",
    "example.org",
    "icloud.com",
    "proton.me",
    "hotmail.com",
    "gmx.net",
    "mail.example.co.jp",
)
US_AREA_CODES = (
    "201",
    "212",
    "213",
    "305",
    "312",
    "404",
    "415",
    "512",
    "617",
    "650",
    "702",
    "713",
    "718",
    "206",
    "303",
    "503",
    "602",
    "646",
    "917",
    "972",
)
#: (country alpha-2 as people write it, cities, states, zip maker)
PLACES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], Callable[[random.Random], str]], ...] = (
    (
        "US",
        ("San Francisco", "New York", "Washington D.C.", "Austin", "Seattle", "Boston"),
        ("CA", "California", " new york ", "TX", "Washington", "MA"),
        lambda r: (
            f"{r.randint(10000, 99999)}" + (f"-{r.randint(1000, 9999)}" if r.random() < 0.3 else "")
        ),
    ),
    (
        "us",
        ("Chicago", "Miami", "Denver"),
        ("IL", "Florida", "co"),
        lambda r: f"{r.randint(10000, 99999)}",
    ),
    (
        "GB",
        ("London", "Manchester", "Edinburgh"),
        ("England", "Scotland"),
        lambda r: f"SW{r.randint(1, 9)}A {r.randint(1, 9)}AA",
    ),
    (
        "fr",
        ("Paris", "Orléans", "Montpellier"),
        ("Île-de-France", "Occitanie"),
        lambda r: f"{r.randint(75001, 75020)}",
    ),
    (
        "DE",
        ("München", "Köln", "Düsseldorf"),
        ("Bayern", "Nordrhein-Westfalen"),
        lambda r: f"{r.randint(10115, 99998)}",
    ),
    (
        "BR",
        ("São Paulo", "Rio de Janeiro"),
        ("SP", "RJ"),
        lambda r: f"{r.randint(10000, 99999)}-{r.randint(100, 999)}",
    ),
    (
        "CA",
        ("Montréal", "Toronto"),
        ("Québec", "ON"),
        lambda r: f"M{r.randint(1, 9)}V {r.randint(1, 9)}T{r.randint(1, 9)}",
    ),
    (
        "jp",
        ("Tōkyō", "Ōsaka"),
        ("Tokyo", "Osaka"),
        lambda r: f"{r.randint(100, 999)}-{r.randint(1000, 9999)}",
    ),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
)
#: (event name, share); Purchase always carries value and currency (Meta requires both)
EVENT_NAMES = (
    ("Purchase", 30),
    ("ViewContent", 20),
    ("AddToCart", 15),
    ("InitiateCheckout", 10),
    ("Lead", 10),
    ("CompleteRegistration", 5),
    ("Search", 5),
    ("Subscribe", 5),
)
#: (action_source, share)
SOURCES = (
    ("website", 80),
    ("app", 12),
    ("email", 4),
    ("physical_store", 2),
    ("system_generated", 2),
)
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BRL", "usd", "eur")
GENDERS = ("Female", "f", "M", "male", "F ", "m")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _ascii(name: str) -> str:
    import unicodedata

    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded if ch.isalnum()).lower() or "user"


def _phone(r: random.Random, i: int) -> str:
    """A valid phone number as people type it: 60% US, 40% international (distinct per ``i``)."""
    line = f"{i % 10_000:04d}"
    if r.random() < 0.6:
        area, exch = r.choice(US_AREA_CODES), f"{r.randint(2, 9)}{r.randint(2, 9)}{r.randint(0, 9)}"
        fmt = r.randrange(4)
        if fmt == 0:
            return f"+1 ({area}) {exch}-{line}"
        if fmt == 1:
            return f"{area}-{exch}-{line}"
        if fmt == 2:
            return f"({area}) {exch} {line}"
        return f"1{area}{exch}{line}"
    mid = f"{r.randint(100, 999)}"
    kind = r.randrange(7)
    if kind == 0:
        return f"+44 75{r.randint(10, 99)} {mid}{line[:3]}"  # UK mobile
    if kind == 1:
        return f"+33 6 {r.randint(10, 79)} {line[:2]} {line[2:]} {r.randint(10, 99)}"  # FR mobile
    if kind == 2:
        return f"+49 151 {mid}{line}{r.randint(0, 9)}"  # DE mobile
    if kind == 3:
        return f"+55 11 9{mid[:2]}{r.randint(10, 99)}-{line}"  # BR mobile
    if kind == 4:
        return f"0091 98{mid} {line}{r.randint(0, 9)}"  # IN mobile, 00 prefix
    if kind == 5:
        return f"+81 90-{mid}{r.randint(0, 9)}-{line}"  # JP mobile
    return f"+61 4{r.randint(10, 29)} {mid} {line[:3]}"  # AU mobile


def _birth_date(r: random.Random) -> str:
    y, m, d = r.randint(1945, 2005), r.randint(1, 12), r.randint(1, 28)
    return r.choice(
        (f"{y}-{m:02d}-{d:02d}", f"{m}/{d}/{y}", f"{y}{m:02d}{d:02d}", f"{d:02d}.{m:02d}.{y}")
    )


def _weighted(r: random.Random, table: Sequence[tuple[str, int]]) -> str:
    return r.choices([t[0] for t in table], weights=[t[1] for t in table])[0]


def empty_user_data() -> dict[str, Any]:
    """A raw ``user_data`` with every key absent, in the shape fastavro decodes."""
    from tests.factories import empty_user_data as empty

    return empty()


def raw_event(r: random.Random, i: int, now: int, pixels: Sequence[str]) -> dict[str, Any]:
    """Event ``i``: one realistic raw ``ConversionEvent`` with every field present."""
    from tests.factories import custom_data

    source = _weighted(r, SOURCES)
    name = _weighted(r, EVENT_NAMES)
    first, last = r.choice(FIRST_NAMES), r.choice(LAST_NAMES)
    ud = empty_user_data()
    email = f"{_ascii(first)}.{_ascii(last)}.{i}@{r.choice(DOMAINS)}"
    if r.random() < 0.3:
        email = email.title()
    if r.random() < 0.1:
        email = f"  {email} "
    if r.random() < 0.15:  # the publisher hashed it already (upper-case hex now and then)
        digest = _sha(email.strip().lower())
        ud["em"] = [digest.upper() if r.random() < 0.2 else digest]
    else:
        ud["em"] = [email]
    if r.random() < 0.1:
        ud["em"].append(f"{_ascii(last)}{i}@{r.choice(DOMAINS)}")
    if r.random() < 0.7:
        phone = _phone(r, i)
        ud["ph"] = [_sha("".join(c for c in phone if c.isdigit())) if r.random() < 0.1 else phone]
    if r.random() < 0.6:
        ud["fn"], ud["ln"] = [first], [last]
    if r.random() < 0.5:
        country, cities, states, zipper = r.choice(PLACES)
        ud["ct"], ud["st"], ud["zp"] = [r.choice(cities)], [r.choice(states)], [zipper(r)]
        ud["country"] = [country]
    if r.random() < 0.3:
        ud["ge"] = [r.choice(GENDERS)]
    if r.random() < 0.25:
        ud["db"] = [_birth_date(r)]
    if r.random() < 0.5:
        ud["external_id"] = [f"cust-{i:08d}"]
    event_time = now - r.randint(60, 3 * 86_400)
    if r.random() < 0.02:
        event_time *= 1000  # some publishers send milliseconds
    event: dict[str, Any] = {
        "event_name": name,
        "event_time": event_time,
        "action_source": source,
        "event_id": f"evt-{i:09d}" if r.random() < 0.8 else None,
        "event_source_url": None,
        "opt_out": None,
        "referrer_url": None,
        "user_data": ud,
        "custom_data": None,
        "app_data": None,
        "original_event_data": None,
        "attribution_data": None,
        "data_processing_options": None,
        "data_processing_options_country": None,
        "data_processing_options_state": None,
        "customer_segmentation": None,
        "messaging_channel": None,
        "advanced_measurement_table": None,
        "advertiser_tracking_enabled": None,
        "pixel_id": pixels[i % len(pixels)],
        "test_event_code": None,
    }
    if source == "website":
        sku = f"sku-{r.randint(1, 5000)}"
        event["event_source_url"] = f"https://shop{r.randint(1, 9)}.example.com/p/{sku}?utm={i}"
        ud["client_user_agent"] = r.choice(USER_AGENTS)
        ud["client_ip_address"] = (
            f"203.0.{r.randint(0, 255)}.{r.randint(1, 254)}"
            if r.random() < 0.8
            else f"2001:db8::{r.randint(1, 65535):x}:{i % 65536:x}"
        )
        if r.random() < 0.6:
            ud["fbp"] = f"fb.1.{(now - 86_400) * 1000 + i}.{r.randint(10**9, 10**10 - 1)}"
        if r.random() < 0.3:
            ud["fbc"] = f"fb.1.{(now - 3600) * 1000 + i}.IwAR{r.getrandbits(64):x}"
        if r.random() < 0.2:
            event["referrer_url"] = "https://www.google.com/"
    elif source == "app":
        ud["madid"] = f"{r.getrandbits(128):032x}"
        event["app_data"] = {
            "advertiser_tracking_enabled": r.random() < 0.7,
            "application_tracking_enabled": True,
            "extinfo": [
                "a2",
                "com.example.shop",
                "4.2",
                "4.2.1",
                "14",
                "Pixel 8",
                "en_US",
                "UTC",
                "T-Mobile",
                "1080",
                "2400",
                "2.75",
                "8",
                "128",
                "64",
                "America/New_York",
            ],
            "campaign_ids": None,
            "install_referrer": None,
            "installer_package": "com.android.vending",
            "url_schemes": [],
            "vendor_id": None,
            "windows_attribution_id": None,
        }
    if name in ("Purchase", "InitiateCheckout", "AddToCart") or r.random() < 0.2:
        skus = [f"sku-{r.randint(1, 5000)}" for _ in range(r.randint(1, 3))]
        data = custom_data(
            value=round(r.uniform(5, 500), 2),
            currency=r.choice(CURRENCIES),
            content_ids=skus,
            content_type="product",
            num_items=len(skus),
            order_id=f"ord-{i:09d}" if name == "Purchase" else None,
            contents=[
                {
                    "id": s,
                    "quantity": r.randint(1, 3),
                    "item_price": round(r.uniform(5, 200), 2),
                    "delivery_category": None,
                    "title": None,
                    "description": None,
                    "brand": None,
                    "category": None,
                }
                for s in skus
            ],
        )
        if r.random() < 0.2:
            data["custom_properties"] = {"coupon": f"C{r.randint(1, 99)}", "first_order": True}
        event["custom_data"] = data
    if r.random() < 0.05:
        event["data_processing_options"] = ["LDU"]
        event["data_processing_options_country"] = 0
        event["data_processing_options_state"] = 0
    return event


def raw_events(n: int, seed: int, now: int, pixels: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` distinct raw events, the same for the same ``seed`` and ``now``."""
    r = random.Random(seed)
    return [raw_event(r, i, now, pixels) for i in range(n)]


def pixel_ids(count: int) -> list[str]:
    return [f"{1_000_000_000_000_000 + k}" for k in range(count)]


# -- the SDK's objects ------------------------------------------------------------------------

_HASHED_LISTS = (
    ("em", "emails"),
    ("ph", "phones"),
    ("fn", "first_names"),
    ("ln", "last_names"),
    ("db", "dates_of_birth"),
    ("ct", "cities"),
    ("st", "states"),
    ("zp", "zip_codes"),
    ("country", "country_codes"),
    ("external_id", "external_ids"),
)
_PLAIN = (
    "client_ip_address",
    "client_user_agent",
    "fbc",
    "fbp",
    "subscription_id",
    "fb_login_id",
    "lead_id",
    "f5first",
    "f5last",
    "fi",
    "dobd",
    "dobm",
    "doby",
    "madid",
    "anon_id",
    "ctwa_clid",
    "page_id",
)


def sdk_event(event: Mapping[str, Any]) -> Any:
    """The event as the SDK's objects, the way an SDK user builds them from a dict.

    Genders go in as the SDK's ``Gender`` enum (it accepts nothing else), so a value that is
    already hashed has no place in ``UserData`` and is left out (the deliver baseline only).
    """
    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.app_data import AppData
    from facebook_business.adobjects.serverside.content import Content
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.extended_device_info import ExtendedDeviceInfo
    from facebook_business.adobjects.serverside.gender import Gender
    from facebook_business.adobjects.serverside.user_data import UserData

    ud = event["user_data"]
    kwargs: dict[str, Any] = {arg: ud[key] for key, arg in _HASHED_LISTS if ud.get(key)}
    kwargs.update({key: ud[key] for key in _PLAIN if ud.get(key)})
    # raw genders only ("Female" -> f); a 64-hex hash cannot become a Gender
    genders = [g.strip()[:1].lower() for g in ud.get("ge") or () if len(g.strip()) < 16]
    if genders and all(g in ("f", "m") for g in genders):
        kwargs["genders"] = [Gender(g) for g in genders]
    user_data = UserData(**kwargs)
    custom = None
    if (cd := event.get("custom_data")) is not None:
        contents = [
            Content(product_id=c["id"], quantity=c.get("quantity"), item_price=c.get("item_price"))
            for c in cd.get("contents") or ()
        ]
        custom = CustomData(
            value=cd.get("value"),
            currency=cd.get("currency"),
            content_ids=cd.get("content_ids") or None,
            contents=contents or None,
            content_type=cd.get("content_type"),
            order_id=cd.get("order_id"),
            num_items=cd.get("num_items"),
            custom_properties=dict(cd.get("custom_properties") or {}),
        )
    app = None
    if (ad := event.get("app_data")) is not None:
        ext = ad.get("extinfo") or []
        info = ExtendedDeviceInfo(*ext[:16]) if len(ext) >= 16 else None
        app = AppData(
            advertiser_tracking_enabled=ad.get("advertiser_tracking_enabled"),
            application_tracking_enabled=ad.get("application_tracking_enabled"),
            extinfo=info,
            installer_package=ad.get("installer_package"),
        )
    return Event(
        event_name=event["event_name"],
        event_time=event["event_time"],
        event_source_url=event.get("event_source_url"),
        event_id=event.get("event_id"),
        opt_out=event.get("opt_out"),
        referrer_url=event.get("referrer_url"),
        user_data=user_data,
        custom_data=custom,
        app_data=app,
        action_source=ActionSource(event["action_source"]),
        data_processing_options=event.get("data_processing_options"),
        data_processing_options_country=event.get("data_processing_options_country"),
        data_processing_options_state=event.get("data_processing_options_state"),
    )


# -- statistics and timing --------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


@dataclass
class Timing:
    """One timed run: wall seconds, CPU seconds of this process, and items processed."""

    wall_s: float
    cpu_s: float
    items: int

    @property
    def rate(self) -> float:
        return self.items / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def cpu_rate(self) -> float:
        return self.items / self.cpu_s if self.cpu_s > 0 else float("nan")


def timed(fn: Callable[[], int]) -> Timing:
    """Run ``fn`` (it returns how many items it did) and time it, after a full collection."""
    import gc

    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    items = fn()
    return Timing(time.perf_counter() - wall0, time.process_time() - cpu0, items)


# -- memory -----------------------------------------------------------------------------------


def proc_status_mb(pid: int, field_name: str) -> float | None:
    """A ``Vm*`` field of ``/proc/PID/status`` in MB (None when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def self_peak_rss_mb() -> float:
    """Peak RSS of this process (``getrusage``; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """Samples VmRSS and VmHWM of a process every ``interval_s`` in a background thread."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, VmRSS MB)
        self.hwm_mb: float | None = None
        self._stop = threading.Event()
        self._began = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        rss = proc_status_mb(self.pid, "VmRSS")
        hwm = proc_status_mb(self.pid, "VmHWM")
        if rss is not None:
            self.samples.append((time.monotonic() - self._began, rss))
        if hwm is not None:
            self.hwm_mb = max(self.hwm_mb or 0.0, hwm)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak_sampled_mb(self) -> float | None:
        return max((mb for _, mb in self.samples), default=None)


# -- results ----------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, Python, the versions that matter, and the commit measured."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_mb = None
    with contextlib.suppress(OSError, ValueError):
        mem_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    commit = dirty = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "stream"],
                cwd=ROOT,
                text=True,
                capture_output=True,
                check=False,
            ).stdout.strip()
        )
    librdkafka = None
    with contextlib.suppress(ImportError):
        import confluent_kafka

        librdkafka = confluent_kafka.libversion()[0]
    return {
        "nproc": len(cpus) or os.cpu_count(),
        "cpu_model": model,
        "memory_mb": mem_mb,
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {
            name: _version(name)
            for name in (
                "fastavro",
                "confluent-kafka",
                "facebook-business",
                "orjson",
                "httpx",
                "phonenumbers",
            )
        }
        | {"librdkafka": librdkafka},
        "git_commit": commit,
        "stream_dirty": dirty,
        "stream_tree_sha256": stream_tree_hash(),
    }


def stream_tree_hash() -> str:
    """A digest of every ``stream/**/*.py``: others may edit stream/ while a run goes on, so this
    names the exact code that was measured (compare the value at the start and at the end)."""
    tree = hashlib.sha256()
    for path in sorted((ROOT / "stream").rglob("*.py")):
        tree.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return tree.hexdigest()[:16]


def command_line() -> str:
    """The command that is running, as typed (``python -m bench ...``)."""
    argv = sys.argv[:]
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = "-m bench"
    return f"{Path(sys.executable).name} " + " ".join(shlex.quote(a) for a in argv).replace(
        "'-m bench'", "-m bench"
    )


def write_result(name: str, data: dict[str, Any]) -> Path:
    """``bench/results/NAME.json`` with the command and the machine; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {
        "benchmark": name,
        "command": command_line(),
        "finished_at": _now_iso(),
        "machine": machine_info(),
        **data,
    }
    path.write_bytes(
        orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    )
    return path


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def log(message: str) -> None:
    """Progress on stderr, with the time since the benchmarks started."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


_STARTED = time.monotonic()


# -- real servers -----------------------------------------------------------------------------


#: The broker this run started (None with ``KAFKA_BOOTSTRAP``): the outage benchmark kills it.
BROKER: Any = None


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """A fresh Apache Kafka (KRaft) on loopback for the run; ``KAFKA_BOOTSTRAP`` reuses one."""
    global BROKER  # noqa: PLW0603 - one broker per run, handed to the benchmark that kills it
    if existing := os.environ.get("KAFKA_BOOTSTRAP"):
        yield existing
        return
    from tests.brokers.provision import KafkaBroker

    workdir = Path(tempfile.mkdtemp(prefix="capi-bench-kafka-"))
    broker = KafkaBroker(workdir).start()
    log(f"kafka broker up at {broker.bootstrap} in {broker.startup_seconds:.1f}s")
    BROKER = broker
    try:
        wait_for_metadata(broker.bootstrap)
        yield broker.bootstrap
    finally:
        BROKER = None
        broker.stop()


def wait_for_metadata(bootstrap: str, timeout_s: float = 60.0) -> None:
    """Until the broker answers a metadata request (after a start or a restart)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(Exception):
            if admin.list_topics(timeout=5).brokers:
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the broker serves no metadata")
        time.sleep(0.2)


def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    for future in futures.values():
        future.result(30)


def produce(bootstrap: str, topic: str, pairs: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Produce (key, value) pairs idempotently, waiting when librdkafka's queue is full."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    count = 0
    for key, value in pairs:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError(f"{topic}: some records were not acknowledged")
    return count


def unique(name: str) -> str:
    return f"bench-{name}-{time.monotonic_ns() % 10**10}"


def deliverer_class() -> Any:
    """The deliver stage's class: ``stream.deliverer.Deliverer``, or the ``stream.deliver``
    package's once the module is gone (both take ``(settings, sensor=...)`` and ``run()``)."""
    import importlib

    try:
        return importlib.import_module("stream.deliverer").Deliverer
    except (ImportError, AttributeError):
        package = importlib.import_module("stream.deliver")
        found = getattr(package, "Deliverer", None)
        return found or importlib.import_module("stream.deliver.stage").Deliverer


def bench_settings(
    bootstrap: str,
    names: Mapping[str, str],
    *,
    normalizer: Mapping[str, Any] | None = None,
    deliverer: Mapping[str, Any] | None = None,
    consumer: Mapping[str, Any] | None = None,
    access_token: str | None = TOKEN,
) -> Any:
    """Stage settings on a benchmark's own topics and groups (as the integration tests make
    them: a short session timeout), with librdkafka ``consumer`` properties passed through."""
    from stream.config import Settings

    return Settings(
        bootstrap_servers=bootstrap,
        topics={"raw": names["raw"], "enriched": names["enriched"], "dlq": names["dlq"]},
        normalizer={
            "group_id": names["normalizer_group"],
            "transactional_id": names["normalizer_group"],
            **(normalizer or {}),
        },
        deliverer={"group_id": names["deliverer_group"], **(deliverer or {})},
        consumer={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1000, **(consumer or {})},
        access_token=access_token,
    )


def stage_names(**given: str) -> dict[str, str]:
    """Fresh topic and group names for one stage run; ``given`` ones are kept."""
    names = {
        "raw": unique("raw"),
        "enriched": unique("enriched"),
        "dlq": unique("dlq"),
        "normalizer_group": unique("norm"),
        "deliverer_group": unique("deliv"),
    }
    return names | given


def in_child(target: Callable[..., dict[str, Any]], *args: Any, timeout_s: float = 600) -> Any:
    """``target(*args)`` in a fresh interpreter (spawn): the CPU and memory it reports are its
    own process's, never shared with this harness. Its exception comes back as RuntimeError."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(target, args, child), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            raise RuntimeError(f"{target.__name__} gave no result in {timeout_s:g} s")
        result = parent.recv()
    except EOFError as exc:
        raise RuntimeError(f"{target.__name__} died (exit {proc.exitcode})") from exc
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            proc.join(10)
    if isinstance(result, dict) and "child_error" in result:
        raise RuntimeError(f"{target.__name__} failed:\n{result['child_error']}")
    return result


def _child_main(target: Callable[..., Any], args: tuple[Any, ...], conn: Any) -> None:
    import traceback

    from stream.logs import configure

    configure("warning", "json")  # a stage's own problems only
    try:
        result = target(*args)
    except BaseException:  # noqa: BLE001 - sent to the parent, which raises it
        result = {"child_error": traceback.format_exc()}
    conn.send(result)
    conn.close()


def cpu_times() -> tuple[float, float]:
    """(wall, CPU) now: ``perf_counter`` and this process's CPU over every thread."""
    return time.perf_counter(), time.process_time()


@dataclass
class SimProcess:
    """``capi-stream sim`` in its own process, on a free port; faults change over HTTP."""

    latency_ms: float = 0.0
    #: keep the request journal (``bench/journal_sim.py``), read back with :meth:`journal`
    journal: bool = False
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="capi-sim-", suffix=".log")[1])
    )
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self) -> SimProcess:
        if self.journal:
            self._journal_path = self.log_path.with_suffix(".journal.json")
            cmd = [sys.executable, "-m", "bench.journal_sim", "--token", TOKEN, "--latency",
                   f"{self.latency_ms:g}", "--journal", str(self._journal_path)]  # fmt: skip
        else:
            cmd = [sys.executable, "-m", "stream.cli", "sim", "--port", "0",
                   "--token", f"{TOKEN}=*", "--latency", f"{self.latency_ms:g}"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAPI_STREAM_")}
        err = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
        err.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the simulator did not start (said {line!r}); see {self.log_path}")
        self.url = line
        # keep its stdout drained so it can never block on a full pipe
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        return self

    def set_faults(self, **faults: Any) -> None:
        import httpx

        response = httpx.post(f"{self.url}/_sim/faults", json=faults, timeout=10)
        response.raise_for_status()

    def set_latency(self, ms: float) -> None:
        self.set_faults(latency={"kind": "fixed", "ms": ms} if ms else {"kind": "none"})

    def reset(self) -> None:
        import httpx

        httpx.post(f"{self.url}/_sim/reset", timeout=30).raise_for_status()

    def stats(self) -> dict[str, Any]:
        import httpx

        result: dict[str, Any] = httpx.get(f"{self.url}/_sim/stats", timeout=30).json()
        return result

    def read_journal(self, timeout_s: float = 30.0) -> list[list[Any]]:
        """Every request so far: ``[pixel_id, arrived_at, answered_at, sent, [event_id, ...]]``."""
        if not self.journal or self.proc is None:
            raise RuntimeError("the simulator keeps no journal")
        self._journal_path.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while not self._journal_path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not write its journal")
            time.sleep(0.05)
        rows: list[list[Any]] = orjson.loads(self._journal_path.read_bytes())
        return rows

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def alternating_pair(
    name: str,
    rounds: int,
    hand: Callable[[], int],
    tool: Callable[[], int],
    *,
    goal: float,
    unit: str = "records",
) -> dict[str, Any]:
    """Alternating rounds of a tool and its hand-written loop; rates, ratios (tool / hand) and
    medians, under keys naming ``unit`` (records, rows)."""
    hand_rates: list[float] = []
    tool_rates: list[float] = []
    ratios: list[float] = []
    cpu_ratios: list[float] = []  # per CPU-second of this process: steadier when busy
    for k in range(rounds):
        if k % 2:  # the order alternates, so neither side always runs on a warmer broker
            t, h = timed(tool), timed(hand)
        else:
            h, t = timed(hand), timed(tool)
        hand_rates.append(h.rate)
        tool_rates.append(t.rate)
        ratios.append(t.rate / h.rate)
        cpu_ratios.append(t.cpu_rate / h.cpu_rate)
        log(f"{name} round {k + 1}: tool {t.rate:,.0f}/s, hand-written {h.rate:,.0f}/s "
            f"({t.items:,} {unit}): {ratios[-1]:.2f}x; by CPU {cpu_ratios[-1]:.2f}x")  # fmt: skip
    ratio = median(ratios)
    return {
        f"median_tool_{unit}_per_s": round(median(tool_rates)),
        f"median_hand_{unit}_per_s": round(median(hand_rates)),
        f"tool_{unit}_per_s": [round(x) for x in tool_rates],
        f"hand_{unit}_per_s": [round(x) for x in hand_rates],
        "ratios": [round(x, 3) for x in ratios],
        "median_ratio": round(ratio, 3),
        "cpu_ratios": [round(x, 3) for x in cpu_ratios],
        "median_cpu_ratio": round(median(cpu_ratios), 3),
        "goal": {"ratio": goal, "met": ratio >= goal, "margin": round(ratio - goal, 3)},
    }
