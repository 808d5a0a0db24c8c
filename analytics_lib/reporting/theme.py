"""The reports' visual theme: one palette, one plotly template, one stylesheet."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "payment_analytics"

INK = "#1f2933"
MUTED = "#616e7c"
GRID = "#e4e7eb"
GOOD = "#1a7f4b"
BAD = "#c0392b"
NEUTRAL = "#7b8794"
#: categorical colours, colour-blind safe (Okabe-Ito, reordered for contrast on white)
PALETTE = ["#0b5fa5", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]
SEQUENTIAL = [[0.0, "#f0f6fc"], [0.5, "#6ea8d8"], [1.0, "#0b3d6b"]]
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
#: every chart has this height unless a chart asks for another: fixed sizes keep PDF pages predictable
CHART_HEIGHT = 360


def register_plotly_template() -> str:
    """Register the theme as a plotly template and make it the default; returns its name."""
    if TEMPLATE_NAME not in pio.templates:
        layout = go.Layout(
            font={"family": FONT, "size": 13, "color": INK},
            colorway=PALETTE,
            paper_bgcolor="white",
            plot_bgcolor="white",
            margin={"l": 56, "r": 24, "t": 48, "b": 48},
            title={"font": {"size": 15}, "x": 0, "xanchor": "left"},
            xaxis={"gridcolor": GRID, "linecolor": GRID, "zeroline": False, "automargin": True},
            yaxis={"gridcolor": GRID, "linecolor": GRID, "zeroline": False, "automargin": True},
            legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
            hoverlabel={"font": {"family": FONT}},
            colorscale={"sequential": SEQUENTIAL},
            height=CHART_HEIGHT,
        )
        pio.templates[TEMPLATE_NAME] = go.layout.Template(layout=layout)
    pio.templates.default = "plotly_white+" + TEMPLATE_NAME
    return TEMPLATE_NAME


@cache
def stylesheet() -> str:
    return (TEMPLATE_DIR / "report" / "report.css").read_text(encoding="utf-8")


@cache
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package (inlined once per report: no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
