"""Probes: train a small-model IsoFLOP sweep on this machine, or measure a model's throughput and
MFU. The training and timing are core/probes; checking, storing and listing are db/probe_runs.py;
this page reads widgets and draws."""
import json
import time
from dataclasses import replace

import plotly.graph_objects as go
import streamlit as st

from core import corpus as corpus_mod
from core.errors import ProbeError
from core.probes.devices import pick_device
from core.probes.flops import flops_per_token
from core.probes.model_configs import count_params
from core.probes.sweep import SweepConfig, plan_sweep
from services import probes as probe_runs
from core import format as fmt
from pages import theme
from pages.common import cached, get_store, literal, progress_bar, user_errors

ARCH_LABELS = {"dense": "dense (Llama-style)", "moe": "MoE (Qwen3-MoE)", "both": "dense and MoE"}
ARCHS = {"dense": ("dense",), "moe": ("moe",), "both": ("dense", "moe")}
DUPLICATE_LABELS = {"error": "stop and tell me", "replace": "replace the old run", "rename": "keep both (suffix the new one)"}
LIVE_REDRAW_S = 0.7  # the live loss chart redraws at most this often (each redraw ships the whole figure)

store = get_store()
st.title("Probes")
st.caption("Produce real scaling data and hardware numbers here: an IsoFLOP sweep trains small models from "
           "scratch on the bundled corpus (each becomes a run in the store, with held-out loss per domain); a "
           "throughput probe measures tokens/s and MFU of a model size on a device.")


@st.cache_resource(show_spinner="Loading the bundled tokenizer…")
def cached_tokenizer():
    return corpus_mod.load_tokenizer()


@st.cache_resource(show_spinner="Loading and tokenizing the corpus…", max_entries=4)
def cached_corpus(name: str, seq_len: int) -> probe_runs.ProbeCorpus:
    return probe_runs.load_corpus(name, seq_len, tokenizer=cached_tokenizer())


@st.cache_data(show_spinner="Timing a few training steps for the estimate…", max_entries=64)
def cached_estimate(cfg_json: str) -> list:
    """Estimated seconds of each run, in plan order, from a 3-step timing of the smallest and largest model."""
    plan = plan_sweep(SweepConfig(**json.loads(cfg_json)), calibrate=True)
    return [r.est_seconds for r in plan.runs]


class LiveLoss:
    """Training loss by tokens per run, redrawn into a placeholder from the progress callback."""

    def __init__(self, placeholder, tokens_per_step: int):
        self.placeholder = placeholder
        self.tokens_per_step = tokens_per_step
        self.points: dict = {}  # run -> ([tokens], [loss])
        self.last_draw = 0.0
        self.draws = 0

    def add(self, step) -> None:
        xs, ys = self.points.setdefault(step.run, ([], []))
        xs.append(step.step * self.tokens_per_step)
        ys.append(step.loss)
        if time.monotonic() - self.last_draw >= LIVE_REDRAW_S or step.step == step.steps:
            self.draw()

    def draw(self) -> None:
        fig = go.Figure([go.Scatter(x=xs, y=ys, mode="lines", name=theme.name(run),
                                    line=dict(color=theme.family_style(i)["color"], dash=theme.family_style(i)["dash"]))
                         for i, (run, (xs, ys)) in enumerate(self.points.items())])
        fig.update_layout(title="Training loss (live)", xaxis_title="tokens", yaxis_title="train loss (nats/token)",
                          height=380, margin=dict(t=40), legend=dict(font=dict(size=10)))
        self.draws += 1  # each redraw is a new element: keys must not repeat within a script run
        self.placeholder.plotly_chart(fig, width="stretch", key=f"probe_live_loss_{self.draws}")
        self.last_draw = time.monotonic()


# ============================================================================================ device
c1, c2 = st.columns([1, 3])
device = c1.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="probe_device",
                      help="auto picks cuda > mps > cpu. cuda trains under bf16 autocast, mps and cpu in fp32.")
choice = None
with user_errors():
    choice = pick_device(device)
if choice is not None:
    c2.info(f"Runs on **{choice.kind}** ({literal(choice.device)}): {literal(choice.name)} — {choice.dtype}"
            + (", bf16 autocast" if choice.dtype == "bf16" else "") + f", {choice.threads} CPU threads.")

MODES = {"sweep": "IsoFLOP sweep", "throughput": "Throughput"}  # ?probe=<key> links straight to one
if "probe_mode" not in st.session_state:
    st.session_state["probe_mode"] = MODES.get(st.query_params.get("probe"), MODES["sweep"])
