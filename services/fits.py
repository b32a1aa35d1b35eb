"""From stored runs to the arrays a fit needs, and back: the glue between the store and core/fitting.

- ``select_runs``: which runs (explicit names, a name/tag filter, tags), in the store's order.
- ``load_fit_data``: one point per run (final value, value at a step, an eval metric) or several
  (points along each curve), with the model size the user chose (total, non-embedding, active).
- ``load_csv_data``: a run-summary table (importers "summary" format) read straight into a fit,
  nothing added to the store; its points are kept in the selection so the fit can be re-run.
- ``run_fit``: one entry point for every law and method (the page, the CLI and ``refit`` call it).
- ``refit``: re-run a stored fit from its recorded selection and settings; same seed, same numbers.

The selection is recorded as JSON with each fit (``FitData.selection``): the resolved run names in
order, the filter that produced them, the target, the size column and the weighting. That, with
the settings core/fitting records (grid, seed, bootstrap count, drops), reproduces the fit exactly.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from core import isoflop
from core.errors import InputError, ScaleScopeError
from core.fitting.backtest import backtest, backtest_law
from core.fitting.chinchilla import Approach3Settings, fit_chinchilla
from core.fitting.diagnostics import diagnostics_from_dict
from core.fitting.generic import fit_law
from core.fitting.inputs import weights_by_run
from core.fitting.result import BudgetOptimum, FitResult
from core.registry import LAWS, get_law
from core.progress import ProgressFn
from db.fits import delete_fit, get_fit, list_fits, load_result, save_result
from db.store import Store
from services.demo_names import CHINCHILLA_TAG, EXAMPLE_FIT_NAME
from services.runs import run_tags

TARGET_KINDS = {
    "final": "final value of a metric (one point per run)",
    "at_step": "value of a metric at one step (one point per run that logged it)",
    "curve": "points along each curve (several per run; weight by run to balance long curves)",
    "eval": "an eval metric (latest evaluated checkpoint per run)",
}
# Which runs column stands for N. Kaplan et al. 2020 fit the NON-embedding count.
N_KINDS = {"total": "n_params", "nonembedding": "n_nonembedding_params", "active": "n_active_params"}
X_CHOICES = ("n_params", "tokens", "flops")  # the single variable of power_law_offset
# Law inputs read from each run's config (core.registry input names): the D-CPT law's domain share of the
# training mixture (Que et al. 2024) and the fine-grained MoE law's granularity (Krajewski et al. 2024).
CONFIG_COLUMNS = {"mixture_ratio": "domain mixture ratio r_d", "granularity": "MoE granularity G"}
METHODS = {key: law.methods for key, law in LAWS.items()}  # the default method first (core/registry.py)
# Named start grids for Approach 3. "full" is the published 4,500-point grid (Besiroglu et al. 2024);
# "coarse" keeps each axis' ends and middle (3⁵ = 243 starts); "quick" is 32 starts around typical
# LLM values, for a first look and for tests. The best objective over the grid wins either way.
START_GRIDS = {
    "full": {},
    "coarse": dict(a_grid=(0.0, 10.0, 20.0), b_grid=(0.0, 10.0, 20.0), e_grid=(-1.0, 0.0, 1.0),
                   alpha_grid=(0.0, 1.0, 2.0), beta_grid=(0.0, 1.0, 2.0)),
    "quick": dict(a_grid=(5.0, 10.0), b_grid=(5.0, 10.0), e_grid=(0.0, 1.0),
                  alpha_grid=(0.3, 0.6), beta_grid=(0.3, 0.6)),
}


# ============================================================================================
# What is fitted
# ============================================================================================
@dataclass(frozen=True)
class Target:
    """The quantity y a law is fitted to."""

    kind: str = "final"  # key of TARGET_KINDS
    metric: str = "loss"  # a logged metric (final / at_step / curve) or the eval's metric
    step: Optional[float] = None  # at_step only
    task: Optional[str] = None  # eval only: the benchmark
    points_per_run: int = 20  # curve only: points kept per run, log-spaced in tokens (DuckDB-downsampled)

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise InputError(f"unknown target {self.kind!r}: choose one of {', '.join(TARGET_KINDS)}")
        if self.kind == "at_step" and (self.step is None or not np.isfinite(self.step) or self.step < 0):
            raise InputError("a target at a step needs a step ≥ 0: give --step or pick the final value")
        if self.kind == "eval" and not self.task:
            raise InputError("an eval target needs a task (benchmark): pick one of the imported evals")
        if self.kind == "curve" and int(self.points_per_run) < 2:
            raise InputError("points per run must be at least 2 for a curve target")

    def label(self) -> str:
        """The ``target`` column of a stored fit."""
        if self.kind == "final":
            return self.metric
        if self.kind == "at_step":
            return f"{self.metric}@step={self.step:g}"
        if self.kind == "curve":
            return f"{self.metric} (curves)"
        return f"eval:{self.task}/{self.metric}"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Target":
        return cls(**{k: d[k] for k in ("kind", "metric", "step", "task", "points_per_run") if k in d})


@dataclass
class FitData:
    """The points of one fit: one row per point, every size column the laws may ask for."""

    run: np.ndarray  # (n,) run name per point (weights by run use it)
    n_params: np.ndarray  # (n,) N in the chosen kind (total / non-embedding / active); NaN where unknown
    tokens: np.ndarray  # (n,) trained tokens D at the point
    flops: np.ndarray  # (n,) training FLOPs C at the point
    n_experts: np.ndarray  # (n,) experts per MoE layer (1 for dense)
    y: np.ndarray  # (n,) the target
    target: Target
    n_kind: str  # key of N_KINDS
    selection: dict  # JSON: what reproduces these points (see module docstring)
    budget: Optional[np.ndarray] = None  # (n,) the IsoFLOP budget a run was planned at, when it says
    unique_tokens: Optional[np.ndarray] = None  # (n,) distinct tokens U_D of a run's data (config 'unique_tokens')
    # (n,) per-run config numbers of the D-CPT and fine-grained MoE laws (CONFIG_COLUMNS): domain ratio r_d, G
    mixture_ratio: Optional[np.ndarray] = None
    granularity: Optional[np.ndarray] = None
    curves: Optional[pd.DataFrame] = field(default=None, repr=False)  # full curves (Approach 1), loaded on demand

    def __len__(self) -> int:
        return int(self.y.size)

    def column(self, name: str) -> np.ndarray:
        if name == "unique_tokens":
            return self.unique_tokens if self.unique_tokens is not None else np.full(len(self), np.nan)
        if name in CONFIG_COLUMNS:
            values = getattr(self, name)
            return values if values is not None else np.full(len(self), np.nan)
        return {"n_params": self.n_params, "tokens": self.tokens, "flops": self.flops,
                "n_experts": self.n_experts}[name]

    def inputs(self, law: str, x: str = "flops") -> dict:
        """The law's input arrays (core.registry input names), refusing points where one is unknown.
        A law's free variable "x" (power_law_offset) is the column ``x``."""
        entry = get_law(law, InputError)
        if "x" in entry.inputs and x not in X_CHOICES:
            raise InputError(f"unknown x {x!r} for the power law: choose one of {', '.join(X_CHOICES)}")
        names = {k: (x if k == "x" else k) for k in entry.inputs}
        out = {}
        for key, col in names.items():
            values = self.column(col)
            missing = ~np.isfinite(values)
            if missing.any():
                who = sorted(set(self.run[missing].tolist()))
                what = {"n_params": f"{self.n_kind} parameter count",
                        "unique_tokens": "unique-token count (config 'unique_tokens')",
                        **{c: f"{label} (config '{c}')" for c, label in CONFIG_COLUMNS.items()}}.get(col, col)
                raise InputError(f"{len(who)} selected run(s) have no {what}: {', '.join(who[:5])}"
                                 f"{' …' if len(who) > 5 else ''}; fill the sizes on the Runs page or deselect them")
            out[key] = values
        return out


