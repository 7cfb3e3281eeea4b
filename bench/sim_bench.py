"""Throughput of the CAPI simulator: accepted events per second on one core.

Runs the simulator in its own process pinned to one CPU and a load client in this process
(pinned to the other CPUs when there are any) with several keep-alive connections, each
posting valid 1,000-event requests with fresh event ids for a fixed time. Writes
bench/results/sim.json and prints it. The goal (issue): at least 20,000 accepted events/s.

    .venv/bin/python bench/sim_bench.py [--seconds 10] [--connections 4] [--events 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sim.json"
GOAL_EVENTS_PER_S = 20_000
PIXEL = "1234567890"
TOKEN = "bench-token"
MARK = b"@@REQUEST@@"
SERVER_CODE = f"""
from stream.sim import SimConfig, serve
serve(SimConfig(tokens={{{TOKEN!r}: frozenset({{{PIXEL!r}}})}}), "127.0.0.1", 0,
      on_ready=lambda url: print(url, flush=True))
"""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build_template(events: int) -> bytes:
    """One request body whose event ids carry MARK, replaced per request to keep them unique."""
    now = int(time.time())
    data = []
    for i in range(events):
        data.append(
            {
                "event_name": "Purchase",
                "event_time": now - 30,
                "action_source": "website",
                "event_id": f"{MARK.decode()}-{i:04d}",
                "event_source_url": "https://shop.example.com/checkout/thanks",
                "user_data": {
                    "em": [_sha(f"user{i}@example.com")],
                    "ph": [_sha(f"1650555{i:04d}")],
                    "external_id": [_sha(f"user-{i}")],
                    "client_ip_address": "203.0.113.7",
                    "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Bench/1.0",
                    "fbp": "fb.1.1596403881668.1116446470",
                },
                "custom_data": {"currency": "usd", "value": 123.45, "order_id": f"o{i}"},
            }
        )
    return orjson.dumps({"data": data, "access_token": TOKEN})


def start_server(cpu: int | None) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"the simulator did not start (said {url!r})")
    return proc, url


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process, from /proc (0.0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, template: bytes, seconds: float, connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(10**9))
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    events_url = f"{url}/v25.0/{PIXEL}/events"

    def worker() -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=30) as client:
            while time.perf_counter() < deadline:
                with lock:
                    n = next(counter)
                body = template.replace(MARK, b"r%09d" % n)
                start = time.perf_counter()
                response = client.post(events_url, content=body, headers=headers)
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors.append(response.text[:200])

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"elapsed": time.perf_counter() - began, "latencies": latencies, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[0] if len(cpus) > 1 else None
    if server_cpu is not None:
        os.sched_setaffinity(0, set(cpus[1:]))
    template = build_template(args.events)
    proc, url = start_server(server_cpu)
    try:
        load(url, template, 1.0, args.connections)  # warm-up, not measured
        httpx.post(f"{url}/_sim/reset")
        cpu_before = cpu_seconds(proc.pid)
        run = load(url, template, args.seconds, args.connections)
        server_cpu_s = cpu_seconds(proc.pid) - cpu_before
        stats = httpx.get(f"{url}/_sim/stats", params={"pixel_id": PIXEL}).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    latencies = sorted(run["latencies"])
    elapsed = run["elapsed"]
    accepted_per_s = stats["accepted"] / elapsed
    result = {
        "accepted_events_per_s": round(accepted_per_s),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None,
        "accepted": stats["accepted"],
        "duplicates": stats["duplicates"],
        "rejected": stats["rejected"],
        "errors": len(run["errors"]),
        "server_cpu_utilisation": round(server_cpu_s / elapsed, 2),
        "events_per_request": args.events,
        "request_bytes": len(template),
        "connections": args.connections,
        "seconds": round(elapsed, 2),
        "server_pinned_to_cpu": server_cpu,
        "goal_events_per_s": GOAL_EVENTS_PER_S,
        "meets_goal": accepted_per_s >= GOAL_EVENTS_PER_S,
        "python": platform.python_version(),
        "cpus": len(cpus) or os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if run["errors"]:
        print("first error:", run["errors"][0], file=sys.stderr)


if __name__ == "__main__":
    main()
