"""Routing: capture which experts a MoE checkpoint picks for each token, and explore them as heatmaps."""
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.errors import InputError
from core.routing import metrics, views
from core.routing.capture import layer_arrays, load_moe_model
from services import routing
from services.routing_seed import bundled_checkpoints, bundled_documents, bundled_tokenizer
from core import format as fmt
from pages import theme
from pages.common import cached, get_store, literal, progress_bar, user_errors

LOCAL = "local folder…"
SIMILARITY_KINDS = {"gate": "gate projection", "up": "up projection", "down": "down projection",
                    "router": "router rows"}


@st.cache_data(show_spinner="Reading the capture…", max_entries=8)
def cached_assignments(_store, url: str, capture_id: int) -> pd.DataFrame:
    return routing.load_assignments(_store, capture_id)


@st.cache_data(show_spinner="Computing per-layer metrics…", max_entries=16)
def cached_layer_metrics(_store, url: str, capture_id: int, capacity_factor: float, min_count: int) -> pd.DataFrame:
    capture = routing.get_capture(_store, capture_id)
    return views.layer_metrics(cached_assignments(_store, url, capture_id), int(capture["n_experts"]),
                               capacity_factor=capacity_factor, router_prob_mean=routing.router_prob_mean(capture),
                               min_count=min_count)


@st.cache_data(show_spinner="Loading the checkpoint's expert weights…", max_entries=4)
def cached_similarity(model_dir: str, modified: float) -> dict:
    return views.similarity_by_layer(load_moe_model(model_dir, device="cpu"))


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_decoder(tokenizer_path: str):
    return views.load_decoder(tokenizer_path)


def heatmap(z, x, y, title: str, *, zmin=None, zmax=None, zmid=None, colorscale=theme.SEQUENTIAL, text=None,
            hover: str = "%{y}, %{x}: %{z:.3f}<extra></extra>", height: int = 380) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, zmin=zmin, zmax=zmax, zmid=zmid, colorscale=colorscale, text=text,
                               hovertemplate=hover))
    fig.update_layout(title=title, height=height, margin=dict(t=40, b=30), yaxis_autorange="reversed")
    return fig


def column(label: str | None = None, help: str | None = None):
    """A table column's label and help (its numbers are already text in the app's format: ``shown_table``)."""
    return st.column_config.TextColumn(label, help=help)


def shown_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A metrics table in the app's format: counts and layers whole, shares and scores to four
    significant digits, an em dash where a value does not exist."""
    kinds = {c: ("integer" if c in ("layer", "vocab_tokens", "tokens") or frame[c].dtype.kind in "iu" else "number")
             for c in frame.columns}
    return fmt.table(frame, kinds)


def load_heatmap(frame: pd.DataFrame, n_experts: int, title: str) -> go.Figure:
    """Each layer's share of assignments per expert on a diverging scale centred at balance, 1/E:
    white = balanced, red = overloaded, blue = underused; the share and count in each cell's hover."""
    layers, counts = views.load_matrix(frame, n_experts)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # (L, E) rows sum to 1
    balanced = 1.0 / n_experts
    top = max(2 * balanced, float(shares.max()) if shares.size else 0.0)
    return heatmap(shares, [f"expert {e}" for e in range(n_experts)], [f"layer {layer}" for layer in layers], title,
                   zmin=0, zmax=top, zmid=balanced, colorscale=theme.centred(0, top, balanced), text=counts,
                   hover="%{y}, %{x}: %{z:.2%} of assignments (%{text} tokens; balanced 1/E = "
                         f"{fmt.percent(balanced, 2)})<extra></extra>",
                   height=120 + 45 * len(layers))


store = get_store()
st.title("Routing")
st.caption("Which experts a mixture-of-experts checkpoint routes each token to: load balance, expert similarity, "
           "domain and token specialization, and how routing settles during training.")

