"""``capi-stream quality report --plot FILE.png``: EMQ and key coverage per pixel, as a chart.

matplotlib is optional (the ``plot`` extra): it is imported only here, only when a chart is
asked for, and its absence is a :class:`~stream.core.errors.ConfigError` that says what to
install, not a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.core.errors import ConfigError
from stream.quality.report import TABLE_KEYS, ReportRow

INSTALL_HINT = "pip install 'capi-stream[plot]' (or pip install matplotlib)"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(f"--plot needs matplotlib: {INSTALL_HINT}") from None
    return plt


def plot(rows: Sequence[ReportRow], path: Path) -> Path:
    """Write a chart of ``rows`` to ``path``: per pixel, Meta's EMQ and the local score per event
    name (bars), and beside it the coverage of the main keys, ours and Meta's (dots)."""
    plt = _pyplot()
    pixels = sorted({r.pixel for r in rows})
    height = max(3.0, 3.2 * len(pixels))
    fig, axes = plt.subplots(len(pixels) or 1, 2, figsize=(13, height), squeeze=False)
    for ax_row, pixel in zip(axes, pixels, strict=False):
        mine = [r for r in rows if r.pixel == pixel]
        names = [r.event_name for r in mine]
        xs = range(len(mine))
        score_ax, key_ax = ax_row
        score_ax.bar([x - 0.2 for x in xs], [r.meta_emq or 0 for r in mine], 0.4, label="Meta EMQ")
        score_ax.bar([x + 0.2 for x in xs], [r.local_score or 0 for r in mine], 0.4,
                     label="local score (estimate)")  # fmt: skip
        score_ax.set_xticks(list(xs), names, rotation=30, ha="right")
        score_ax.set_ylim(0, 10)
        score_ax.set_title(f"pixel {pixel}: match quality")
        score_ax.legend(fontsize="small")
        for i, row in enumerate(mine):
            offset = (i - (len(mine) - 1) / 2) * 0.1
            kx = [k + offset for k in range(len(TABLE_KEYS))]
            key_ax.plot(kx, [100 * row.local_coverage.get(k, 0) for k in TABLE_KEYS], "o",
                        label=f"{row.event_name} ours")  # fmt: skip
            key_ax.plot(kx, [100 * row.meta_coverage.get(k, 0) for k in TABLE_KEYS], "x",
                        label=f"{row.event_name} Meta")  # fmt: skip
        key_ax.set_xticks(range(len(TABLE_KEYS)), TABLE_KEYS)
        key_ax.set_ylim(-5, 105)
        key_ax.set_ylabel("% of events")
        key_ax.set_title(f"pixel {pixel}: key coverage")
        key_ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