mode = st.radio("Probe", list(MODES.values()), horizontal=True, key="probe_mode")
st.query_params["probe"] = next(k for k, v in MODES.items() if v == mode)


# ============================================================================================ sweep
def sweep_section() -> None:
    c1, c2 = st.columns(2)
    budgets_text = c1.text_input("Compute budgets C (FLOPs)", "1e11, 3e11", key="sweep_budgets",
                                 help="One IsoFLOP curve per budget; each size trains on D = C/(6N) tokens.")
    sizes_text = c2.text_input("Model sizes N (active parameters)", "1.5e5, 3e5, 6e5", key="sweep_sizes",
                               help="Each target is rounded to a regular shape (width/depth ≈ 64); the bundled "
                                    "tokenizer's 4096×d embedding counts (tied, it is also the output layer).")
    c1, c2, c3, c4 = st.columns(4)
    arch = c1.selectbox("Architecture", list(ARCH_LABELS), format_func=ARCH_LABELS.get, key="sweep_arch")
    experts = c2.number_input("Experts", 2, 64, 8, key="sweep_experts", disabled=arch == "dense")
    top_k = c3.number_input("Top-k", 1, 8, 2, key="sweep_top_k", disabled=arch == "dense")
    seed = c4.number_input("Seed", 0, 2 ** 31 - 1, 0, key="sweep_seed", help="Model init and data order.")
    with st.expander("Training settings"):
        c1, c2, c3, c4 = st.columns(4)
        seq_len = c1.selectbox("Context length", [32, 64, 128, 256], index=2, key="sweep_seq_len")
        batch = c2.number_input("Batch (sequences per step)", 1, 256, 4, key="sweep_batch")
        lr = c3.number_input("Peak learning rate (0 = by width)", 0.0, 1.0, 0.0, format="%g", key="sweep_lr",
                             help="0 uses 1e-2·min(1, 128/d) per run; cosine to 10 % over each run's own steps.")
        min_steps = c4.number_input("Fewest steps per run", 1, 10_000, 20, key="sweep_min_steps")
        c1, c2, c3, c4 = st.columns(4)
        max_steps = c1.number_input("Most steps per run (0 = no limit)", 0, 10_000_000, 0, key="sweep_max_steps")
        corpus_name = c2.selectbox("Corpus", list(probe_runs.CORPORA), key="sweep_corpus",
                                   help=" · ".join(f"{k}: {v}" for k, v in probe_runs.CORPORA.items()))
        final_tokens = c3.number_input("Held-out tokens per domain at the end", 128, 65_536, 8192, step=1024,
                                       key="sweep_final_tokens")
        snapshots = c4.number_input("Routing snapshots per MoE run", 0, 10, 3, key="sweep_snapshots",
                                    disabled=arch == "dense")
        c1, c2, c3 = st.columns(3)
        prefix = c1.text_input("Run name prefix", "probe", key="sweep_prefix")
        on_duplicate = c2.selectbox("If a run name already exists", list(DUPLICATE_LABELS),
                                    format_func=DUPLICATE_LABELS.get, key="sweep_on_duplicate")
        compile_model = c3.checkbox("torch.compile (cuda)", key="sweep_compile",
                                    disabled=choice is None or choice.kind != "cuda")

    cfg, plan = None, None
    with user_errors():
        vocab = int(cached_tokenizer().get_vocab_size())
        cfg = SweepConfig(
            budgets=probe_runs.parse_numbers(budgets_text, "Compute budgets"),
            sizes=probe_runs.parse_numbers(sizes_text, "Model sizes"), archs=ARCHS[arch], n_experts=int(experts),
            top_k=int(top_k), vocab_size=vocab, seq_len=int(seq_len), batch_size=int(batch), lr=float(lr) or None,
            min_steps=int(min_steps), seed=int(seed), device=device, compile=bool(compile_model),
            final_tokens_per_domain=int(final_tokens), moe_checkpoints=int(snapshots), name_prefix=prefix.strip() or "probe")
        if choice is not None:  # (an unusable device is already shown above)
            plan = plan_sweep(cfg, calibrate=False)  # sizes vs budgets, device, architecture: before any work
        if plan is not None:
                probe_runs.check_sweep(store, plan, on_duplicate=on_duplicate, max_steps=int(max_steps) or None)
    if plan is None:
        st.button("Run sweep", type="primary", key="sweep_start", disabled=True)
        return

    # the estimate depends on neither the seed nor the names: one timing serves them all
    timing_cfg = replace(cfg, seed=0, name_prefix="probe")
    est = dict(zip((r.name for r in plan.runs), cached_estimate(json.dumps(timing_cfg.as_dict(), sort_keys=True))))
    total_est = sum(est.values())
    st.markdown(f"**{len(plan.runs)} runs**, {fmt.flops(plan.total_flops)} training FLOPs — estimated **{fmt.duration(total_est)}** "
                f"on {plan.device['kind']} ({plan.device['name']}), held-out scoring included.")
    st.dataframe([{"run": r.name, "budget C": fmt.flops(r.budget), "d_model": r.shape.d_model,
                   "layers": r.shape.n_layers, "N active": fmt.count(r.counts.active), "N total": fmt.count(r.counts.total),
                   "tokens D": fmt.count(r.tokens), "steps": fmt.integer(r.steps), "warmup": fmt.integer(r.warmup_steps),
                   "lr": fmt.number(r.lr, 3), "est. time": fmt.duration(est[r.name])} for r in plan.runs],
                 hide_index=True, width="stretch", key="sweep_plan_table")

    c1, c2 = st.columns([2, 5])
    if c1.button("Run sweep", type="primary", key="sweep_start"):
        # Pressing Stop reruns the script, which interrupts training at its next progress update:
        # the sweep is abandoned before anything is stored.
        stop = c2.empty()  # cleared when the sweep ends: no Stop button or finished bar left behind
        stop.button("Stop", key="sweep_stop")
        job = st.empty()
        with user_errors():
            data = cached_corpus(corpus_name, int(seq_len))
            run_cfg = replace(cfg, vocab_size=data.vocab_size)
            full_plan = plan_sweep(run_cfg, train_tokens=data.train.n_tokens, calibrate=False)  # + passes over the data
            with job.container():
                bar = progress_bar(f"Training {len(full_plan.runs)} runs")
            live = LiveLoss(st.empty(), int(batch) * int(seq_len))

            def progress(done: int, total: int, message: str) -> None:
                step = probe_runs.parse_progress(message)
                bar(done, total, step.short() if step else message)
                if step is not None:
                    live.add(step)

            outcome = probe_runs.run_and_store_sweep(store, run_cfg, data, plan=full_plan, progress=progress,
                                                     on_duplicate=on_duplicate, max_steps=int(max_steps) or None)
            live.draw()
            stored = outcome.stored
            st.session_state["probe_last_sweep"] = stored["tag"]
            st.success(f"Stored {len(stored['runs'])} runs tagged {literal(stored['tag'])} in {fmt.duration(outcome.seconds)} "
                       f"(estimated {fmt.duration(total_est)})"
                       + (f", with {len(stored['capture_ids'])} routing snapshots" if stored["capture_ids"] else "")
                       + ". They are runs like any other: see them on the Runs page, fit them below.")
        stop.empty()
        job.empty()
    elif st.session_state.get("sweep_stop"):
        st.warning("Sweep stopped: nothing was stored.")


