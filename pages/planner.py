"""Planner: drag a training budget, read off the compute-optimal model size and token count (issue 4).

Every number comes from core/planner.py, core/inference_aware.py and core/accelerators.py; this page
only reads widgets and draws. The controls and everything they drive live in one ``st.fragment``, so
a slider move reruns the planner alone. The state (budget, law, inference tokens, experts, cluster)
is mirrored into ``st.query_params``: the address bar is always a shareable link to this plan.
"""
from __future__ import annotations

import math

import numpy as np
import streamlit as st

from core.law_choice import (
    DEFAULT_PRESET,
    DEFAULT_ROUTED_PRESET,
    fit_label,
    fit_for_planner,
    plan_for,
    preset_choice,
    resolve_accelerator,
    stored_fit_choice,
)
from core.accelerators import accelerators, budget_from_accelerators, days_for_flops, dtypes, peak_row
from core import dcpt
from core import fine_grained_moe as fgm
from core import inference_compute as icomp
from core.errors import PlanError
from core.inference_aware import inference_optimum, inference_optimum_for_model
from core.planner import FLOPS_PER_PARAM_TOKEN, chinchilla_frontier, iso_flop_curve, loss_function, moe_optimum
from core.planner import compare_moe_laws, moe_comparison_table
from core.planner import plan as plan_law
from core.planner import params_from_fit
from core.registry import law_of
from core.presets import list_presets
from core.reference_models import reference_models
from services.fits import default_fit_id, get_fit, list_fits
from services.inference import DEFAULT_SPREAD, fit_sample_law_from_evals, sample_law_benchmarks
from services.probes import list_probes
from core import format as fmt
from pages import theme
from pages.common import cached, confidence_level, get_store, literal, user_errors

# Renard R10 preferred numbers (ISO 3): ten steps per decade, each ≈ 0.1 decade, with short
# mantissas, so the slider is log-scaled and every budget it shows is the exact budget planned.
R10 = ("1", "1.25", "1.6", "2", "2.5", "3.15", "4", "5", "6.3", "8")
BUDGET_OPTIONS = [float(f"{m}e{k}") for k in range(18, 27) for m in R10] + [1e27]  # 1e18 … 1e27 FLOPs
DEFAULT_BUDGET = 1e23  # between Chinchilla-70B (5.9e23) and the small models people train most
INFERENCE_OPTIONS = [0.0] + [float(f"{m}e{k}") for k in range(9, 16) for m in R10] + [1e16]  # tokens
EXPERT_OPTIONS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]  # experts per routed layer; 1 = dense
DEFAULT_MFU = 0.4  # typical of large dense training (PaLM reports 46 %; see core/accelerators.py)
DEFAULT_ACCELERATOR = "H100 SXM"
# Widget ranges (also what a link may set): wide enough that the planner, not the widget, says
# when a cluster budget leaves the plannable range (core.planner.FLOPS_MAX).
MFU_RANGE = (0.05, 1.0)
COUNT_RANGE = (1.0, 1e7)  # accelerators
DAYS_RANGE = (0.01, 1e5)
PRICE_RANGE = (0.0, 1e5)  # per accelerator-hour, any currency; 0 = no cost

# Plot extents (log10): wide enough for every budget on the slider and every reference model.
LOG_N_RANGE = (7.0, 13.5)
LOG_D_RANGE = (8.5, 15.0)
CONTOUR_POINTS = 70  # per axis: smooth contours, and a small figure to send on every slider move
# Reference models named on the plot (all of them show their name on hover): the landmarks of the
# compute-optimal debate; naming all 21 clutters the plot and slows every redraw.
LABELLED_MODELS = {"GPT-3 175B", "Gopher 280B", "Chinchilla 70B", "LLaMA-2 7B", "Llama-3 8B", "Llama-3.1 405B",
                   "PaLM 540B"}
CURVE_POINTS = 160  # loss along the chosen budget's iso-FLOP line
CURVE_DECADES = 1.5  # the curve spans N*·10^±1.5: the minimum and both walls of the valley


# ------------------------------------------------------------------------------------ formatting
def sci(x: float) -> str:
    """1.25e+23 → '1.25e23' (three significant digits, no trailing zeros): the link's numbers and the
    slider labels of round budgets (1e21, 3.15e25)."""
    return f"{x:.3g}".replace("e+", "e")


human = fmt.count  # 40310496396 → '40.3B': the app's one format for N, D and counts (core/format.py)


def tokens_label(x: float) -> str:
    return "none" if x == 0 else sci(x)


# ------------------------------------------------------------------------------------ URL state
def _snap(raw: str, options: list, what: str) -> float:
    """The slider option nearest (in log) to a number from the URL; PlanError when off the scale."""
    try:
        x = float(raw)
    except ValueError:
        raise PlanError(f"The link's {what} {raw!r} is not a number; showing the default.") from None
    if options[0] == 0.0 and x == 0:
        return 0.0
    positive = [o for o in options if o > 0]
    if not (math.isfinite(x) and positive[0] / 1.2 <= x <= positive[-1] * 1.2):
        raise PlanError(f"The link's {what} {raw} is outside the slider's {sci(positive[0])}–"
                        f"{sci(positive[-1])}; showing the default. Pick one with the slider.")
    return min(positive, key=lambda o: abs(math.log(o / x)))


def _parse_experts(raw: str) -> int:
    if raw.strip() not in {str(e) for e in EXPERT_OPTIONS}:
        raise PlanError(f"The link's experts {raw!r} is not one of {EXPERT_OPTIONS}; showing dense (1).")
    return int(raw)


def _number_in(lo: float, hi: float, what: str):
    """Parser for a number widget's URL value: PlanError unless lo ≤ value ≤ hi (the widget's range)."""
    def parse(raw: str) -> float:
        try:
            x = float(raw)
        except ValueError:
            x = math.nan
        if not lo <= x <= hi:  # also False for NaN
            raise PlanError(f"The link's {what} {raw!r} must be a number from {lo:g} to {hi:g}; "
                            "showing the default.")
        return x
    return parse


def _choice_in(options: list[str], what: str):
    def parse(raw: str) -> str:
        if raw not in options:
            raise PlanError(f"The link's {what} {raw!r} is not available here; showing the default.")
        return raw
    return parse


