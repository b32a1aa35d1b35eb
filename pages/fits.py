"""Fits: select runs and a target, fit a scaling law with bootstrap intervals, inspect, back-test,
compare and export stored fits. The laws are core/registry.py, the fitting core/fitting/ and
core/isoflop.py; the glue to the store is services/fits.py; this page reads widgets and draws."""
import json
import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core import format as fmt
from core.errors import ScaleScopeError
from core.fitting.result import FitResult
from core.isoflop import group_budgets
from core.registry import LAWS
from services import fits as fit_data
from services.fits import delete_fit, get_fit, list_fits, load_result
from pages import theme
from pages.common import cached, confidence_level, get_store, literal, progress_bar, user_errors
from services import runs as runs_service

LAW_LABELS = {key: law.label for key, law in LAWS.items()}  # the law registry, in its order
METHOD_LABELS = {
    "approach3": "Approach 3: parametric fit, Huber loss on log L from a grid of starts, bootstrap",
    "approach1": "Approach 1: lowest loss at each FLOP level along the training curves",
    "approach2": "Approach 2: IsoFLOP parabolas per budget, minima → power laws",
    "huber_log": "Huber loss on log y, multi-start + bootstrap",
}
GRID_LABELS = {"full": "full 4,500 starts (published)", "coarse": "coarse 243 starts", "quick": "quick 32 starts"}
AXIS_TITLES = {"n_params": "parameters N", "tokens": "tokens D", "flops": "compute C (FLOPs)"}
COLORSCALE = theme.SEQUENTIAL  # Viridis without its near-black end (legible on the dark theme)
# The app's formats (core/format.py) of the tables of FLOP levels / budgets and model sizes.
SIZE_KINDS = {**{c: "flops" for c in ("flops", "level", "bin low", "bin high")},
              **{c: "count" for c in ("n_min", "n_max", "n_opt", "tokens_opt", "N_opt", "D_opt")},
              **{c: "loss" for c in ("loss_opt", "loss")}, "n_points": "integer", "runs compared": "integer"}
# LaTeX symbols of the registry's parameter names (the rest are written as they are).
LATEX_SYMBOLS = {"alpha": r"\alpha", "beta": r"\beta", "gamma": r"\gamma", "eta": r"\eta", "eps": r"\epsilon",
                 "alpha_N": r"\alpha_N", "alpha_D": r"\alpha_D", "alpha_C": r"\alpha_C", "r_star_d": "R^*_D",
                 "r_star_n": "R^*_N", "e_start": r"\hat E_{\mathrm{start}}", "e_max": r"\hat E_{\max}",
                 "N_coef": "N_0", "D_coef": "D_0"}
MAX_ISOFLOP_GROUPS = 12  # data not planned as IsoFLOP sweeps (e.g. Chinchilla's 245 runs): at most this many FLOP bands
EXCLUDE_CHARTS = ("fig_data_vs_fit", "fig_loss_vs_compute")  # charts whose points can be clicked to exclude them
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.18, x=0, font=dict(size=11))  # clear of the colour bar

store = get_store()
st.title("Fits")
cl = confidence_level()  # the sidebar's interval level (pages.common): every interval on this page


# ====================================================================================== helpers
def fit_label(row) -> str:
    title = row["name"] if isinstance(row.get("name"), str) and row["name"] else f"{row['law']}"
    return f"#{int(row['id'])} {title} · {row['method']} · {row['target']}"


def colors_for(values) -> list:
    """Colours of the colour scale for values (log-scaled to [0, 1] over their range)."""
    return theme.sequential_colors(values)


def log_grid(values, pad: float = 1.5, n: int = 80) -> np.ndarray:
    v = np.asarray(values, np.float64)
    return np.geomspace(v.min() / pad, v.max() * pad, n)


def interval_level(result: FitResult, level: float) -> float:
    """The level the shown intervals have: ``level`` from the bootstrap samples, else the stored 95%."""
    return level if np.asarray(result.bootstrap_samples).shape[0] >= 2 else fmt.CONFIDENCE


def params_table(result: FitResult, level: float = fmt.CONFIDENCE) -> pd.DataFrame:
    """Parameters and derived quantities, each with its bootstrap standard error and its central
    ``level`` interval (numbers: the CSV export)."""
    intervals = result.intervals_at(level)
    lab = fmt.level(interval_level(result, level))
    rows = []
    for kind, values in (("parameter", result.params), ("derived", result.derived)):
        for name, value in values.items():
            if kind == "derived" and name in result.params:
                continue
            lo, hi = (intervals.get(name) or [np.nan, np.nan])
            rows.append({"kind": kind, "name": name, "value": value, "stderr": result.stderr.get(name, np.nan),
                         f"{lab} low": lo, f"{lab} high": hi})
    return pd.DataFrame(rows).astype({"value": float, "stderr": float, f"{lab} low": float, f"{lab} high": float})


def params_shown(table: pd.DataFrame) -> pd.DataFrame:
    """The parameter table as the page shows it: value, ± s.e. and interval in the app's format."""
    low, high = table.columns[-2], table.columns[-1]
    return pd.DataFrame({"name": table["name"], "value": [fmt.number(v) for v in table["value"]],
                         "± s.e.": [fmt.number(v, 3) for v in table["stderr"]],
                         f"{low.removesuffix(' low')} interval": [fmt.interval(lo, hi) for lo, hi in
                                                                  zip(table[low], table[high])]})


def budgets_table(result: FitResult, level: float = fmt.CONFIDENCE) -> pd.DataFrame:
    """N*, D* and tokens per parameter at each budget of the fit, with their central ``level``
    bootstrap intervals, in the app's format."""
    lab = fmt.level(interval_level(result, level))
    rows = []
    for optimum in result.optima_at(level):
        row = {"budget C (FLOPs)": fmt.flops(optimum.budget)}
        for short, name, kind in (("N*", "n_params", "count"), ("D*", "tokens", "count"),
                                  ("tokens/param", "tokens_per_param", "ratio")):
            lo, hi = optimum.interval(name)
            row.update({short: fmt.value(getattr(optimum, name), kind), f"{short} {lab}": fmt.interval(lo, hi, kind)})
        rows.append(row)
    return pd.DataFrame(rows)


def latex_symbol(name: str) -> str:
    return LATEX_SYMBOLS.get(name, name)


