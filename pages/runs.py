"""Runs: upload training logs, edit run sizes, explore loss curves, forecast where a run lands.

The curve explorer (issue 13 §4): pick runs and metrics → a grid of panels sharing the runs, their
colours and the x-axis; the display controls and the panels live in one ``st.fragment``, so an EMA
slider key press reruns the charts alone. The view (runs, metrics, x-axis, smoothing) is mirrored
into ``st.query_params``: the address bar is a link to it. Chart builders: pages/curves.py.
"""
import json

import pandas as pd
import streamlit as st

from core import format as fmt
from core.curves import group_band, smooth_curves
from core.demo import DEMO_TAG
from services.seed import EXAMPLE_TAG, MIXTURE_SWEEP_ID, PROBE_DEMO_TAG
from importers import FORMATS
from services.ingest import default_tag, ingest_uploads
from services import runs as runs_service
from services.runs import DUPLICATE_POLICIES, X_AXES
from pages import curves as charts
from pages.common import cached, get_store, literal, user_errors
from pages.forecast_panel import forecast_panel
from pages.watch_panel import follow_live, watch_panel

store = get_store()
st.title("Runs")

# ------------------------------------------------------------------ upload
# The uploader's key changes after each import: a fresh, empty uploader, so the next upload never
# carries the previous files along (they would be imported twice: "run already exists").
st.session_state.setdefault("upload_generation", 0)
with st.expander("Upload training logs", expanded=True):
    files = st.file_uploader(
        "CSV/TSV/JSONL, TensorBoard event files or .zip, trainer_state.json (+ config.json), "
        "W&B exports, Lightning metrics.csv (+ hparams.yaml)", accept_multiple_files=True,
        key=f"uploads_{st.session_state['upload_generation']}")
    c1, c2, c3 = st.columns(3)
    fmt_label = c1.selectbox("Format", ["detect from content"] + list(FORMATS), key="upload_format")
    # Every import is a dataset: its runs get this tag (the file's name unless typed), which the Runs
    # and Fits pages select by.
    tag = c3.text_input("Tag (dataset name)", key=f"upload_tag_{st.session_state['upload_generation']}",
                        placeholder=default_tag([f.name for f in files]) if files else "the file's name",
                        help="Given to every imported run; empty: the (first) file's name without its extension.")
    policy = c2.selectbox("If a run name already exists", DUPLICATE_POLICIES, key="on_duplicate",
                          format_func=lambda p: {"error": "stop and tell me", "skip": "skip it",
                                                 "replace": "replace the old run",
                                                 "rename": "keep both (suffix the new one)"}[p])
    if st.button("Import", type="primary", disabled=not files, key="import_button"):
        with user_errors():
            fmt = None if fmt_label == "detect from content" else fmt_label
            # one upload is one transaction: every file parses, or nothing is stored
            added = ingest_uploads(store, [(f.name, f.getvalue()) for f in files], fmt=fmt, on_duplicate=policy,
                                   tag=tag or None)
            st.session_state["upload_message"] = (
                f"Imported {len(added)} run(s): " + literal(", ".join(a["name"] for a in added[:10]))
                + (" …" if len(added) > 10 else ""))
            st.session_state["upload_generation"] += 1
            st.rerun()
    if st.session_state.get("upload_message"):
        st.success(st.session_state.pop("upload_message"))

watch_panel(store)  # watched folders of live runs (pages/watch_panel.py)
follow_live(store)  # rerun when a watched run grew: the chart follows it

# ------------------------------------------------------------------ runs table
runs = runs_service.list_runs(store)
if runs.empty:
    st.info("No runs yet: upload a training log above.")
    st.stop()

run_tags = runs["tags"].map(runs_service.run_tags)
if run_tags.map(lambda ts: DEMO_TAG in ts).any():
    st.caption(f"Runs tagged **{DEMO_TAG}** come from a synthetic sweep generated from a known law "
               "(Besiroglu et al. 2024 estimates) with noise — not real training runs.")
if run_tags.map(lambda ts: PROBE_DEMO_TAG in ts).any():
    st.caption(f"Runs tagged **{PROBE_DEMO_TAG}** were trained by ScaleScope's own probe code on the bundled "
               "corpus, on a 2-core CPU (`assets/run_demo_sweep.py`): an IsoFLOP sweep of small dense models.")