def _seed(key: str, param: str, default, parse, problems: list[str]) -> None:
    """Give widget ``key`` its first value: from the URL's ``param`` when valid, else ``default``.

    Only when the widget has no state yet (first draw on this visit), so the URL never fights the
    user's later moves.
    """
    if key in st.session_state:
        return
    raw = st.query_params.get(param)
    value = default
    if raw is not None:
        try:
            value = parse(raw)
        except PlanError as exc:
            problems.append(str(exc))
        except (TypeError, ValueError):
            problems.append(f"The link's {param} {raw!r} cannot be used; showing the default.")
    st.session_state[key] = value


def _write_url(state: dict) -> None:
    """Mirror ``state`` (param → str, None to drop) into the address bar, touching only changes."""
    for param, value in state.items():
        if value is None:
            if param in st.query_params:
                del st.query_params[param]
        elif st.query_params.get(param) != value:
            st.query_params[param] = value


# ------------------------------------------------------------------------------------ plots
def _log_axis(title: str, span: tuple[float, float]) -> dict:
    """A log10-valued axis labelled as counts: 10M, 100M, 1B (core.format's tick labels)."""
    ticks = list(range(math.ceil(span[0]), math.floor(span[1]) + 1))
    _, text = fmt.log_ticks("count", lo_exp=ticks[0], hi_exp=ticks[-1]) if ticks else ([], [])
    return dict(title=title, range=list(span), tickvals=ticks, ticktext=text, zeroline=False)


def _scatter(**trace) -> dict:
    return {"type": "scatter", **trace}


def allocation_figure(law, flops, best, frontier, aware=None, moe=None, extra=None) -> dict:
    """Iso-loss contours over (N, D), iso-FLOP lines, the frontier, the plan and reference models.

    Built as a plain figure dict: ``st.plotly_chart`` validates it once, where ``go.Figure`` plus
    ``add_trace`` would validate every trace twice (≈ 3× the time of one slider move's maths).
    """
    log_n = np.linspace(*LOG_N_RANGE, CONTOUR_POINTS)
    log_d = np.linspace(*LOG_D_RANGE, CONTOUR_POINTS)
    with np.errstate(all="ignore"):
        loss = loss_function(law, **(extra or {}))(10.0 ** log_n[None, :], 10.0 ** log_d[:, None])  # (D, N)
    levels = best.loss + 0.1 * np.arange(-6, 13)  # the contour through the chosen point is always drawn
    data = [{
        "type": "contour", "x": log_n, "y": log_d, "z": np.round(loss, 4), "colorscale": theme.SEQUENTIAL,
        "reversescale": True, "name": "iso-loss", "line": {"width": 1},
        # Level labels on the lines would double the browser's drawing time per slider move: the
        # colour bar and the hover carry the values instead.
        "showscale": True, "colorbar": {"title": {"text": "loss", "side": "right"}, "thickness": 10, "len": 0.6},
        "contours": {"coloring": "lines", "start": levels[0], "end": levels[-1], "size": 0.1},
        "customdata": [[[human(10.0 ** x), human(10.0 ** y)] for x in log_n] for y in log_d],
        "hovertemplate": "N %{customdata[0]}<br>D %{customdata[1]}<br>loss %{z:.4f}<extra></extra>"}]
    # Iso-FLOP lines, one per decade: log D = log(C/6) − log N, straight lines of slope −1.
    xs, ys, label_x, label_y, labels = [], [], [], [], []
    for k in range(18, 28):
        off = k - math.log10(FLOPS_PER_PARAM_TOKEN)
        xs += [LOG_N_RANGE[0], LOG_N_RANGE[1], None]
        ys += [off - LOG_N_RANGE[0], off - LOG_N_RANGE[1], None]
        x_top = max(LOG_N_RANGE[0], off - LOG_D_RANGE[1])  # where the line enters the plot
        if x_top < LOG_N_RANGE[1] - 0.3:
            label_x.append(x_top + 0.15)
            label_y.append(off - x_top - 0.15)
            labels.append(f"1e{k}")
    data.append(_scatter(x=xs, y=ys, mode="lines", line={"color": "#bbbbbb", "width": 1, "dash": "dot"},
                         name="iso-FLOP (per decade)", hoverinfo="skip"))
    data.append(_scatter(x=label_x, y=label_y, mode="text", text=labels, showlegend=False,
                         textfont={"size": 9, "color": "#999999"}, hoverinfo="skip"))
    off = math.log10(flops / FLOPS_PER_PARAM_TOKEN)
    data.append(_scatter(x=list(LOG_N_RANGE), y=[off - LOG_N_RANGE[0], off - LOG_N_RANGE[1]], mode="lines",
                         line={"color": theme.ACCENT, "width": 2}, name=f"this budget, {fmt.flops(flops)} FLOPs",
                         hoverinfo="skip"))
    data.append(_scatter(x=np.log10(frontier[0]), y=np.log10(frontier[1]), mode="lines",
                         line={"color": theme.SECOND, "width": 2}, name="compute-optimal frontier",
                         customdata=[[human(n), human(d)] for n, d in zip(*frontier)],
                         hovertemplate="N* %{customdata[0]}<br>D* %{customdata[1]}<extra></extra>"))
    refs = reference_models()
    data.append(_scatter(
        x=[math.log10(m.active_params) for m in refs], y=[math.log10(m.tokens) for m in refs],
        mode="markers+text", text=[m.name if m.name in LABELLED_MODELS else "" for m in refs],
        hovertext=[m.name for m in refs],
        textposition=["bottom right" if m.name == "Gopher 280B" else "top right" for m in refs],  # GPT-3: same D
        textfont={"size": 9, "color": theme.NEUTRAL}, marker={"size": 7, "color": theme.NEUTRAL, "symbol": "circle-open"},
        name="published models", customdata=[[human(m.active_params), human(m.tokens), fmt.ratio(m.tokens_per_param),
                                              fmt.flops(m.flops), m.source] for m in refs],
        hovertemplate="%{hovertext}<br>N %{customdata[0]} (active), D %{customdata[1]}, D/N %{customdata[2]}"
                      "<br>≈ %{customdata[3]} FLOPs<br>%{customdata[4]}<extra></extra>"))
    data.append(_scatter(x=[math.log10(best.n_params)], y=[math.log10(best.tokens)], mode="markers",
                         marker={"size": 16, "color": theme.ACCENT, "symbol": "star"}, name="compute-optimal plan",
                         hovertemplate=f"N* {human(best.n_params)}<br>D* {human(best.tokens)}<br>"
                                       f"loss {fmt.loss(best.loss)}<extra></extra>"))
    if aware is not None and aware.inference_tokens > 0:
        data.append(_scatter(x=[math.log10(aware.n_params)], y=[math.log10(aware.tokens)], mode="markers",
                             marker={"size": 12, "color": theme.THIRD, "symbol": "diamond"},
                             name="inference-aware plan",
                             hovertemplate=f"N {human(aware.n_params)}<br>D {human(aware.tokens)}<extra></extra>"))
    if moe is not None:
        data.append(_scatter(x=[math.log10(moe.n_active_params)], y=[math.log10(moe.tokens)], mode="markers",
                             marker={"size": 12, "color": theme.SECOND, "symbol": "square"},
                             name=f"MoE, {fmt.integer(moe.n_experts)} experts (active N)",
                             hovertemplate=f"N active {human(moe.n_active_params)}<br>D {human(moe.tokens)}"
                                           "<extra></extra>"))
    layout = {"height": 640, "margin": {"t": 30, "l": 10, "r": 10, "b": 10},
              "legend": {"font": {"size": 10}, "orientation": "h", "yanchor": "top", "y": -0.12},
              "xaxis": _log_axis("parameters N", LOG_N_RANGE), "yaxis": _log_axis("training tokens D", LOG_D_RANGE),
              "title": {"text": "Iso-loss contours (nats) with iso-FLOP lines", "font": {"size": 14}}}
    return {"data": data, "layout": layout}