def fitted_latex(result: FitResult) -> str:
    """The fitted law in LaTeX, numbers in place, and each parameter with ± its bootstrap standard
    error: what a researcher pastes into a paper."""
    p, se = result.params, result.stderr
    num = lambda k: fmt.latex(p[k])  # noqa: E731
    if result.method == "approach3":
        law = (rf"L(N, D) = {num('E')} + \frac{{{num('A')}}}{{N^{{{num('alpha')}}}}}"
               rf" + \frac{{{num('B')}}}{{D^{{{num('beta')}}}}}")
    elif result.method in ("approach1", "approach2"):
        law = (rf"N^*(C) = {num('N_coef')}\, C^{{{num('a')}}},\quad "
               rf"D^*(C) = {num('D_coef')}\, C^{{{num('b')}}}")
    else:
        law = LAWS[result.law].latex if result.law in LAWS else result.law
    terms = []
    for name in list(p) + [k for k in ("a", "b") if k in result.derived and k not in p]:
        value = p.get(name, result.derived.get(name))
        err = se.get(name)
        err_text = rf" \pm {fmt.latex(err, 3)}" if err is not None and np.isfinite(err) else ""
        terms.append(rf"{latex_symbol(name)} = {fmt.latex(value)}{err_text}")
    rows = [law] + [r",\quad ".join(terms[i:i + 4]) for i in range(0, len(terms), 4)]
    return r"\begin{gathered}" + r" \\ ".join(rows) + r"\end{gathered}"


def residuals_table(result: FitResult, data, law_x: str) -> pd.DataFrame:
    """One row per point: the run, its N, D, C, the observed and the fitted value, the residual
    log ŷ − log y and the error in percent; worst first (the points left out marked as such)."""
    kept = kept_mask(result, len(data))
    predicted = np.asarray(result.predict(data.inputs(result.law, law_x)), np.float64)
    with np.errstate(all="ignore"):
        resid = np.log(predicted) - np.log(data.y)
    frame = pd.DataFrame({"run": data.run, "N": data.n_params, "D": data.tokens, "C (FLOPs)": data.flops,
                          "observed": data.y, "fitted": predicted, "residual (log)": resid,
                          "error %": 100 * (predicted / data.y - 1), "used": np.where(kept, "yes", "dropped")})
    frame = frame.iloc[np.argsort(-np.abs(np.nan_to_num(resid)), kind="stable")]
    return fmt.table(frame, {"N": "count", "D": "count", "C (FLOPs)": "flops", "observed": "loss",
                             "fitted": "loss", "residual (log)": "loss", "error %": "ratio"})


def excluded_key(fit_id: int) -> str:
    return f"fit_excluded_{fit_id}"


def take_chart_selection(fit_id: int, data) -> None:
    """Points picked on a chart (click, box or lasso) toggle in the fit's excluded runs; only a new
    pick counts (a selection stays on the chart across reruns). Runs before the widgets are drawn."""
    key = excluded_key(fit_id)
    excluded = set(st.session_state.get(key, []))
    changed = False
    for chart in EXCLUDE_CHARTS:
        state = st.session_state.get(f"{chart}_{fit_id}") or {}
        points = (state.get("selection") or {}).get("points") or []
        picked = sorted({str(data.run[int(pt["customdata"][0])]) for pt in points
                         if pt.get("customdata") and 0 <= int(pt["customdata"][0]) < len(data)})
        last = f"_{chart}_{fit_id}_picked"
        if picked and picked != st.session_state.get(last):
            excluded ^= set(picked)
            changed = True
        st.session_state[last] = picked
    if changed:
        st.session_state[key] = sorted(excluded)


def kept_mask(result: FitResult, n: int) -> np.ndarray:
    kept = getattr(result.diagnostics, "kept_index", None)
    mask = np.zeros(n, dtype=bool)
    if kept is None:
        mask[:] = True
    else:
        mask[np.asarray(kept, dtype=int)] = True
    return mask


# ====================================================================================== figures
X_KINDS = {"n_params": "count", "tokens": "count", "flops": "flops", "n_experts": "count"}


def point_traces(fig: go.Figure, x, x_name: str, data, kept, excluded, color_values, color_title: str) -> None:
    """The fit's points: used (filled), marked for exclusion (hollow) and dropped as highest (×).
    customdata[0] is the point's index, so a click or box selection names its run."""
    idx = np.arange(len(data))
    hover = [[i, theme.name(r), fmt.value(xv, X_KINDS.get(x_name, "number")), fmt.loss(yv)]
             for i, r, xv, yv in zip(idx, data.run, x, data.y)]
    cmin, cmax = float(np.nanmin(color_values)), float(np.nanmax(color_values))
    template = f"%{{customdata[1]}}<br>{AXIS_TITLES.get(x_name, x_name)} %{{customdata[2]}}<br>" \
               f"{data.target.label()} %{{customdata[3]}}<extra></extra>"
    for mask, label, symbol, bar in ((kept & ~excluded, "data", "circle", True),
                                     (kept & excluded, "excluded (refit without)", "circle-open", False)):
        if mask.any() or label == "data":
            fig.add_trace(go.Scatter(
                x=x[mask], y=data.y[mask], mode="markers", name=label,
                marker=dict(color=color_values[mask], colorscale=COLORSCALE, cmin=cmin, cmax=cmax, size=9,
                            symbol=symbol, line=dict(width=2) if symbol.endswith("open") else None,
                            colorbar=dict(title=color_title) if bar else None, showscale=bar),
                customdata=[hover[i] for i in idx[mask]], hovertemplate=template))
    if (~kept).any():
        fig.add_trace(go.Scatter(x=x[~kept], y=data.y[~kept], mode="markers", name="dropped (highest)",
                                 marker=dict(symbol="x", color=theme.NEUTRAL, size=9),
                                 customdata=[hover[i] for i in idx[~kept]], hovertemplate=template))


