"""The law registry: every scaling law ScaleScope knows, declared ONCE.

Each ``Law`` carries its key, label, LaTeX formula, citation, parameter names, inputs, ``predict``,
how it is fitted (Approach 3 for Chinchilla, else a ``FitSpec``: residual, bounds-free θ, starts),
and how the planner uses it: the parameter dataclass of core/laws.py, its validity check, its loss
along (N, D), and its compute-optimal N*, D* — the closed form where one exists (Hoffmann et al.
2022 eq. (4), ``core.laws.compute_optimal_nd``), else the numerical iso-FLOP search of core/search.py.

Fits (core/fitting), the planner (core/planner.py), services/fits.py, pages/fits.py and the CLI read
it; adding a law is one entry here (plus its formula in core/laws.py and its tests).

The schedule-aware LOSS-CURVE laws (loss against step under an LR schedule: Tissue et al. 2024, Luo et
al. 2025) are declared here too, in ``CURVE_LAWS``: a ``core.loss_curve.CurveLaw`` each (formula over
the schedule's features, fit-space parameters, starts, bounds); core/curve_fit.py fits them, the
forecast panel and ``cli.py forecast`` list them from here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from core import dcpt, laws
from core import fine_grained_moe as fgmoe
from core.errors import FitError, InputError, PlanError
from core.fitting import residuals as res
from core.fitting.numeric import numeric_spec
from core.fitting.residuals import FitSpec
from core.loss_curve import (CurveLaw, multi_power_fit_space, multi_power_loss, multi_power_starts, multi_power_to_law,
                             tissue_fit_space, tissue_loss, tissue_starts, tissue_to_law)
from core.search import DEFAULT_SEARCH, SearchConfig, iso_flop_argmin

CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")  # reported parameters, bootstrap_samples columns


# --------------------------------------------------------------------------------------------
# Validity checks of the planner's laws: every message says what was wrong and what to do
# --------------------------------------------------------------------------------------------
def _check_finite(name: str, values: Mapping[str, float]) -> None:
    bad = [
        k
        for k, v in values.items()
        if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v)
    ]
    if bad:
        raise PlanError(
            f"The {name} law has non-finite parameters ({', '.join(bad)}); refit it or pick a preset."
        )


def check_chinchilla(p: laws.ChinchillaParams) -> laws.ChinchillaParams:
    """PlanError unless E ≥ 0 and A, B, α, β > 0 (otherwise loss does not fall with N or D)."""
    if not isinstance(p, laws.ChinchillaParams):
        raise PlanError(
            f"This needs a Chinchilla law (E, A, B, α, β), got {type(p).__name__}; pick a Chinchilla preset or fit."
        )
    _check_finite("Chinchilla", asdict(p))
    if p.alpha <= 0 or p.beta <= 0:
        raise PlanError(
            f"The law has α = {p.alpha:g}, β = {p.beta:g}; both must be > 0 for loss to fall with "
            "model size and data. Refit with positive exponents or pick a preset."
        )
    if p.A <= 0 or p.B <= 0:
        raise PlanError(f"The law has A = {p.A:g}, B = {p.B:g}; both must be > 0. Refit it or pick a preset.")
    if p.E < 0:
        raise PlanError(
            f"The law has irreducible loss E = {p.E:g} < 0, impossible for cross-entropy; refit it."
        )
    return p


def check_kaplan(p: laws.KaplanParams) -> laws.KaplanParams:
    """PlanError unless every scale and exponent of Kaplan's law is positive."""
    if not isinstance(p, laws.KaplanParams):
        raise PlanError(
            f"This needs a Kaplan law, got {type(p).__name__}; pick the Kaplan preset or a Kaplan fit."
        )
    _check_finite("Kaplan", asdict(p))
    bad = [k for k, v in asdict(p).items() if v <= 0]
    if bad:
        raise PlanError(
            f"The Kaplan law has non-positive {', '.join(bad)}; all must be > 0. Refit it or pick a preset."
        )
    return p