def iso_flop_figure(law, flops, best, extra=None) -> dict:
    """Loss against N along the chosen budget's iso-FLOP line, N* marked (and its band)."""
    n = np.logspace(math.log10(best.n_params) - CURVE_DECADES, math.log10(best.n_params) + CURVE_DECADES,
                    CURVE_POINTS)
    tokens, loss = iso_flop_curve(flops, law, n, **(extra or {}))
    shapes, annotations = [], []
    if best.intervals:
        lo, hi = (math.log10(v) for v in best.intervals["n_params"])
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": lo, "x1": hi, "y0": 0, "y1": 1,
                       "fillcolor": theme.ACCENT, "opacity": 0.12, "line": {"width": 0}})
        annotations.append({"xref": "x", "yref": "paper", "x": lo, "y": 1, "xanchor": "left", "showarrow": False,
                            "text": f"{fmt.level(best.interval_level)} band of N*"})
    data = [_scatter(x=np.log10(n), y=loss, mode="lines", line={"color": theme.ACCENT}, name="loss",
                     customdata=[[human(a), human(b)] for a, b in zip(n, tokens)],
                     hovertemplate="N %{customdata[0]}, D %{customdata[1]}<br>loss %{y:.4f}<extra></extra>"),
            _scatter(x=[math.log10(best.n_params)], y=[best.loss], mode="markers",
                     marker={"size": 14, "color": theme.ACCENT, "symbol": "star"}, name="N*",
                     hovertemplate=f"N* {human(best.n_params)}<br>loss {fmt.loss(best.loss)}<extra></extra>")]
    span = (math.log10(n[0]), math.log10(n[-1]))
    layout = {"height": 640, "margin": {"t": 30, "l": 10, "r": 10, "b": 10}, "showlegend": False,
              "xaxis": _log_axis("parameters N (tokens D = C / 6N)", span),
              "yaxis": {"title": "predicted loss (nats/token)"}, "shapes": shapes, "annotations": annotations,
              "title": {"text": f"Loss along the {fmt.flops(flops)}-FLOP line", "font": {"size": 14}}}
    return {"data": data, "layout": layout}


@st.cache_data(show_spinner=False, max_entries=32)
def frontier_points(law_key: str, _law, extra: tuple = ()) -> tuple[np.ndarray, np.ndarray]:
    """(N*, D*) over budgets 1e17–1e28 for the frontier line (cached per law: the search is ~0.4 ms a budget)."""
    budgets = np.logspace(17, 28, 45)
    if law_of(_law).closed_form is not None:  # Hoffmann et al. 2022 eq. (4), vectorised over budgets
        n, d, _ = chinchilla_frontier(budgets, _law)
        return n, d
    plans = []
    for c in budgets:
        try:
            plans.append(plan_law(c, _law, **dict(extra)))
        except PlanError:  # a budget where the law has no interior optimum: leave a gap
            continue
    return np.array([p.n_params for p in plans]), np.array([p.tokens for p in plans])


# ------------------------------------------------------------------------------------ widgets
def metric(column, key: str, label: str, value: str, band: str | None = None, help: str | None = None) -> None:
    """One output number in a keyed container (``.st-key-<key>``: the browser tests read it)."""
    with column.container(key=key):
        st.metric(label, value, help=help)
        if band:
            st.caption(band)


def stored_fit(fits, key: str) -> dict:
    """The fit row behind picker key "fit-<id>", from the list read once per full run (list_fits
    decodes the same JSON as get_fit), so a slider move does not query the database."""
    rows = fits[fits["id"] == int(key.split("-")[1])]
    return rows.iloc[0].to_dict() if len(rows) else get_fit(get_store(), int(key.split("-")[1]))


def law_labels(fits) -> dict[str, str]:
    """Picker key → label for every law the planner offers: dense presets, then every stored fit."""
    presets = [p for p in list_presets() if p.law != "routed"]
    labels = {p.key: p.label for p in presets}
    for row in fits.itertuples():
        labels[f"fit-{int(row.id)}"] = fit_label(row.id, getattr(row, "name", None), row.law, row.method, row.target)
    return labels