def fig_data_vs_fit(result, data, law_x: str, excluded=None) -> go.Figure:
    fig = go.Figure()
    kept = kept_mask(result, len(data))
    excluded = np.zeros(len(data), bool) if excluded is None else excluded
    inputs_ = LAWS[result.law].inputs
    two_d = len(inputs_) >= 2  # N on the x axis, one line per level of the law's second input
    x_name = "n_params" if two_d else law_x
    x = data.column(x_name)
    color_by = inputs_[1] if two_d else "tokens"
    point_traces(fig, x, x_name, data, kept, excluded, np.log10(data.column(color_by)),
                 f"log10 {'experts' if color_by == 'n_experts' else 'D'}")
    predictable = result.method in ("approach3", "huber_log")  # Approaches 1-2 estimate N*(C), not a law
    if predictable:
        grid = log_grid(x[kept])
        if two_d:
            other = data.column(color_by)[kept]
            levels = np.unique(other) if color_by == "n_experts" else np.geomspace(other.min(), other.max(), 5)
            held = {k: np.full(grid.size, float(np.median(data.column(k)[kept]))) for k in inputs_[2:]}
            for value, color in zip(levels, colors_for(levels)):
                inputs = {"n_params": grid, color_by: np.full(grid.size, value), **held}
                fig.add_trace(go.Scatter(x=grid, y=result.predict(inputs), mode="lines", line=dict(color=color),
                                         name=f"fit at {'E' if color_by == 'n_experts' else 'D'} = "
                                              f"{fmt.value(value, X_KINDS.get(color_by, 'number'))}"))
        else:
            key = inputs_[0]
            fig.add_trace(go.Scatter(x=grid, y=result.predict({key: grid}), mode="lines", name="fit",
                                     line=dict(color=theme.ACCENT)))
    fig.update_layout(xaxis_title=AXIS_TITLES.get(x_name, x_name), yaxis_title=data.target.label(),
                      height=480, margin=dict(t=30), legend=LEGEND_BELOW)
    fig.update_xaxes(**fmt.log_axis(X_KINDS.get(x_name, "count"), x))
    return fig


def fig_loss_vs_compute(result, data, excluded=None, level: float = fmt.CONFIDENCE) -> go.Figure:
    fig = go.Figure()
    kept = kept_mask(result, len(data))
    excluded = np.zeros(len(data), bool) if excluded is None else excluded
    point_traces(fig, data.flops, "flops", data, kept, excluded, np.log10(data.n_params), "log10 N")
    grid = log_grid(data.flops, pad=3.0)
    if result.method == "approach3":
        _, _, best, band = result.frontier(grid, level)
        if band is not None:
            fig.add_trace(go.Scatter(x=np.concatenate([grid, grid[::-1]]), y=np.concatenate([band[1], band[0][::-1]]),
                                     fill="toself", line=dict(width=0), opacity=0.25,
                                     name=f"{fmt.level(level)} bootstrap band", hoverinfo="skip",
                                     fillcolor=theme.ACCENT))
        fig.add_trace(go.Scatter(x=grid, y=best, mode="lines", name="efficient frontier L(N*(C), D*(C))",
                                 line=dict(color=theme.ACCENT)))
    elif result.method == "approach1":
        d = result.diagnostics
        fig.add_trace(go.Scatter(x=d.levels, y=d.loss_min, mode="lines+markers", name="envelope (Approach 1)",
                                 line=dict(color=theme.ACCENT)))
    elif result.method == "approach2":
        used = [p for p in result.diagnostics.profiles if p["used"]]
        fig.add_trace(go.Scatter(x=[p["flops"] for p in used], y=[p["loss_opt"] for p in used], mode="lines+markers",
                                 name="IsoFLOP minima (Approach 2)", marker=dict(symbol="star", size=12),
                                 line=dict(color=theme.ACCENT)))
    elif result.method == "huber_log" and LAWS[result.law].inputs == ("flops",):
        fig.add_trace(go.Scatter(x=grid, y=result.predict({"flops": grid}), mode="lines", name="fit",
                                 line=dict(color=theme.ACCENT)))
    fig.update_layout(xaxis_title="compute C (FLOPs)", yaxis_title=data.target.label(), height=480,
                      margin=dict(t=30), legend=LEGEND_BELOW)
    fig.update_xaxes(**fmt.log_axis("flops", data.flops))
    return fig


def add_parabola(fig: go.Figure, profile: dict, n_grid, color: str, group: str, dash: str = "solid",
                 label: str = "minimum") -> None:
    """An Approach 2 IsoFLOP parabola (its budget's points' fit in ln N) and its vertex."""
    curve = np.polyval(profile["coef"], np.log(n_grid))
    fig.add_trace(go.Scatter(x=n_grid, y=curve, mode="lines", legendgroup=group, showlegend=False, hoverinfo="skip",
                             line=dict(color=color, dash=dash if profile["used"] else "dot")))
    if profile["n_opt"] is not None and np.isfinite(profile["n_opt"]):
        fig.add_trace(go.Scatter(
            x=[profile["n_opt"]], y=[profile["loss_opt"]], mode="markers", legendgroup=group, showlegend=False,
            marker=dict(symbol="diamond", size=12, color=color, line=dict(color=theme.NEUTRAL, width=1)),
            hovertemplate=f"{label} at C ≈ {fmt.flops(profile['flops'])}: N {fmt.count(profile['n_opt'])}, "
                          f"loss {fmt.loss(profile['loss_opt'])}" + ("" if profile["used"] else " (not used)")
                          + "<extra></extra>"))