# ------------------------------------------------------------------ new capture / trace import
captures = cached(routing.list_captures)
with st.expander("New capture", expanded=captures.empty):
    source = st.radio("Source", ["model", "trace"], horizontal=True, key="routing_source",
                      format_func={"model": "capture a local checkpoint", "trace": "import a routing trace"}.get)
    if source == "model":
        checkpoints = bundled_checkpoints()
        options = [routing.display_path(p) for p in checkpoints] + [LOCAL]
        c1, c2 = st.columns(2)
        choice = c1.selectbox("Checkpoint", options, index=max(len(checkpoints) - 1, 0), key="routing_model_choice",
                              help="A bundled checkpoint of the tiny MoE, or a Hugging Face MoE folder on this machine "
                                   "(config.json + *.safetensors; loaded offline).")
        local_path = c2.text_input("Local checkpoint folder", key="routing_model_path", disabled=choice != LOCAL,
                                   placeholder="/path/to/checkpoint")
        tokenizer_text = c2.text_input("Tokenizer (optional)", key="routing_tokenizer",
                                       help="tokenizer.json or a folder with one; default: the checkpoint's own")
        corpus_kind = c1.radio("Text", ["bundled", "upload"], horizontal=True, key="routing_corpus",
                               format_func={"bundled": "bundled held-out sample (5 domains)",
                                            "upload": "my text files"}.get)
        uploads = st.file_uploader("Text files (UTF-8), one domain per file", accept_multiple_files=True,
                                   key="routing_text_files", disabled=corpus_kind != "upload")
        domains_text = st.text_input("Domains, one per file, comma-separated (default: the file names)",
                                     key="routing_domains", disabled=corpus_kind != "upload")
        c1, c2 = st.columns(2)
        max_tokens = c1.number_input("Max tokens", min_value=16, max_value=10_000_000, value=4096, step=256,
                                     key="routing_max_tokens")
        every_checkpoint = c2.checkbox("Also capture the other checkpoints of this training run (for saturation)",
                                       key="routing_every_checkpoint")
        b1, b2 = st.columns([1, 6])
        if b1.button("Capture", type="primary", key="routing_capture"):
            # Pressing Stop reruns the script, which interrupts the capture at its next progress
            # update; run_capture then discards what it collected.
            stop = b2.empty()  # cleared when the capture ends: no Stop button or finished bars left behind
            stop.button("Stop", key="routing_stop")
            job = st.empty()
            with user_errors():
                if choice == LOCAL:
                    if not local_path.strip():
                        raise InputError("give the local checkpoint folder (the one with config.json and *.safetensors)")
                    model_dir = Path(local_path.strip()).expanduser()
                else:
                    model_dir = checkpoints[options.index(choice)]
                loaded = load_moe_model(model_dir)  # a bad folder or a dense model fails here, before the text
                tokenizer = tokenizer_text.strip() or (bundled_tokenizer(model_dir) if choice != LOCAL else None)
                if corpus_kind == "bundled":
                    docs, corpus = bundled_documents(int(max_tokens), tokenizer or model_dir)
                else:
                    files = [(f.name, f.getvalue()) for f in uploads or []]
                    docs = views.documents_from_uploads(files, views.parse_domains(domains_text, len(files)))
                    corpus = "uploaded: " + ", ".join(name for name, _ in files)
                folders = routing.sibling_checkpoints(model_dir) if every_checkpoint else [model_dir]
                new_ids = []
                for i, folder in enumerate(folders):
                    label = f"Capturing {routing.display_path(folder)} ({i + 1}/{len(folders)})"
                    with job.container():
                        bar = progress_bar(label)
                    new_ids.append(routing.run_capture(
                        store, loaded if folder.resolve() == model_dir.resolve() else folder, docs, corpus=corpus,
                        tokenizer=tokenizer, max_tokens=int(max_tokens), progress=bar))
                st.session_state["routing_shown"] = new_ids[-1]
                st.success(f"Stored capture(s) {', '.join(f'#{i}' for i in new_ids)}.")
            stop.empty()
            job.empty()
        elif st.session_state.get("routing_stop"):
            st.warning("Capture stopped: nothing was stored for the checkpoint being captured.")
    else:
        trace_file = st.file_uploader("Routing trace (.parquet or .csv with layer, doc_id, position, token_id, domain, "
                                      "rank, expert, weight)", type=["parquet", "csv"], key="routing_trace_file")
        c1, c2, c3 = st.columns(3)
        trace_model = c1.text_input("Model name", key="routing_trace_model", placeholder="default: the file name")
        trace_step = c2.number_input("Checkpoint step (optional)", value=None, min_value=0, step=1, key="routing_trace_step")
        trace_experts = c3.number_input("Experts per layer (optional)", value=None, min_value=1, step=1,
                                        key="routing_trace_experts", help="default: the largest expert id + 1")
        if st.button("Import trace", type="primary", disabled=trace_file is None, key="routing_import_trace"):
            with user_errors(), tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / Path(trace_file.name).name
                path.write_bytes(trace_file.getvalue())
                new_id = routing.import_trace(store, path, model_ref=trace_model.strip() or None,
                                              checkpoint_step=None if trace_step is None else int(trace_step),
                                              n_experts=None if trace_experts is None else int(trace_experts))
                st.session_state["routing_shown"] = new_id
                st.success(f"Stored trace {literal(trace_file.name)} as capture #{new_id}.")

