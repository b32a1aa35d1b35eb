"""Fits: select runs and a target, fit a scaling law with bootstrap intervals, inspect, back-test,
compare and export stored fits. The laws are core/registry.py, the fitting core/fitting/ and
core/isoflop.py; the glue to the store is services/fits.py; this page reads widgets and draws."""
import json
import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from core.errors import ScaleScopeError
from core.fitting.result import FitResult
from core.isoflop import group_budgets
from core.registry import LAWS
from services import fits as fit_data
from services.fits import delete_fit, get_fit, list_fits, load_result
from pages.common import get_store, literal, progress_bar, user_errors
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
COLORSCALE = "Viridis"
# Number formats of the tables of FLOP levels / budgets and model sizes.
SIZE_COLUMNS = {**{c: st.column_config.NumberColumn(format="scientific") for c in
                   ("flops", "level", "bin low", "bin high")},
                **{c: st.column_config.NumberColumn(format="compact") for c in
                   ("n_min", "n_max", "n_opt", "tokens_opt", "N_opt", "D_opt")},
                **{c: st.column_config.NumberColumn(format="%.4f") for c in ("loss_opt", "loss")}}
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.18, x=0, font=dict(size=11))  # clear of the colour bar

store = get_store()
st.title("Fits")


# ====================================================================================== helpers
def fit_label(row) -> str:
    title = row["name"] if isinstance(row.get("name"), str) and row["name"] else f"{row['law']}"
    return f"#{int(row['id'])} {title} · {row['method']} · {row['target']}"


def colors_for(values) -> list:
    """Colours of the colour scale for values (log-scaled to [0, 1] over their range)."""
    v = np.log10(np.asarray(values, np.float64))
    span = np.ptp(v) if v.size and np.ptp(v) > 0 else 1.0
    return sample_colorscale(COLORSCALE, list(np.clip((v - v.min()) / span, 0, 1)))


def log_grid(values, pad: float = 1.5, n: int = 80) -> np.ndarray:
    v = np.asarray(values, np.float64)
    return np.geomspace(v.min() / pad, v.max() * pad, n)


def params_table(result: FitResult) -> pd.DataFrame:
    """Parameters and derived quantities, each with its bootstrap standard error and 95% interval."""
    rows = []
    for kind, values in (("parameter", result.params), ("derived", result.derived)):
        for name, value in values.items():
            if kind == "derived" and name in result.params:
                continue
            lo, hi = (result.intervals.get(name) or [np.nan, np.nan])
            rows.append({"kind": kind, "name": name, "value": value, "stderr": result.stderr.get(name, np.nan),
                         "95% low": lo, "95% high": hi})
    return pd.DataFrame(rows).astype({"value": float, "stderr": float, "95% low": float, "95% high": float})


def budgets_table(result: FitResult) -> pd.DataFrame:
    """N*, D* and tokens per parameter at each budget of the fit, with their 95% bootstrap intervals."""
    rows = []
    for optimum in result.optima:
        row = {"budget C (FLOPs)": optimum.budget}
        for short, name in (("N*", "n_params"), ("D*", "tokens"), ("tokens/param", "tokens_per_param")):
            lo, hi = optimum.interval(name)
            row.update({short: getattr(optimum, name), f"{short} 95% low": lo, f"{short} 95% high": hi})
        rows.append(row)
    return pd.DataFrame(rows, dtype=float)


def kept_mask(result: FitResult, n: int) -> np.ndarray:
    kept = getattr(result.diagnostics, "kept_index", None)
    mask = np.zeros(n, dtype=bool)
    if kept is None:
        mask[:] = True
    else:
        mask[np.asarray(kept, dtype=int)] = True
    return mask