def fig_isoflop(result, data, overlay=None) -> go.Figure:
    """Points by FLOP budget with the fit's curve along each budget's IsoFLOP line. For an Approach 3
    fit, ``overlay`` (method -> FitResult of Approaches 1 and 2 on the same points) adds Approach 2's
    parabolas (dashed) with their minima (diamonds) and Approach 1's envelope minima (triangles)."""
    fig = go.Figure()
    overlay = overlay or {}
    approach2 = overlay.get("approach2")
    if result.method == "approach2":
        profiles = result.diagnostics.profiles
        groups = np.asarray(result.diagnostics.budget_of_point, dtype=int)
        budgets = np.array([p["flops"] for p in profiles])
    else:
        planned = sorted(set(data.budget.tolist())) if data.budget is not None and np.isfinite(data.budget).all() \
            else None
        gap = 0.05
        groups = group_budgets(data.flops, planned, gap)
        while planned is None and groups.max() + 1 > MAX_ISOFLOP_GROUPS:  # not an IsoFLOP sweep: coarser bands
            gap *= 1.5
            groups = group_budgets(data.flops, None, gap)
        budgets = np.array([float(np.exp(np.log(data.flops[groups == g]).mean())) for g in range(groups.max() + 1)])
        profiles = None
    n_stars = result.frontier(budgets)[0] if result.method == "approach3" else None  # one call, every budget
    for g, (budget, color) in enumerate(zip(budgets, colors_for(budgets))):
        idx = groups == g
        if idx.sum() == 0:
            continue
        fig.add_trace(go.Scatter(x=data.n_params[idx], y=data.y[idx], mode="markers", marker=dict(color=color, size=9),
                                 name=f"C ≈ {fmt.flops(budget)}", legendgroup=str(g),
                                 customdata=[[theme.name(r), fmt.count(n), fmt.loss(y)] for r, n, y in
                                             zip(data.run[idx], data.n_params[idx], data.y[idx])],
                                 hovertemplate="%{customdata[0]}<br>N %{customdata[1]}<br>loss %{customdata[2]}"
                                               "<extra></extra>"))
        n_grid = log_grid(data.n_params[idx], pad=1.6)
        if profiles is not None:
            p = profiles[g]
            if p["coef"][0] is None or not np.isfinite(p["coef"][0]):
                continue
            add_parabola(fig, p, n_grid, color, str(g))
        elif result.method == "approach3":
            curve = result.predict({"n_params": n_grid, "tokens": budget / (6.0 * n_grid)})
            fig.add_trace(go.Scatter(x=n_grid, y=curve, mode="lines", line=dict(color=color), legendgroup=str(g),
                                     showlegend=False, hoverinfo="skip"))
            n_star = float(n_stars[g])
            l_star = result.predict({"n_params": [n_star], "tokens": [budget / (6 * n_star)]})
            fig.add_trace(go.Scatter(x=[n_star], y=l_star, mode="markers", legendgroup=str(g), showlegend=False,
                                     marker=dict(symbol="star", size=15, color=color,
                                                 line=dict(color=theme.NEUTRAL, width=1)),
                                     hovertemplate=f"Approach 3 N* at C ≈ {fmt.flops(budget)}: {fmt.count(n_star)}, "
                                                   f"loss {fmt.loss(float(l_star[0]))}<extra></extra>"))
            if approach2 is not None:  # the same budget's Approach 2 parabola, if its points made one
                near = [q for q in approach2.diagnostics.profiles
                        if q["coef"][0] is not None and np.isfinite(q["coef"][0])
                        and abs(np.log10(q["flops"] / budget)) < 0.1]
                if near:
                    add_parabola(fig, near[0], n_grid, color, str(g), dash="dash", label="Approach 2 minimum")
    if result.method == "approach3":  # the legend's key to the overlaid marks
        for label, symbol, dash in (("Approach 3: law along the IsoFLOP line, ★ N*", "star", "solid"),
                                    ("Approach 2: parabola in ln N, ◆ its minimum", "diamond", "dash")):
            if dash == "dash" and approach2 is None:
                continue
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines+markers", name=label,
                                     line=dict(color=theme.NEUTRAL, dash=dash),
                                     marker=dict(symbol=symbol, size=11, color=theme.NEUTRAL)))
        approach1 = overlay.get("approach1")
        if approach1 is not None:
            d = approach1.diagnostics
            fig.add_trace(go.Scatter(
                x=d.n_opt, y=d.loss_min, mode="markers", name="Approach 1: lowest loss per FLOP level",
                marker=dict(symbol="triangle-up", size=10, color=theme.THIRD, line=dict(color=theme.NEUTRAL, width=1)),
                customdata=[[fmt.flops(c), fmt.count(n), fmt.loss(y)] for c, n, y in zip(d.levels, d.n_opt, d.loss_min)],
                hovertemplate="Approach 1 at C %{customdata[0]}: N %{customdata[1]}, loss %{customdata[2]}"
                              "<extra></extra>"))
    fig.update_layout(xaxis_title="parameters N", yaxis_title=data.target.label(), height=480,
                      margin=dict(t=30), legend=LEGEND_BELOW)
    fig.update_xaxes(**fmt.log_axis("count", data.n_params))
    return fig


def fig_optimal(result, data) -> go.Figure:
    """N*(C) and D*(C): the compute-optimal allocation every Chinchilla method estimates."""
    fig = go.Figure()
    levels = result.diagnostics.levels if result.method == "approach1" else None
    grid = log_grid(np.concatenate([data.flops, levels if levels is not None else []]), pad=10.0)
    if result.method == "approach3":
        n_opt, d_opt, _, _ = result.frontier(grid)
    else:
        p = result.params
        n_opt, d_opt = p["N_coef"] * grid ** p["a"], p["D_coef"] * grid ** p["b"]
        d = result.diagnostics
        if result.method == "approach1":
            pts_c, pts_n, pts_d = d.levels, d.n_opt, d.tokens_opt
        else:
            used = [q for q in d.profiles if q["used"]]
            pts_c, pts_n, pts_d = [q["flops"] for q in used], [q["n_opt"] for q in used], [q["tokens_opt"] for q in used]
        fig.add_trace(go.Scatter(x=pts_c, y=pts_n, mode="markers", name="N_opt per level/budget",
                                 marker=dict(color=theme.SECOND, size=9)))
        fig.add_trace(go.Scatter(x=pts_c, y=pts_d, mode="markers", name="D_opt per level/budget",
                                 marker=dict(color=theme.THIRD, size=9)))
    fig.add_trace(go.Scatter(x=grid, y=n_opt, mode="lines", name=f"N*(C) ∝ C^{fmt.number(result.derived.get('a'))}",
                             line=dict(color=theme.SECOND)))
    fig.add_trace(go.Scatter(x=grid, y=d_opt, mode="lines", name=f"D*(C) ∝ C^{fmt.number(result.derived.get('b'))}",
                             line=dict(color=theme.THIRD)))
    fig.update_layout(xaxis_title="compute C (FLOPs)", yaxis_title="parameters / tokens", height=480,
                      margin=dict(t=30))
    fig.update_xaxes(**fmt.log_axis("flops", grid))
    fig.update_yaxes(**fmt.log_axis("count", np.concatenate([n_opt, d_opt])))
    return fig


def fig_residuals(result, data) -> go.Figure:
    kept = kept_mask(result, len(data))
    resid = np.asarray(result.diagnostics.residuals, np.float64)
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[AXIS_TITLES[c] for c in ("n_params", "tokens", "flops")])
    for j, col in enumerate(("n_params", "tokens", "flops"), start=1):
        fig.add_trace(go.Scatter(x=data.column(col)[kept], y=resid, mode="markers",
                                 customdata=[[theme.name(r), fmt.value(v, X_KINDS[col]), fmt.loss(e)] for r, v, e in
                                             zip(data.run[kept], data.column(col)[kept], resid)],
                                 hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>residual %{customdata[2]}"
                                               "<extra></extra>",
                                 marker=dict(size=7, color=theme.SECOND), showlegend=False), row=1, col=j)
        fig.add_hline(y=0, line=dict(color=theme.NEUTRAL, dash="dot"), row=1, col=j)
        fig.update_xaxes(**fmt.log_axis(X_KINDS[col], data.column(col)[kept]), row=1, col=j)
    fig.update_yaxes(title_text="log ŷ − log y", row=1, col=1)
    fig.update_layout(height=380, margin=dict(t=40))
    return fig