def check_routed(p: laws.RoutedParams) -> laws.RoutedParams:
    """PlanError unless the expert transform is defined and the dense law improves with N."""
    if not isinstance(p, laws.RoutedParams):
        raise PlanError(
            f"This needs a routed (MoE) law, got {type(p).__name__}; pick the Clark et al. preset or a routed fit."
        )
    _check_finite("routed", asdict(p))
    if not 0 < p.e_start < p.e_max:
        raise PlanError(
            f"The routed law needs 0 < e_start < e_max, got e_start = {p.e_start:g}, e_max = {p.e_max:g}; refit it."
        )
    e1 = 1.0 / (1.0 / (1.0 / (1.0 / p.e_start - 1.0 / p.e_max)) + 1.0 / p.e_max)  # Ê(1) = e_start
    if p.a + p.c * math.log(e1) >= 0:
        raise PlanError(
            "The routed law's dense slope a + c·log Ê(1) is ≥ 0 (loss does not fall with N); refit it."
        )
    return p


def check_data_constrained(p: laws.DataConstrainedParams) -> laws.DataConstrainedParams:
    """PlanError unless the base Chinchilla law is valid and R*_D, R*_N > 0."""
    check_chinchilla(p.chinchilla)
    if not (p.r_star_d > 0 and p.r_star_n > 0):
        raise PlanError(
            "The data-constrained law needs R*_D, R*_N > 0 (Muennighoff et al.: 15.4, 5.3); refit it."
        )
    return p


def positive_number(value, message: str) -> float:
    """``value`` as a positive, finite float; PlanError(``message``) otherwise."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = float("nan")
    if not math.isfinite(x) or x <= 0:
        raise PlanError(message)
    return x


def check_unique_tokens(unique_tokens) -> float:
    """The unique-token count U_D of a data-constrained plan as a positive float; PlanError otherwise."""
    return positive_number(unique_tokens, f"Unique tokens {unique_tokens!r} must be a positive number; give the "
                                          "dataset size, e.g. 1e12.")


# --------------------------------------------------------------------------------------------
# The declaration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Law:
    """One scaling law, everything every layer needs to know about it."""

    key: str  # stored with each fit, the CLI's --law
    label: str  # the law picker's text (formula in plain text + paper)
    latex: str  # the formula in LaTeX (pages render it)
    citation: str  # paper and equation
    param_names: tuple  # FitResult.params keys, bootstrap_samples columns
    inputs: tuple  # names of the input arrays: n_params, tokens, flops, n_experts, unique_tokens, x
    predict_fn: Callable  # (params dict of floats, inputs dict of arrays) -> predicted y
    methods: tuple = ("huber_log",)  # fitting methods, the default first
    fit: Optional[FitSpec] = None  # the generic Huber-in-log-space fit; None: Approach 3 (Chinchilla)
    params_type: Optional[type] = None  # core.laws dataclass the planner takes; None: not plannable alone
    check: Optional[Callable] = None  # params object -> itself, PlanError when unusable
    loss_nd: Optional[Callable] = None  # (params object, extra) -> loss(N, D); None: no compute-optimal split
    closed_form: Optional[Callable] = None  # (flops, params object) -> (N*, D*) where one exists
    plan_inputs: tuple = ()  # what the optimum needs besides the budget (e.g. "unique_tokens")
    not_plannable: str = ""  # why the planner refuses this law alone
    n_kind: str = "total"  # the parameter count the law's authors used by default (services.fits.N_KINDS)
    data_note: str = ""  # what the Fits page tells the user about the data this law needs

    @property
    def method(self) -> str:
        return self.methods[0]

    @property
    def plannable(self) -> bool:
        return self.loss_nd is not None

    def predict(self, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The law at ``inputs`` (its input names) with ``params`` (its parameter names)."""
        missing = [k for k in self.inputs if k not in inputs]
        if missing:
            raise FitError(f"the {self.key} law needs inputs {', '.join(self.inputs)}; missing {', '.join(missing)}")
        return self.predict_fn({k: float(v) for k, v in params.items()}, inputs)

    def params_object(self, params: Mapping[str, float]):
        """The planner's dataclass for a params dict (``PlanError`` when the law has none or values are bad)."""
        if self.params_type is None:
            raise PlanError(f"The {self.key} law has no compute-optimal plan: {self.not_plannable}")
        try:
            values = {k: float(params[k]) for k in self.param_names}
        except (TypeError, ValueError):
            raise PlanError(f"The fit's parameters are not all numbers: {dict(params)}; refit it.") from None
        return _OBJECT_FROM_PARAMS[self.key](values)

    def optimum(self, flops: float, p, search: SearchConfig = DEFAULT_SEARCH, **extra) -> tuple[float, float, bool]:
        """(N*, D*, closed_form?) at a checked budget: Hoffmann eq. (4) where it exists, else the iso-FLOP search."""
        if not self.plannable:
            raise PlanError(self.not_plannable or f"The {self.key} law has no compute-optimal plan.")
        self.check(p)
        if self.closed_form is not None:
            n, d = self.closed_form(flops, p)
            return float(n), float(d), True
        n, d = iso_flop_argmin(flops, self.loss_nd(p, extra), search)
        return n, d, False