# ------------------------------------------------------------------ choose a capture
captures = cached(routing.list_captures)
if captures.empty:
    st.info("No routing capture yet: capture a bundled checkpoint above (a few seconds on a CPU).")
    st.stop()
labels = {int(row["id"]): views.capture_label(row) for row in captures.to_dict("records")}
if st.session_state.get("routing_shown") not in labels:
    st.session_state["routing_shown"] = list(labels)[-1]
shown_id = st.selectbox("Capture", list(labels), format_func=labels.get, key="routing_shown")
with st.expander(f"Stored captures ({len(captures)})"):
    st.dataframe(views.captures_table(captures), hide_index=True, key="routing_captures_table")
    if st.button(f"Delete capture #{shown_id}", key="routing_delete"):
        with user_errors():
            routing.delete_capture(store, shown_id)
            st.session_state.pop("routing_shown", None)
            st.rerun()

capture = cached(routing.get_capture, shown_id)
n_experts, top_k = int(capture["n_experts"]), int(capture["top_k"])
frame = cached_assignments(store, store.url, shown_id)
layers = sorted(int(x) for x in frame["layer"].unique())
info = capture["info"]
st.caption(f"{literal(capture['family'])} · {len(layers)} MoE layers · {n_experts} experts, top-{top_k} · "
           f"{fmt.integer(capture['n_tokens'])} tokens from {info.get('n_docs', '?')} document(s) · "
           + literal(f"{info.get('source', 'capture')}{' on ' + info['device'] if info.get('device') else ''}"))

# ------------------------------------------------------------------ load and per-layer metrics
st.subheader("Expert load")
st.plotly_chart(load_heatmap(frame, n_experts, "Share of each layer's assignments per expert"), width="stretch",
                key="routing_load_heatmap")
st.caption(f"Balanced routing gives every expert 1/E = {fmt.percent(1 / n_experts)} of a layer's assignments: white "
           "cells are balanced, red ones carry more, blue ones less.")

st.subheader("Per-layer metrics")
c1, c2 = st.columns(2)
capacity_factor = c1.number_input("Capacity factor (for the drop rate)", min_value=0.1, max_value=16.0, value=1.0,
                                  step=0.25, key="routing_capacity_factor",
                                  help="capacity per expert = ⌊factor · k · tokens / E⌋, the whole capture as one group")
min_count = c2.number_input("Vocabulary specialization: tokens seen at least", min_value=1, max_value=1000, value=10,
                            step=1, key="routing_min_count")
table = cached_layer_metrics(store, store.url, shown_id, float(capacity_factor), int(min_count))
number = column  # the table's numbers are text in the app's format (core/format.py); labels and help stay
st.dataframe(shown_table(table), hide_index=True, key="routing_metrics_table", column_config={
    "cv": number("CV", help="std/mean of expert load (Shazeer et al. 2017); 0 = balanced"),
    "max_vio": number("MaxVio", help="max load / mean load − 1 (Wang et al. 2024)"),
    "entropy": number("entropy", help="load entropy / ln E; 1 = uniform"),
    "aux_loss": number("aux loss", help="E·Σ f_i·P_i (Switch Transformer); 1 = balanced"),
    "aux_loss_from": st.column_config.TextColumn("P_i from", help="router: the captured router probabilities; "
                                                 "top-k weights: a proxy (traces from elsewhere)"),
    "vocab_tokens": number("… token ids counted", help="token ids seen at least the minimum count"),
    "drop_rate": number(f"drop rate @ {fmt.number(capacity_factor)}"),
    "vocab_top1": number("vocab spec. (top-1)", help="OLMoE token-ID specialization"),
    "vocab_top1_null": number("… permutation null",
                              help="the same score with token ids shuffled: what chance alone gives"),
    "vocab_top1_null_std": number("… null std"),
    "vocab_topk": number("vocab spec. (top-k)"),
    "same_first": number("same 1st expert, next token", help="Mixtral paper, sec. 5"),
    "same_first_random": number("… random 1/E"),
    "overlap_topk": number("overlapping top-k, next token"),
    "overlap_topk_random": number("… random", help="1 − C(E−k, k)/C(E, k)"),
})
st.caption("Vocabulary specialization is only meaningful above its permutation null (small counts inflate it); "
           "consecutive-token rates above their random baselines mean routing follows position or syntax.")