def fig_backtest(bt, data) -> go.Figure:
    fig = go.Figure()
    test = np.asarray(bt.test_index, dtype=int)
    train = np.setdiff1d(np.arange(len(data)), test)
    fig.add_trace(go.Scatter(x=data.flops[train], y=data.y[train], mode="markers", name=f"fitted ({bt.n_train})",
                             marker=dict(color=theme.NEUTRAL, size=8)))
    fig.add_trace(go.Scatter(x=data.flops[test], y=bt.observed, mode="markers", name=f"held out ({bt.n_test})",
                             marker=dict(color=theme.SECOND, size=10)))
    fig.add_trace(go.Scatter(x=data.flops[test], y=bt.predicted, mode="markers", name="predicted",
                             marker=dict(color=theme.ACCENT, symbol="diamond-open", size=12, line=dict(width=2))))
    fig.add_vline(x=bt.threshold, line=dict(color=theme.NEUTRAL, dash="dash"))
    fig.update_layout(xaxis_title="compute C (FLOPs)", yaxis_title=data.target.label(), height=420,
                      margin=dict(t=30))
    fig.update_xaxes(**fmt.log_axis("flops", data.flops))
    return fig


@st.cache_resource(show_spinner=False)
def image_server() -> bool:
    """Start kaleido's Chromium once per server process (plotly's to_image then reuses it)."""
    import kaleido

    kaleido.start_sync_server(silence_warnings=True)
    return True


def figure_files(fig: go.Figure, stem: str) -> dict:
    """PNG and SVG through kaleido (needs Chrome/Chromium); on failure the interactive HTML instead."""
    try:
        image_server()
        with warnings.catch_warnings():  # plotly notes that kaleido's server ignores per-call options
            warnings.simplefilter("ignore", UserWarning)
            return {"png": (fig.to_image(format="png", width=1200, height=600, scale=2), f"{stem}.png", "image/png"),
                    "svg": (fig.to_image(format="svg", width=1200, height=600), f"{stem}.svg", "image/svg+xml")}
    except Exception as exc:  # no Chromium, a sandbox, a kaleido version mismatch: offer HTML
        return {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                "html": (fig.to_html(include_plotlyjs=True).encode(), f"{stem}.html", "text/html")}


# ====================================================================================== law and method
st.caption("Fit a scaling law to stored runs. Every fit is stored with its exact run selection, target, "
           "settings and seed, so it can be re-run, compared, exported and used by the Planner.")
c1, c2 = st.columns(2)
law = c1.selectbox("Law", list(LAW_LABELS), format_func=LAW_LABELS.get, key="fit_law")
method = c2.selectbox("Method", fit_data.METHODS[law], format_func=METHOD_LABELS.get, key="fit_method")
st.caption(f"{LAWS[law].citation}.")
st.latex(LAWS[law].latex)
if LAWS[law].data_note:
    st.caption(LAWS[law].data_note)

# ====================================================================================== data
with st.expander("Data and target", expanded=True):
    # One dataset (an import's tag) at a time, the bundled Chinchilla example first: a fit never mixes
    # unrelated uploads unless "all runs" is chosen on purpose.
    datasets = cached(fit_data.datasets)  # by store version: a widget change re-reads nothing
    choices = datasets + [fit_data.ALL_RUNS]
    if st.session_state.get("fit_dataset") not in choices:
        st.session_state.pop("fit_dataset", None)
    c1, c2 = st.columns(2)
    dataset = c1.selectbox("Dataset (tag)", choices, key="fit_dataset",
                           help="Every import is tagged (its file or folder name unless you gave a tag); "
                                "the demo's runs are tagged demo, the bundled public data example.")
    tags = [] if dataset == fit_data.ALL_RUNS else [dataset]
    name_filter = c2.text_input("Filter by name or tag", key="fit_filter", placeholder="e.g. demo, C1e19, moe")
    try:
        matching = fit_data.select_runs(store, None, name_filter or None, tags)
    except ScaleScopeError as exc:
        st.error(literal(exc))
        st.stop()
    sized = fit_data.runs_with_sizes(store, matching)
    chosen = st.multiselect("Runs", matching, default=sized, key=f"fit_runs_{name_filter}_{'|'.join(tags)}")
    st.caption(f"{len(chosen)} of {len(matching)} matching runs selected."
               + (f" {len(matching) - len(sized)} without parameter or token counts are not preselected "
                  "(fill them on the Runs page)." if len(sized) < len(matching) else ""))

    c1, c2, c3 = st.columns(3)
    kind = c1.selectbox("Target", list(fit_data.TARGET_KINDS), format_func=fit_data.TARGET_KINDS.get, key="fit_target")
    step, points_per_run, task = None, 20, None
    if kind == "eval":
        from services.evals import benchmark_labels, load_evals, split_label

        labels = benchmark_labels(load_evals(store))
        if not labels:
            st.info("No eval results stored: import them on the Evals page, or pick a loss target.")
            st.stop()
        task, metric = split_label(c2.selectbox("Eval (task · metric)", labels, key="fit_eval"))
    else:
        metric_names = runs_service.metric_names(store, chosen) if chosen else []
        metric = c2.selectbox("Metric", metric_names or ["loss"], key="fit_metric",
                              index=metric_names.index("loss") if "loss" in metric_names else 0)
        if kind == "at_step":
            step = c3.number_input("Step", min_value=0.0, value=1000.0, step=100.0, key="fit_step")
        elif kind == "curve":
            points_per_run = c3.slider("Points per run (log-spaced in tokens)", 2, 100, 20, key="fit_points_per_run")
    c1, c2 = st.columns(2)
    n_kind = c1.radio("Parameter count N", list(fit_data.N_KINDS), horizontal=True, key="fit_n_kind",
                      index=list(fit_data.N_KINDS).index(LAWS[law].n_kind),
                      format_func=lambda k: {"total": "total", "nonembedding": "non-embedding",
                                             "active": "active (MoE)"}[k])
    x_var = "flops"
    if "x" in LAWS[law].inputs:  # a law of one free variable: the user picks it
        x_var = c2.selectbox("Variable x", fit_data.X_CHOICES, format_func=AXIS_TITLES.get, index=2, key="fit_x")