# ============================================================================================
# Selecting runs
# ============================================================================================
def all_tags(store: Store) -> list:
    """Every tag on a stored run, sorted."""
    return sorted({t for tags in store.runs()["tags"] for t in run_tags(tags)})


ALL_RUNS = "(all runs)"  # the dataset choice that selects across every tag


def datasets(store: Store) -> list:
    """The tags to select a fit's runs by, the default first: the bundled Chinchilla example when it
    is stored, then the tags of the most recently imported runs first."""
    runs = store.runs()
    order = runs.sort_values("id", ascending=False) if "id" in runs.columns else runs.iloc[::-1]
    tags = list(dict.fromkeys(t for tags in order["tags"] for t in run_tags(tags)))
    return sorted(tags, key=lambda t: t != CHINCHILLA_TAG)  # stable: recency order otherwise


def default_fit_id(fits: pd.DataFrame) -> Optional[int]:
    """The stored fit the Fits page opens on: the bundled Chinchilla example fit when stored."""
    if fits is None or fits.empty or "name" not in fits.columns:
        return None
    mine = fits[fits["name"] == EXAMPLE_FIT_NAME]
    return int(mine["id"].iloc[0]) if len(mine) else None


def warning_summary(result: FitResult, data: Optional["FitData"] = None) -> str:
    """The fit's diagnostics in ONE sentence: the single warning itself, or (several) what the data
    cannot pin down and why, with the one remedy every fit has: runs over a wider range."""
    warns = list(result.warnings)
    if len(warns) == 1:
        text = warns[0]
        return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
    where = f"{result.n_points} points"
    if data is not None and len(data):
        kept = kept_points(data, result)
        sizes = len(np.unique(kept.n_params[np.isfinite(kept.n_params)]))
        flops = kept.flops[np.isfinite(kept.flops) & (kept.flops > 0)]
        span = float(np.log10(flops.max() / flops.min())) if flops.size else 0.0
        decades = f"{span:.1f}"
        where += (f" from {sizes} model size{'s' if sizes != 1 else ''} over {decades} "
                  f"decade{'' if decades == '1.0' else 's'} of compute")
    return (f"These {where} identify the law only weakly, so its parameters and intervals are loose "
            f"({len(warns)} diagnostics below): runs over a wider range of sizes and tokens would pin it down.")