MIXTURE_DEMO_TAG = f"sweep={MIXTURE_SWEEP_ID}"
if run_tags.map(lambda ts: MIXTURE_DEMO_TAG in ts).any():
    st.caption(f"Runs tagged **{MIXTURE_DEMO_TAG}** were trained the same way (`assets/run_demo_mixture.py`): a "
               "domain-mixture sweep for Que et al. 2024's D-CPT law, fitted in the demo (Planner page).")
if run_tags.map(lambda ts: EXAMPLE_TAG in ts).any():
    st.caption(f"Runs tagged **{EXAMPLE_TAG}** are published data bundled with ScaleScope (assets/reference/, "
               "with provenance): Hoffmann et al. 2022's Chinchilla runs as extracted by Epoch AI, and the models "
               "of the observational-scaling and Pythia eval tables.")

size_cols = ["arch", "n_params", "n_nonembedding_params", "n_active_params", "n_experts", "top_k",
             "seq_len", "tokens_per_step", "tokens", "flops"]
table = runs[["name", "tags", "source_format"] + size_cols + ["n_metric_rows"]].copy()  # tags beside the name: editable
table["tags"] = table["tags"].map(lambda t: ", ".join(runs_service.run_tags(t)))
table["source_format"] = table["source_format"].fillna("")
st.subheader(f"{len(runs)} runs")
c1, c2 = st.columns([1, 2])
all_tags = list(dict.fromkeys(t for ts in run_tags.iloc[::-1] for t in ts))  # newest imports first
run_dataset = c1.selectbox("Dataset (tag)", ["(all runs)"] + all_tags, key="runs_dataset",
                           help="Every import is tagged with its file or folder name (or the tag you gave); "
                                "the demo's runs are tagged demo, the bundled public data example.")
if run_dataset != "(all runs)":
    table = table[run_tags.map(lambda ts: run_dataset in ts).to_numpy()].reset_index(drop=True)
    c1.caption(f"{len(table)} of {len(runs)} runs tagged {literal(run_dataset)}.")
name_filter = c2.text_input("Filter by name or tag", key="runs_filter", placeholder="e.g. demo, 125M, moe")
if name_filter:
    needle = name_filter.lower()
    table = table[table["name"].str.lower().str.contains(needle, regex=False)
                  | table["tags"].str.lower().str.contains(needle, regex=False)].reset_index(drop=True)
    shown = literal(", ".join(table["name"].head(5))) + (" …" if len(table) > 5 else "")
    st.caption(f"{len(table)} of {len(runs)} runs match: {shown}" if len(table) else "No run matches.")
# Sortable (click a header); sizes no run has are left out, so the table is not a wall of empty cells,
# and a size one run lacks shows as a dash (placeholder), not a grey "None"; the column stays numeric.
view = charts.table_view(table, runs, always=("arch", "n_params", "tokens_per_step"))
# Sizes and tags are edited in place; "Save edits" stores them (the other columns are read-only). A save
# gives the editor a new key: a fresh editor whose table is the saved one (a keyed editor would keep its
# edits over the new values, and the save button with them).
saves = st.session_state.setdefault("runs_table_saves", 0)
editor_key = "runs_table" + (f"_{saves}" if saves else "")
edited = st.data_editor(
    view, key=editor_key, hide_index=True, width="stretch", placeholder="—",
    disabled=["name", "source_format", "n_metric_rows", "tokens", "flops"],
    # numbers stay numbers (sorting works) shown as core/format.py writes them: counts 73B, FLOPs 5.88e23
    column_config={c: st.column_config.NumberColumn(c, format="scientific" if c == "flops" else "compact", min_value=0)
                   for c in size_cols if c != "arch" and c in view}
                  | {"arch": st.column_config.SelectboxColumn("arch", options=["dense", "moe"]),
                     "tags": st.column_config.TextColumn(
                         "tags", help="The run's datasets, comma-separated (the Dataset select above, the Fits and "
                                      "Evals pages pick runs by one). Edit, then Save edits.")},
)
changes = st.session_state.get(editor_key, {}).get("edited_rows", {})
if changes and st.button("Save edits", key="save_edits", help="Tags are saved in one transaction, then sizes"):
    with user_errors():
        # every edited tag cell at once: all land, or (a bad tag) none
        retagged = runs_service.set_run_tags(store, {
            table.iloc[int(row)]["name"]: runs_service.tags_from_text(fields["tags"])
            for row, fields in changes.items() if "tags" in fields})
        sized = 0
        for row, fields in changes.items():
            sizes = {k: (None if pd.isna(v) else v) for k, v in fields.items() if k != "tags"}
            if sizes:
                runs_service.update_run(store, table.iloc[int(row)]["name"], **sizes)
                sized += 1
        moved = [r["name"] for r in retagged if r["changed"]]
        done = [f"Retagged {len(moved)} run(s)" + (": " + literal(", ".join(moved[:10])) if moved else "")
                + (" …" if len(moved) > 10 else "")] if retagged else []
        done += [f"Saved sizes of {sized} run(s); tokens and FLOPs re-derived where possible"] if sized else []
        st.session_state["runs_table_message"] = ". ".join(done) + "."
        st.session_state["runs_table_saves"] += 1
        st.rerun()