# ====================================================================================== options
with st.expander("Options", expanded=True):
    approach3 = method == "approach3"
    bootstrapped = method in ("approach3", "huber_log")
    c1, c2, c3, c4 = st.columns(4)
    drop_highest = c1.number_input("Drop the k highest-loss points", 0, 1000, 0, key="fit_drop",
                                   disabled=not bootstrapped)
    n_bootstrap = c2.number_input("Bootstrap resamples B", 0, 10000, 1000, step=100, key="fit_bootstrap",
                                  disabled=not bootstrapped, help="0 skips the intervals")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 0, key="fit_seed", disabled=not bootstrapped)
    grid = c4.selectbox("Start grid", list(fit_data.START_GRIDS), format_func=GRID_LABELS.get, key="fit_grid",
                        disabled=not approach3)
    c1, c2, c3, c4 = st.columns(4)
    weight_by_run = c1.checkbox("Weight by run", key="fit_weight", disabled=not bootstrapped,
                                help="Every run gets the same total weight (matters for a curve target).")
    fix_ab = c2.checkbox("Fix α = β", key="fit_fix_ab", disabled=not approach3,
                         help="Tie the exponents when there are too few model sizes to separate them.")
    budgets_text = c3.text_input("Budgets for N*, D* (FLOPs)", "1e21, 1e22, 5.76e23, 1e24, 1e25", key="fit_budgets",
                                 disabled=LAWS[law].closed_form is None)
    fit_name = c4.text_input("Name of the fit (optional)", key="fit_name")

# ====================================================================================== fit
c1, c2 = st.columns([1, 6])
clicked = c1.button("Fit", type="primary", key="fit_button", disabled=not chosen)
if clicked:
    # Pressing Stop (or Streamlit's own stop) interrupts this script run at the next progress update:
    # the fit is abandoned before anything is stored.
    stop = c2.empty()  # cleared when the fit ends: no Stop button or finished bar left behind
    stop.button("Stop", key="stop_button")
    job = st.empty()
    with user_errors():
        budgets = fit_data.parse_budgets(budgets_text)
        target = fit_data.Target(kind=kind, metric=metric, step=step, task=task, points_per_run=int(points_per_run))
        data = fit_data.load_fit_data(store, chosen, target, n_kind, weight_by_run,
                                      {"filter": {"name_contains": name_filter or None, "tags": tags}})
        options = fit_data.FitOptions(law=law, method=method, drop_highest=int(drop_highest),
                                      n_bootstrap=int(n_bootstrap), seed=int(seed), fix_alpha_eq_beta=fix_ab,
                                      grid=grid, budgets=budgets, x=x_var)
        with job.container():
            bar = progress_bar(f"Fitting {law} ({method})")
        fit_id, result = fit_data.fit_and_save(store, data, options, name=fit_name or None, progress=bar)
        st.session_state["shown_fit"] = fit_id
        st.success(f"Stored fit #{fit_id}: {result.n_points} points, {len(result.warnings)} warning(s).")
    stop.empty()
    job.empty()
elif st.session_state.get("stop_button"):
    st.warning("Fit stopped: nothing was stored.")

# ====================================================================================== results
def row_and_result(store_, fit_id: int) -> tuple:
    """A stored fit's row and its decoded FitResult (cached by store version below)."""
    row_ = get_fit(store_, fit_id)
    return row_, load_result(row_)


stored = cached(list_fits)
ours = stored[stored["law"].isin(list(fit_data.METHODS))] if len(stored) else stored
st.subheader("Result")
if ours.empty:
    st.info("No fit stored yet: choose runs and press Fit.")
    st.stop()
labels = {int(r["id"]): fit_label(r) for r in ours.to_dict("records")}
if st.session_state.get("_fit_to_show") in labels:  # a refit without excluded points was just stored
    st.session_state["shown_fit"] = st.session_state.pop("_fit_to_show")
if st.session_state.get("shown_fit") not in labels:  # open on the bundled well-identified example fit
    st.session_state["shown_fit"] = fit_data.default_fit_id(ours) or next(iter(labels))
shown_id = st.selectbox("Stored fit", list(labels), format_func=labels.get, key="shown_fit")
row, result = cached(row_and_result, shown_id)
selection = row["selection"] or {}
settings = row["settings"] or {}

data = None
try:
    data = cached(fit_data.data_for_selection, selection)
except ScaleScopeError as exc:
    st.warning(f"The fit's points cannot be re-loaded ({literal(exc)}); parameters are shown without plots.")

source = selection.get("file") or f"{len(selection.get('runs', []))} runs"
st.caption(f"{LAW_LABELS.get(result.law, result.law)} · {METHOD_LABELS.get(result.method, result.method)} · "
           f"{result.n_points} points from {literal(source)} · target {literal(row['target'])} · N {selection.get('n_kind', 'total')}"
           + (f" · seed {settings['seed']}, B = {settings.get('n_bootstrap')}" if "seed" in settings else "")
           + (f" · {settings['n_starts']} starts" if "n_starts" in settings else "")
           + (f" · {settings['drop_highest']} highest dropped" if settings.get("drop_highest") else "")
           + (" · α = β fixed" if settings.get("fix_alpha_eq_beta") else "")
           + (" · weighted by run" if selection.get("weight_by_run") else ""))
if result.warnings:  # one sentence; the diagnostics behind it on demand
    st.warning(literal(fit_data.warning_summary(result, data)))
    with st.expander(f"The {len(result.warnings)} diagnostic(s) behind this"):
        for warning in result.warnings:
            st.caption(literal(warning))

# The fitted law as a researcher quotes it: LaTeX with ± one bootstrap standard error, and the same
# LaTeX as text with a copy button (st.code's).
law_tex = fitted_latex(result)
st.latex(law_tex)
n_boot = int(np.asarray(result.bootstrap_samples).shape[0])
st.caption(("± one bootstrap standard error" + (f" ({n_boot} resamples)" if n_boot else "")
            if result.method in ("approach3", "huber_log") else "± the least-squares standard error of each exponent")
           + f"; {fmt.level(interval_level(result, cl))} intervals in the table. The LaTeX, to copy:")
st.code(law_tex, language="latex")

table = params_table(result, cl)
c1, c2, c3 = st.columns(3)
c1.metric("Points fitted", fmt.integer(result.n_points))
c2.metric("Objective (Σ Huber)", fmt.number(result.objective))
c3.metric("Bootstrap resamples", fmt.integer(n_boot))
shown_rows = (table["kind"] == "parameter") | table["name"].isin(["a", "b"])
st.dataframe(params_shown(table[shown_rows]), hide_index=True, key="fit_params_table")
per_budget = budgets_table(result, cl)
if len(per_budget):
    st.caption("a = β/(α+β) and b = α/(α+β) are the exponents of N* ∝ C^a and D* ∝ C^b. At each budget C, the "
               f"compute-optimal N*, D* = C/(6N*) and tokens per parameter, with "
               f"{fmt.level(interval_level(result, cl))} intervals"
               + (" from the bootstrap." if result.method == "approach3" else " (point values)."))
    st.dataframe(per_budget, hide_index=True, key="fit_budgets_table")