def _chinchilla(p: Mapping) -> laws.ChinchillaParams:
    return laws.ChinchillaParams(**{k: p[k] for k in CHINCHILLA_PARAMS})


def _kaplan(p: Mapping) -> laws.KaplanParams:
    return laws.KaplanParams(**{k: p[k] for k in ("N_c", "alpha_N", "D_c", "alpha_D") if k in p})


def _data_constrained(p: Mapping) -> laws.DataConstrainedParams:
    return laws.DataConstrainedParams(chinchilla=_chinchilla(p), r_star_d=p["r_star_d"], r_star_n=p["r_star_n"])


_OBJECT_FROM_PARAMS = {
    "chinchilla": _chinchilla, "kaplan_nd": _kaplan, "routed": lambda p: laws.RoutedParams(**p),
    "data_constrained": _data_constrained,
    "fine_grained_moe": lambda p: fgmoe.FineGrainedMoEParams(**{k: p[k] for k in fgmoe.FGMOE_PARAMS}),
}


def check_granularity(granularity) -> float:
    """The granularity G of a fine-grained MoE plan as a float ≥ 1; PlanError otherwise."""
    g = positive_number(granularity, f"Granularity {granularity!r} must be a number ≥ 1 (1 = standard MoE), e.g. 8.")
    if g < 1:
        raise PlanError(f"Granularity {g:g} must be ≥ 1 (1 = experts the size of the dense FFN).")
    return g


def _dcpt_law(general: bool) -> "Law":
    which, ratio = ("general", "1 − r") if general else ("domain", "r")
    return Law(
        key=f"dcpt_{which}",
        label=f"D-CPT {which}-corpus loss L = E + A/N^α + B·r^η/D^β + C/(r+ε)^γ at r = {ratio} (Que et al. 2024)",
        latex=(r"L_{" + ("g" if general else "d") + r"}(N, D, r) = E + \frac{A}{N^\alpha} + \frac{B\,r^\eta}{D^\beta}"
               r" + \frac{C}{(r + \epsilon)^\gamma},\; r = " + (r"1 - r_d" if general else r"r_d")),
        citation="Que et al. 2024, 'D-CPT Law: Domain-specific Continual Pre-Training Scaling Law for Large Language "
                 "Models', their preferred parameterization (see core/dcpt.py); r_d the domain share of the training mixture",
        param_names=dcpt.DCPT_PARAMS, inputs=("n_params", "tokens", "mixture_ratio"),
        predict_fn=lambda p, x: dcpt.dcpt_loss(x["n_params"], x["tokens"],
                                               (1.0 - np.asarray(x["mixture_ratio"], np.float64)) if general
                                               else x["mixture_ratio"], dcpt.params_from(p)),
        fit=numeric_spec(dcpt.DCPT_THETA, dcpt.dcpt_log_pred(general), dcpt.dcpt_theta_to_params,
                         dcpt.dcpt_starts(general),
                         min_distinct=(("mixture_ratio", 3, "the D-CPT law needs runs at 3 or more mixture ratios: "
                                                           "run `cli.py probe sweep --mixture ...`"),)),
        not_plannable="the D-CPT law plans a mixture ratio, not a split of compute: use the Planner's D-CPT panel "
                      "or `cli.py plan --dcpt`.",
        n_kind="active",
        data_note=f"Que et al. 2024: fit the {which}-corpus held-out loss (metric '{which}_loss' of a mixture "
                  "sweep) against N, D and each run's domain ratio r_d (config 'mixture_ratio').",
    )


_KAPLAN_NOTE = ("Kaplan et al. 2020 count N WITHOUT embeddings: choose the non-embedding parameter count below "
                "(fill it per run on the Runs page).")