def cluster_inputs(problems: list[str], probes, with_size: bool) -> dict:
    """Accelerator, dtype, MFU (assumed, or measured by a stored probe), price; count and days too
    when the cluster defines the budget."""
    names = accelerators()
    _seed("planner_accelerator", "accelerator", DEFAULT_ACCELERATOR, resolve_accelerator, problems)
    cols = st.columns(6 if with_size else 4)
    accelerator = cols[0].selectbox("Accelerator", names, key="planner_accelerator")
    dtype_options = dtypes(accelerator)
    _seed("planner_dtype", "dtype", dtype_options[0], _choice_in(dtype_options, "dtype"), problems)
    if st.session_state["planner_dtype"] not in dtype_options:  # the accelerator changed
        st.session_state["planner_dtype"] = dtype_options[0]
    dtype = cols[1].selectbox("Precision", dtype_options, key="planner_dtype",
                              help=peak_row(accelerator, dtype_options[0]).source)
    measured = probes[probes["mfu"].notna()] if len(probes) else probes
    source = "assumed"
    if len(measured):
        mfu_labels = {"assumed": "assumed (slider)"} | {
            f"probe-{int(r.id)}": f"measured: {r.device} {r.dtype} ({r.kind}) {fmt.percent(r.mfu, 1)}"
            for r in measured.itertuples()}
        source = cols[2].selectbox("MFU from", list(mfu_labels), format_func=mfu_labels.get,
                                   key="planner_mfu_source",
                                   help="Measured by ScaleScope's throughput probe (Probes page), or assumed.")
    if source == "assumed":
        _seed("planner_mfu", "mfu", DEFAULT_MFU, _number_in(*MFU_RANGE, "MFU"), problems)
        mfu = cols[2].slider("MFU", *MFU_RANGE, step=0.01, key="planner_mfu",
                             help="Model FLOPs utilisation (PaLM appendix B): 0.35–0.55 is typical.")
    else:
        mfu = float(measured.set_index("id").loc[int(source.split("-")[1]), "mfu"])
    out = {"accelerator": accelerator, "dtype": dtype, "mfu": mfu, "measured_mfu": source != "assumed"}
    if with_size:
        _seed("planner_count", "count", 1024.0, _number_in(*COUNT_RANGE, "accelerator count"), problems)
        _seed("planner_days", "days", 30.0, _number_in(*DAYS_RANGE, "days"), problems)
        out["count"] = cols[3].number_input("Count", *COUNT_RANGE, step=1.0, format="%g", key="planner_count")
        out["days"] = cols[4].number_input("Days", *DAYS_RANGE, step=1.0, format="%g", key="planner_days")
    _seed("planner_price", "price", 0.0, _number_in(*PRICE_RANGE, "price"), problems)
    out["price"] = cols[-1].number_input("Price per accelerator-hour", *PRICE_RANGE, step=0.5,
                                         format="%g", key="planner_price", help="0 = no cost shown")
    return out


# ------------------------------------------------------------------------------------ the planner
@st.fragment
def planner(fits, probes) -> None:
    problems: list[str] = []
    labels = law_labels(fits)
    law_keys = list(labels)
    # The default law: Besiroglu et al. 2024's refit — as the bundled Chinchilla example fit when it is
    # stored (the same data and settings, with its bootstrap samples: bands), else the published preset.
    example = default_fit_id(fits)
    default_law = f"fit-{example}" if example is not None and f"fit-{example}" in labels else DEFAULT_PRESET
    _seed("planner_law", "law", default_law, _choice_in(law_keys, "law"), problems)
    _seed("planner_mode", "mode", "flops", _choice_in(["flops", "cluster"], "budget mode"), problems)
    _seed("planner_inference", "inference_tokens", 0.0,
          lambda r: _snap(r, INFERENCE_OPTIONS, "inference tokens"), problems)
    _seed("planner_experts", "experts", 1, _parse_experts, problems)
    for problem in problems[:]:
        st.error(literal(problem))
    problems.clear()

    c1, c2 = st.columns([3, 1])
    law_key = c1.selectbox("Scaling law", law_keys, format_func=labels.get, key="planner_law")
    mode = c2.radio("Budget as", ["flops", "cluster"], horizontal=True, key="planner_mode",
                    format_func={"flops": "FLOPs", "cluster": "accelerators × days"}.get)
    choice = None
    with user_errors():
        if law_key.startswith("fit-"):
            choice = stored_fit_choice(stored_fit(fits, law_key))
        else:
            choice = preset_choice(law_key)
    if choice is not None:
        st.caption(f"Source: {literal(choice.citation)}" + (f" — {literal(choice.note)}" if choice.note else ""))

    if mode == "flops":
        _seed("planner_budget", "budget", DEFAULT_BUDGET, lambda r: _snap(r, BUDGET_OPTIONS, "budget"), problems)
        flops = st.select_slider("Training budget (FLOPs, log scale)", BUDGET_OPTIONS, format_func=sci,
                                 key="planner_budget")
        with st.expander("Hardware and cost"):
            hardware = cluster_inputs(problems, probes, with_size=False)
    else:
        hardware = cluster_inputs(problems, probes, with_size=True)
        flops = None
    c1, c2 = st.columns(2)
    inference_tokens = c1.select_slider("Lifetime inference demand (tokens)", INFERENCE_OPTIONS,
                                        format_func=tokens_label, key="planner_inference",
                                        help="Tokens the model will generate or read over its life "
                                             "(Sardana & Frankle 2023).")
    experts = c2.select_slider("Experts per routed layer (1 = dense)", EXPERT_OPTIONS, key="planner_experts")
    for problem in problems:
        st.error(literal(problem))

    url = {"law": law_key, "mode": mode, "inference_tokens": tokens_label(inference_tokens).replace("none", "0"),
           "experts": str(experts), "budget": sci(flops) if mode == "flops" else None}
    for param in ("accelerator", "dtype", "mfu", "count", "days", "price"):
        url[param] = None
    if mode == "cluster" or hardware["price"] > 0:
        url |= {"accelerator": hardware["accelerator"], "dtype": hardware["dtype"]}
        if not hardware["measured_mfu"]:
            url["mfu"] = f"{hardware['mfu']:g}"
        url["price"] = f"{hardware['price']:g}" if hardware["price"] > 0 else None
    if mode == "cluster":
        url |= {"count": f"{hardware['count']:g}", "days": f"{hardware['days']:g}"}
    try:
        if choice is not None:
            results(choice, flops, hardware, inference_tokens, experts, fits)
    finally:
        _write_url(url)


PLAN_INPUTS = {  # what a law's optimum needs besides the budget (core.registry Law.plan_inputs)
    "unique_tokens": ("Unique tokens U_D in the dataset (Muennighoff et al. 2023: tokens beyond it are repeated "
                      "epochs)", 1e12),
    "granularity": ("Granularity G of the fine-grained MoE (Krajewski et al. 2024; 1 = experts the size of the "
                    "FFN)", 8.0),
}


def plan_inputs(choice) -> dict:
    """The widgets of the chosen law's extra planning inputs (none for Chinchilla and Kaplan)."""
    out = {}
    for name in law_of(choice.params).plan_inputs:
        label, default = PLAN_INPUTS[name]
        out[name] = st.number_input(label, min_value=1.0 if name == "granularity" else 1e6, max_value=1e16,
                                    value=default, format="%.3g", key=f"planner_{name}")
    return out