summary = getattr(result.diagnostics, "residual_summary", None) or {}
if summary.get("n"):
    st.caption(f"Residuals (log): RMSE {fmt.loss(summary['rmse'])}, mean {fmt.signed(summary['mean'], 'loss')}, "
               f"max |r| {fmt.loss(summary['max_abs'])}, mean |error| {fmt.percent(summary['mean_abs_pct'] / 100, 2)}.")

# -------------------------------------------------------------------------------------- exclude and refit
excluded_runs: list = []
if data is not None and result.method in ("approach3", "huber_log"):
    take_chart_selection(shown_id, data)  # before the widgets: a new click toggles a run's exclusion
    key = excluded_key(shown_id)
    st.session_state[key] = [r for r in st.session_state.get(key, []) if r in set(data.run.tolist())]
    c1, c2 = st.columns([4, 1])
    excluded_runs = c1.multiselect(
        "Excluded points (runs)", sorted(set(data.run.tolist())), key=key,
        help="Click points (or box/lasso-select them) on 'Data vs fit' or 'Loss vs compute' to exclude them "
             "(hollow markers); select them again, or remove them here, to bring them back.")
    n_out = int(np.isin(data.run, excluded_runs).sum())
    c2.write("")
    if c2.button(f"Refit without {n_out} points", key="refit_without_button", disabled=not n_out,
                 type="primary" if n_out else "secondary"):
        with user_errors():
            new_id, new_result = fit_data.refit_without(store, shown_id, excluded_runs,
                                                        progress=progress_bar(f"Refitting without {n_out} points"))
            st.session_state["_fit_to_show"] = new_id
            st.session_state["_refit_message"] = (f"Stored fit #{new_id}: the same law, settings and seed on "
                                                  f"{new_result.n_points} points ({n_out} excluded).")
            st.rerun()
    if "_refit_message" in st.session_state:
        st.success(st.session_state.pop("_refit_message"))

# -------------------------------------------------------------------------------------- plots
figures = {}
if data is not None:
    law_x = selection.get("x", "flops") if "x" in LAWS[result.law].inputs else (
        LAWS[result.law].inputs[0] if result.law in LAWS else "n_params")
    names = ["Data vs fit", "Loss vs compute"]
    if LAWS[result.law].closed_form is not None:  # the law has a compute-optimal N*(C), D*(C) in closed form
        names += ["IsoFLOP", "Compute-optimal N and D"]
    if result.diagnostics.has_residuals:
        names.append("Residuals")
    if result.method in ("approach3", "huber_log"):
        names.append("Back-test")
    tabs = dict(zip(names, st.tabs(names, key=f"fit_tabs_{'|'.join(names)}")))  # keyed: the open tab survives reruns
    with user_errors():
        excluded_mask = np.isin(data.run, excluded_runs)
        # Points can be clicked (or box/lasso-selected) to exclude them where the fit is a law of them.
        selectable = dict(on_select="rerun", selection_mode=("points", "box", "lasso")) \
            if result.method in ("approach3", "huber_log") else {}
        with tabs["Data vs fit"]:
            figures["data_vs_fit"] = fig_data_vs_fit(result, data, law_x, excluded_mask)
            st.plotly_chart(figures["data_vs_fit"], width="stretch", key=f"fig_data_vs_fit_{shown_id}", **selectable)
            if result.method in ("approach1", "approach2"):
                st.caption("Approaches 1 and 2 estimate N*(C) and D*(C), not a loss surface: see the IsoFLOP "
                           "and compute-optimal tabs.")
        with tabs["Loss vs compute"]:
            figures["loss_vs_compute"] = fig_loss_vs_compute(result, data, excluded_mask, cl)
            st.plotly_chart(figures["loss_vs_compute"], width="stretch", key=f"fig_loss_vs_compute_{shown_id}",
                            **selectable)
        if "IsoFLOP" in tabs:
            with tabs["IsoFLOP"]:
                overlay = cached(fit_data.isoflop_comparison, shown_id) if result.method == "approach3" else {}
                figures["isoflop"] = fig_isoflop(result, data, {k: v for k, v in overlay.items()
                                                                if not isinstance(v, str)})
                st.plotly_chart(figures["isoflop"], width="stretch", key="fig_isoflop")
                if result.method == "approach3":
                    found = {k: v for k, v in overlay.items() if not isinstance(v, str)}
                    st.caption("Approach 3's law along each budget's IsoFLOP line D = C/(6N), ★ its N*(C); "
                               "overlaid, Approaches 1 and 2 on the same points: "
                               + "; ".join(f"{'Approach ' + k[-1]}: a = {fmt.number(v.derived.get('a'))}, "
                                           f"b = {fmt.number(v.derived.get('b'))}" for k, v in found.items())
                               + (f" (Approach 3: a = {fmt.number(result.derived.get('a'))}, "
                                  f"b = {fmt.number(result.derived.get('b'))})." if found else "")
                               + "".join(f" {'Approach ' + k[-1]} cannot run here: {literal(v)}"
                                         for k, v in overlay.items() if isinstance(v, str)))
                if result.method == "approach2":
                    prof = pd.DataFrame(result.diagnostics.profiles)
                    st.caption("Budgets and binning: points grouped by FLOP budget "
                               + ("(the budget each run records)" if settings.get("iso_budgets") else
                                  f"(split where log10 C jumps by more than {settings.get('gap_dex', 0.05)} dex)")
                               + "; a parabola in ln N per budget, its vertex N_opt (dotted: not used).")
                    st.dataframe(fmt.table(prof[["flops", "n_points", "n_min", "n_max", "n_opt", "tokens_opt",
                                                 "loss_opt", "interior", "used", "note"]], SIZE_KINDS),
                                 hide_index=True, key="fit_profiles")
                elif result.method != "approach3":
                    st.caption("The fitted law along each budget's IsoFLOP line D = C/(6N); stars mark N*(C).")
        if "Compute-optimal N and D" in tabs:
            with tabs["Compute-optimal N and D"]:
                figures["compute_optimal"] = fig_optimal(result, data)
                st.plotly_chart(figures["compute_optimal"], width="stretch", key="fig_compute_optimal")
                if result.method == "approach1":
                    d = result.diagnostics
                    st.caption(f"{len(d.levels)} FLOP levels (log-spaced; bin edges shown below), "
                               "lowest loss among the runs reaching each level.")
                    st.dataframe(fmt.table(pd.DataFrame({"level": d.levels, "bin low": d.bin_edges[:-1],
                                                         "bin high": d.bin_edges[1:], "winning run": d.run_opt,
                                                         "N_opt": d.n_opt, "D_opt": d.tokens_opt,
                                                         "loss": d.loss_min, "runs compared": d.n_candidates}),
                                           SIZE_KINDS), hide_index=True, key="fit_levels")
        if "Residuals" in tabs:
            with tabs["Residuals"]:
                figures["residuals"] = fig_residuals(result, data)
                st.plotly_chart(figures["residuals"], width="stretch", key="fig_residuals")
                trend = summary.get("trend") or {}
                if trend:
                    st.caption("Trend of the residuals per e-fold (slope, correlation): "
                               + "; ".join(f"{k}: {fmt.signed(v['slope_per_log'], 'loss')} (r = {fmt.signed(v['corr'])})"
                                           for k, v in trend.items())
                               + ". A clear trend means the law's form misses something, not just noise.")
                if result.method in ("approach3", "huber_log"):
                    st.caption("Residuals per run, worst first: log ŷ − log y and the error of the fitted value.")
                    st.dataframe(residuals_table(result, data, law_x), hide_index=True, key="fit_residuals_table")
        if "Back-test" in tabs:
            with tabs["Back-test"]:
                levels = fit_data.compute_levels(fit_data.kept_points(data, result).flops)
                if levels.size < 3:
                    st.info("A back-test needs points at 3 or more compute levels.")
                else:
                    choices = levels[1:].tolist()
                    threshold = st.select_slider(
                        "Fit on compute below, predict at and above", choices, value=choices[-1],
                        format_func=lambda c: f"{fmt.flops(c)} FLOPs", key=f"backtest_threshold_{shown_id}")
                    st.caption("The law is refitted (no bootstrap) on the runs below the threshold and predicts "
                               "the held-out runs above it: extrapolation is what a scaling law is for.")
                    cache_key = (shown_id, float(threshold))
                    if st.button("Run back-test", key="backtest_button"):
                        job = st.empty()  # the bar goes when the back-test is done
                        with job.container():
                            bar = progress_bar("Back-test")
                        st.session_state["backtest"] = (cache_key, *fit_data.backtest_fit(data, result, threshold,
                                                                                           progress=bar))
                        job.empty()
                    stored_bt = st.session_state.get("backtest")
                    if stored_bt and stored_bt[0] == cache_key:
                        _, bt, points = stored_bt
                        c1, c2, c3, c4 = st.columns(4)
                        c1.metric("Fitted / held out", f"{bt.n_train} / {bt.n_test}")
                        c2.metric("RMSE (log)", fmt.loss(bt.rmse_log))
                        c3.metric("Mean |error|", fmt.percent(bt.mape_pct / 100, 2))
                        c4.metric("Bias (log)", fmt.signed(bt.bias_log, "loss"))
                        figures["backtest"] = fig_backtest(bt, points)
                        st.plotly_chart(figures["backtest"], width="stretch", key="fig_backtest")