def _kaplan_single(key, column, scale, exponent, what, paper):
    to_params, starts = res.kaplan_single(scale, exponent)
    return Law(
        key=key, label=f"Kaplan L({what}) = ({scale}/{what})^α_{exponent[-1]} (Kaplan et al. 2020)",
        latex=rf"L = ({scale.replace('_', '_{')}}}/{what})^{{\alpha_{exponent[-1]}}}",
        citation=f"Kaplan et al. 2020, 'Scaling Laws for Neural Language Models', {paper}",
        param_names=(scale, exponent), inputs=(column,),
        predict_fn=lambda p, x: (p[scale] / np.asarray(x[column], np.float64)) ** p[exponent],
        fit=FitSpec((("k", exponent)), res.r_linear(column), to_params, starts),
        data_note=_KAPLAN_NOTE,
        not_plannable=f"L({what}) is a function of {what} alone; fit kaplan_nd (or chinchilla) to plan N and D.",
    )


LAW_LIST: tuple = (
    Law(
        key="chinchilla",
        label="Chinchilla: L = E + A/N^α + B/D^β (Hoffmann et al. 2022)",
        latex=r"L(N, D) = E + \frac{A}{N^\alpha} + \frac{B}{D^\beta}",
        citation="Hoffmann et al. 2022, 'Training Compute-Optimal Large Language Models', eq. (2); "
                 "Approach 3 as replicated by Besiroglu et al. 2024",
        param_names=CHINCHILLA_PARAMS, inputs=("n_params", "tokens"),
        predict_fn=lambda p, x: laws.chinchilla_loss(x["n_params"], x["tokens"], _chinchilla(p)),
        methods=("approach3", "approach1", "approach2"),
        params_type=laws.ChinchillaParams, check=check_chinchilla,
        loss_nd=lambda p, extra: (lambda n, d: laws.chinchilla_loss(n, d, p)),
        closed_form=lambda flops, p: laws.chinchilla_optimal(flops, p),
    ),
    _kaplan_single("kaplan_n", "n_params", "N_c", "alpha_N", "N", "eq. (1.1), N non-embedding"),
    _kaplan_single("kaplan_d", "tokens", "D_c", "alpha_D", "D", "eq. (1.2)"),
    _kaplan_single("kaplan_c", "flops", "C_c", "alpha_C", "C", "eq. (1.3), C in FLOPs"),
    Law(
        key="kaplan_nd",
        label="Kaplan L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D (Kaplan et al. 2020)",
        latex=r"L(N, D) = \left[\left(\frac{N_c}{N}\right)^{\alpha_N/\alpha_D} + \frac{D_c}{D}\right]^{\alpha_D}",
        citation="Kaplan et al. 2020, 'Scaling Laws for Neural Language Models', eq. (1.5), N non-embedding",
        param_names=("N_c", "alpha_N", "D_c", "alpha_D"), inputs=("n_params", "tokens"),
        predict_fn=lambda p, x: laws.kaplan_loss_nd(x["n_params"], x["tokens"], _kaplan(p)),
        fit=FitSpec(("log_N_c", "alpha_N", "log_D_c", "alpha_D"), res.r_kaplan_nd, res.kaplan_nd_to_params,
                    res.kaplan_nd_starts, check_grid=True),
        params_type=laws.KaplanParams, check=check_kaplan,
        loss_nd=lambda p, extra: (lambda n, d: laws.kaplan_loss_nd(n, d, p)),
        data_note=_KAPLAN_NOTE,
    ),
    Law(
        key="power_law_offset",
        label="Power law with offset y = E + A·x^(−α) (Hestness et al. 2017)",
        latex=r"y = E + A\,x^{-\alpha}",
        citation="Hestness et al. 2017, 'Deep Learning Scaling is Predictable, Empirically' (y > 0, decreasing in x)",
        param_names=("E", "A", "alpha"), inputs=("x",),
        predict_fn=lambda p, x: laws.power_law_offset(x["x"], p["E"], p["A"], p["alpha"]),
        fit=FitSpec(("e", "a", "alpha"), res.r_power_offset, res.power_offset_to_params, res.power_offset_starts,
                    check_grid=True),
        not_plannable="a power law in one variable has no split of compute between N and D.",
    ),
    Law(
        key="routed",
        label="Routed MoE law log L = a log N + b log Ê + c log N log Ê + d (Clark et al. 2022)",
        latex=r"\log L = a \log N + b \log \hat E + c \log N \log \hat E + d",
        citation="Clark et al. 2022, 'Unified Scaling Laws for Routed Language Models', eq. (1) with the "
                 "saturating expert transform",
        param_names=("a", "b", "c", "d", "e_start", "e_max"), inputs=("n_params", "n_experts"),
        predict_fn=lambda p, x: laws.routed_loss(x["n_params"], x["n_experts"], laws.RoutedParams(**p)),
        fit=FitSpec(("a", "b", "c", "d", "log_e_start", "log_e_extra"), res.r_routed, res.routed_to_params,
                    res.routed_starts,
                    min_distinct=(("n_experts", 3, "the routed law needs at least 3 distinct expert counts: "
                                                   "add runs with other counts"),)),
        params_type=laws.RoutedParams, check=check_routed,
        not_plannable="A routed law alone has no data term; plan MoE models with moe_optimum(dense law, routed law).",
        n_kind="active",
        data_note="Clark et al. 2022 use the dense base model's size: choose the active parameter count below.",
    ),
    Law(
        key="data_constrained",
        label="Data-constrained L = E + A/N'^α + B/D'^β, repeated data decays (Muennighoff et al. 2023)",
        latex=r"L = E + \frac{A}{N'^\alpha} + \frac{B}{D'^\beta},\; "
              r"D' = U_D + U_D R^*_D\left(1 - e^{-R_D/R^*_D}\right),\; "
              r"N' = U_N + U_N R^*_N\left(1 - e^{-R_N/R^*_N}\right)",
        citation="Muennighoff et al. 2023, 'Scaling Data-Constrained Language Models', eqs. (5)-(6)",
        param_names=CHINCHILLA_PARAMS + ("r_star_d", "r_star_n"), inputs=("n_params", "tokens", "unique_tokens"),
        predict_fn=lambda p, x: laws.data_constrained_loss(x["n_params"], x["tokens"], x["unique_tokens"],
                                                           _data_constrained(p)),
        fit=FitSpec(res.DATA_CONSTRAINED_THETA, res.r_data_constrained, res.data_constrained_to_params,
                    res.data_constrained_starts, gauss_newton=True),
        params_type=laws.DataConstrainedParams, check=check_data_constrained,
        loss_nd=lambda p, extra: (lambda n, d: laws.data_constrained_loss(
            n, d, check_unique_tokens(extra.get("unique_tokens")), p)),
        plan_inputs=("unique_tokens",),
        data_note="Muennighoff et al. 2023 need each run's unique tokens U_D (its dataset size; tokens beyond it "
                  "are repeated epochs): the run config's 'unique_tokens'.",
    ),
)
LAW_LIST = LAW_LIST + (
    _dcpt_law(general=False),
    _dcpt_law(general=True),
    Law(
        key="fine_grained_moe",
        label="Fine-grained MoE L = c + (g/G^γ + a)/N^α + b/D^β (Krajewski et al. 2024)",
        latex=r"L(N, D, G) = c + \left(\frac{g}{G^\gamma} + a\right)\frac{1}{N^\alpha} + \frac{b}{D^\beta}",
        citation="Krajewski et al. 2024, 'Scaling Laws for Fine-Grained Mixture of Experts', eq. (4); N all "
                 "non-embedding parameters (every expert), G granularity",
        param_names=fgmoe.FGMOE_PARAMS, inputs=("n_params", "tokens", "granularity"),
        predict_fn=lambda p, x: fgmoe.fine_grained_loss(x["n_params"], x["tokens"], x["granularity"],
                                                        fgmoe.FineGrainedMoEParams(**p)),
        fit=numeric_spec(fgmoe.FGMOE_THETA, fgmoe.fgmoe_log_pred, fgmoe.fgmoe_theta_to_params, fgmoe.fgmoe_starts,
                         min_distinct=(("granularity", 2, "the fine-grained MoE law needs runs at 2 or more "
                                                          "granularities (config 'granularity')"),)),
        params_type=fgmoe.FineGrainedMoEParams, check=fgmoe.check_fine_grained,
        # the planner's generic optimum is in ACTIVE N (C = 6·N·D); the law reads the model's total N
        # (E = 64 as the paper fits, top-k = G): fgmoe.total_params
        loss_nd=lambda p, extra: (lambda n, d: (lambda g: fgmoe.fine_grained_loss(
            fgmoe.total_params(n, fgmoe.MoEShape(64.0, g)), d, g, p))(
                check_granularity(extra.get("granularity", 1.0)))),
        plan_inputs=("granularity",),
        n_kind="total",
        data_note="Krajewski et al. 2024 use ALL non-embedding parameters (every expert; E = 64 in their fits) "
                  "and each run's granularity G (config 'granularity'; 1 = experts the size of the dense FFN). "
                  "The planner's generic optimum is in active N with C = 6·N·D (N = 43 × active at E = 64); "
                  "the fine-grained MoE panel adds the router's FLOPs.",
    ),
)
LAWS: dict = {law.key: law for law in LAW_LIST}
LAW_NAMES: tuple = tuple(LAWS)


