"""A PNG of deliver throughput vs simulated API latency: capi-stream, the floor and the SDK loop.

Optional: needs matplotlib (``pip install matplotlib``, not a project dependency); without it
:func:`plot` returns None and the benchmarks go on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(deliver: dict[str, Any], path: Path) -> Path | None:
    """Write the plot of ``deliver["throughput"]`` to ``path``; None without matplotlib."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    points = sorted(deliver["throughput"].items(), key=lambda kv: float(kv[0].removesuffix("ms")))
    latencies = [float(k.removesuffix("ms")) for k, _ in points]
    series = {
        "capi-stream (8 pixels)": [p["capi"]["events_per_s"] for _, p in points],
        "floor: splice + httpx, no guarantees": [p["floor"]["events_per_s"] for _, p in points],
        "SDK EventRequest loop": [p["sdk"]["events_per_s"] for _, p in points],
    }
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for (label, values), marker in zip(series.items(), ("o", "s", "^"), strict=True):
        ax.plot(latencies, values, marker=marker, label=label)
        for x, y in zip(latencies, values, strict=True):
            ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(4, 5), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("simulated Graph API latency (ms)")
    ax.set_ylabel("events accepted per second (log scale)")
    ax.set_title("Deliver: enriched topic → accepted by the CAPI simulator")
    ax.set_xticks(latencies)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