if st.session_state.get("runs_table_message"):
    st.success(st.session_state.pop("runs_table_message"))

# ------------------------------------------------------------------ curve explorer
st.subheader("Curves")
names = runs["name"].tolist()
runs_key = f"curve_runs_{name_filter}" + (f"|{run_dataset}" if run_dataset != "(all runs)" else "")
if runs_key not in st.session_state:  # the link's runs on the session's first draw, else the runs the filter shows
    linked = [] if st.session_state.get("_curve_view_from_url") else \
        [n for n in st.query_params.get_all("run") if n in set(names)]
    st.session_state[runs_key] = linked or table["name"].head(8).tolist()
st.session_state["_curve_view_from_url"] = True
chosen = st.multiselect("Runs", names, key=runs_key)
all_metrics = runs_service.metric_names(store, chosen) if chosen else []
metric_options = charts.plottable(all_metrics)
preferred = next((m for m in ("loss", "train_loss", "eval_loss", "train/loss") if m in metric_options),
                 metric_options[0] if metric_options else None)
if "curve_metrics" not in st.session_state:
    st.session_state["curve_metrics"] = [m for m in st.query_params.get_all("metric") if m in metric_options]
kept = [m for m in st.session_state["curve_metrics"] if m in metric_options]
if not kept and preferred:
    kept = [preferred]
if kept != st.session_state["curve_metrics"]:
    st.session_state["curve_metrics"] = kept  # runs changed: drop metrics they do not have
metrics_chosen = st.multiselect("Metrics (one panel each)", metric_options, key="curve_metrics",
                                disabled=not chosen, placeholder="Pick runs first" if not chosen else "Choose metrics")
for param, value in (("run", chosen), ("metric", metrics_chosen)):
    if st.query_params.get_all(param) != list(value):
        st.query_params[param] = list(value)

if not chosen:
    st.info("No run selected: pick one or more runs above to draw their curves.")
elif not metrics_chosen:
    st.info("Pick one or more metrics above: each gets its own panel.")

config_of = runs.set_index("name")["config"].map(lambda c: json.loads(c or "{}") if isinstance(c, str) else {})
config_keys = sorted({k for c in config_of for k in c})


def _seed(key: str, param: str, default, parse) -> None:
    """Give widget ``key`` its first value from the URL's ``param`` when valid, else ``default``."""
    if key in st.session_state:
        return
    raw = st.query_params.get(param)
    try:
        st.session_state[key] = default if raw is None else parse(raw)
    except (TypeError, ValueError):
        st.session_state[key] = default


def _curves(run_names: tuple, metric: str, x: str, log_x: bool) -> pd.DataFrame:
    """Downsampled curves (in the database), cached until the store changes (pages.common.cached),
    so a smoothing key press costs no query."""
    return cached(runs_service.curves, list(run_names), metric, x=x, log_x=log_x)


