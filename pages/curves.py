"""The Runs page's chart builders (issue 13 §4): metric panels, run colours, W&B envelopes, forecasts.

Pure functions from frames to Plotly figure dicts (no Streamlit), handed to ``st.plotly_chart``
through :func:`as_figure`, unvalidated: validation is most of a slider key press's server time.
pages/runs.py and pages/forecast_panel.py read the widgets and call these.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core import format as fmt
from pages import theme

# W&B's chart export writes each line's min/max envelope beside it; the importer keeps them as the
# metrics '<metric>__MIN' / '<metric>__MAX' (importers/tabular.py), drawn here as a band.
ENVELOPE = ("__MIN", "__MAX")
# One colour per run across every panel: the app's qualitative palette (pages/theme.py, legible on
# both themes); past its 12 hues a run's line is dashed as well (theme.family_style).
PALETTE = theme.QUALITATIVE
RAW_OPACITY = 0.25     # the raw curve under its EMA: visible, never mistaken for the smoothed line
BAND_ALPHA = 0.15      # W&B envelope and forecast bands
PANEL_HEIGHT = 380


def as_figure(figure: dict) -> go.Figure:
    """A figure dict for ``st.plotly_chart`` without Plotly's property validation, which costs ~15× the
    rest of an EMA key press (180 ms vs 12 ms for 8 runs × 2 lines); the builders here are checked
    against the full validation in tests/test_runs_page.py instead."""
    return go.Figure(figure, _validate=False)


def is_envelope(metric: str) -> bool:
    return str(metric).endswith(ENVELOPE)


def plottable(metric_names: Sequence[str]) -> list[str]:
    """The metrics to offer in the picker: the envelopes go with their metric, never alone."""
    return [m for m in metric_names if not is_envelope(m)]


def envelope_of(metric: str, metric_names: Sequence[str]) -> Optional[tuple[str, str]]:
    """('<metric>__MIN', '<metric>__MAX') when both are stored, else None."""
    lo, hi = f"{metric}{ENVELOPE[0]}", f"{metric}{ENVELOPE[1]}"
    return (lo, hi) if lo in metric_names and hi in metric_names else None


def rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def run_colours(runs: Sequence[str], value_of: Optional[Mapping[str, object]] = None,
                palette: Sequence[str] = PALETTE) -> tuple[dict, dict]:
    """(run → colour, run → legend group). By run, or by a config value (``value_of``: run → value):
    runs with the same value share a colour and a legend entry; runs without the key are grey."""
    if value_of is None:
        return ({r: palette[i % len(palette)] for i, r in enumerate(runs)}, {r: str(r) for r in runs})
    values = sorted({_key(v) for r, v in value_of.items() if r in set(runs) and v is not None}, key=_sort_key)
    colour_of_value = {v: palette[i % len(palette)] for i, v in enumerate(values)}
    colours = {r: colour_of_value.get(_key(value_of.get(r)), theme.NEUTRAL) for r in runs}
    groups = {r: (_key(value_of.get(r)) if value_of.get(r) is not None else "(not set)") for r in runs}
    return colours, groups


def run_dashes(runs: Sequence[str]) -> dict:
    """run → line dash: solid for the first 12 runs, then dashed, dotted ... (theme.family_style)."""
    return {r: theme.family_style(i)["dash"] for i, r in enumerate(runs)}


def _key(v) -> str:
    return "" if v is None else str(v)


def _sort_key(v: str):
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


# The format of each x-axis quantity (core/format.py): steps and tokens are counts, FLOPs FLOPs.
X_KINDS = {"step": "count", "tokens": "count", "flops": "flops", "wall_time": "number"}


def _axis(title: str, log: bool, span: Optional[tuple] = None, kind: str = "number") -> dict:
    """An axis in the app's number format: a log axis labelled by ``core.format.log_axis`` (FLOPs
    1e21, counts 10M), a linear one by its d3 format (losses to 4 decimals, counts 10K/1B)."""
    if log and kind in ("count", "flops"):
        axis = fmt.log_axis(kind, span, title=None)
    elif log:
        axis = {"type": "log", "exponentformat": "e", "showexponent": "all"}
    else:
        axis = {"type": "linear"}
        if kind in fmt.TICKFORMAT:
            axis["tickformat"] = fmt.TICKFORMAT[kind]
        elif kind == "count":
            axis["exponentformat"] = "B"   # 10k, 1M, 1B: the count format's suffixes
        else:
            axis["exponentformat"] = "e"   # 5.88e23, as core.format writes FLOPs and constants
    axis["title"] = {"text": title}
    if span is not None and all(map(math.isfinite, span)) and span[1] > span[0]:
        axis["range"] = [math.log10(span[0]), math.log10(span[1])] if log else list(span)
    return axis


def hover_format(metric: str) -> str:
    """The d3 format of a metric's values in the hover: losses to 4 decimals, else 4 significant digits."""
    return fmt.TICKFORMAT.get(fmt.kind_of(str(metric)), ".4g")