# ------------------------------------------------------------------ one layer
st.subheader("One layer")
layer = st.selectbox("Layer", layers, index=len(layers) // 2, key="routing_layer",
                     format_func=lambda x: f"layer {x}")
arrays = layer_arrays(frame, layer)
expert_names = [f"expert {e}" for e in range(n_experts)]
c1, c2 = st.columns(2)
model_dir = routing.model_dir_of(capture)
with c1:
    if model_dir is None:
        st.info("Weight similarity needs the checkpoint folder; this capture has none on this machine "
                "(an imported trace, or the folder moved).")
    else:
        with user_errors():
            similarity = cached_similarity(str(model_dir), (model_dir / "config.json").stat().st_mtime)
            kinds = [k for k in SIMILARITY_KINDS if k in similarity.get(layer, {})]
            kind = st.radio("Expert weights", kinds, horizontal=True, format_func=SIMILARITY_KINDS.get,
                            key="routing_similarity_kind")
            st.plotly_chart(heatmap(similarity[layer][kind], expert_names, expert_names,
                                    f"Cosine similarity of {SIMILARITY_KINDS[kind]}, layer {layer}", zmin=-1, zmax=1,
                                    zmid=0, colorscale=theme.DIVERGING), width="stretch",
                            key="routing_similarity_heatmap")
with c2:
    coactivation = metrics.coactivation(arrays.expert_ids, n_experts, normalize=True)
    st.plotly_chart(heatmap(coactivation, expert_names, expert_names, f"Co-activation, layer {layer}", zmin=0,
                            hover="of %{y}'s tokens, %{z:.1%} also chose %{x}<extra></extra>"),
                    width="stretch", key="routing_coactivation_heatmap")
    st.caption(f"Row i: the share of expert i's tokens that also chose expert j (each used row sums to k − 1 = {top_k - 1}).")

domain_names, domain_share = metrics.domain_specialization(arrays.expert_ids, arrays.domains, n_experts, top="k")
uniform = metrics.uniform_share(n_experts, top_k, "k")
st.plotly_chart(heatmap(domain_share, expert_names, theme.names(domain_names), f"Domain specialization, layer {layer}",
                        zmin=0, zmax=max(2 * uniform, float(domain_share.max())), zmid=uniform,
                        colorscale=theme.centred(0, max(2 * uniform, float(domain_share.max())), uniform),
                        hover="%{y}: %{z:.1%} of its tokens chose %{x}<extra></extra>",
                        height=140 + 40 * len(domain_names)), width="stretch", key="routing_domain_heatmap")
st.caption(f"Share of each domain's tokens with the expert among their top-{top_k}; white = uniform routing "
           f"k/E = {fmt.number(uniform)}, red = preferred, blue = avoided (OLMoE, Muennighoff et al. 2024).")

# ------------------------------------------------------------------ token view
st.subheader("Tokens")
tokenizer_path = routing.tokenizer_of(capture)
decode = None
with user_errors():
    decode = cached_decoder(str(tokenizer_path)) if tokenizer_path is not None else None
if decode is None:
    st.info("No tokenizer for this capture on this machine: tokens are shown as ids.")
doc_domains = pd.Series(arrays.domains, index=arrays.doc_ids).groupby(level=0).first()
c1, c2 = st.columns([2, 1])
doc_id = c1.selectbox("Document", list(doc_domains.index), key="routing_doc",
                      format_func=lambda d: f"document {d} ({doc_domains[d]})")