def select_runs(store: Store, names: Optional[Sequence[str]] = None, name_contains: Optional[str] = None,
                tags: Sequence[str] = ()) -> list:
    """Run names in the store's order: the named ones, else all, narrowed by a filter and tags.

    ``name_contains`` matches the run name or a tag, case-insensitively (the Runs page's filter);
    ``tags`` keeps runs carrying any of them. Raises InputError for an unknown name or no match.
    """
    runs = store.runs()
    if names:
        store.run_ids(names)  # every name must exist
        runs = runs[runs["name"].isin(list(names))]
    tag_lists = runs["tags"].map(run_tags)
    keep = pd.Series(True, index=runs.index)
    if name_contains:
        needle = name_contains.lower()
        keep &= runs["name"].str.lower().str.contains(needle, regex=False) | tag_lists.map(
            lambda ts: any(needle in t.lower() for t in ts))
    if tags:
        wanted = set(tags)
        keep &= tag_lists.map(lambda ts: bool(wanted & set(ts)))
    chosen = runs.loc[keep, "name"].tolist()
    if not chosen:
        what = " and ".join(p for p in (f"filter {name_contains!r}" if name_contains else "",
                                         f"tags {', '.join(tags)}" if tags else "") if p) or "the selection"
        raise InputError(f"no run matches {what}: widen the filter, or import runs on the Runs page")
    return chosen


def runs_with_sizes(store: Store, names: Sequence[str], n_kind: str = "total") -> list:
    """The named runs that carry a positive N (of ``n_kind``) and token count: a sensible default selection."""
    runs = store.runs()
    runs = runs[runs["name"].isin(list(names))]
    sizes = _sizes(runs, n_kind)
    ok = (sizes["n"] > 0) & ((sizes["run_tokens"] > 0) | (sizes["run_flops"] > 0))
    sized = set(sizes.index[ok])  # once: a set per name made this quadratic (~0.3 s for 250 runs)
    return [n for n in names if n in sized]


# ============================================================================================
# Loading the points
# ============================================================================================
def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)


def _sizes(runs: pd.DataFrame, n_kind: str) -> pd.DataFrame:
    """Per run: N of the chosen kind, experts (1 for dense), planned budget (config 'budget_flops') and
    unique tokens of its data (config 'unique_tokens', Muennighoff et al. 2023's U_D)."""
    if n_kind not in N_KINDS:
        raise InputError(f"unknown parameter count {n_kind!r}: choose one of {', '.join(N_KINDS)}")
    out = pd.DataFrame({"run": runs["name"].to_numpy()})
    n = _num(runs, N_KINDS[n_kind])
    if n_kind == "active":  # a dense run's active count is its total
        n = np.where(np.isfinite(n), n, _num(runs, "n_params"))
    out["n"] = n
    experts = _num(runs, "n_experts")
    out["n_experts"] = np.where(np.isfinite(experts) & (experts >= 1), experts, 1.0)
    out["run_tokens"] = _num(runs, "tokens")
    out["run_flops"] = _num(runs, "flops")
    out["n_active"] = np.where(np.isfinite(_num(runs, "n_active_params")), _num(runs, "n_active_params"),
                               _num(runs, "n_params"))
    out["budget"] = [_config_number(c, "budget_flops") for c in runs["config"]]
    out["unique_tokens"] = [_config_number(c, "unique_tokens") for c in runs["config"]]
    for column in CONFIG_COLUMNS:
        out[column] = [_config_number(c, column) for c in runs["config"]]
    return out.set_index("run")