# ====================================================================================== figures
def fig_data_vs_fit(result, data, law_x: str) -> go.Figure:
    fig = go.Figure()
    kept = kept_mask(result, len(data))
    inputs_ = LAWS[result.law].inputs
    two_d = len(inputs_) >= 2  # N on the x axis, one line per level of the law's second input
    x_name = "n_params" if two_d else law_x
    x = data.column(x_name)
    color_by = inputs_[1] if two_d else "tokens"
    fig.add_trace(go.Scatter(
        x=x[kept], y=data.y[kept], mode="markers", name="data",
        marker=dict(color=np.log10(data.column(color_by)[kept]), colorscale=COLORSCALE, size=9,
                    colorbar=dict(title=f"log10 {'experts' if color_by == 'n_experts' else 'D'}")),
        text=data.run[kept], hovertemplate="%{text}<br>x=%{x:.3g}<br>y=%{y:.4f}<extra></extra>"))
    if (~kept).any():
        fig.add_trace(go.Scatter(x=x[~kept], y=data.y[~kept], mode="markers", name="dropped (highest)",
                                 marker=dict(symbol="x", color="grey", size=9), text=data.run[~kept]))
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
                                         name=f"fit at {'E' if color_by == 'n_experts' else 'D'} = {value:.3g}"))
        else:
            key = inputs_[0]
            fig.add_trace(go.Scatter(x=grid, y=result.predict({key: grid}), mode="lines", name="fit",
                                     line=dict(color="crimson")))
    fig.update_layout(xaxis_type="log", xaxis_title=AXIS_TITLES.get(x_name, x_name), yaxis_title=data.target.label(),
                      height=480, margin=dict(t=30), legend=LEGEND_BELOW)
    return fig


def fig_loss_vs_compute(result, data) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=data.flops, y=data.y, mode="markers", name="data", text=data.run,
        marker=dict(color=np.log10(data.n_params), colorscale=COLORSCALE, size=9, colorbar=dict(title="log10 N")),
        hovertemplate="%{text}<br>C=%{x:.3g}<br>y=%{y:.4f}<extra></extra>"))
    grid = log_grid(data.flops, pad=3.0)
    if result.method == "approach3":
        _, _, best, band = result.frontier(grid)
        if band is not None:
            fig.add_trace(go.Scatter(x=np.concatenate([grid, grid[::-1]]), y=np.concatenate([band[1], band[0][::-1]]),
                                     fill="toself", line=dict(width=0), opacity=0.25, name="95% bootstrap band",
                                     hoverinfo="skip", fillcolor="crimson"))
        fig.add_trace(go.Scatter(x=grid, y=best, mode="lines", name="efficient frontier L(N*(C), D*(C))",
                                 line=dict(color="crimson")))
    elif result.method == "approach1":
        d = result.diagnostics
        fig.add_trace(go.Scatter(x=d.levels, y=d.loss_min, mode="lines+markers", name="envelope (Approach 1)",
                                 line=dict(color="crimson")))
    elif result.method == "approach2":
        used = [p for p in result.diagnostics.profiles if p["used"]]
        fig.add_trace(go.Scatter(x=[p["flops"] for p in used], y=[p["loss_opt"] for p in used], mode="lines+markers",
                                 name="IsoFLOP minima (Approach 2)", marker=dict(symbol="star", size=12),
                                 line=dict(color="crimson")))
    elif result.method == "huber_log" and LAWS[result.law].inputs == ("flops",):
        fig.add_trace(go.Scatter(x=grid, y=result.predict({"flops": grid}), mode="lines", name="fit",
                                 line=dict(color="crimson")))
    fig.update_layout(xaxis_type="log", xaxis_title="compute C (FLOPs)", yaxis_title=data.target.label(), height=480,
                      margin=dict(t=30), legend=LEGEND_BELOW)
    return fig