def results(choice, flops, hardware, inference_tokens, experts, fits) -> None:
    budget, best = None, None
    with user_errors():
        if flops is None:
            budget = budget_from_accelerators(hardware["accelerator"], hardware["count"], hardware["days"],
                                              hardware["mfu"], dtype=hardware["dtype"],
                                              price_per_hour=hardware["price"] or None)
            flops = budget.flops
        extra = plan_inputs(choice)
        best = plan_for(flops, choice, confidence_level(), **extra)
    if best is None:
        return

    if budget is not None:
        hours, cost = budget.accelerator_hours, budget.cost
        st.caption(f"{fmt.number(budget.count)} × {budget.accelerator} ({budget.dtype}, {fmt.number(budget.peak_tflops)} TFLOP/s dense) "
                   f"× {fmt.number(budget.days)} days × MFU {fmt.percent(budget.mfu, 0)} = {fmt.flops(budget.flops)} FLOPs. "
                   f"Peak: {budget.source}.")
    else:
        hours, cost = None, None
        with user_errors():
            hours = 24.0 * days_for_flops(flops, hardware["accelerator"], 1.0, hardware["mfu"], hardware["dtype"])
            cost = hours * hardware["price"] if hardware["price"] > 0 else None

    bands = best.intervals or {}

    def band(key, kind):
        if key not in bands:
            return None
        lo, hi = bands[key]
        return f"{fmt.level(best.interval_level)} band: {fmt.interval(lo, hi, kind)}"

    st.subheader("Compute-optimal plan")
    cols = st.columns(6)
    metric(cols[0], "planner_n_params", "N* (parameters)", human(best.n_params), band("n_params", "count"))
    metric(cols[1], "planner_tokens", "D* (tokens)", human(best.tokens), band("tokens", "count"))
    metric(cols[2], "planner_tokens_per_param", "Tokens / parameter", fmt.ratio(best.tokens_per_param),
           band("tokens_per_param", "ratio"))
    metric(cols[3], "planner_loss", "Loss (nats/token)", fmt.loss(best.loss), band("loss", "loss"))
    metric(cols[4], "planner_flops", "FLOPs (6·N*·D*)", fmt.flops(best.flops))
    if cost is not None:
        metric(cols[5], "planner_cost", "Cost", human(cost), help=f"{fmt.integer(hours)} accelerator-hours × "
               f"{fmt.number(hardware['price'])} per hour")
    elif hours is not None:
        metric(cols[5], "planner_hours", "Accelerator-hours", human(hours),
               help=f"at MFU {fmt.percent(hardware['mfu'], 0)}; set a price per accelerator-hour (Hardware and cost) for cost")
    how = "closed form (Hoffmann et al. 2022 eq. 4)" if best.method == "closed_form" else \
        "numerical minimisation along the iso-FLOP line"
    st.caption(f"{how}. " + (f"Bands: {fmt.level(best.interval_level)} of {best.interval_samples} bootstrap fits "
                             "(the sidebar's interval level)."
                             if best.intervals else "No bootstrap samples for this law: no bands."))

    moe = None
    if experts > 1:
        moe = moe_section(choice, flops, experts, fits)
    aware = inference_section(choice, best, inference_tokens)
    inference_compute_section()
    fine_grained_section(flops, fits)

    left, right = st.columns([3, 2])
    with user_errors():
        left.plotly_chart(allocation_figure(choice.params, flops, best,
                                            frontier_points(choice.key + repr(choice.params) + repr(extra), choice.params,
                                                            tuple(extra.items())),
                                            aware, moe, extra), key="planner_contours", width="stretch")
        right.plotly_chart(iso_flop_figure(choice.params, flops, best, extra), key="planner_iso_flop", width="stretch")


def moe_section(choice, flops, experts, fits):
    st.subheader(f"Mixture of experts: {experts} experts")
    routed = [p for p in list_presets("routed")]
    labels = {p.key: p.label for p in routed}
    for row in fits[fits["law"] == "routed"].itertuples() if len(fits) else ():
        labels[f"fit-{int(row.id)}"] = fit_label(row.id, getattr(row, "name", None), row.law, row.method, row.target)
    st.session_state.setdefault("planner_routed", DEFAULT_ROUTED_PRESET)
    routed_key = st.selectbox("Routed law", list(labels), format_func=labels.get, key="planner_routed")
    with user_errors():
        if routed_key.startswith("fit-"):
            routed_law = params_from_fit(fit_for_planner(stored_fit(fits, routed_key)))
            citation = labels[routed_key]
        else:
            routed_law = preset_choice(routed_key).params
            citation = next(p for p in routed if p.key == routed_key).citation
        moe = moe_optimum(flops, choice.params, routed_law, experts)
        cols = st.columns(5)
        metric(cols[0], "planner_moe_active", "Active parameters", human(moe.n_active_params),
               help="Parameters used per token; training FLOPs are 6 · active · tokens.")
        metric(cols[1], "planner_moe_effective", "Effective parameters", human(moe.n_effective_params),
               help="The dense size with the same loss (Clark et al. 2022 §5).")
        metric(cols[2], "planner_moe_total", "Total parameters", human(moe.n_total_params),
               help="All experts stored (each expert ≈ 1/3 of the dense base: every other layer's FFN).")
        metric(cols[3], "planner_moe_tokens", "Training tokens", human(moe.tokens))
        metric(cols[4], "planner_moe_loss", "Predicted loss", fmt.loss(moe.loss))
        st.caption(f"Source: {literal(citation)}")
        return moe
    return None