def _config_number(config_json, key: str) -> float:
    try:
        value = (json.loads(config_json or "{}") or {}).get(key)
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def load_fit_data(store: Store, runs: Sequence[str], target: Target = Target(), n_kind: str = "total",
                  weight_by_run: bool = False, selection_extra: Optional[Mapping] = None) -> FitData:
    """The points of ``runs`` for ``target`` (see TARGET_KINDS), ordered as ``runs``.

    Runs without the target (the metric never logged, no value at that step, no eval) are refused
    with their names: a fit uses exactly the runs it was given, so that re-running it matches.
    """
    runs = list(dict.fromkeys(runs))
    if not runs:
        raise InputError("no runs selected: pick runs by name, filter or tag")
    table = store.runs()
    table = table[table["name"].isin(runs)]
    store.run_ids(runs)  # unknown names → InputError
    sizes = _sizes(table, n_kind)

    if target.kind in ("final", "at_step"):
        frame = store.final_values(target.metric, runs, at_step=target.step if target.kind == "at_step" else None)
        points = pd.DataFrame({"run": frame["run"], "tokens": _num(frame, "tokens"), "flops": _num(frame, "flops"),
                               "y": _num(frame, "value")})
    elif target.kind == "curve":
        frame = store.curves(runs, target.metric, x="tokens", max_points=int(target.points_per_run), log_x=True)
        points = pd.DataFrame({"run": frame["run"].to_numpy(), "tokens": _num(frame, "x"), "y": _num(frame, "value")})
        s = sizes.loc[points["run"]]
        # FLOPs at a point: the run's own C scaled by tokens, else C = 6·N_active·D (Kaplan et al. 2020).
        scaled = s["run_flops"].to_numpy() * points["tokens"].to_numpy() / s["run_tokens"].to_numpy()
        points["flops"] = np.where(np.isfinite(scaled), scaled, 6.0 * s["n_active"].to_numpy() * points["tokens"])
    else:
        from services.evals import load_evals  # the evals module pulls in the downstream fitting code

        evals = load_evals(store)
        part = evals[(evals["task"] == target.task) & (evals["metric"] == target.metric) & evals["run"].isin(runs)]
        if part.empty:
            raise InputError(f"no eval results for {target.task}/{target.metric} on the selected runs: "
                             "import evals on the Evals page or pick another target")
        order = part["step"].fillna(np.inf)
        part = part[order == order.groupby(part["run"]).transform("max")].drop_duplicates("run", keep="last")
        points = pd.DataFrame({"run": part["run"].to_numpy(), "tokens": _num(part, "tokens"),
                               "flops": _num(part, "flops"), "y": _num(part, "value")})

    have = set(points["run"])
    lacking = [r for r in runs if r not in have]
    if lacking:
        what = {"final": f"a logged {target.metric!r}", "at_step": f"{target.metric!r} at step {target.step:g}",
                "curve": f"{target.metric!r} points with known tokens", "eval": f"an eval of {target.task}/{target.metric}"}
        raise InputError(f"{len(lacking)} selected run(s) have no {what[target.kind]}: {', '.join(lacking[:5])}"
                         f"{' …' if len(lacking) > 5 else ''}; deselect them or pick another target")
    rank = {r: i for i, r in enumerate(runs)}
    points = points.assign(_rank=points["run"].map(rank)).sort_values(["_rank", "tokens"], kind="stable")
    s = sizes.loc[points["run"]]
    selection = {"source": "store", "runs": runs, "target": target.to_dict(), "n_kind": n_kind,
                 "weight_by_run": bool(weight_by_run), **dict(selection_extra or {})}
    return FitData(run=points["run"].to_numpy(dtype=object), n_params=s["n"].to_numpy(np.float64),
                   tokens=points["tokens"].to_numpy(np.float64), flops=points["flops"].to_numpy(np.float64),
                   n_experts=s["n_experts"].to_numpy(np.float64), y=points["y"].to_numpy(np.float64),
                   target=target, n_kind=n_kind, selection=selection, budget=s["budget"].to_numpy(np.float64),
                   unique_tokens=s["unique_tokens"].to_numpy(np.float64),
                   **{c: s[c].to_numpy(np.float64) for c in CONFIG_COLUMNS})


def load_curves(store: Store, data: FitData, max_points: int = 200) -> pd.DataFrame:
    """Each selected stored run's curve of the target metric (Approach 1): run, n_params, tokens, flops, loss.

    Downsampled in DuckDB to ``max_points`` per run, log-spaced in tokens (the envelope needs shape,
    not every step); each run's final point is kept.
    """
    runs = data.selection["runs"]
    frame = store.curves(runs, data.target.metric, x="tokens", max_points=max_points, log_x=True)
    if frame.empty:
        raise InputError(f"the selected runs have no {data.target.metric!r} points with known tokens: "
                         "fill tokens per step on the Runs page")
    n_of = dict(zip(data.run, data.n_params))
    table = store.runs().set_index("name")
    out = pd.DataFrame({"run": frame["run"].to_numpy(), "tokens": _num(frame, "x"), "loss": _num(frame, "value")})
    out["n_params"] = out["run"].map(n_of).astype(np.float64)
    n_active = pd.to_numeric(table["n_active_params"], errors="coerce").fillna(
        pd.to_numeric(table["n_params"], errors="coerce"))
    out["flops"] = 6.0 * out["run"].map(n_active).astype(np.float64) * out["tokens"]
    return out