def fig_isoflop(result, data) -> go.Figure:
    fig = go.Figure()
    if result.method == "approach2":
        profiles = result.diagnostics.profiles
        groups = np.asarray(result.diagnostics.budget_of_point, dtype=int)
        budgets = np.array([p["flops"] for p in profiles])
    else:
        groups = group_budgets(data.flops, sorted(set(data.budget.tolist()))
                               if data.budget is not None and np.isfinite(data.budget).all() else None)
        budgets = np.array([float(np.exp(np.log(data.flops[groups == g]).mean())) for g in range(groups.max() + 1)])
        profiles = None
    for g, (budget, color) in enumerate(zip(budgets, colors_for(budgets))):
        idx = groups == g
        if idx.sum() == 0:
            continue
        fig.add_trace(go.Scatter(x=data.n_params[idx], y=data.y[idx], mode="markers", marker=dict(color=color, size=9),
                                 name=f"C ≈ {budget:.3g}", legendgroup=str(g), text=data.run[idx]))
        n_grid = log_grid(data.n_params[idx], pad=1.6)
        if profiles is not None:
            p = profiles[g]
            if p["coef"][0] is None or not np.isfinite(p["coef"][0]):
                continue
            curve = np.polyval(p["coef"], np.log(n_grid))
            fig.add_trace(go.Scatter(x=n_grid, y=curve, mode="lines", line=dict(color=color, dash=None if p["used"] else "dot"),
                                     legendgroup=str(g), showlegend=False, hoverinfo="skip"))
            if p["n_opt"] is not None and np.isfinite(p["n_opt"]):
                fig.add_trace(go.Scatter(x=[p["n_opt"]], y=[p["loss_opt"]], mode="markers", legendgroup=str(g),
                                         marker=dict(symbol="star", size=15, color=color, line=dict(color="black", width=1)),
                                         name=f"minimum at C ≈ {budget:.3g}" + ("" if p["used"] else " (not used)"),
                                         showlegend=False))
        elif result.method == "approach3":
            curve = result.predict({"n_params": n_grid, "tokens": budget / (6.0 * n_grid)})
            fig.add_trace(go.Scatter(x=n_grid, y=curve, mode="lines", line=dict(color=color), legendgroup=str(g),
                                     showlegend=False, hoverinfo="skip"))
            n_star = float(result.frontier([budget])[0][0])
            fig.add_trace(go.Scatter(x=[n_star], y=result.predict({"n_params": [n_star], "tokens": [budget / (6 * n_star)]}),
                                     mode="markers", legendgroup=str(g), showlegend=False,
                                     marker=dict(symbol="star", size=15, color=color, line=dict(color="black", width=1))))
    fig.update_layout(xaxis_type="log", xaxis_title="parameters N", yaxis_title=data.target.label(), height=480,
                      margin=dict(t=30), legend=LEGEND_BELOW)
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
                                 marker=dict(color="royalblue", size=9)))
        fig.add_trace(go.Scatter(x=pts_c, y=pts_d, mode="markers", name="D_opt per level/budget",
                                 marker=dict(color="darkorange", size=9)))
    fig.add_trace(go.Scatter(x=grid, y=n_opt, mode="lines", name=f"N*(C) ∝ C^{result.derived.get('a', np.nan):.3f}",
                             line=dict(color="royalblue")))
    fig.add_trace(go.Scatter(x=grid, y=d_opt, mode="lines", name=f"D*(C) ∝ C^{result.derived.get('b', np.nan):.3f}",
                             line=dict(color="darkorange")))
    fig.update_layout(xaxis_type="log", yaxis_type="log", xaxis_title="compute C (FLOPs)",
                      yaxis_title="parameters / tokens", height=480, margin=dict(t=30))
    return fig