def inference_section(choice, best, inference_tokens):
    st.subheader("Inference-aware plan (Sardana & Frankle 2023)")
    if law_of(choice.params).key != "chinchilla":
        st.info("The inference-aware optimum needs a Chinchilla law (E, A, B, α, β); pick one above.")
        return None
    # Labels that never change with the law or budget: the browser matches the selection by label,
    # so a label quoting the loss left the radio with nothing selected after a law switch.
    targets = {"budget": "the loss of this budget's compute-optimal model",
               "model": "the quality of a Chinchilla-optimal model of a given size",
               "loss": "a target loss"}
    st.session_state.setdefault("planner_target", "budget")
    c1, c2 = st.columns([3, 1])
    target = c1.radio("Target quality", list(targets), format_func=targets.get, key="planner_target",
                      horizontal=True, help=f"This budget's compute-optimal loss: {fmt.loss(best.loss)}")
    aware = None
    with user_errors():
        if target == "model":
            st.session_state.setdefault("planner_reference_params", 13e9)
            size = c2.number_input("Reference model size (parameters)", min_value=1e6, max_value=1e14,
                                   format="%.4g", key="planner_reference_params")
            aware = inference_optimum_for_model(size, inference_tokens, choice.params)
        elif target == "loss":
            st.session_state.setdefault("planner_target_loss", round(best.loss, 3))
            loss = c2.number_input("Target loss (nats/token)", step=0.01, format="%.4f", key="planner_target_loss")
            aware = inference_optimum(loss, inference_tokens, choice.params)
        else:
            aware = inference_optimum(best.loss, inference_tokens, choice.params)
    if aware is None:
        return None
    cols = st.columns(5)
    metric(cols[0], "planner_aware_n_params", "Model size", human(aware.n_params))
    metric(cols[1], "planner_aware_tokens", "Training tokens", human(aware.tokens),
           help=f"{fmt.ratio(aware.tokens_per_param)} tokens per parameter")
    metric(cols[2], "planner_aware_total_flops", "Total FLOPs (train + infer)", fmt.flops(aware.total_flops),
           help=f"training {fmt.flops(aware.training_flops)} + inference {fmt.flops(aware.inference_flops)}")
    metric(cols[3], "planner_aware_saving", "Saving vs Chinchilla-optimal", fmt.percent(aware.flops_saving, 1),
           help="1 − total FLOPs / total FLOPs of the Chinchilla-optimal model of the same loss")
    metric(cols[4], "planner_aware_loss", "Loss reached", fmt.loss(aware.loss))
    st.caption(f"Chinchilla-optimal model of the same loss: {human(aware.chinchilla.n_params)} parameters on "
               f"{human(aware.chinchilla.tokens)} tokens, {fmt.flops(aware.chinchilla_total_flops)} FLOPs "
               + (f"with {human(aware.inference_tokens)} inference tokens." if aware.inference_tokens else
                  "(no inference demand: the two plans coincide).") + " Cost model: 6·N·D_train + 2·N·D_inference.")
    return aware


# ------------------------------------------------------------------------------------ survey laws (issue 15)
FG_EXPANSIONS = [4, 8, 16, 32, 64, 128]  # expansion rate E; the paper fits at 64
FG_TOP_K = ["G", 1, 2, 4, 8, 16, 32, 64]  # "G": the paper's setting, active = one FFN
IC_BUDGETS = [float(f"{m}e{k}") for k in range(12, 19) for m in R10] + [1e19]  # inference FLOPs per problem
IC_STRATEGIES = {"majority": "majority vote", "best_of_n": "best-of-n, oracle verifier"}


def _stored_params(fits, laws: tuple) -> dict:
    """Picker key → label of the stored fits of ``laws``."""
    if not len(fits):
        return {}
    rows = fits[fits["law"].isin(list(laws))]
    return {f"fit-{int(r.id)}": fit_label(r.id, getattr(r, "name", None), r.law, r.method, r.target)
            for r in rows.itertuples()}


def fine_grained_section(flops, fits):
    """Krajewski et al. 2024: experts, granularity and top-k → optimal active N and D (router counted)."""
    st.subheader("Fine-grained MoE (Krajewski et al. 2024)")
    c = st.columns(4)
    st.session_state.setdefault("planner_fg_expansion", 64)
    expansion = c[0].select_slider("Expansion rate E", FG_EXPANSIONS, key="planner_fg_expansion",
                                   help="Total expert parameters / one dense FFN; E·G experts per layer.")
    granularity = c[1].selectbox("Granularity G", ["auto", *fgm.GRANULARITIES], key="planner_fg_granularity",
                                 format_func=lambda g: "best of 1…64" if g == "auto" else str(g))
    top_k = c[2].selectbox("Top-k", FG_TOP_K, key="planner_fg_top_k",
                           format_func=lambda k: "= G (active = one FFN)" if k == "G" else str(k))
    sources = {"published": "Krajewski et al. 2024 (published constants)"} | _stored_params(fits, ("fine_grained_moe",))
    source = c[3].selectbox("Law", list(sources), format_func=sources.get, key="planner_fg_law")
    with user_errors():
        p = fgm.KRAJEWSKI_2024 if source == "published" else params_from_fit(fit_for_planner(stored_fit(fits, source)))
        k = None if top_k == "G" else float(top_k)
        if granularity == "auto":
            best, plans = fgm.best_granularity(flops, p, float(expansion), top_k=k)
        else:
            best = fgm.moe_plan(flops, p, fgm.MoEShape(float(expansion), float(granularity), k))
            plans = [best]
        cols = st.columns(6)
        metric(cols[0], "planner_fg_granularity_out", "Granularity G", fmt.number(best.granularity))
        metric(cols[1], "planner_fg_active", "Active N* (fine-grained)", human(best.n_active_params))
        metric(cols[2], "planner_fg_tokens", "Tokens D* (fine-grained)", human(best.tokens))
        metric(cols[3], "planner_fg_total", "Total parameters (fine-grained)", human(best.n_total_params))
        metric(cols[4], "planner_fg_router", "Router FLOPs", fmt.percent(best.router_flops_share, 1))
        metric(cols[5], "planner_fg_loss", "Loss (fine-grained)", fmt.loss(best.loss))
        st.caption(f"{best.flops_rule}; d_model = {fmt.number(fgm.ASPECT_RATIO)}·n_blocks; the law reads all "
                   f"{human(best.n_total_params)} parameters (every expert), the FLOPs the active ones. "
                   + " ".join(best.notes)
                   + " Losses are on the paper's data (C4): compare allocations with the dense law above, not losses.")
        if len(plans) > 1:
            st.plotly_chart({"data": [_scatter(x=[q.granularity for q in plans], y=[q.loss for q in plans],
                                               mode="lines+markers", name="loss at the optimum",
                                               customdata=[[human(q.n_active_params), human(q.tokens)] for q in plans],
                                               hovertemplate="G %{x}<br>loss %{y:.4f}<br>N %{customdata[0]}, "
                                                             "D %{customdata[1]}<extra></extra>")],
                             "layout": {"height": 300, "margin": {"t": 30, "l": 10, "r": 10, "b": 10},
                                        "xaxis": {"title": "granularity G", "type": "log"},
                                        "yaxis": {"title": "loss at the compute optimum"},
                                        "title": {"text": "Best loss at this budget by granularity", "font": {"size": 13}}}},
                            key="planner_fg_chart", width="stretch")
        moe_comparison(flops, p, float(expansion))


