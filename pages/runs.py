"""Runs: upload training logs, edit run sizes, explore loss curves."""
import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.curves import group_band, smooth_curves
from core.demo import DEMO_TAG
from services.seed import PROBE_DEMO_TAG
from importers import FORMATS
from services.ingest import ingest_uploads
from services import runs as runs_service
from services.runs import DUPLICATE_POLICIES, X_AXES
from pages.common import get_store, literal, user_errors
from pages.watch_panel import follow_live, watch_panel

store = get_store()
st.title("Runs")

# ------------------------------------------------------------------ upload
with st.expander("Upload training logs", expanded=True):
    files = st.file_uploader(
        "CSV/TSV/JSONL, TensorBoard event files or .zip, trainer_state.json (+ config.json), "
        "W&B exports, Lightning metrics.csv (+ hparams.yaml)", accept_multiple_files=True, key="uploads")
    c1, c2 = st.columns(2)
    fmt_label = c1.selectbox("Format", ["detect from content"] + list(FORMATS), key="upload_format")
    policy = c2.selectbox("If a run name already exists", DUPLICATE_POLICIES, key="on_duplicate",
                          format_func=lambda p: {"error": "stop and tell me", "skip": "skip it",
                                                 "replace": "replace the old run",
                                                 "rename": "keep both (suffix the new one)"}[p])
    if st.button("Import", type="primary", disabled=not files, key="import_button"):
        with user_errors():
            fmt = None if fmt_label == "detect from content" else fmt_label
            # one upload is one transaction: every file parses, or nothing is stored
            added = ingest_uploads(store, [(f.name, f.getvalue()) for f in files], fmt=fmt, on_duplicate=policy)
            st.success(f"Imported {len(added)} run(s): " + literal(", ".join(a["name"] for a in added[:10]))
                       + (" …" if len(added) > 10 else ""))

watch_panel(store)  # watched folders of live runs (pages/watch_panel.py)
follow_live(store)  # rerun when a watched run grew: the chart follows it

# ------------------------------------------------------------------ runs table
runs = runs_service.list_runs(store)
if runs.empty:
    st.info("No runs yet: upload a training log above.")
    st.stop()

if runs["tags"].fillna("").str.contains(DEMO_TAG).any():
    st.caption(f"Runs tagged **{DEMO_TAG}** come from a synthetic sweep generated from a known law "
               "(Besiroglu et al. 2024 estimates) with noise — not real training runs.")
if runs["tags"].fillna("").str.contains(PROBE_DEMO_TAG).any():
    st.caption(f"Runs tagged **{PROBE_DEMO_TAG}** were trained by ScaleScope's own probe code on the bundled "
               "corpus, on a 2-core CPU (`assets/run_demo_sweep.py`): an IsoFLOP sweep of small dense models.")

size_cols = ["arch", "n_params", "n_nonembedding_params", "n_active_params", "n_experts", "top_k",
             "seq_len", "tokens_per_step", "tokens", "flops"]
table = runs[["name", "source_format"] + size_cols + ["n_metric_rows", "tags"]].copy()
table["tags"] = table["tags"].map(lambda t: ", ".join(json.loads(t)) if t else "")
st.subheader(f"{len(runs)} runs")
name_filter = st.text_input("Filter by name or tag", key="runs_filter", placeholder="e.g. demo, 125M, moe")
if name_filter:
    needle = name_filter.lower()
    table = table[table["name"].str.lower().str.contains(needle, regex=False)
                  | table["tags"].str.lower().str.contains(needle, regex=False)].reset_index(drop=True)
    shown = literal(", ".join(table["name"].head(5))) + (" …" if len(table) > 5 else "")
    st.caption(f"{len(table)} of {len(runs)} runs match: {shown}" if len(table) else "No run matches.")
edited = st.data_editor(
    table, key="runs_table", hide_index=True, width="stretch",
    disabled=["name", "source_format", "n_metric_rows", "tags", "tokens", "flops"],
    column_config={c: st.column_config.NumberColumn(c, format="%.4g", min_value=0) for c in size_cols
                   if c != "arch"} | {"arch": st.column_config.SelectboxColumn("arch", options=["dense", "moe"])},
)
changes = st.session_state.get("runs_table", {}).get("edited_rows", {})
if changes and st.button("Save size edits", key="save_sizes"):
    with user_errors():
        for row, fields in changes.items():
            name = table.iloc[int(row)]["name"]
            runs_service.update_run(store, name, **{k: (None if pd.isna(v) else v) for k, v in fields.items()})
        st.success(f"Saved sizes of {len(changes)} run(s); tokens and FLOPs re-derived where possible.")
        st.rerun()