max_shown = c2.number_input("Tokens shown", min_value=20, max_value=2000, value=300, step=50, key="routing_tokens_shown")
view = views.token_view(arrays, doc_id, decode, int(max_shown))
st.html(views.token_html(view, n_experts, layer))
st.caption(f"Each token coloured by its top expert in layer {layer}; hover for its id, position and all "
           f"top-{top_k} experts with their weights.")
c1, c2 = st.columns([1, 3])
prefer_top = c1.radio("Count", ["k", "1"], horizontal=True, key="routing_prefer_top",
                      format_func={"k": f"top-{top_k}", "1": "top-1"}.get)
prefer_min = c2.number_input("Tokens seen at least", min_value=1, max_value=1000, value=5, step=1,
                             key="routing_prefer_min")
preferred = views.preferred_tokens(arrays, n_experts, decode, top_n=8, min_count=int(prefer_min), top=prefer_top)
st.dataframe(views.preferred_tokens_summary(preferred, n_experts), hide_index=True, key="routing_preferred_tokens")

# ------------------------------------------------------------------ saturation across checkpoints
st.subheader("Saturation across checkpoints")
family = cached(routing.captures_like, shown_id)
with_steps = family[family["checkpoint_step"].notna()]
if len(with_steps) < 2:
    st.info("Saturation needs captures of two or more checkpoints of this training run on the same text: tick "
            "\"Also capture the other checkpoints\" above.")
else:
    with user_errors():
        series = views.saturation_series(
            [(int(r["id"]), r["checkpoint_step"], cached_assignments(store, store.url, int(r["id"])))
             for r in with_steps.to_dict("records")])
        fig = go.Figure()
        for layer_index, part in series.groupby("layer"):
            style = theme.family_style(len(fig.data))
            fig.add_trace(go.Scatter(x=part["step"], y=part["saturation"], mode="lines+markers",
                                     line=dict(color=style["color"], dash=style["dash"]),
                                     marker=dict(symbol=style["symbol"]),
                                     name=f"layer {layer_index}", customdata=part["tokens"],
                                     hovertemplate="step %{x}: %{y:.1%} (%{customdata} tokens)<extra></extra>"))
        fig.update_layout(xaxis_title="checkpoint step", yaxis_title=f"top-{top_k} overlap with the final checkpoint",
                          yaxis_range=[0, 1.02], height=380, margin=dict(t=30))
        st.plotly_chart(fig, width="stretch", key="routing_saturation_chart")
        st.caption(f"Router saturation (OLMoE): the share of each checkpoint's top-{top_k} choices that the final "
                   f"checkpoint (step {int(with_steps['checkpoint_step'].max())}) also makes, on the same tokens.")

# ------------------------------------------------------------------ compare
st.subheader("Compare with another capture")
others = [i for i in labels if i != shown_id]
other_id = st.selectbox("Second capture", [None] + others, key="routing_compare",
                        format_func=lambda i: "—" if i is None else labels[i])
if other_id is not None:
    other = cached(routing.get_capture, other_id)
    other_frame = cached_assignments(store, store.url, other_id)
    c1, c2 = st.columns(2)
    c1.plotly_chart(load_heatmap(frame, n_experts, f"A: #{shown_id}"), width="stretch", key="routing_compare_a")
    c2.plotly_chart(load_heatmap(other_frame, int(other["n_experts"]), f"B: #{other_id}"), width="stretch",
                    key="routing_compare_b")
    other_table = cached_layer_metrics(store, store.url, other_id, float(capacity_factor), int(min_count))
    comparison = views.compare_layer_metrics(table, other_table)
    st.dataframe(shown_table(comparison), hide_index=True, key="routing_compare_table")
    agreement = views.capture_agreement(frame, other_frame)
    if agreement.empty:
        st.caption("The two captures share no tokens (different text), so their choices cannot be compared token by token.")
    else:
        st.dataframe(shown_table(agreement), hide_index=True, key="routing_compare_agreement",
                     column_config={"agreement_topk": number("same top-k experts (share)"),
                                    "agreement_top1": number("same top-1 expert (share)")})