def moe_comparison(flops, p, expansion: float) -> None:
    """This budget through Krajewski et al. (best G, G = 1), Clark et al.'s routed law and the dense
    optimum: one table of allocations (core.planner.compare_moe_laws; `cli.py plan --compare-moe`)."""
    out = compare_moe_laws(flops, p, expansion)
    with st.container(key="planner_moe_compare"):
        st.markdown(f"**MoE views side by side at {fmt.flops(flops)} FLOPs**")
        st.dataframe(moe_comparison_table(out), hide_index=True, width="stretch")
        notes = " ".join(out["krajewski_best"]["notes"])
        st.caption("The papers fit different data (Krajewski et al. on C4; Clark et al. and Hoffmann et al. on "
                   "MassiveText), so compare allocations (active N*, D*, D/N), not losses. Krajewski et al. at the "
                   "best G and at G = 1 (experts the size of the FFN), top-k = G, router FLOPs counted; Clark et al. "
                   f"2022's routed law with {fmt.count(expansion)} FFN-sized experts (top-1) on Hoffmann et al. 2022's "
                   "dense law; the dense Chinchilla optimum. " + (notes + " " if notes else "") + out["wang_2024"])


def inference_compute_section():
    """Wu et al. 2024: at an inference budget per problem, a larger model or more samples?"""
    st.subheader("Inference compute: model size vs samples (Wu et al. 2024)")
    c = st.columns(3)
    st.session_state.setdefault("planner_ic_budget", 1e15)
    budget = c[0].select_slider("Inference budget per problem (FLOPs)", IC_BUDGETS, format_func=sci,
                                key="planner_ic_budget")
    strategy = c[1].radio("Combine samples by", list(IC_STRATEGIES), format_func=IC_STRATEGIES.get, horizontal=True,
                          key="planner_ic_strategy")
    st.session_state.setdefault("planner_ic_tokens", 512.0)
    tokens = c[2].number_input("Generated tokens per sample", min_value=1.0, max_value=1e6, format="%g",
                               key="planner_ic_tokens")
    sources = {"declared": "declared (a, b, s)", "evals": "fitted to stored evals"}
    source = st.radio("Per-sample accuracy law", list(sources), format_func=sources.get, horizontal=True,
                      key="planner_ic_law_source")
    law = declared_sample_law() if source == "declared" else fitted_sample_law()
    if law is None:
        return
    with user_errors():
        result = icomp.plan_inference(budget, law, strategy=strategy, tokens_per_sample=tokens)
        best, big = result.best, result.largest_single_sample
        cols = st.columns(4)
        metric(cols[0], "planner_ic_n_params", "Best model size", human(best.n_params))
        metric(cols[1], "planner_ic_samples", "Samples per problem", f"{best.samples:,}")
        metric(cols[2], "planner_ic_accuracy", "Accuracy", fmt.percent(best.accuracy))
        metric(cols[3], "planner_ic_largest", "Largest model affordable",
               f"{human(big.n_params)}: {fmt.percent(big.accuracy)}",
               help=f"{big.samples} sample(s) of the largest candidate the budget runs")
        st.caption(f"{result.flops_rule}; best-of-n: 1 − (1 − p)^k (Brown et al. 2024); majority: the binomial "
                   "formula against one competing answer (saturates at the share of problems with p > ½, "
                   "Wu et al. Theorem 1)."
                   + (f" {len(result.tied_sizes)} sizes tie at this accuracy; the best is {result.tie_rule}."
                      if len(result.tied_sizes) > 1 else ""))
        st.plotly_chart({"data": [_scatter(x=[math.log10(r.n_params) for r in result.table],
                                           y=[r.accuracy for r in result.table], mode="lines+markers",
                                           name="accuracy", customdata=[[human(r.n_params), r.samples]
                                                                        for r in result.table],
                                           hovertemplate="N %{customdata[0]} × %{customdata[1]} samples<br>"
                                                         "accuracy %{y:.3f}<extra></extra>"),
                                  _scatter(x=[math.log10(best.n_params)], y=[best.accuracy], mode="markers",
                                           marker={"size": 14, "color": theme.ACCENT, "symbol": "star"}, name="best")],
                         "layout": {"height": 300, "margin": {"t": 30, "l": 10, "r": 10, "b": 10}, "showlegend": False,
                                    "xaxis": _log_axis("model size N (samples k = budget / 2NT)",
                                                       (math.log10(result.table[0].n_params) - 0.1,
                                                        math.log10(result.table[-1].n_params) + 0.1)),
                                    "yaxis": {"title": "accuracy"},
                                    "title": {"text": f"Accuracy at {fmt.flops(budget)} FLOPs per problem",
                                              "font": {"size": 13}}}},
                        key="planner_ic_chart", width="stretch")


def declared_sample_law():
    """The per-sample accuracy law typed in (a, b, s; the Llemma-anchored default)."""
    default = icomp.SampleAccuracyLaw()
    with st.expander("Per-sample accuracy law p_i(N) = σ(a + b·ln(N/1e9) − δ_i), δ_i ~ Normal(0, s)"):
        a_col, b_col, s_col = st.columns(3)
        a = a_col.number_input("a", value=default.a, step=0.1, key="planner_ic_a")
        b = b_col.number_input("b", value=default.b, step=0.05, key="planner_ic_b")
        spread = s_col.number_input("s (difficulty spread)", value=default.spread, min_value=0.0, step=0.1,
                                    key="planner_ic_spread")
        st.caption("A declared law (core/inference_compute.py): Wu et al. publish curves, not a closed form.")
    return icomp.SampleAccuracyLaw(a, b, spread)