# ============================================================================================ throughput
def throughput_section() -> None:
    c1, c2, c3, c4 = st.columns(4)
    params_text = c1.text_input("Model size N (active parameters)", "1e6", key="thr_params")
    arch = c2.selectbox("Architecture", ["dense", "moe"], format_func=ARCH_LABELS.get, key="thr_arch")
    experts = c3.number_input("Experts", 2, 64, 8, key="thr_experts", disabled=arch == "dense")
    top_k = c4.number_input("Top-k", 1, 8, 2, key="thr_top_k", disabled=arch == "dense")
    c1, c2, c3, c4, c5 = st.columns(5)
    batch = c1.number_input("Batch (sequences)", 1, 1024, 8, key="thr_batch")
    seq_len = c2.number_input("Sequence length", 2, 32_768, 128, step=64, key="thr_seq_len")
    dtype = c3.selectbox("Precision", list(probe_runs.DTYPES), key="thr_dtype",
                         help="auto: bf16 autocast on cuda, fp32 on mps and cpu — the only precisions the probe runs.")
    iters = c4.number_input("Timed passes", 1, 1000, 5, key="thr_iters")
    compile_model = c5.checkbox("torch.compile (cuda)", key="thr_compile",
                                disabled=choice is None or choice.kind != "cuda")

    shape = None
    with user_errors():
        params = probe_runs.parse_numbers(params_text, "Model size")
        if len(params) != 1:
            raise ProbeError("Model size: give one parameter count, e.g. 1e6.")
        if choice is not None:
            probe_runs.check_dtype(choice, dtype)
        shape = probe_runs.throughput_shape(params[0], arch, n_experts=int(experts), top_k=int(top_k),
                                            seq_len=int(seq_len), vocab_size=int(cached_tokenizer().get_vocab_size()))
    if shape is not None:
        counts = count_params(shape)
        fpt = flops_per_token(shape)
        st.caption(f"Shape: d_model {shape.d_model}, {shape.n_layers} layer{'s' * (shape.n_layers != 1)}, "
                   f"{shape.n_heads} head{'s' * (shape.n_heads != 1)}, d_ff {shape.d_ff}"
                   + (f", {shape.n_experts} experts top-{shape.top_k}" if shape.n_experts else "")
                   + f" — {fmt.count(counts.total)} parameters ({fmt.count(counts.active)} active); {fmt.flops(fpt.train)} "
                   f"training FLOPs per token ({fmt.percent(fpt.attention_share, 0)} attention; PaLM appendix B).")

    c1, c2 = st.columns([2, 5])
    if c1.button("Measure throughput", type="primary", key="thr_start", disabled=shape is None or choice is None):
        stop = c2.empty()  # cleared when the measurement ends
        stop.button("Stop", key="thr_stop")
        job = st.empty()
        with user_errors():
            with job.container():
                bar = progress_bar("Measuring")
            results, ids = probe_runs.run_and_store_throughput(
                store, shape, batch_size=int(batch), seq_len=int(seq_len), device=device, dtype=dtype,
                compile=bool(compile_model), iters=int(iters), progress=bar)
            st.session_state["thr_last"] = ids
            by_kind = {r.kind: r for r in results}
            fwd, both = by_kind["forward"], by_kind["forward_backward"]
            cols = st.columns(5)
            cols[0].metric("forward tokens/s", fmt.integer(fwd.tokens_per_s))
            cols[1].metric("fwd+bwd tokens/s", fmt.integer(both.tokens_per_s))
            cols[2].metric("fwd+bwd TFLOP/s", fmt.number(both.achieved_tflops, 3))
            cols[3].metric("fwd+bwd MFU", fmt.percent(both.mfu))
            cols[4].metric("peak memory", f"{fmt.integer(both.peak_memory_bytes / 2 ** 20)} MiB")
            st.caption(f"MFU against {fmt.number(both.peak_tflops, 3)} TFLOP/s ({literal(both.peak_source)})." if both.peak_tflops
                       else f"No MFU: {literal(both.peak_source)}.")
            st.success(f"Stored probes #{', #'.join(map(str, ids))} on {literal(fwd.device_name)} ({fwd.dtype}); the Planner "
                       "can use the measured MFU.")
        stop.empty()
        job.empty()
    elif st.session_state.get("thr_stop"):
        st.warning("Throughput probe stopped: nothing was stored.")