@st.fragment
def curve_panels(chosen: list, metrics_chosen: list, all_metrics: list) -> None:
    _seed("curve_x", "x", "step", lambda r: r if r in X_AXES else "step")
    _seed("curve_smooth", "smooth", 0.0, lambda r: min(0.99, max(0.0, round(float(r), 2))))
    c1, c2, c3, c4, c5, c6 = st.columns([1.2, 0.7, 0.7, 2, 1.4, 1.4])
    x_axis = c1.selectbox("x-axis", X_AXES, key="curve_x")
    log_x = c2.checkbox("log x", value=x_axis != "step", key="curve_logx")
    log_y = c3.checkbox("log y", value=False, key="curve_logy")
    smoothing = c4.slider("EMA smoothing (debiased)", 0.0, 0.99, step=0.01, key="curve_smooth")
    colour_key = c5.selectbox("Colour by config key", ["(run)"] + config_keys, key="curve_colour")
    group_key = c6.selectbox("Group by config key", ["(none)"] + config_keys, key="curve_group",
                             help="Mean and min–max band of the runs sharing a value")
    for param, value in (("x", x_axis), ("smooth", f"{smoothing:g}")):
        if st.query_params.get(param) != value:
            st.query_params[param] = value
    if not (chosen and metrics_chosen):
        return
    value_of = None if colour_key == "(run)" else {n: config_of.get(n, {}).get(colour_key) for n in chosen}
    colours, groups = charts.run_colours(chosen, value_of)
    with user_errors():
        panels, empty = [], []
        for metric in metrics_chosen:
            raw = _curves(tuple(chosen), metric, x_axis, log_x)
            if raw.empty:
                empty.append(metric)
                continue
            smoothed = smooth_curves(raw, smoothing) if smoothing > 0 else None
            env = charts.envelope_of(metric, all_metrics)
            band = charts.envelope_frame(_curves(tuple(chosen), env[0], x_axis, log_x),
                                         _curves(tuple(chosen), env[1], x_axis, log_x)) if env else None
            panels.append((metric, raw, smoothed, band))
        for metric in empty:
            st.warning(f"The chosen runs have no {literal(repr(metric))} points with a known {x_axis}: "
                       "pick another x-axis, or fill in tokens per step / parameters in the table above.")
        span = charts.x_span([p[1] for p in panels], log_x)
        per_row = 1 if len(panels) == 1 else 2
        for i in range(0, len(panels), per_row):
            cols = st.columns(per_row)
            for col, (metric, raw, smoothed, band) in zip(cols, panels[i:i + per_row]):
                if group_key != "(none)":
                    group_of = {n: config_of.get(n, {}).get(group_key) for n in chosen}
                    bands = group_band(smoothed if smoothed is not None else raw,
                                       {k: v for k, v in group_of.items() if v is not None}, log_x=log_x)
                    fig = charts.group_figure(metric, bands, group_key, x_title=x_axis, log_x=log_x,
                                              log_y=log_y, span=span)
                else:
                    fig = charts.panel_figure(metric, raw, smoothed, colours, groups, x_title=x_axis, log_x=log_x,
                                              log_y=log_y, envelope=band, span=span,
                                              group_title=None if value_of is None else colour_key,
                                              dashes=charts.run_dashes(chosen))
                col.plotly_chart(charts.as_figure(fig), width="stretch", key=f"curve_chart_{metric}",
                                 config={"displaylogo": False})
        if panels:
            st.caption(f"{fmt.integer(sum(len(p[1]) for p in panels))} points drawn in {len(panels)} panel(s) (downsampled "
                       "in the database: per x-bucket the last point, with min and max; each run's final point "
                       "kept)" + ("; the raw curve is drawn faintly under its EMA." if smoothing > 0 else "."))


curve_panels(chosen, metrics_chosen, all_metrics)

# ------------------------------------------------------------------ forecast (issue 14 §1)
forecast_panel(store, runs, chosen)

# ------------------------------------------------------------------ export and delete
st.subheader("Export or delete")
c1, c2 = st.columns(2)
with c1:
    # follows what is plotted: a new run selection above replaces the list (it can still be edited here)
    if st.session_state.get("_export_follows") != chosen or "export_runs" not in st.session_state:
        st.session_state["export_runs"] = [n for n in chosen if n in set(names)]
        st.session_state["_export_follows"] = list(chosen)
    export_runs = st.multiselect("Runs to export", names, key="export_runs")
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
