"""The Runs page's forecast section (issue 14 §1): where will this run land; not a page itself.

Pick a run, accept the schedule inferred from its logged LR or declare one, and see the forecast to
the end of training (dashed, with its bootstrap band) beside the final loss the newest stored
Chinchilla fit predicts for the run's N and D ("on track / behind"). The forecast is cached on the
run's row count and last growth, so a live (watched) run is forecast again each time it grows
(pages/watch_panel.follow_live reruns the page then); finished runs show the 20/40/60% back-test.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from typing import Optional

import pandas as pd
import streamlit as st

from core import format as fmt
from core.registry import CURVE_LAWS
from core.schedules import DECAY_SHAPES, KINDS, Schedule
from pages import curves as charts
from pages.common import confidence_level, literal, user_errors
from services import forecast as forecast_service
from services import runs as runs_service
from services.runs import Store
from services.watch import LIVE_S

# The settings that describe one run's schedule: forgotten when another run is picked, so that its
# defaults (logged LR or not, its peak, its length) are that run's.
RUN_SETTINGS = ("forecast_mode", "forecast_kind", "forecast_total", "forecast_peak", "forecast_warmup",
                "forecast_final", "forecast_decay", "forecast_decay_shape")
INFERRED = "inferred from its logged LR"
DECLARED = "declared here"


@st.cache_data(show_spinner="Fitting the loss-curve law…", max_entries=32)
def _forecast(_store: Store, url: str, run: str, metric: str, law: str, schedule: Optional[tuple],
              total_steps: Optional[int], version: tuple, confidence: float) -> forecast_service.RunForecast:
    sched = Schedule(*schedule) if schedule else None
    return forecast_service.forecast_run(_store, run, metric=metric, law=law, schedule=sched,
                                         total_steps=total_steps, seed=0,  # the law's own refits (core.registry)
                                         confidence=confidence)


@st.cache_data(show_spinner="Back-testing on 20/40/60% of the run…", max_entries=32)
def _backtest(_store: Store, url: str, run: str, metric: str, law: str, version: tuple) -> list[dict]:
    return [asdict(r) for r in forecast_service.backtest_run(_store, run, metric=metric, law=law)]


def _declared_schedule(last_step: int, lr_values: Optional[pd.Series], planned: Optional[int]) -> tuple:
    c = st.columns(7)
    kind = c[0].selectbox("Schedule", KINDS, index=KINDS.index("cosine"), key="forecast_kind")
    peak0 = float(lr_values.max()) if lr_values is not None and len(lr_values) else 3e-4
    total = c[1].number_input("Total steps T", min_value=2, value=max(2, planned or int(last_step) * 2), step=100,
                              key="forecast_total")
    peak = c[2].number_input("Peak LR", min_value=1e-9, value=peak0, format="%.3g", key="forecast_peak")
    warmup = c[3].number_input("Warmup steps W", min_value=0, value=0, step=10, key="forecast_warmup")
    final = c[4].number_input("Final LR", min_value=0.0, value=0.0, format="%.3g", key="forecast_final")
    decay = c[5].number_input("Decay steps K (WSD)", min_value=0, value=max(1, int(total) // 5), step=10,
                              key="forecast_decay",  # default: the last 20% of training decays
                              disabled=kind != "wsd")
    shape = c[6].selectbox("Decay shape (WSD)", DECAY_SHAPES, key="forecast_decay_shape", disabled=kind != "wsd")
    return (kind, int(total), float(peak), int(warmup), float(final), int(decay) if kind == "wsd" else 0, shape)


def forecast_panel(store: Store, runs: pd.DataFrame, chosen: list) -> None:
    """The "Forecast" section of the Runs page."""
    st.subheader("Forecast: where will this run land")
    names = runs["name"].tolist()
    default = chosen[0] if chosen else names[0]
    if st.session_state.get("forecast_run") not in names:
        st.session_state["forecast_run"] = default
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    run = c1.selectbox("Run to forecast", names, key="forecast_run")
    if st.session_state.get("forecast_for") != run:  # another run: its own defaults, not the last run's
        for key in RUN_SETTINGS:
            st.session_state.pop(key, None)
        st.session_state["forecast_for"] = run
    metric_names = runs_service.metric_names(store, [run])
    losses = [m for m in charts.plottable(metric_names) if "loss" in str(m).lower()] or charts.plottable(metric_names)
    if not losses:
        st.info("This run has no metric to forecast.")
        return
    default_metric = forecast_service.default_loss_metric(losses) or losses[0]
    if st.session_state.get("forecast_metric") not in losses:
        st.session_state["forecast_metric"] = default_metric
    metric = c2.selectbox("Metric", losses, key="forecast_metric")
    law = c3.selectbox("Curve law", list(CURVE_LAWS), key="forecast_law",
                       format_func=lambda k: CURVE_LAWS[k].label)
    lr_metric = forecast_service.find_lr_metric(metric_names)
    modes = [INFERRED, DECLARED] if lr_metric else [DECLARED]
    if st.session_state.get("forecast_mode") not in modes:
        st.session_state["forecast_mode"] = modes[0]
    mode = c4.radio("Schedule", modes, key="forecast_mode",
                    help="The LR of each future step: inferred from the logged LR (constant, linear, cosine or "
                         "WSD, whichever fits it best), or declared; a declared schedule the logged LR "
                         "contradicts is refused.")
    curve = runs_service.metrics(store, [run], metric)
    curve = curve[curve["step"].notna()].sort_values("step")
    if curve.empty:
        st.info(f"{literal(run)} has no {literal(metric)} points with a step: nothing to forecast.")
        return
    lr_values = runs_service.metrics(store, [run], lr_metric)["value"] if lr_metric else None
    row = runs.set_index("name").loc[run]
    last_step = int(max(curve["step"].max(), 1))
    planned = forecast_service.planned_steps(row.get("config"))  # where training ends, if its config says
    planned = planned if planned and planned >= last_step else None
    schedule = _declared_schedule(last_step, lr_values, planned) if mode == DECLARED else None
    horizon = None
    if mode == INFERRED:  # the run's config, else its last logged step
        horizon = int(st.columns([1, 3])[0].number_input(
            "Planned total steps T", min_value=last_step, value=max(planned or last_step, last_step), step=100,
            key=f"forecast_horizon:{run}",
            help="The step training ends at: the forecast runs to it, the inferred schedule carried on past the "
                 "logged LR. Taken from the run's config (max_steps, total_steps, …) where it has one."))
    last_grew = row.get("last_grew")
    live = last_grew is not None and pd.notna(last_grew) and time.time() - float(last_grew) <= LIVE_S
    version = (int(row.get("n_metric_rows", 0)), None if last_grew is None or pd.isna(last_grew) else float(last_grew))
    if not st.toggle("Forecast this run", key="forecast_on",
                     help="Fits the schedule-aware curve law (Tissue et al. 2024 or Luo et al. 2025) to the "
                          "logged curve, with a bootstrap band; about a second per run (the multi-power law: several)."):
        return
    with user_errors():
        # the band at the app's one interval level (the sidebar's setting, pages.common)
        result = _forecast(store, store.url, run, metric, law, schedule, horizon, version, confidence_level())
        fc = result.forecast
        lo, hi = fc.interval
        predicted = forecast_service.law_prediction(store, run, fc.final_step, metric)
        verdict = (forecast_service.on_track(fc.final_loss, fc.interval, predicted["prediction"])
                   if predicted else None)
        cols = st.columns(3)
        cols[0].metric(f"Forecast {metric} at step {fmt.integer(fc.final_step)}", fmt.loss(fc.final_loss),
                       help=f"{fmt.level(fc.confidence)} interval {fmt.interval(lo, hi, 'loss')} ({CURVE_LAWS[law].label})")
        if predicted:
            cols[1].metric("Stored fit predicts", fmt.loss(predicted['prediction']),
                           help=f"{predicted['fit']} (target {predicted['target']}) at N = {fmt.count(predicted['n_params'])}, "
                                f"D = {fmt.count(predicted['tokens'])} tokens")
            gap = verdict["gap"]
            cols[2].metric("Verdict", verdict["verdict"], delta=f"{fmt.signed(gap, 'loss')} vs the fit",
                           delta_color="inverse")
        else:
            cols[1].metric("Stored fit predicts", "no fit",
                           help="No stored Chinchilla fit of this run's dataset (a fit of its runs or of runs that "
                                "share its tag), or this run has no parameter count or tokens; fit one on the Fits "
                                "page. A law fitted on another dataset predicts another corpus's loss.")
        for warning in fc.warnings:  # a parameter the observed part of the run did not pin down
            st.warning(f"{warning[0].upper()}{warning[1:]}.")
        st.caption(f"{fmt.level(fc.confidence)} interval of the final {literal(metric)}: {fmt.interval(lo, hi, 'loss')}. "
                   f"Schedule {result.schedule.kind} (peak LR {fmt.number(result.schedule.peak_lr, 3)}, warmup "
                   f"{fmt.integer(result.schedule.warmup_steps)}, T = {fmt.integer(result.schedule.total_steps)}), "
                   f"{literal(result.schedule_source)}."
                   + (" :green[● live]: the forecast is redone each time the run grows." if live else ""))
        fig = charts.forecast_figure(curve, fc.steps, fc.loss, fc.lo, fc.hi, metric=metric,
                                     law_prediction=predicted["prediction"] if predicted else None,
                                     final_step=fc.final_step)
        st.plotly_chart(charts.as_figure(fig), width="stretch", key="forecast_chart", config={"displaylogo": False})
    if not live and lr_metric:
        with st.expander("Back-test: fitted on the first 20/40/60% of this run", expanded=False):
            with user_errors():
                rows = _backtest(store, store.url, run, metric, law, version)
                table = pd.DataFrame(rows)
                st.dataframe(pd.DataFrame({
                    "fitted on": [fmt.percent(f, 0) for f in table["fraction"]],
                    "up to step": [fmt.integer(s) for s in table["observed_until"]],
                    "predicted final": [fmt.loss(v) for v in table["predicted"]],
                    "actual final": [fmt.loss(v) for v in table["actual"]],
                    "error": [fmt.percent(e / 100.0, 2) for e in table["error_pct"]],
                    "at a bound": [", ".join(b) or "—" for b in table["at_bounds"]]}),
                    hide_index=True, key="forecast_backtest")
                st.caption("Final = the mean over the last 10% of steps. Short or noisy runs make the 20% fit a "
                           "guess; the 60% column is the meaningful one. \"At a bound\" names the parameters the "
                           "fit could not pin down (L0 at 0, or the decay removing all of the reducible loss): "
                           "such a forecast is often far too low.")