def fig_residuals(result, data) -> go.Figure:
    kept = kept_mask(result, len(data))
    resid = np.asarray(result.diagnostics.residuals, np.float64)
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[AXIS_TITLES[c] for c in ("n_params", "tokens", "flops")])
    for j, col in enumerate(("n_params", "tokens", "flops"), start=1):
        fig.add_trace(go.Scatter(x=data.column(col)[kept], y=resid, mode="markers", text=data.run[kept],
                                 marker=dict(size=7, color="royalblue"), showlegend=False), row=1, col=j)
        fig.add_hline(y=0, line=dict(color="grey", dash="dot"), row=1, col=j)
        fig.update_xaxes(type="log", row=1, col=j)
    fig.update_yaxes(title_text="log ŷ − log y", row=1, col=1)
    fig.update_layout(height=380, margin=dict(t=40))
    return fig


def fig_backtest(bt, data) -> go.Figure:
    fig = go.Figure()
    test = np.asarray(bt.test_index, dtype=int)
    train = np.setdiff1d(np.arange(len(data)), test)
    fig.add_trace(go.Scatter(x=data.flops[train], y=data.y[train], mode="markers", name=f"fitted ({bt.n_train})",
                             marker=dict(color="grey", size=8)))
    fig.add_trace(go.Scatter(x=data.flops[test], y=bt.observed, mode="markers", name=f"held out ({bt.n_test})",
                             marker=dict(color="royalblue", size=10)))
    fig.add_trace(go.Scatter(x=data.flops[test], y=bt.predicted, mode="markers", name="predicted",
                             marker=dict(color="crimson", symbol="diamond-open", size=12, line=dict(width=2))))
    fig.add_vline(x=bt.threshold, line=dict(color="black", dash="dash"))
    fig.update_layout(xaxis_type="log", xaxis_title="compute C (FLOPs)", yaxis_title=data.target.label(), height=420,
                      margin=dict(t=30))
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
    c1, c2 = st.columns(2)
    tags = c1.multiselect("Runs with any of the tags", fit_data.all_tags(store), key="fit_tags")
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
stored = list_fits(store)
ours = stored[stored["law"].isin(list(fit_data.METHODS))] if len(stored) else stored
st.subheader("Result")
if ours.empty:
    st.info("No fit stored yet: choose runs and press Fit.")
    st.stop()
labels = {int(r["id"]): fit_label(r) for r in ours.to_dict("records")}
if st.session_state.get("shown_fit") not in labels:
    st.session_state["shown_fit"] = next(iter(labels))
shown_id = st.selectbox("Stored fit", list(labels), format_func=labels.get, key="shown_fit")
row = get_fit(store, shown_id)
result = load_result(row)
selection = row["selection"] or {}
settings = row["settings"] or {}

data = None
try:
    data = fit_data.data_for_selection(store, selection)
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
for warning in result.warnings:
    st.warning(literal(warning))

table = params_table(result)
c1, c2, c3 = st.columns(3)
c1.metric("Points fitted", result.n_points)
c2.metric("Objective (Σ Huber)", f"{result.objective:.6g}" if np.isfinite(result.objective) else "—")
c3.metric("Bootstrap resamples", int(np.asarray(result.bootstrap_samples).shape[0]))
shown_rows = (table["kind"] == "parameter") | table["name"].isin(["a", "b"])
numbers = np.abs(table.loc[shown_rows, ["value", "stderr", "95% low", "95% high"]].to_numpy(np.float64))
numbers = numbers[np.isfinite(numbers) & (numbers > 0)]
plain = numbers.size == 0 or (numbers.min() >= 1e-4 and numbers.max() < 1e6)  # else scientific (Kaplan's N_c ~ 1e13)
st.dataframe(table[shown_rows].drop(columns="kind"), hide_index=True, key="fit_params_table",
             column_config={c: st.column_config.NumberColumn(format="%.5g" if plain else "scientific") for c in
                            ("value", "stderr", "95% low", "95% high")})