def get_law(key: str, error: type = FitError) -> Law:
    """The law called ``key``; ``error`` (a ScaleScopeError) naming the known keys otherwise."""
    if key not in LAWS:
        raise error(f"unknown law {key!r}: choose one of {', '.join(LAW_NAMES)}")
    return LAWS[key]


def predict(key: str, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate fitted law ``key`` (params as in FitResult.params) at ``inputs`` (the law's input names)."""
    return get_law(key).predict(params, inputs)


def law_of(p) -> Law:
    """The law whose planner dataclass ``p`` is (replaces isinstance chains); PlanError when none."""
    for law in LAW_LIST:
        if law.params_type is not None and type(p) is law.params_type:
            return law
    raise PlanError(
        f"The planner does not know laws of type {type(p).__name__}; use a Chinchilla or Kaplan law."
    )


def law_for_params(names: Sequence[str]) -> Optional[Law]:
    """A plannable law whose parameters are all in ``names`` (the one with most parameters), for a
    fit stored without a known law key; None when none fits."""
    have = set(names)
    best = None
    for law in LAW_LIST:
        if law.params_type is not None and set(law.param_names) <= have:
            if best is None or len(law.param_names) > len(best.param_names):
                best = law
    return best


# ------------------------------------------------------------------------------ loss-curve laws
CURVE_LAWS = {
    "lr-annealing": CurveLaw(
        "lr-annealing", "LR annealing (Tissue et al. 2024)",
        r"L(s) = L_0 + A\,S_1^{-\alpha} - C\,S_2",
        "Tissue et al. 2024, Scaling Law with Learning Rate Annealing, eq. 1",
        ("L0", "A", "alpha", "C"), ("L0", "A", "alpha", "phi"), tissue_loss, tissue_starts,
        (0.0, 0.0, 1e-3, 0.0), (np.inf, np.inf, 3.0, 1.0),
        fit_predict=tissue_fit_space, to_law=tissue_to_law),
    "multi-power": CurveLaw(
        "multi-power", "Multi-power (Luo et al. 2025)",
        r"L(t) = L_0 + A\,(S_1+S_W)^{-\alpha} - B\sum_k (\eta_{k-1}-\eta_k)\,G(\eta_k^{-\gamma} S_k(t))",
        "Luo et al. 2025, A Multi-Power Law for Loss Curve Prediction Across LR Schedules, eq. 5",
        ("L0", "A", "alpha", "B", "C", "beta", "gamma"), ("L0", "A", "alpha", "phi", "C", "beta", "gamma"),
        multi_power_loss, multi_power_starts,
        (0.0, 0.0, 1e-3, 0.0, 0.0, 0.1, 0.1), (np.inf, np.inf, 3.0, 1.0, np.inf, 2.0, 1.0), 150,
        fit_predict=multi_power_fit_space, to_law=multi_power_to_law, bootstrap_restarts=1,
        bootstrap=50),
}


def curve_law(key: str) -> CurveLaw:
    if key not in CURVE_LAWS:
        raise InputError(f"unknown loss-curve law {key!r}; choose one of {', '.join(CURVE_LAWS)}.")
    return CURVE_LAWS[key]


__all__ = ["Law", "LAWS", "LAW_LIST", "LAW_NAMES", "FitSpec", "get_law", "predict", "law_of", "law_for_params",
           "check_chinchilla", "check_kaplan", "check_routed", "check_data_constrained", "check_unique_tokens",
           "CHINCHILLA_PARAMS", "positive_number", "check_granularity", "CurveLaw", "CURVE_LAWS", "curve_law"]
