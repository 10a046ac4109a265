"""Bar charts of the daily metrics, as PNG bytes: matplotlib's object API on an Agg canvas, never pyplot (no display,
no global state), loaded only when a chart is drawn."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

from .. import settings


def bar_chart(
    title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]], unit: str, empty: str
) -> bytes:
    """Horizontal grouped bars, one group per label; a chart with nothing to show says so instead of a blank."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = list(labels)[:40]
    figure = Figure(figsize=(9, max(2.5, 0.35 * len(shown) * max(1, len(series)) + 1.6)), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if not shown:
        axes.set_axis_off()
        axes.text(0.5, 0.5, empty, ha="center", va="center")
    else:
        height = 0.8 / max(1, len(series))
        positions = range(len(shown))
        for i, (name, values) in enumerate(series.items()):
            ys = [p + i * height for p in positions]
            xs = [float(v) if v is not None else 0.0 for v in list(values)[: len(shown)]]
            axes.barh(ys, xs, height=height, label=name)
        axes.set_yticks([p + height * (len(series) - 1) / 2 for p in positions], shown, fontsize=8)
        axes.invert_yaxis()
        axes.set_xlabel(unit)
        if len(series) > 1:
            axes.legend(fontsize=8)
        if len(labels) > len(shown):
            title += f" (first {len(shown)} of {len(labels)})"
    axes.set_title(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def save_plot(name: str, png: bytes) -> Path:
    """Write a chart to `<state dir>/plots/<name>`, replacing the previous run's: the asset's metadata keeps each
    run's own copy (`markdown_image`), the file is the latest one to open."""
    plot_dir = settings.state_dir() / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    path = plot_dir / name
    path.write_bytes(png)
    return path