# -------------------------------------------------------------------------------------- export
st.subheader("Export")
c1, c2, c3 = st.columns(3)
export = {k: (str(v) if k == "created_at" else v) for k, v in row.items()}
# Deferred (a callable): the JSON holds every bootstrap sample; made on the click, not on every rerun.
c1.download_button("Parameters as JSON", lambda: json.dumps(export, indent=1, default=str).encode(),
                   f"fit_{shown_id}.json", "application/json", key="dl_fit_json")
c1.download_button("Parameters as CSV", lambda: table.to_csv(index=False).encode(), f"fit_{shown_id}.csv", "text/csv",
                   key="dl_fit_csv")
if figures:
    which = c2.selectbox("Figure", list(figures), key="export_figure",
                         format_func=lambda k: k.replace("_", " ").capitalize())
    if c2.button("Prepare PNG and SVG", key="export_button"):
        with st.spinner("Rendering with kaleido (Chromium)…"):
            st.session_state["figure_files"] = ((shown_id, which), figure_files(figures[which], f"fit_{shown_id}_{which}"))
    prepared = st.session_state.get("figure_files")
    if prepared and prepared[0] == (shown_id, which):
        files = prepared[1]
        if "error" in files:
            c3.info(f"PNG/SVG export needs Chromium for kaleido ({files['error']}): download the interactive "
                    "HTML instead, or use the camera icon on the chart.")
        for file_kind in ("png", "svg", "html"):
            if file_kind in files:
                body, fname, mime = files[file_kind]
                c3.download_button(f"Figure as {file_kind.upper()}", body, fname, mime, key=f"dl_fig_{file_kind}")

# ====================================================================================== compare
st.subheader("Compare stored fits")
all_labels = {int(r["id"]): fit_label(r) for r in stored.to_dict("records")}
compare = st.multiselect("Fits", list(all_labels), default=list(all_labels)[:3], format_func=all_labels.get,
                         key="compare_fits")
if compare:
    def cell(value, se=None, kind: str = "number") -> str:
        if value is not None and not isinstance(value, (int, float)):
            return str(value)
        return fmt.pm(value, se, kind)

    columns = {}
    for fid in compare:
        r = stored[stored["id"] == fid].iloc[0]
        diag = r["diagnostics"] or {}
        stderr = diag.get("stderr") or {}
        col = {name: cell(value, stderr.get(name)) for name, value in (r["params"] or {}).items()}
        for name, value in (diag.get("derived") or {}).items():
            if name not in col:
                col[name] = cell(value, stderr.get(name))
        for optimum in diag.get("optima") or []:
            if optimum.get("budget") == 5.76e23:  # Chinchilla's budget
                col.update({f"{short} at {fmt.flops(5.76e23)}": cell(optimum.get(name), kind=kind)
                            for short, name, kind in (("N*", "n_params", "count"), ("D*", "tokens", "count"),
                                                      ("tokens/param", "tokens_per_param", "ratio"))})
        col["points"] = fmt.integer(diag.get("n_points"))
        col["objective"] = cell(diag.get("objective"))
        columns[all_labels[fid]] = col
    st.dataframe(pd.DataFrame(columns).fillna(fmt.MISSING).rename_axis("quantity").reset_index(), key="compare_table",
                 width="stretch", hide_index=True)

with st.expander("Delete a stored fit"):
    doomed = st.selectbox("Fit", list(all_labels), format_func=all_labels.get, key="delete_fit_choice")
    sure = st.checkbox("Yes, delete this fit", key="delete_fit_sure")
    if st.button("Delete fit", disabled=not sure, key="delete_fit_button"):
        with user_errors():
            delete_fit(store, doomed)
            st.session_state.pop("shown_fit", None)
            st.rerun()