def x_span(frames: Sequence[pd.DataFrame], log_x: bool) -> Optional[tuple[float, float]]:
    """The x range every panel shares (the union of the plotted points), positive for a log axis."""
    xs = [f["x"].to_numpy(float) for f in frames if f is not None and len(f)]
    if not xs:
        return None
    x = np.concatenate(xs)
    x = x[np.isfinite(x) & ((x > 0) if log_x else True)]
    return (float(x.min()), float(x.max())) if len(x) else None


def panel_figure(metric: str, raw: pd.DataFrame, smoothed: Optional[pd.DataFrame], colours: Mapping[str, str],
                 groups: Mapping[str, str], *, x_title: str, log_x: bool = False, log_y: bool = False,
                 envelope: Optional[pd.DataFrame] = None, span: Optional[tuple] = None,
                 show_legend: bool = True, group_title: Optional[str] = None,
                 dashes: Optional[Mapping[str, str]] = None) -> dict:
    """One metric panel: per run the raw curve (faint when smoothed) under its EMA, the W&B envelope
    as a band, one hover listing every run at the cursor's x (``x unified``).

    ``raw``/``smoothed``/``envelope`` have columns run, x, value (envelope: run, x, lo, hi).
    """
    data: list[dict] = []
    shown_groups: set = set()
    smoothed_of = dict(tuple(smoothed.groupby("run", sort=False))) if smoothed is not None else {}
    envelope_of_run = dict(tuple(envelope.groupby("run", sort=False))) if envelope is not None and len(envelope) else {}
    for run, part in raw.groupby("run", sort=False):
        colour, group = colours.get(run, PALETTE[0]), groups.get(run, str(run))
        band = envelope_of_run.get(run)
        if band is not None and len(band):
            band = band.sort_values("x")
            if len(band):
                data.append({"type": "scatter", "x": np.r_[band["x"], band["x"][::-1]],
                             "y": np.r_[band["hi"], band["lo"][::-1]], "fill": "toself", "mode": "lines",
                             "line": {"width": 0}, "fillcolor": rgba(colour, BAND_ALPHA), "hoverinfo": "skip",
                             "showlegend": False, "legendgroup": group, "name": f"{_escape(run)} min–max"})
        line = smoothed_of.get(run) if smoothed is not None else None
        if line is not None:
            data.append({"type": "scatter", "mode": "lines", "x": part["x"], "y": part["value"],
                         "line": {"color": colour, "width": 1}, "opacity": RAW_OPACITY, "hoverinfo": "skip",
                         "showlegend": False, "legendgroup": group, "name": f"{_escape(run)} (raw)"})
        first = group not in shown_groups
        shown_groups.add(group)
        name = str(run) if group_title is None else f"{group_title}={group}"
        data.append({"type": "scatter", "mode": "lines", "x": (line if line is not None else part)["x"],
                     "y": (line if line is not None else part)["value"], "name": _escape(name),
                     "line": {"color": colour, "width": 2, "dash": (dashes or {}).get(run, "solid")},
                     "legendgroup": group,
                     "showlegend": show_legend and first,
                     "hovertemplate": f"{_escape(run)}: %{{y:{hover_format(metric)}}}<extra></extra>"})
    layout = {"height": PANEL_HEIGHT, "margin": {"t": 40, "b": 40, "l": 60, "r": 10},
              "title": {"text": _escape(metric), "font": {"size": 14}},
              "hovermode": "x unified", "showlegend": show_legend, "legend": {"font": {"size": 10}},
              "xaxis": _axis(x_title, log_x, span, X_KINDS.get(x_title, "number")),
              "yaxis": _axis(str(metric), log_y, kind=fmt.kind_of(str(metric)))}
    return {"data": data, "layout": layout}


def _escape(text) -> str:
    """A user string in a trace name or hover template: HTML escaped (core.format.plotly_text), and
    '%{' broken so a name cannot pull in a template variable."""
    return fmt.plotly_text(text).replace("%{", "%\u200b{")


def envelope_frame(lo: pd.DataFrame, hi: pd.DataFrame) -> pd.DataFrame:
    """The W&B envelope of each run as columns run, x, lo, hi (points logged at the same x)."""
    if lo.empty or hi.empty:
        return pd.DataFrame(columns=["run", "x", "lo", "hi"])
    merged = lo[["run", "x", "value"]].merge(hi[["run", "x", "value"]], on=["run", "x"], suffixes=("_lo", "_hi"))
    return merged.rename(columns={"value_lo": "lo", "value_hi": "hi"})