per_budget = budgets_table(result)
if len(per_budget):
    st.caption("a = β/(α+β) and b = α/(α+β) are the exponents of N* ∝ C^a and D* ∝ C^b. At each budget C, the "
               "compute-optimal N*, D* = C/(6N*) and tokens per parameter, with 95% intervals"
               + (" from the bootstrap." if result.method == "approach3" else " (point values)."))
    st.dataframe(per_budget, hide_index=True, key="fit_budgets_table",
                 column_config={c: st.column_config.NumberColumn(format="%.3g" if "tokens" in c else
                                                                 "scientific" if c.startswith("budget") else
                                                                 "compact") for c in per_budget.columns})
summary = getattr(result.diagnostics, "residual_summary", None) or {}
if summary.get("n"):
    st.caption(f"Residuals (log): RMSE {summary['rmse']:.4f}, mean {summary['mean']:+.4f}, max |r| "
               f"{summary['max_abs']:.4f}, mean |error| {summary['mean_abs_pct']:.2f}%.")

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
        with tabs["Data vs fit"]:
            figures["data_vs_fit"] = fig_data_vs_fit(result, data, law_x)
            st.plotly_chart(figures["data_vs_fit"], width="stretch", key="fig_data_vs_fit")
            if result.method in ("approach1", "approach2"):
                st.caption("Approaches 1 and 2 estimate N*(C) and D*(C), not a loss surface: see the IsoFLOP "
                           "and compute-optimal tabs.")
        with tabs["Loss vs compute"]:
            figures["loss_vs_compute"] = fig_loss_vs_compute(result, data)
            st.plotly_chart(figures["loss_vs_compute"], width="stretch", key="fig_loss_vs_compute")
        if "IsoFLOP" in tabs:
            with tabs["IsoFLOP"]:
                figures["isoflop"] = fig_isoflop(result, data)
                st.plotly_chart(figures["isoflop"], width="stretch", key="fig_isoflop")
                if result.method == "approach2":
                    prof = pd.DataFrame(result.diagnostics.profiles)
                    st.caption("Budgets and binning: points grouped by FLOP budget "
                               + ("(the budget each run records)" if settings.get("iso_budgets") else
                                  f"(split where log10 C jumps by more than {settings.get('gap_dex', 0.05)} dex)")
                               + "; a parabola in ln N per budget, its vertex N_opt (dotted: not used).")
                    st.dataframe(prof[["flops", "n_points", "n_min", "n_max", "n_opt", "tokens_opt", "loss_opt",
                                       "interior", "used", "note"]], hide_index=True, key="fit_profiles",
                                 column_config=SIZE_COLUMNS)
                else:
                    st.caption("The fitted law along each budget's IsoFLOP line D = C/(6N); stars mark N*(C).")
        if "Compute-optimal N and D" in tabs:
            with tabs["Compute-optimal N and D"]:
                figures["compute_optimal"] = fig_optimal(result, data)
                st.plotly_chart(figures["compute_optimal"], width="stretch", key="fig_compute_optimal")
                if result.method == "approach1":
                    d = result.diagnostics
                    st.caption(f"{len(d.levels)} FLOP levels (log-spaced; bin edges shown below), "
                               "lowest loss among the runs reaching each level.")
                    st.dataframe(pd.DataFrame({"level": d.levels, "bin low": d.bin_edges[:-1],
                                               "bin high": d.bin_edges[1:], "winning run": d.run_opt,
                                               "N_opt": d.n_opt, "D_opt": d.tokens_opt,
                                               "loss": d.loss_min, "runs compared": d.n_candidates}),
                                 hide_index=True, key="fit_levels", column_config=SIZE_COLUMNS)
        if "Residuals" in tabs:
            with tabs["Residuals"]:
                figures["residuals"] = fig_residuals(result, data)
                st.plotly_chart(figures["residuals"], width="stretch", key="fig_residuals")
                trend = summary.get("trend") or {}
                if trend:
                    st.caption("Trend of the residuals per e-fold (slope, correlation): "
                               + "; ".join(f"{k}: {v['slope_per_log']:+.4f} (r = {v['corr']:+.2f})"
                                           for k, v in trend.items())
                               + ". A clear trend means the law's form misses something, not just noise.")
        if "Back-test" in tabs:
            with tabs["Back-test"]:
                levels = fit_data.compute_levels(fit_data.kept_points(data, result).flops)
                if levels.size < 3:
                    st.info("A back-test needs points at 3 or more compute levels.")
                else:
                    choices = levels[1:].tolist()
                    threshold = st.select_slider(
                        "Fit on compute below, predict at and above", choices, value=choices[-1],
                        format_func=lambda c: f"{c:.3g} FLOPs", key=f"backtest_threshold_{shown_id}")
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
                        c2.metric("RMSE (log)", f"{bt.rmse_log:.4f}")
                        c3.metric("Mean |error|", f"{bt.mape_pct:.2f}%")
                        c4.metric("Bias (log)", f"{bt.bias_log:+.4f}")
                        figures["backtest"] = fig_backtest(bt, points)
                        st.plotly_chart(figures["backtest"], width="stretch", key="fig_backtest")

