"""Colours and marker symbols legible on Streamlit's light AND dark themes (issue 13 §9), shared by
every page's Plotly figures. Not a page itself.

- ``QUALITATIVE``: 12 mid-lightness colours (none near black, none near white), so a line neither
  vanishes on the dark background nor washes out on the light one.
- ``family_style(i)``: colour × marker symbol for the i-th family: 12 × 4 = 48 distinguishable
  families (the Evals page draws ~30 model families).
- ``SEQUENTIAL``: Viridis without its near-black end, for a value mapped to colour.
- ``DIVERGING``: a red–blue scale for values around a reference; ``centred`` puts its pale middle at
  any value (the routing page's expert load: at 1/E).
- ``NEUTRAL``: reference lines and outlines (a mid grey, never black).
- ``name(text)``: a user string escaped for a Plotly trace name, legend or hover (core.format.plotly_text).
"""
from __future__ import annotations

import numpy as np
from plotly.colors import sample_colorscale

from core.format import plotly_text

# Tableau 10 (mid lightness on both backgrounds), with its yellow darkened for the light theme, plus
# cyan and olive: 12 hues a reader tells apart.
QUALITATIVE = ("#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#C9A227", "#B279A2", "#FF9DA6",
               "#9D755D", "#8C8C8C", "#17BECF", "#BCBD22")
SYMBOLS = ("circle", "square", "diamond", "triangle-up")
N_FAMILIES = len(QUALITATIVE) * len(SYMBOLS)  # 48 distinct (colour, symbol) pairs
DASHES = ("solid", "dash", "dot", "dashdot")

NEUTRAL = "#8C8C8C"  # reference lines, zero lines, outlines: visible on white and on Streamlit's dark grey
ACCENT = "#E45756"  # the fitted law / the highlighted curve
SECOND = "#4C78A8"  # a second highlighted series (e.g. N* beside D*)
THIRD = "#F58518"

# Viridis from 0.15: its first sixth is a near-black purple that vanishes on the dark theme.
_VIRIDIS_STOPS = np.linspace(0.15, 1.0, 9)
SEQUENTIAL = [[float(i) / (len(_VIRIDIS_STOPS) - 1), c]
              for i, c in enumerate(sample_colorscale("Viridis", list(_VIRIDIS_STOPS)))]
DIVERGING = "RdBu_r"  # blue below the reference, red above; its pale middle is the reference itself


def centred(zmin: float, zmax: float, mid: float, scale: str = DIVERGING) -> list:
    """A diverging colour scale over [zmin, zmax] whose pale middle sits at ``mid`` (e.g. 1/E for a
    balanced expert load), however far mid is from the centre of the range. Plotly ignores ``zmid``
    once zmin and zmax are given, so the middle is placed in the scale itself."""
    span = float(zmax) - float(zmin)
    p = 0.5 if span <= 0 else float(np.clip((mid - zmin) / span, 0.0, 1.0))
    low = sample_colorscale(scale, list(np.linspace(0.0, 0.5, 6)))
    high = sample_colorscale(scale, list(np.linspace(0.5, 1.0, 6)))
    stops = [[p * t, c] for t, c in zip(np.linspace(0, 1, 6), low)]
    stops += [[p + (1 - p) * t, c] for t, c in zip(np.linspace(0, 1, 6), high)][1:]
    return [[float(x), c] for x, c in stops]


def family_style(i: int) -> dict:
    """Colour, marker symbol and line dash of the i-th family: colours cycle first, then symbols
    (and dashes), so 48 families are distinct."""
    colour = QUALITATIVE[i % len(QUALITATIVE)]
    round_ = (i // len(QUALITATIVE)) % len(SYMBOLS)
    return {"color": colour, "symbol": SYMBOLS[round_], "dash": DASHES[round_]}


def sequential_colors(values, log: bool = True) -> list:
    """Colours of ``SEQUENTIAL`` for lines and markers, values scaled over their range (log10 by
    default) into its first 80%: Viridis' last yellows are too pale on the light theme's white."""
    v = np.asarray(values, np.float64)
    if log:
        v = np.log10(v)
    span = np.ptp(v) if v.size and np.ptp(v) > 0 else 1.0
    return sample_colorscale(SEQUENTIAL, list(0.8 * np.clip((v - v.min()) / span, 0, 1)))


def name(text: object) -> str:
    """A user string (run, model, task, expert label) as Plotly shows it literally."""
    return plotly_text(text)


def names(texts) -> list:
    """``name`` of each string (a trace's ``text`` or ``customdata`` column)."""
    return [plotly_text(t) for t in texts]