if mode == MODES["sweep"]:
    sweep_section()
else:
    throughput_section()

def _isoflop_figure(runs) -> go.Figure:
    """An IsoFLOP sweep: final held-out loss by size, one line per budget."""
    fig = go.Figure()
    budgets = sorted(runs["budget_flops"].unique())
    for budget, color in zip(budgets, theme.sequential_colors(budgets)):
        part = runs[runs["budget_flops"] == budget].sort_values("n_active_params")
        fig.add_trace(go.Scatter(x=part["n_active_params"], y=part["final_eval_loss"], mode="lines+markers",
                                 name=f"C = {fmt.flops(budget)}", line=dict(color=color),
                                 customdata=[[theme.name(r), fmt.count(n), fmt.loss(y)] for r, n, y in
                                             zip(part["name"], part["n_active_params"], part["final_eval_loss"])],
                                 hovertemplate="%{customdata[0]}<br>N %{customdata[1]}<br>loss %{customdata[2]}"
                                               "<extra></extra>"))
    fig.update_layout(title="IsoFLOP curves: final held-out loss by size",
                      xaxis_title="active parameters N", yaxis_title="held-out loss (nats/token)", height=380,
                      margin=dict(t=40))
    fig.update_xaxes(**fmt.log_axis("count", runs["n_active_params"]))
    return fig