# -------------------------------------------------------------------------------------- export
st.subheader("Export")
c1, c2, c3 = st.columns(3)
export = {k: (str(v) if k == "created_at" else v) for k, v in row.items()}
c1.download_button("Parameters as JSON", json.dumps(export, indent=1, default=str).encode(), f"fit_{shown_id}.json",
                   "application/json", key="dl_fit_json")
c1.download_button("Parameters as CSV", table.to_csv(index=False).encode(), f"fit_{shown_id}.csv", "text/csv",
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
        for fmt in ("png", "svg", "html"):
            if fmt in files:
                body, fname, mime = files[fmt]
                c3.download_button(f"Figure as {fmt.upper()}", body, fname, mime, key=f"dl_fig_{fmt}")

# ====================================================================================== compare
st.subheader("Compare stored fits")
all_labels = {int(r["id"]): fit_label(r) for r in stored.to_dict("records")}
compare = st.multiselect("Fits", list(all_labels), default=list(all_labels)[:3], format_func=all_labels.get,
                         key="compare_fits")
if compare:
    def cell(value, se, digits: int) -> str:
        if not isinstance(value, (int, float)):
            return "" if value is None else str(value)
        return f"{value:.{digits}g}" + (f" ± {se:.2g}" if isinstance(se, (int, float)) else "")

    columns = {}
    for fid in compare:
        r = stored[stored["id"] == fid].iloc[0]
        diag = r["diagnostics"] or {}
        stderr = diag.get("stderr") or {}
        col = {name: cell(value, stderr.get(name), 5) for name, value in (r["params"] or {}).items()}
        for name, value in (diag.get("derived") or {}).items():
            if name not in col:
                col[name] = cell(value, stderr.get(name), 4)
        for optimum in diag.get("optima") or []:
            if optimum.get("budget") == 5.76e23:  # Chinchilla's budget
                col.update({f"{short} at 5.76e+23": cell(optimum.get(name), None, 4)
                            for short, name in (("N*", "n_params"), ("D*", "tokens"), ("tokens/param", "tokens_per_param"))})
        col["points"] = str(diag.get("n_points", ""))
        col["objective"] = cell(diag.get("objective"), None, 6) or "—"
        columns[all_labels[fid]] = col
    st.dataframe(pd.DataFrame(columns).fillna("").rename_axis("quantity").reset_index(), key="compare_table",
                 width="stretch", hide_index=True)

with st.expander("Delete a stored fit"):
    doomed = st.selectbox("Fit", list(all_labels), format_func=all_labels.get, key="delete_fit_choice")
    sure = st.checkbox("Yes, delete this fit", key="delete_fit_sure")
    if st.button("Delete fit", disabled=not sure, key="delete_fit_button"):
        with user_errors():
            delete_fit(store, doomed)
            st.session_state.pop("shown_fit", None)
            st.rerun()