# --------------------------------------------------------------------------------------------
# A run-summary table, fitted without storing its runs
# --------------------------------------------------------------------------------------------
def load_csv_data(path: str, metric: str = "loss", n_kind: str = "total") -> FitData:
    """Points of a run-summary table (N, D / C, loss; see importers.summary), nothing stored.

    The selection records the file's name and SHA-256 and the points themselves, so the fit can be
    re-run without the file.
    """
    from importers import parse_file, summary

    rows = summary.read_file(path)  # the table read once into columns (no pandas frame per row)
    if rows is None:  # a folder or a zip of tables: run by run
        rows = _rows_of_runs(parse_file(path, fmt="summary"))
    with open(path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    values = rows.metric(metric)
    missing = np.isnan(values) if values is not None else np.ones(rows.n_rows, dtype=bool)
    if missing.any():
        name = rows.names[int(np.argmax(missing))]
        raise InputError(f"{os.path.basename(path)}: row {name!r} has no {metric!r} value; fill it or drop the row")
    sizes = rows.sizes
    n_of = {"total": sizes["n_params"], "nonembedding": sizes["n_nonembedding_params"],
            "active": [a if a is not None else n for a, n in zip(sizes["n_active_params"], sizes["n_params"])]}[n_kind]

    def floats(column) -> list:
        return [np.nan if v is None else float(v) for v in column]

    points = {"n_params": floats(n_of), "tokens": floats(sizes["tokens"]), "flops": floats(sizes["flops"]),
              "n_experts": [float(e or 1) for e in sizes["n_experts"]], "y": [float(v) for v in values]}
    selection = {"source": "csv", "file": os.path.basename(path), "sha256": digest, "n_rows": rows.n_rows,
                 "target": Target(metric=metric).to_dict(), "n_kind": n_kind, "weight_by_run": False,
                 "runs": list(rows.names), "points": points}
    return _data_from_points(selection)


def _rows_of_runs(runs) -> "SimpleNamespace":
    """The parts of importers.summary.SummaryRows load_csv_data reads, from parsed runs (a zip or folder)."""
    from types import SimpleNamespace

    from core.runs import SIZE_FIELDS

    def value(r, name):
        m = r.metrics.loc[r.metrics["name"] == name, "value"]
        return float(m.iloc[-1]) if len(m) else np.nan

    return SimpleNamespace(names=[r.name for r in runs], n_rows=len(runs),
                           sizes={k: [getattr(r, k) for r in runs] for k in SIZE_FIELDS},
                           metric=lambda name: np.array([value(r, name) for r in runs], dtype=np.float64))


def _data_from_points(selection: Mapping) -> FitData:
    p = selection["points"]
    arr = {k: np.array([np.nan if v is None else v for v in p[k]], dtype=np.float64) for k in p}
    flops = arr["flops"]
    flops = np.where(np.isfinite(flops), flops, 6.0 * arr["n_params"] * arr["tokens"])
    return FitData(run=np.array(selection["runs"], dtype=object), n_params=arr["n_params"], tokens=arr["tokens"],
                   flops=flops, n_experts=arr.get("n_experts", np.ones_like(arr["y"])), y=arr["y"],
                   target=Target.from_dict(selection.get("target", {})), n_kind=selection.get("n_kind", "total"),
                   selection=dict(selection), unique_tokens=arr.get("unique_tokens"),
                   **{c: arr.get(c) for c in CONFIG_COLUMNS})


# ============================================================================================
# Fitting
# ============================================================================================
@dataclass
class FitOptions:
    """What the user chose besides the data; recorded with the fit through FitResult.settings."""

    law: str = "chinchilla"
    method: str = "approach3"
    drop_highest: int = 0  # drop the k highest-y points first
    n_bootstrap: int = 1000  # resamples for intervals (0: none)
    seed: int = 0  # seeds the resampling
    fix_alpha_eq_beta: bool = False  # Chinchilla: tie α = β (few sizes)
    grid: str = "full"  # key of START_GRIDS (Approach 3)
    budgets: tuple = Approach3Settings.budgets  # FLOPs for N*, D*, tokens/param
    x: str = "flops"  # power_law_offset's variable
    delta: float = 1e-3  # Huber δ

    def settings(self) -> Approach3Settings:
        if self.grid not in START_GRIDS:
            raise InputError(f"unknown start grid {self.grid!r}: choose one of {', '.join(START_GRIDS)}")
        return Approach3Settings(delta=self.delta, n_bootstrap=int(self.n_bootstrap), seed=int(self.seed),
                                 drop_highest=int(self.drop_highest),
                                 fix_alpha_eq_beta=bool(self.fix_alpha_eq_beta),
                                 budgets=tuple(float(b) for b in self.budgets), **START_GRIDS[self.grid])


def parse_budgets(text: str) -> tuple:
    """FLOP budgets typed as "1e21, 5.76e23" (commas, semicolons or spaces) → (1e21, 5.76e23)."""
    parts = [p for p in text.replace(";", " ").replace(",", " ").split() if p]
    try:
        budgets = tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(f"budgets must be numbers separated by commas, e.g. 1e21, 5.76e23; got {text!r}") from None
    if not budgets or not all(np.isfinite(b) and b > 0 for b in budgets):
        raise InputError("give at least one positive FLOP budget, e.g. 5.76e23")
    return budgets


def check_method(law: str, method: str) -> None:
    if law not in METHODS:
        raise InputError(f"unknown law {law!r}: choose one of {', '.join(METHODS)}")
    if method not in METHODS[law]:
        raise InputError(f"the {law} law is fitted by {', '.join(METHODS[law])}, not {method!r}")


def weights_for(data: FitData) -> Optional[np.ndarray]:
    """Equal total weight per run (core.fitting.inputs.weights_by_run) when the selection asks for it."""
    return weights_by_run(data.run) if data.selection.get("weight_by_run") else None


def run_fit(data: FitData, options: FitOptions, *, progress: Optional[ProgressFn] = None,
            store: Optional[Store] = None, settings: Optional[Mapping] = None) -> FitResult:
    """Fit ``options.law`` by ``options.method`` to ``data``; raises FitError / InputError on bad input.

    ``settings`` (a stored fit's) replaces the ones built from ``options`` (``refit`` uses it).
    ``store`` is needed by Approach 1 (it reads the curves).
    """
    law, method = options.law, options.method
    check_method(law, method)
    weights = weights_for(data)
    if method == "approach3":
        s = Approach3Settings.from_dict(settings) if settings else options.settings()
        inputs = data.inputs(law)
        return fit_chinchilla(inputs["n_params"], inputs["tokens"], data.y, s, weights=weights,
                              progress=progress)
    if method in ISOFLOP_DEFAULTS:  # Approaches 1 and 2
        return _run_isoflop(data, options, method, progress=progress, store=store, settings=settings)
    inputs = data.inputs(law, options.x)
    if settings:
        starts = settings.get("starts")
        return fit_law(law, inputs, data.y, weights=weights, drop_highest=int(settings.get("drop_highest", 0)),
                       n_bootstrap=int(settings.get("n_bootstrap", 0)), seed=int(settings.get("seed", 0)),
                       delta=float(settings.get("delta", 1e-3)),
                       starts=None if starts is None else np.asarray(starts, np.float64), progress=progress)
    return fit_law(law, inputs, data.y, weights=weights, drop_highest=options.drop_highest,
                   n_bootstrap=options.n_bootstrap, seed=options.seed, delta=options.delta, progress=progress)


ISOFLOP_DEFAULTS = {
    "approach1": {"n_levels": 30, "min_candidates": 2, "curve_points": 200},
    "approach2": {"gap_dex": 0.05, "tolerance_dex": 0.1, "min_points": 3, "require_interior": True},
}


def _run_isoflop(data: FitData, options: FitOptions, method: str, *, progress, store, settings):
    """Approaches 1 and 2 (core/isoflop.py) as a FitResult: params a, b and the power laws' prefactors.

    N_opt = N_coef·C^a and D_opt = D_coef·C^b (Hoffmann et al. 2022 §3.1-3.2). Intervals are 95%
    Student-t intervals from the least-squares standard errors of the exponents (no bootstrap).
    """
    from scipy import stats

    s = dict(ISOFLOP_DEFAULTS[method])
    s["budgets"] = [float(b) for b in options.budgets]
    if settings:
        s.update({k: v for k, v in settings.items() if k in ISOFLOP_DEFAULTS[method] or k in ("budgets", "iso_budgets")})
    inputs = data.inputs("chinchilla")
    report = progress or (lambda done, total, message="": None)
    report(0, 1, method)
    if method == "approach2":
        planned = data.budget if data.budget is not None else np.full(len(data), np.nan)
        # runs that record the budget they were planned at (an IsoFLOP sweep) are grouped by it
        iso_budgets = s.get("iso_budgets")
        if iso_budgets is None and np.isfinite(planned).all():
            iso_budgets = sorted(set(planned.tolist()))
        s["iso_budgets"] = iso_budgets
        raw = isoflop.approach2(n_params=inputs["n_params"], tokens=inputs["tokens"], flops=data.flops, loss=data.y,
                                budgets=iso_budgets, gap_dex=s["gap_dex"], tolerance_dex=s["tolerance_dex"],
                                min_points=int(s["min_points"]), require_interior=bool(s["require_interior"]))
        n_points = int((raw.budget_of_point >= 0).sum())
    else:
        if data.selection.get("source") == "store":
            if store is None:
                raise InputError("Approach 1 reads the training curves: give the store")
            curves = load_curves(store, data, max_points=int(s["curve_points"]))
        else:  # a run-summary table: final points only, each counts in its FLOP level's bin
            curves = pd.DataFrame({"run": data.run, "n_params": inputs["n_params"], "tokens": inputs["tokens"],
                                   "flops": data.flops, "loss": data.y})
        raw = isoflop.approach1(curves, n_levels=int(s["n_levels"]), min_candidates=int(s["min_candidates"]))
        n_points = int(len(curves))
    report(1, 1, "done")
    laws_ = {"a": raw.n_params_law, "b": raw.tokens_law}
    params = {"a": raw.a, "b": raw.b, "N_coef": raw.n_params_law.coefficient, "D_coef": raw.tokens_law.coefficient}
    stderr, intervals = {}, {}
    for name, law in laws_.items():
        stderr[name] = float(law.stderr)
        t = stats.t.ppf(0.975, law.n_points - 2) if law.n_points > 2 else np.nan
        intervals[name] = [float(law.exponent - t * law.stderr), float(law.exponent + t * law.stderr)]
    derived = {"a": raw.a, "b": raw.b}
    optima = []
    for c in s["budgets"]:
        n_opt, d_opt = float(raw.n_params_law(c)), float(raw.tokens_law(c))
        optima.append(BudgetOptimum(budget=float(c), n_params=n_opt, tokens=d_opt, tokens_per_param=d_opt / n_opt))
    diagnostics = diagnostics_from_dict(method, {**raw.to_dict(), "warnings": list(raw.warnings)})
    return FitResult(law="chinchilla", method=method, params=params, stderr=stderr, intervals=intervals,
                     objective=float("nan"), n_points=n_points, settings=s, diagnostics=diagnostics,
                     bootstrap_samples=np.empty((0, 4)), derived=derived, optima=optima,
                     param_names=("a", "b", "N_coef", "D_coef"))


# ============================================================================================
# Back-testing a stored fit
# ============================================================================================
def kept_points(data: FitData, result: FitResult) -> FitData:
    """The points the fit used (those left after dropping the k highest)."""
    kept = getattr(result.diagnostics, "kept_index", None)
    idx = np.arange(len(data)) if kept is None else np.asarray(kept, dtype=int)
    return FitData(run=data.run[idx], n_params=data.n_params[idx], tokens=data.tokens[idx], flops=data.flops[idx],
                   n_experts=data.n_experts[idx], y=data.y[idx], target=data.target, n_kind=data.n_kind,
                   selection=data.selection, budget=None if data.budget is None else data.budget[idx],
                   unique_tokens=None if data.unique_tokens is None else data.unique_tokens[idx],
                   **{c: None if getattr(data, c) is None else getattr(data, c)[idx] for c in CONFIG_COLUMNS})


def compute_levels(flops) -> np.ndarray:
    """Distinct compute levels: FLOPs within 0.05 dex of each other are one level (an IsoFLOP budget);
    each level is its smallest FLOP count, so a threshold at a level holds the whole level out."""
    flops = np.asarray(flops, np.float64)
    groups = isoflop.group_budgets(flops)
    return np.array(sorted(float(flops[groups == g].min()) for g in np.unique(groups)))


def backtest_fit(data: FitData, result: FitResult, threshold: float, *,
                 progress: Optional[ProgressFn] = None):
    """Refit the stored fit's law and settings (no bootstrap) on its points with C < threshold and
    predict those with C ≥ threshold (core.fitting.backtest). Returns (BacktestResult, the points used)."""
    points = kept_points(data, result)
    weights = weights_for(points)
    settings = dict(result.settings)
    if result.method == "approach3":
        s = Approach3Settings.from_dict({**settings, "n_bootstrap": 0, "drop_highest": 0})
        bt = backtest(points.n_params, points.tokens, points.y, float(threshold), flops=points.flops, settings=s,
                      weights=weights, progress=progress)
    elif result.method == "huber_log" and result.law in LAWS:
        inputs = points.inputs(result.law, data.selection.get("x", "flops"))
        bt = backtest_law(result.law, inputs, points.y, points.flops, float(threshold), weights=weights,
                          n_bootstrap=0, delta=float(settings.get("delta", 1e-3)), progress=progress)
    else:
        raise InputError(f"a back-test refits the law; {result.method} estimates N*(C) and D*(C) instead: "
                         "back-test an Approach 3 fit")
    return bt, points


# ============================================================================================
# Storing and re-running
# ============================================================================================
def fit_and_save(store: Store, data: FitData, options: FitOptions, *, name: Optional[str] = None,
                 progress: Optional[ProgressFn] = None) -> tuple:
    """Fit, then store the fit (nothing is stored when the fit fails or is cancelled). Returns (id, result)."""

    result = run_fit(data, options, progress=progress, store=store)
    selection = dict(data.selection)
    if "x" in get_law(options.law, InputError).inputs:
        selection["x"] = options.x
    fit_id = save_result(store, result, selection=selection, target=data.target.label(), name=name)
    return fit_id, result


def data_for_selection(store: Optional[Store], selection: Mapping) -> FitData:
    """Re-load the points a stored selection names (the store's runs, or a table's kept points)."""
    if selection.get("source") == "csv":
        return _data_from_points(selection)
    if store is None:
        raise InputError("this fit's points live in the store: open it to re-run the fit")
    extra = {k: v for k, v in selection.items()
             if k not in ("source", "runs", "target", "n_kind", "weight_by_run")}
    return load_fit_data(store, selection["runs"], Target.from_dict(selection.get("target", {})),
                         selection.get("n_kind", "total"), bool(selection.get("weight_by_run")), extra)


def refit(store: Store, fit_id: int, *, progress: Optional[ProgressFn] = None) -> FitResult:
    """Re-run stored fit ``fit_id`` from its recorded selection and settings (nothing is stored).

    The same runs, target, size column, weights, start grid, seed and bootstrap count give the same
    parameters, intervals and bootstrap samples.
    """

    row = get_fit(store, fit_id)
    selection = row["selection"] or {}
    if "runs" not in selection and "points" not in selection:
        raise InputError(f"fit {fit_id} was not stored with a run selection (an eval fit?): refit it on its own page")
    data = data_for_selection(store, selection)
    options = FitOptions(law=row["law"], method=row["method"], x=selection.get("x", "flops"))
    return run_fit(data, options, progress=progress, store=store, settings=row["settings"] or None)


# ============================================================================================
# Refitting without some points (the Fits page's click-to-exclude)
# ============================================================================================
def without_runs(data: FitData, excluded: Sequence[str]) -> FitData:
    """``data`` without the points of the runs named in ``excluded``; its selection says which were
    left out (and, for a table's points, keeps only the rest), so the new fit reproduces."""
    gone = set(excluded)
    keep = np.array([r not in gone for r in data.run], dtype=bool)
    if not keep.any():
        raise InputError("every point would be excluded: keep at least a few runs to fit")
    cut = lambda a: None if a is None else np.asarray(a)[keep]  # noqa: E731
    selection = dict(data.selection)
    selection["excluded"] = sorted(gone & set(data.run.tolist()))
    if selection.get("source") == "csv":
        selection["runs"] = [r for r, k in zip(selection["runs"], keep) if k]
        selection["points"] = {k: [v for v, kk in zip(vals, keep) if kk] for k, vals in selection["points"].items()}
        selection["n_rows"] = int(keep.sum())
    else:
        selection["runs"] = [r for r in selection.get("runs", []) if r not in gone]
    return FitData(run=data.run[keep], n_params=data.n_params[keep], tokens=data.tokens[keep], flops=data.flops[keep],
                   n_experts=data.n_experts[keep], y=data.y[keep], target=data.target, n_kind=data.n_kind,
                   selection=selection, budget=cut(data.budget), unique_tokens=cut(data.unique_tokens),
                   **{c: cut(getattr(data, c)) for c in CONFIG_COLUMNS})


def refit_without(store: Store, fit_id: int, excluded: Sequence[str], *, name: Optional[str] = None,
                  progress: Optional[ProgressFn] = None) -> tuple:
    """Fit stored fit ``fit_id``'s law again, same method and settings (seed, grid, bootstrap), on its
    points without the runs in ``excluded``, and store it as a new fit. Returns (new id, result)."""
    row = get_fit(store, fit_id)
    selection = row["selection"] or {}
    if "runs" not in selection and "points" not in selection:
        raise InputError(f"fit {fit_id} was not stored with a run selection: it cannot be refitted here")
    data = without_runs(data_for_selection(store, selection), excluded)
    options = FitOptions(law=row["law"], method=row["method"], x=selection.get("x", "flops"))
    result = run_fit(data, options, progress=progress, store=store, settings=row["settings"] or None)
    title = row.get("name") or f"#{fit_id}"
    new_selection = dict(data.selection)
    if "x" in selection:
        new_selection["x"] = selection["x"]
    new_id = save_result(store, result, selection=new_selection, target=data.target.label(),
                         name=name or f"{title} without {len(data.selection['excluded'])} points")
    return new_id, result


def isoflop_comparison(store: Store, fit_id: int) -> dict:
    """Approaches 1 and 2 (Hoffmann et al. 2022 §3.1–3.2) on the points, and the curves, of stored fit
    ``fit_id``, to overlay on its Approach 3 IsoFLOP plot: method -> FitResult, or the one-line reason
    the method cannot run on these points (e.g. one size per budget: no parabola)."""
    row = get_fit(store, fit_id)
    data = data_for_selection(store, row["selection"] or {})
    budgets = tuple((row["settings"] or {}).get("budgets") or FitOptions().budgets)
    out: dict = {}
    for method in ("approach2", "approach1"):
        try:
            out[method] = run_fit(data, FitOptions(method=method, budgets=budgets), store=store)
        except ScaleScopeError as exc:
            out[method] = str(exc)
    return out