def fitted_sample_law():
    """a, b of the per-sample accuracy law fitted to one stored benchmark (services/inference.py), the
    spread held; None (after one st.error line) when no benchmark fits."""
    benchmarks = cached(sample_law_benchmarks)
    if not benchmarks:
        st.error("No stored eval results with model sizes and an accuracy-like metric to fit the law to; import "
                 "some on the Evals page (lm-evaluation-harness results, or a table with n_params).")
        return None
    if st.session_state.get("planner_ic_benchmark", benchmarks[0]) not in benchmarks:  # evals deleted since
        del st.session_state["planner_ic_benchmark"]
    c1, c2 = st.columns([3, 1])
    benchmark = c1.selectbox("Benchmark (each model's last evaluated checkpoint)", benchmarks,
                             key="planner_ic_benchmark", help="Its score is read as the accuracy of one sample.")
    st.session_state.setdefault("planner_ic_fit_spread", DEFAULT_SPREAD)
    spread = c2.number_input("s (difficulty spread, held)", min_value=0.0, step=0.1, key="planner_ic_fit_spread")
    with user_errors():
        fitted = cached(fit_sample_law_from_evals, benchmark, spread)
        law = fitted.law
        with st.container(key="planner_ic_fit"):
            st.caption(f"p_i(N) = σ(a + b·ln(N/1e9) − δ_i), δ_i ~ Normal(0, s), fitted to {literal(fitted.benchmark)}: "
                       f"a = {fmt.number(law.a)}, b = {fmt.number(law.b)}, s = {fmt.number(law.spread)} (held); "
                       f"{len(fitted.runs)} models, {fitted.n_sizes} sizes from {fmt.count(min(fitted.n_params))} to "
                       f"{fmt.count(max(fitted.n_params))}; RMSE {fmt.number(fitted.rmse, 3)} in accuracy."
                       + (f" {len(fitted.runs_without_params)} model(s) without a parameter count left out."
                          if fitted.runs_without_params else ""))
        return law
    return None


def dcpt_section(fits) -> None:
    """Que et al. 2024: the domain ratio r_d minimising the domain loss with the general loss ≤ a limit."""
    st.subheader("Domain mixture for continual pre-training (D-CPT law, Que et al. 2024)")
    demo = {"demo": "demo law (core/dcpt.py)"}
    c = st.columns(2) + st.columns(4)  # the law pickers on a row of their own (fit names are long); N, D, limit
    domain_key = c[0].selectbox("Domain-loss law", list(demo | _stored_params(fits, ("dcpt_domain",))),
                                format_func=(demo | _stored_params(fits, ("dcpt_domain",))).get,
                                key="planner_dcpt_domain")
    general_key = c[1].selectbox("General-loss law", list(demo | _stored_params(fits, ("dcpt_general",))),
                                 format_func=(demo | _stored_params(fits, ("dcpt_general",))).get,
                                 key="planner_dcpt_general")
    st.session_state.setdefault("planner_dcpt_n", 1.45e5)
    st.session_state.setdefault("planner_dcpt_d", 6e4)
    n = c[2].number_input("Model size N", min_value=1e3, max_value=1e13, format="%.3g", key="planner_dcpt_n")
    d = c[3].number_input("Training tokens D", min_value=1e3, max_value=1e15, format="%.3g", key="planner_dcpt_d")
    with user_errors():
        domain = dcpt.DEMO_DOMAIN if domain_key == "demo" else dcpt.params_from(stored_fit(fits, domain_key)["params"])
        general = dcpt.DEMO_GENERAL if general_key == "demo" else dcpt.params_from(
            stored_fit(fits, general_key)["params"])
        curves = dcpt.ratio_curves(n, d, domain, general)
        finite = curves["general_loss"][np.isfinite(curves["general_loss"])]
        c1, c2 = c[4], c[5]
        limited = c1.checkbox("Limit the general loss", value=True, key="planner_dcpt_limited")
        st.session_state.setdefault("planner_dcpt_limit", round(float(np.median(finite)), 3))
        limit = c2.number_input("General loss at most (nats)", format="%.4f", key="planner_dcpt_limit",
                                disabled=not limited)
        mix = dcpt.optimal_ratio(n, d, domain, general, limit if limited else None)
        cols = st.columns(4)
        metric(cols[0], "planner_dcpt_ratio", "Domain ratio r_d*", fmt.number(mix.domain_ratio, 3))
        metric(cols[1], "planner_dcpt_domain_loss", "Domain loss", fmt.loss(mix.domain_loss))
        metric(cols[2], "planner_dcpt_general_loss", "General loss", fmt.loss(mix.general_loss))
        metric(cols[3], "planner_dcpt_binds", "Limit binds", "yes" if mix.constrained else "no")
        data = [_scatter(x=curves["domain_ratio"], y=curves[k], mode="lines", name=label)
                for k, label in (("domain_loss", "domain loss L_d"), ("general_loss", "general loss L_g"))]
        data.append(_scatter(x=[mix.domain_ratio], y=[mix.domain_loss], mode="markers", name="r_d*",
                             marker={"size": 14, "color": theme.ACCENT, "symbol": "star"}))
        shapes = [] if not limited else [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": limit, "y1": limit,
                                          "line": {"dash": "dot", "color": theme.NEUTRAL}}]
        st.plotly_chart({"data": data, "layout": {"height": 320, "margin": {"t": 30, "l": 10, "r": 10, "b": 10},
                                                  "xaxis": {"title": "domain ratio r_d"}, "shapes": shapes,
                                                  "yaxis": {"title": "held-out loss (nats/token)"},
                                                  "title": {"text": "D-CPT law along the mixture ratio",
                                                            "font": {"size": 13}}}},
                        key="planner_dcpt_chart", width="stretch")
        st.caption(f"L = E + A/N^α + B·r^η/D^β + C/(r+ε)^γ, r = r_d for the domain, 1 − r_d for the general corpus "
                   f"(Que et al. 2024, their preferred parameterization; see core/dcpt.py). Demo law: {dcpt.DEMO_SOURCE}.")


# ------------------------------------------------------------------------------------ page
st.title("Planner")
st.caption("Drag the budget; read off the compute-optimal model size N* and token count D*. "
           "The address bar always holds a link to this plan.")
store = get_store()
fits_ = cached(list_fits)  # by store version (pages.common): a widget change re-reads nothing
planner(fits_, cached(list_probes))
dcpt_section(fits_)
# Outside the fragment: it does not change with the sliders, so a move does not resend it.
with st.expander("Reference models on the plot (sizes and tokens as published)"):
    st.dataframe([{"model": m.name, "parameters": human(m.n_params), "active": human(m.active_params),
                   "tokens": human(m.tokens), "tokens/param": fmt.ratio(m.tokens_per_param),
                   "≈ FLOPs (6·N_active·D)": fmt.flops(m.flops), "source": m.source} for m in reference_models()],
                 hide_index=True, width="stretch")