def _mixture_figure(runs) -> go.Figure:
    """A D-CPT mixture sweep: final domain (solid) and general (dashed) loss along the domain ratio r_d,
    one colour per (N, D)."""
    fig = go.Figure()
    cells = sorted({(float(n), float(d)) for n, d in zip(runs["n_active_params"], runs["tokens"])})
    for (n, d), color in zip(cells, theme.sequential_colors([n * d for n, d in cells])):
        part = runs[(runs["n_active_params"] == n) & (runs["tokens"] == d)].sort_values("mixture_ratio")
        for column, corpus, dash in (("final_domain_loss", "domain", "solid"), ("final_general_loss", "general", "dash")):
            fig.add_trace(go.Scatter(
                x=part["mixture_ratio"], y=part[column], mode="lines+markers", line=dict(color=color, dash=dash),
                name=f"N {fmt.count(n)}, D {fmt.count(d)}: {corpus}",
                customdata=[[theme.name(r), fmt.number(x, 3), fmt.loss(y)] for r, x, y in
                            zip(part["name"], part["mixture_ratio"], part[column])],
                hovertemplate=f"%{{customdata[0]}}<br>r_d %{{customdata[1]}}<br>{corpus} loss %{{customdata[2]}}"
                              "<extra></extra>"))
    fig.update_layout(title="Mixture sweep: final domain (solid) and general (dashed) loss by domain ratio",
                      xaxis_title="domain ratio r_d", yaxis_title="held-out loss (nats/token)", height=380,
                      margin=dict(t=40))
    return fig


# ============================================================================================ stored sweeps
st.subheader("Stored sweeps")
sweeps = cached(probe_runs.list_sweeps)
if sweeps.empty:
    st.info("No sweep stored yet: configure one above and press Run sweep.")
else:
    labels = {r.tag: f"{r.tag} — {r.n_runs} runs on {r.device} ({fmt.flops(r.total_flops)} FLOPs)"
              for r in sweeps.itertuples()}
    last = st.session_state.pop("probe_last_sweep", None)
    if last in labels:
        st.session_state["sweep_shown"] = last
    tag = st.selectbox("Sweep", list(labels), format_func=labels.get, key="sweep_shown")
    runs = cached(probe_runs.sweep_runs, tag)
    if runs.empty:
        st.warning("The runs of this sweep are no longer in the store (deleted on the Runs page).")
    else:
        mixture = probe_runs.is_mixture_sweep(runs)
        st.plotly_chart(_mixture_figure(runs) if mixture else _isoflop_figure(runs), width="stretch",
                        key="sweep_isoflop_chart")
        shown = runs.drop(columns=["budget_flops", "final_train_loss"] if mixture else list(probe_runs.MIXTURE_COLUMNS))
        st.dataframe(fmt.table(shown, {"budget_flops": "flops", "flops": "flops", "final_eval_loss": "loss",
                                       "final_train_loss": "loss", "wall_time_s": "ratio", "mixture_ratio": "number",
                                       "final_domain_loss": "loss", "final_general_loss": "loss"}),
                     hide_index=True, width="stretch", key="sweep_runs_table")
        c1, c2 = st.columns([1, 3])
        if c1.button("Fit this sweep", key="sweep_fit", type="primary"):
            # The Fits page selects runs by tag: preselect this sweep's tag and its held-out loss.
            st.session_state["fit_dataset"] = tag
            st.session_state["fit_filter"] = ""
            st.session_state["fit_runs"] = runs["name"].tolist()
            st.session_state["fit_metric"] = "domain_loss" if mixture else "eval_loss"
            if mixture:  # Que et al. 2024's law of the domain corpus (its general-loss twin is one pick away)
                st.session_state["fit_law"] = "dcpt_domain"
            st.switch_page("pages/fits.py")
        target = ("the D-CPT domain-loss law and the final domain loss (domain_loss)" if mixture else
                  "the held-out loss (eval_loss)")
        c2.caption(f"Opens the Fits page with the {len(runs)} runs tagged {literal(tag)} selected and {target} as "
                   "target. The runs are also on the Runs page (filter by the tag).")

# ============================================================================================ stored throughput
st.subheader("Stored throughput probes")
table = cached(probe_runs.throughput_table)
if table.empty:
    st.info("No throughput probe stored yet: choose Throughput above and press Measure throughput.")
else:
    st.dataframe(fmt.table(table, {"tokens/s": "integer", "TFLOP/s": "number", "MFU": "percent",
                                   "peak memory (MiB)": "integer", "params": "count", "active params": "count"}),
                 hide_index=True, width="stretch", key="thr_table")