# ------------------------------------------------------------------ curve explorer
st.subheader("Curves")
names = runs["name"].tolist()
default = table["name"].head(8).tolist()  # the runs the filter above shows
c1, c2, c3 = st.columns([3, 1, 1])
chosen = c1.multiselect("Runs", names, default=default, key=f"curve_runs_{name_filter}")
metric_names = runs_service.metric_names(store, chosen) if chosen else []
preferred = next((m for m in ("loss", "train_loss", "eval_loss") if m in metric_names), None)
metric = c2.selectbox("Metric", metric_names, index=metric_names.index(preferred) if preferred else 0,
                      key="curve_metric")
x_axis = c3.selectbox("x-axis", X_AXES, key="curve_x")
c1, c2, c3, c4 = st.columns(4)
log_x = c1.checkbox("log x", value=x_axis != "step", key="curve_logx")
log_y = c2.checkbox("log y", value=False, key="curve_logy")
smoothing = c3.slider("EMA smoothing (debiased)", 0.0, 0.99, 0.0, 0.01, key="curve_smooth")
config_keys = sorted({k for c in runs["config"].dropna() for k in json.loads(c or "{}")})
group_key = c4.selectbox("Group by config key", ["(none)"] + config_keys, key="curve_group")

if chosen and metric:
    with user_errors():
        curves = runs_service.curves(store, chosen, metric, x=x_axis, log_x=log_x)
        if curves.empty:
            st.warning(f"The chosen runs have no {literal(repr(metric))} points with a known {x_axis}: "
                       "pick another x-axis, or fill in tokens per step / parameters in the table above.")
        else:
            curves = smooth_curves(curves, smoothing)
            fig = go.Figure()
            if group_key != "(none)":
                configs = runs.set_index("name")["config"].map(lambda c: json.loads(c or "{}"))
                group_of = {n: configs[n].get(group_key) for n in chosen}
                bands = group_band(curves, {k: v for k, v in group_of.items() if v is not None}, log_x=log_x)
                for g, part in bands.groupby("group"):
                    fig.add_trace(go.Scatter(x=list(part.x) + list(part.x[::-1]),
                                             y=list(part.hi) + list(part.lo[::-1]), fill="toself",
                                             line=dict(width=0), opacity=0.25, name=f"{group_key}={g} min–max",
                                             hoverinfo="skip"))
                    fig.add_trace(go.Scatter(x=part.x, y=part["mean"], mode="lines",
                                             name=f"{group_key}={g} mean ({part.n_runs.iloc[0]} runs)"))
            else:
                for run, part in curves.groupby("run", sort=False):
                    fig.add_trace(go.Scatter(x=part.x, y=part.value, mode="lines", name=str(run)))
            fig.update_layout(xaxis_title=x_axis, yaxis_title=metric, height=480,
                              xaxis_type="log" if log_x else "linear", yaxis_type="log" if log_y else "linear",
                              showlegend=True, legend=dict(font=dict(size=10)), margin=dict(t=30))
            st.plotly_chart(fig, width="stretch", key="curve_chart")
            st.caption(f"{len(curves)} points drawn (downsampled in DuckDB: per x-bucket the last point, "
                       "with min and max; each run's final point kept).")

# ------------------------------------------------------------------ export and delete
st.subheader("Export or delete")
c1, c2 = st.columns(2)
with c1:
    export_runs = st.multiselect("Runs to export", names, default=chosen, key="export_runs")
    if export_runs:
        frame = runs_service.metrics(store, export_runs)
        st.download_button("Download CSV", frame.to_csv(index=False).encode(), "scalescope_runs.csv",
                           "text/csv", key="dl_csv")
        st.download_button("Download Parquet", frame.to_parquet(index=False), "scalescope_runs.parquet",
                           "application/octet-stream", key="dl_parquet")
with c2:
    doomed = st.multiselect("Runs to delete", names, key="delete_runs")
    sure = st.checkbox("Yes, delete these runs and their metrics", key="delete_sure")
    if st.button("Delete", disabled=not (doomed and sure), key="delete_button"):
        with user_errors():
            n = runs_service.delete_runs(store, doomed)
            st.success(f"Deleted {n} run(s).")
            st.rerun()
