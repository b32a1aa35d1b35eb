"""Evals: import benchmark results, plot scores against scale with fitted laws, forecast, PCA."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.downstream import DownstreamFit
from core.observational import PCAConfig, benchmark_pca, family_compute_efficiency
from services.evals import (
    ALL_DATASETS, LOWER_IS_BETTER, X_AXES, benchmark_labels, eval_datasets, filter_evals, fit_points,
    import_eval_uploads, in_dataset, load_evals, model_table, pca_matrix, save_eval_fit, scaling_points, split_label,
)
from importers.evals import is_accuracy_like
from core import format as fmt
from pages import theme
from pages.common import cached, confidence_level, get_store, literal, progress_bar, user_errors
from services import runs as runs_service

LAWS = {"none": "no fit", "sigmoid": "sigmoid with floor and ceiling (Ruan et al. 2024)",
        "log_law": "log-law (Isik et al. 2024)", "power_law": "power law + irreducible term (Isik et al. 2024)"}


@st.cache_data(show_spinner="Computing principal components…", max_entries=8)
def cached_pca(matrix: pd.DataFrame):
    return benchmark_pca(matrix, PCAConfig(n_components=matrix.shape[1]))  # every PC, for the scree plot


@st.cache_data(max_entries=8)
def cached_efficiency(capability: pd.Series, flops: pd.Series, family: pd.Series):
    return family_compute_efficiency(capability, flops, family)


store = get_store()
st.title("Evals")
cl = confidence_level()  # the sidebar's interval level (pages.common): bands and parameter intervals

# ------------------------------------------------------------------ import
evals = cached(load_evals)  # by store version: a widget change does not re-read the store
with st.expander("Import eval results", expanded=evals.empty):
    files = st.file_uploader(
        "lm-evaluation-harness results .json (several, or a .zip of a results folder), or an eval CSV/TSV: "
        "long (run, step, task, metric, value[, stderr]) or wide (a model column, one column per benchmark, "
        "optional params / tokens / flops / family)", accept_multiple_files=True, key="evals_uploads")
    c1, c2 = st.columns(2)
    run_override = c1.text_input("Model name for harness files (optional)", key="evals_run_override",
                                 help="Overrides the model a harness results file names.")
    step_override = c2.number_input("Checkpoint step for harness files (optional)", value=None, min_value=0,
                                    step=1, key="evals_step_override")
    if st.button("Import evals", type="primary", disabled=not files, key="evals_import"):
        with user_errors():
            # one import is one transaction: every file parses and checks, or nothing is stored
            result = import_eval_uploads(store, [(f.name, f.getvalue()) for f in files],
                                         run=run_override.strip() or None, step=step_override)
            st.success(f"Stored {result['rows']} eval rows ({len(result['tasks'])} tasks): "
                       f"{result['runs_matched']} run(s) matched, {result['runs_created']} created"
                       + (f", {result['rows_replaced']} earlier score(s) replaced." if result["rows_replaced"] else "."))
            for warning in result["warnings"][:10]:
                st.warning(literal(warning))
            evals = cached(load_evals)

if evals.empty:
    st.info("No eval results yet: import a harness results file or an eval table above.")
    st.stop()

# One dataset (an import's tag) at a time, the bundled observational-scaling table first: the PCA and
# the fits below never mix unrelated model sets unless "all" is chosen.
datasets, tags_of = cached(eval_datasets, evals)
dataset_choices = datasets + [ALL_DATASETS]
if st.session_state.get("evals_dataset") not in dataset_choices:
    st.session_state.pop("evals_dataset", None)
dataset = st.selectbox("Dataset (tag)", dataset_choices, key="evals_dataset",
                       help="Every import is tagged; the bundled public tables are tagged example.")
evals = in_dataset(evals, dataset, tags_of)

# ------------------------------------------------------------------ table
st.subheader("Eval results")
c1, c2, c3 = st.columns(3)
tasks = c1.multiselect("Task", sorted(evals["task"].unique()), key="evals_filter_tasks")
families = c2.multiselect("Family", sorted(evals["family"].dropna().unique()), key="evals_filter_families")
runs = c3.multiselect("Run", list(pd.unique(evals["run"])), key="evals_filter_runs")
shown = filter_evals(evals, tasks=tasks, families=families, runs=runs)
st.caption(f"{len(shown)} of {len(evals)} eval results · {shown['run'].nunique()} runs · "
           f"{shown['task'].nunique()} tasks. The plots and the PCA below use the rows these filters keep.")
EVAL_KINDS = {"step": "integer", "value": "loss", "stderr": "loss", "n_params": "count", "tokens": "count",
              "flops": "flops", "loss": "loss"}  # four decimals for scores (core/format.py)
st.dataframe(
    fmt.table(shown[["run", "family", "step", "task", "metric", "value", "stderr", "n_params", "tokens", "flops",
                     "loss", "source_file"]], EVAL_KINDS),
    key="evals_table", hide_index=True, width="stretch")
if shown.empty:
    st.stop()

# ------------------------------------------------------------------ score vs scale
st.subheader("Score vs scale")
labels = benchmark_labels(shown)
c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
label = c1.selectbox("Benchmark", labels, key="evals_benchmark")
task, metric = split_label(label)
x = c2.selectbox("x-axis", list(X_AXES), format_func=X_AXES.get, key="evals_x")
group_by = c3.radio("One line per", ["family", "run"], horizontal=True, key="evals_group_by")
checkpoints = c4.radio("Checkpoints", ["last", "all"], horizontal=True, key="evals_checkpoints",
                       format_func={"last": "each run's last", "all": "every one"}.get)
if x == "loss":
    loss_names = cached(runs_service.metric_names)
    loss_metric = st.selectbox("Loss metric (read at each eval's step)", loss_names or ["loss"],
                               index=loss_names.index("loss") if "loss" in loss_names else 0, key="evals_loss_metric")
    if loss_metric != "loss":
        shown = filter_evals(in_dataset(cached(load_evals, loss_metric=loss_metric), dataset, tags_of), tasks=tasks,
                             families=families, runs=runs)

base_metric = metric.split(",", 1)[0].lower()
default_law = "sigmoid" if is_accuracy_like(metric) else "power_law" if base_metric in LOWER_IS_BETTER else "log_law"
c1, c2, c3, c4 = st.columns([3, 1, 1, 2])
law = c1.selectbox("Law", list(LAWS), index=list(LAWS).index(default_law), format_func=LAWS.get,
                   key=f"evals_law_{base_metric}")
log_x = c2.checkbox("log x", value=x != "loss", key=f"evals_logx_{x}")
log_y = c3.checkbox("log y", value=base_metric in LOWER_IS_BETTER, key="evals_logy")

points = pd.DataFrame()
with user_errors():
    points, missing = scaling_points(shown, task, metric, x, checkpoints=checkpoints, group_by=group_by)
    if missing["runs_without_x"]:
        names = missing["runs_without_x"]
        st.warning(f"{len(names)} run(s) have no {X_AXES[x]} and are not drawn: {literal(', '.join(names[:5]))}"
                   + (" …" if len(names) > 5 else "") + ". Fill in their sizes on the Runs page, or import a table "
                   "with params / tokens / flops columns.")
    if missing["n_nonpositive_x"]:
        st.caption(f"{missing['n_nonpositive_x']} point(s) at {X_AXES[x]} = 0 (e.g. step 0) are left out.")

fit = None
if len(points):
    groups = list(pd.unique(points["group"]))
    fit_scope = c4.selectbox("Fit to", ["all points"] + groups, key="evals_fit_scope")
    scope_points = points if fit_scope == "all points" else points[points["group"] == fit_scope]
    floor = None
    c1, c2, c3 = st.columns([2, 2, 3])
    if law == "sigmoid":
        floor = c1.number_input("Fix the floor (chance level, optional)", value=None, min_value=0.0,
                                max_value=1.0, step=0.05, key="evals_floor",
                                help="e.g. 0.25 for 4-way multiple choice; empty: fitted")
    n_bootstrap = c2.number_input("Bootstrap resamples", 0, 2000, 200, 50, key="evals_bootstrap",
                                  help="resample the points with replacement; refit each: the intervals at the "
                                       "sidebar's level")
    # The fit lives in session state, tied to everything it was made from.
    fit_key = (task, metric, x, checkpoints, group_by, fit_scope, law, floor, int(n_bootstrap),
               tuple(tasks), tuple(families), tuple(runs), len(scope_points))
    if law != "none" and c3.button(f"Fit {law.replace('_', ' ')}", type="primary", key="evals_fit_button"):
        with user_errors():
            result = fit_points(scope_points, law, x, floor=floor, n_bootstrap=int(n_bootstrap),
                                progress=progress_bar(f"Fitting {LAWS[law]} to {len(scope_points)} points"))
            st.session_state["evals_fit"] = {"key": fit_key, "fit": result.to_dict()}
    stored_fit = st.session_state.get("evals_fit")
    if stored_fit and stored_fit["key"] == fit_key:
        fit = DownstreamFit.from_dict(stored_fit["fit"])

    # forecast input: default a decade past the largest x (a 10% lower loss on the loss axis)
    x_max, x_min = float(points["x"].max()), float(points["x"].min())
    default_at = x_min * 0.9 if x == "loss" else x_max * 10
    forecast_at = None
    if fit is not None:
        forecast_at = st.number_input(f"Forecast {literal(task)} {literal(metric)} at {X_AXES[x]}",
                                      value=float(f"{default_at:.3g}"),
                                      min_value=0.0, format="%.4g", key=f"evals_forecast_{x}")

    fig = go.Figure()
    x_kind = {"flops": "flops", "loss": "loss"}.get(x, "count")
    hover = "%{customdata[0]} step %{customdata[1]}<br>" + X_AXES[x] + " %{customdata[2]}<br>%{customdata[3]}" \
            "<extra></extra>"
    for i, (name, part) in enumerate(points.groupby("group", sort=False)):
        err = part["stderr"].to_numpy() if part["stderr"].notna().any() else None
        style = theme.family_style(i)  # 12 colours × 4 symbols: ~30 families stay distinct
        fig.add_trace(go.Scatter(
            x=part["x"].to_numpy(), y=part["value"].to_numpy(), mode="lines+markers", name=theme.name(name),
            line=dict(color=style["color"], dash=style["dash"]), marker=dict(symbol=style["symbol"], size=8),
            error_y=dict(type="data", array=err, visible=True, thickness=1) if err is not None else None,
            customdata=[[theme.name(r), fmt.integer(s), fmt.value(v, x_kind), fmt.loss(y)] for r, s, v, y in
                        zip(part["run"], part["step"], part["x"], part["value"])], hovertemplate=hover))
    if fit is not None:
        hi = max(x_max, forecast_at or 0.0)
        lo = min(x_min, forecast_at) if forecast_at else x_min
        grid = np.geomspace(lo, hi, 200) if lo > 0 else np.linspace(lo, hi, 200)
        with user_errors():
            band = fit.predict_interval(grid, cl)
            fig.add_trace(go.Scatter(x=list(grid) + list(grid[::-1]), y=list(band.upper) + list(band.lower[::-1]),
                                     fill="toself", line=dict(width=0), opacity=0.25, hoverinfo="skip",
                                     fillcolor=theme.NEUTRAL, name=f"{fmt.level(band.confidence)} band (bootstrap)"))
            fig.add_trace(go.Scatter(x=grid, y=band.value, mode="lines", line=dict(color=theme.NEUTRAL, dash="dash"),
                                     name=f"{law.replace('_', ' ')} fit"))
            if forecast_at and forecast_at > 0:
                one = fit.predict_interval([forecast_at], cl)
                fig.add_trace(go.Scatter(
                    x=[forecast_at], y=one.value, mode="markers",
                    marker=dict(symbol="star", size=14, color=theme.ACCENT),
                    error_y=dict(type="data", symmetric=False, array=one.upper - one.value,
                                 arrayminus=one.value - one.lower), name="forecast"))
    fig.update_layout(xaxis_title=X_AXES[x], yaxis_title=f"{task} {metric}", height=480, margin=dict(t=30),
                      xaxis_type="log" if log_x else "linear", yaxis_type="log" if log_y else "linear",
                      legend=dict(font=dict(size=10)))
    if log_x and x != "loss":
        fig.update_xaxes(**fmt.log_axis(x_kind, points["x"]))
    st.plotly_chart(fig, width="stretch", key="evals_scaling_chart")
    st.caption(f"{len(points)} points from {points['run'].nunique()} run(s), {len(groups)} line(s).")

    if fit is not None:
        if forecast_at and forecast_at > 0:
            with user_errors():
                one = fit.predict_interval([forecast_at], cl)
                at_x = fmt.value(forecast_at, x_kind)
                c1, c2 = st.columns([1, 3])
                c1.metric(f"{literal(task)} {literal(metric)} at {at_x}", fmt.loss(one.value[0]))
                c2.markdown(f"**Forecast:** {fmt.loss(one.value[0])} at {X_AXES[x]} = {at_x}; "
                            f"{fmt.level(one.confidence)} interval {fmt.interval(one.lower[0], one.upper[0], 'loss')} "
                            f"(bootstrap band of the fitted curve, "
                            f"{fit.diagnostics.get('n_bootstrap_ok', 0)} resamples).")
        intervals = fit.intervals_at(cl)
        st.dataframe(pd.DataFrame([{"parameter": k, "value": fmt.number(v), "± s.e.": fmt.number(fit.stderr.get(k), 3),
                                    f"{fmt.level(cl)} interval": fmt.interval(*intervals.get(k, (None, None)))}
                                   for k, v in fit.params.items()]),
                     hide_index=True, key="evals_fit_params")
        st.caption(f"{fit.n_points} points · RMSE {fmt.number(fit.rmse)} · R² {fmt.number(fit.r2)} · x seen as "
                   f"{'log10(x)' if fit.x_transform == 'log10' else 'x'} · "
                   f"intervals by {fit.diagnostics.get('stderr_method')}")
        c1, c2 = st.columns([3, 1])
        fit_name = c1.text_input("Name (optional)", key="evals_fit_name", placeholder=f"{task} {metric} vs {x}")
        if c2.button("Store this fit", key="evals_store_fit"):
            with user_errors():
                fit_id = save_eval_fit(store, fit, task=task, metric=metric, x=x, name=fit_name.strip() or None,
                                       selection={"runs": sorted(map(str, scope_points["run"].unique())),
                                                  "checkpoints": checkpoints, "group_by": group_by,
                                                  "fit_scope": fit_scope, "filters": {"tasks": tasks,
                                                  "families": families, "runs": runs}})
                st.success(f"Stored fit #{fit_id} (target {literal(task)}/{literal(metric)}); see it on the Fits page.")

# ------------------------------------------------------------------ PCA
st.subheader("Principal components of the benchmarks")
st.caption("Observational scaling (Ruan et al. 2024): a few components of the model × benchmark table "
           "summarise capability; PC1 is the capability score (higher = better).")
with user_errors():
    matrix, lower_metrics, sparse_tasks = pca_matrix(shown)
    if matrix.shape[1] < 2 or len(matrix) < 3:
        st.info(f"The PCA needs at least 2 benchmarks and 3 models with scores; the rows shown give "
                f"{matrix.shape[1]} benchmark(s) and {len(matrix)} model(s). Import more, or widen the filters.")
        st.stop()
    pca = cached_pca(matrix)
    notes = [f"{len(pca.models)} models × {len(pca.benchmarks)} benchmarks",
             f"{pca.imputation['n_missing']} missing score(s) filled ({pca.imputation['method']})"]
    if pca.dropped_models:
        notes.append(f"{len(pca.dropped_models)} model(s) left out for having under half the benchmarks")
    if lower_metrics:
        notes.append("left out as lower-is-better: " + literal(", ".join(lower_metrics[:5])))
    if sparse_tasks:
        notes.append("left out (only sparse models have them): " + literal(", ".join(sparse_tasks[:5])))
    st.caption(" · ".join(notes))
    ratio = np.asarray(pca.explained_variance_ratio)
    st.markdown(f"**PC1 explains {fmt.percent(ratio[0])} of the variance**"
                + (f"; the first three {fmt.percent(ratio[:3].sum())}." if len(ratio) >= 3 else "."))
    sizes = model_table(shown).reindex(pca.models)
    family = sizes["family"].where(sizes["family"].notna(), "(no family)").astype(str)

    c1, c2 = st.columns(2)
    pcs = [f"PC{i + 1}" for i in range(len(ratio))]
    scree = go.Figure([go.Bar(x=pcs, y=ratio, name="explained", marker_color=theme.SECOND),
                       go.Scatter(x=pcs, y=np.cumsum(ratio), mode="lines+markers", name="cumulative",
                                  line=dict(color=theme.THIRD))])
    scree.update_layout(title="Scree plot", yaxis_title="fraction of variance", yaxis_range=[0, 1.02],
                        height=380, margin=dict(t=40))
    c1.plotly_chart(scree, width="stretch", key="evals_scree")
    k = min(3, len(pcs))
    loadings = pca.loadings.iloc[:, :k]
    cells = [[fmt.number(v, 2) for v in row] for row in loadings.to_numpy()]  # two significant digits
    heat = go.Figure(go.Heatmap(z=loadings.to_numpy(), x=list(loadings.columns), y=theme.names(loadings.index),
                                colorscale=theme.DIVERGING, zmid=0, text=cells,
                                texttemplate="%{text}", hovertemplate="%{y} · %{x}: %{z:.4f}<extra></extra>"))
    heat.update_layout(title="Loadings", height=380, margin=dict(t=40))
    c2.plotly_chart(heat, width="stretch", key="evals_loadings")

    models = pca.scores.assign(model=list(map(str, pca.scores.index)), family=family.to_numpy(),
                               flops=pd.to_numeric(sizes["flops"], errors="coerce").to_numpy())
    if "PC2" in models.columns:
        space = go.Figure([go.Scatter(x=part["PC1"].to_numpy(), y=part["PC2"].to_numpy(), mode="markers",
                                      name=theme.name(name), text=theme.names(part["model"]),
                                      marker=dict(color=theme.family_style(i)["color"], size=9,
                                                  symbol=theme.family_style(i)["symbol"]),
                                      hovertemplate="%{text}<br>PC1 %{x:.4f}<br>PC2 %{y:.4f}<extra></extra>")
                           for i, (name, part) in enumerate(models.groupby("family", sort=True))])
        space.update_layout(title="Models in PC1–PC2 space", xaxis_title="PC1 (capability)", yaxis_title="PC2",
                            height=480, margin=dict(t=40), legend=dict(font=dict(size=10)))
        st.plotly_chart(space, width="stretch", key="evals_pc_space")

    with_flops = models[models["flops"] > 0]
    if len(with_flops) >= 2 and sizes["family"].notna().any():
        eff = cached_efficiency(pca.capability, sizes["flops"], sizes["family"])
        lines = with_flops[with_flops["family"].isin(set(eff.table["family"]))].sort_values("flops")
        trend = go.Figure([go.Scatter(x=part["flops"].to_numpy(), y=part["PC1"].to_numpy(), mode="lines+markers",
                                      name=theme.name(name), line=dict(color=theme.family_style(i)["color"],
                                                                       dash=theme.family_style(i)["dash"]),
                                      marker=dict(symbol=theme.family_style(i)["symbol"], size=8),
                                      customdata=[[theme.name(m), fmt.flops(c)] for m, c in
                                                  zip(part["model"], part["flops"])],
                                      hovertemplate="%{customdata[0]}<br>%{customdata[1]} FLOPs<br>%{y:.4f}"
                                                    "<extra></extra>")
                           for i, (name, part) in enumerate(lines.groupby("family", sort=True))])
        trend.update_layout(title="Capability vs compute, one line per family",
                            xaxis_title="training compute (FLOPs)", yaxis_title="capability (PC1)", height=480,
                            margin=dict(t=40), legend=dict(font=dict(size=10)))
        trend.update_xaxes(**fmt.log_axis("flops", lines["flops"]))
        st.plotly_chart(trend, width="stretch", key="evals_capability_flops")
        st.caption(f"Families compared at {fmt.flops(eff.reference_flops)} FLOPs (higher = more compute-efficient); "
                   f"{len(eff.models_without_flops)} model(s) without FLOPs are not drawn.")
        st.dataframe(fmt.table(eff.table), hide_index=True, key="evals_family_efficiency")