def group_figure(metric: str, bands: pd.DataFrame, key: str, *, x_title: str, log_x: bool, log_y: bool,
                 span: Optional[tuple] = None) -> dict:
    """Mean and min–max band per group of runs (core.curves.group_band), one colour per group."""
    data = []
    for i, (g, part) in enumerate(bands.groupby("group")):
        colour = PALETTE[i % len(PALETTE)]
        data.append({"type": "scatter", "x": np.r_[part["x"], part["x"][::-1]],
                     "y": np.r_[part["hi"], part["lo"][::-1]], "fill": "toself", "mode": "lines",
                     "line": {"width": 0}, "fillcolor": rgba(colour, 0.25), "hoverinfo": "skip",
                     "name": _escape(f"{key}={g} min–max"), "legendgroup": str(g)})
        data.append({"type": "scatter", "mode": "lines", "x": part["x"], "y": part["mean"], "legendgroup": str(g),
                     "line": {"color": colour, "width": 2},
                     "name": _escape(f"{key}={g} mean ({int(part['n_runs'].iloc[0])} runs)")})
    layout = {"height": PANEL_HEIGHT, "margin": {"t": 40, "b": 40, "l": 60, "r": 10},
              "title": {"text": _escape(metric), "font": {"size": 14}}, "hovermode": "x unified",
              "legend": {"font": {"size": 10}}, "xaxis": _axis(x_title, log_x, span, X_KINDS.get(x_title, "number")),
              "yaxis": _axis(str(metric), log_y, kind=fmt.kind_of(str(metric)))}
    return {"data": data, "layout": layout}


def forecast_figure(observed: pd.DataFrame, steps, loss, lo, hi, *, metric: str, law_prediction: Optional[float],
                    final_step: int, colour: str = PALETTE[0]) -> dict:
    """The run's logged curve, the forecast to the end of training dashed with its band, and the
    stored fit's predicted final loss as a marker at the last step."""
    steps, loss, lo, hi = (np.asarray(a, float) for a in (steps, loss, lo, hi))
    data = [{"type": "scatter", "mode": "lines", "x": observed["step"], "y": observed["value"], "name": "logged",
             "line": {"color": colour, "width": 1.5}, "hovertemplate": f"logged: %{{y:{hover_format(metric)}}}<extra></extra>"}]
    if np.isfinite(lo).any():
        ok = np.isfinite(lo) & np.isfinite(hi)
        data.append({"type": "scatter", "x": np.r_[steps[ok], steps[ok][::-1]], "y": np.r_[hi[ok], lo[ok][::-1]],
                     "fill": "toself", "mode": "lines", "line": {"width": 0}, "fillcolor": rgba(colour, 0.2),
                     "hoverinfo": "skip", "name": "forecast band"})
    data.append({"type": "scatter", "mode": "lines", "x": steps, "y": loss, "name": "forecast",
                 "line": {"color": colour, "width": 2, "dash": "dash"},
                 "hovertemplate": f"forecast: %{{y:{hover_format(metric)}}}<extra></extra>"})
    if law_prediction is not None and math.isfinite(law_prediction):
        data.append({"type": "scatter", "mode": "markers", "x": [final_step], "y": [law_prediction],
                     "name": "stored fit's prediction", "marker": {"symbol": "star", "size": 14, "color": theme.ACCENT},
                     "hovertemplate": f"fit predicts: %{{y:{hover_format(metric)}}}<extra></extra>"})
    layout = {"height": 400, "margin": {"t": 30, "b": 40, "l": 60, "r": 10}, "hovermode": "x unified",
              "xaxis": _axis("step", False, kind="count"), "yaxis": _axis(str(metric), False, kind=fmt.kind_of(str(metric))),
              "legend": {"font": {"size": 10}}}
    return {"data": data, "layout": layout}


def table_view(table: pd.DataFrame, all_runs: pd.DataFrame, always: Sequence[str] = ()) -> pd.DataFrame:
    """The runs table as shown: numbers stay numbers (sortable); a column no stored run fills is left
    out (a wall of 'None' cells otherwise), except ``always`` (the sizes a user fills in by hand) and
    the MoE sizes once a run is an MoE. Decided on ``all_runs``, so a name filter never moves columns."""
    moe = "arch" in all_runs and (all_runs["arch"] == "moe").any()
    moe_cols = ("n_active_params", "n_experts", "top_k")
    keep = [c for c in table.columns
            if c in always or c in ("name", "tags") or (moe and c in moe_cols)
            or (c in all_runs and all_runs[c].notna().any())]
    return table[keep]
