"""Observational scaling (Ruan et al. 2024, "Observational scaling laws and the predictability of
language model performance").

Many public models, one table of benchmark scores: a few principal components of that
model × benchmark matrix summarise "capability" (PC1 explains ~80% of the variance of their base models);
inside one model family a capability is linear in log compute, S ≈ θ_f·log C + ν_f (the family's
"compute efficiency"); a benchmark is a sigmoid of the capabilities.

Here:
- :func:`benchmark_pca` — PCA with holes in the matrix filled by iterative low-rank (EM-style) SVD
  imputation and reported; explained variance, loadings, capability (PC1, higher = better).
- :func:`family_compute_efficiency` — one line of capability vs log10 FLOPs per family.
- :func:`backtest_heldout_benchmark` — predict one benchmark from the PCs of the others, fitting on
  the smaller-compute models and measuring the error on the larger ones (Ruan et al.'s back-tests).
- :func:`backtest_family_extrapolation` — predict each family's largest model(s) from its smaller
  ones (per-PC lines in log FLOPs, then back to benchmark scores), with the back-test error.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import pandas as pd

from core.downstream import DownstreamFit, DownstreamFitConfig, fit_sigmoid
from core.errors import FitError, InputError


# --------------------------------------------------------------------------------------------
# PCA with missing values
# --------------------------------------------------------------------------------------------
@dataclass
class PCAConfig:
    n_components: int = 3  # Ruan et al. 2024 keep 3 PCs (≈97% of the variance on their base models)
    standardize: Optional[bool] = None  # None: raw scores when all are fractions in [0, 1] (one unit,
    #                                     their spread is information), z-scores otherwise (BLEU vs acc)
    impute: str = "iterative"  # "iterative": refill holes from a low-rank SVD until stable (EM-like);
    #                            "mean": column means (shrinks PC scores of models with holes)
    impute_rank: Optional[int] = None  # rank of the reconstruction that fills holes; None: chosen
    #                                    (1-3) by hiding 10% of the observed cells and keeping the rank
    #                                    that predicts them best — too high a rank chases noise
    max_iter: int = 1000  # iterative imputation converges in tens of sweeps on benchmark tables
    tol: float = 1e-6  # stop when no filled cell moves more than this × the scores' spread
    min_observed: float = 0.5  # drop models with fewer benchmarks than this fraction: their holes
    #                            would be mostly invented


@dataclass
class BenchmarkPCA:
    models: list  # row labels kept (in input order)
    benchmarks: list  # column labels
    explained_variance: np.ndarray  # (k,) variance along each kept PC
    explained_variance_ratio: np.ndarray  # (k,) fraction of the total variance of the filled matrix
    loadings: pd.DataFrame  # benchmarks × PC1..PCk, unit columns; PC1 signed so higher = better
    scores: pd.DataFrame  # models × PC1..PCk
    capability: pd.Series  # PC1 score per model (higher = more capable)
    center: np.ndarray  # (n_benchmarks,) column means subtracted before the SVD
    scale: np.ndarray  # (n_benchmarks,) column scales divided (ones when not standardised)
    standardized: bool
    completed: pd.DataFrame  # the matrix with holes filled, in score units
    imputed: pd.DataFrame  # bool, True where a cell was filled
    imputation: dict  # method, n_missing, missing_fraction, iterations, converged, per_benchmark
    dropped_models: list = field(default_factory=list)  # too few benchmarks (see min_observed)

    def transform(self, matrix: pd.DataFrame) -> pd.DataFrame:
        """PC scores of new rows; a row with holes is projected by least squares on its observed
        benchmarks (the loadings restricted to them)."""
        missing = [b for b in self.benchmarks if b not in matrix.columns]
        if missing:
            raise InputError(f"cannot project: benchmark column(s) {missing} are absent; "
                             "give the same benchmarks the PCA was built on.")
        x = (matrix[self.benchmarks].to_numpy(dtype=np.float64) - self.center) / self.scale
        v = self.loadings.to_numpy()  # (B, k)
        out = np.full((len(x), v.shape[1]), np.nan)
        for i, row in enumerate(x):
            ok = np.isfinite(row)
            if ok.sum() >= v.shape[1]:
                out[i] = np.linalg.lstsq(v[ok], row[ok], rcond=None)[0]
        return pd.DataFrame(out, index=matrix.index, columns=self.loadings.columns)

    def reconstruct(self, scores) -> np.ndarray:
        """Benchmark scores (score units) implied by PC scores: center + scale·(s @ Vᵀ)."""
        s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        v = self.loadings.to_numpy()[:, : s.shape[1]]
        return self.center + self.scale * (s @ v.T)

    def to_dict(self) -> dict:
        """JSON-able summary (the CLI's ``evals pca --json``)."""
        return {
            "models": list(map(str, self.models)),
            "benchmarks": list(map(str, self.benchmarks)),
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
            "explained_variance": [float(v) for v in self.explained_variance],
            "loadings": {str(b): {c: float(self.loadings.loc[b, c]) for c in self.loadings.columns}
                         for b in self.loadings.index},
            "capability": {str(m): float(v) for m, v in self.capability.items()},
            "scores": {str(m): [float(v) for v in row] for m, row in zip(self.scores.index,
                                                                          self.scores.to_numpy())},
            "standardized": self.standardized,
            "imputation": self.imputation,
            "dropped_models": list(map(str, self.dropped_models)),
        }


def _as_matrix(matrix) -> pd.DataFrame:
    if not isinstance(matrix, pd.DataFrame):
        raise InputError("give the benchmark table as a DataFrame: one row per model, one column per benchmark.")
    try:
        m = matrix.apply(pd.to_numeric, errors="raise").astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"benchmark table has a non-numeric score ({exc}); keep only score columns "
                         "and use the model name as the index.")
    if not m.index.is_unique:
        dup = m.index[m.index.duplicated()].unique().tolist()[:3]
        raise InputError(f"benchmark table repeats model(s) {dup}; keep one row per model.")
    if np.isinf(m.to_numpy()).any():
        raise InputError("benchmark table has infinite scores; replace them with numbers or leave blank.")
    return m


def _impute(x: np.ndarray, rank: int, cfg: PCAConfig) -> tuple:
    """Fill NaNs: start at column means, then repeatedly replace the holes by a rank-r SVD
    reconstruction of the filled matrix (Troyanskaya et al. 2001 SVDimpute; EM for PCA)."""
    holes = np.isnan(x)
    z = x.copy()
    col_mean = np.nanmean(x, axis=0)
    z[holes] = np.take(col_mean, np.where(holes)[1])
    if not holes.any() or cfg.impute == "mean":
        return z, 0, True
    if cfg.impute != "iterative":
        raise InputError(f"unknown imputation {cfg.impute!r}; use 'iterative' or 'mean'.")
    rank = max(1, min(rank, min(z.shape) - 1))
    tol = cfg.tol * (float(np.nanstd(x)) or 1.0)
    for it in range(1, cfg.max_iter + 1):
        mu = z.mean(axis=0)
        u, s, vt = np.linalg.svd(z - mu, full_matrices=False)
        recon = (u[:, :rank] * s[:rank]) @ vt[:rank] + mu
        step = float(np.max(np.abs(recon[holes] - z[holes])))
        z[holes] = recon[holes]
        if step < tol:
            return z, it, True
    return z, cfg.max_iter, False


def _choose_rank(x: np.ndarray, cfg: PCAConfig) -> tuple:
    """Impute rank by validation: hide 10% of the observed cells (seeded), fill them at ranks 1-3,
    keep the rank with the lowest RMS error. Returns (rank, {rank: error})."""
    max_rank = max(1, min(3, min(x.shape) - 1))
    observed = np.argwhere(~np.isnan(x))
    rng = np.random.default_rng(0)
    n_hide = max(1, len(observed) // 10)
    hide = observed[rng.choice(len(observed), n_hide, replace=False)]
    x_cv = x.copy()
    x_cv[hide[:, 0], hide[:, 1]] = np.nan
    if np.isnan(x_cv).all(axis=0).any():  # a column left empty: nothing to validate on
        return 1, {}
    errors = {}
    for rank in range(1, max_rank + 1):
        z, _, _ = _impute(x_cv, rank, cfg)
        errors[rank] = float(np.sqrt(np.mean((z[hide[:, 0], hide[:, 1]] - x[hide[:, 0], hide[:, 1]]) ** 2)))
    return min(errors, key=errors.get), errors


def benchmark_pca(matrix: pd.DataFrame, config: Optional[PCAConfig] = None) -> BenchmarkPCA:
    """PCA of a model × benchmark table (index = model, columns = benchmarks; NaN = not evaluated).

    Benchmarks must all be higher-is-better (accuracies); negate or drop loss/perplexity columns.
    PC1's sign is fixed so that its loadings sum to a positive number: a higher capability score
    means better scores. Other PCs are signed so their largest loading is positive.
    """
    cfg = config or PCAConfig()
    m = _as_matrix(matrix)
    m = m.loc[:, m.notna().any(axis=0)]
    if m.shape[1] < 2:
        raise InputError(f"PCA needs at least 2 benchmark columns with scores; got {m.shape[1]}.")
    observed_frac = m.notna().mean(axis=1)
    dropped = m.index[observed_frac < cfg.min_observed].tolist()
    m = m.loc[observed_frac >= cfg.min_observed]
    # Benchmarks that only the dropped models had are now empty: drop them too (else SVD sees NaN).
    m = m.loc[:, m.notna().any(axis=0)]
    if m.shape[1] < 2:
        raise InputError(f"PCA needs at least 2 benchmark columns scored by the kept models; got {m.shape[1]}.")
    if len(m) < 3:
        raise InputError(f"PCA needs at least 3 models with most benchmarks filled; got {len(m)} "
                         f"({len(dropped)} dropped for having under {cfg.min_observed:.0%} of the benchmarks).")
    x = m.to_numpy()
    holes = np.isnan(x)
    all_fractions = bool(np.nanmin(x) >= 0 and np.nanmax(x) <= 1)
    standardize = (not all_fractions) if cfg.standardize is None else bool(cfg.standardize)

    # Impute in the space the PCA sees (z-scores if standardising), then map back.
    obs_sd = np.nanstd(x, axis=0, ddof=1)
    scale = np.where(obs_sd > 0, obs_sd, 1.0) if standardize else np.ones(x.shape[1])
    obs_mean = np.nanmean(x, axis=0)
    x_std = (x - obs_mean) / scale
    if cfg.impute_rank is not None:
        rank, cv_errors = int(cfg.impute_rank), {}
    elif holes.any() and cfg.impute == "iterative":
        rank, cv_errors = _choose_rank(x_std, cfg)
    else:
        rank, cv_errors = 1, {}
    z, iterations, converged = _impute(x_std, rank, cfg)
    completed = z * scale + obs_mean
    center = completed.mean(axis=0)
    zc = (completed - center) / scale

    u, s, vt = np.linalg.svd(zc, full_matrices=False)  # zc (M, B) = U S Vᵀ
    var = s ** 2 / max(len(zc) - 1, 1)
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    k = max(1, min(cfg.n_components, len(s)))
    v = vt[:k].T.copy()  # (B, k)
    # Signs: PC1 so that loadings sum > 0 (higher = better); others by their largest loading.
    signs = np.ones(k)
    signs[0] = 1.0 if v[:, 0].sum() >= 0 else -1.0
    for j in range(1, k):
        signs[j] = 1.0 if v[np.argmax(np.abs(v[:, j])), j] >= 0 else -1.0
    v = v * signs
    scores = zc @ v  # (M, k)
    cols = [f"PC{j + 1}" for j in range(k)]
    n_missing = int(holes.sum())
    return BenchmarkPCA(
        models=list(m.index), benchmarks=list(m.columns),
        explained_variance=var[:k], explained_variance_ratio=ratio[:k],
        loadings=pd.DataFrame(v, index=m.columns, columns=cols),
        scores=pd.DataFrame(scores, index=m.index, columns=cols),
        capability=pd.Series(scores[:, 0], index=m.index, name="capability"),
        center=center, scale=scale, standardized=standardize,
        completed=pd.DataFrame(completed, index=m.index, columns=m.columns),
        imputed=pd.DataFrame(holes, index=m.index, columns=m.columns),
        imputation={"method": cfg.impute if n_missing else "none", "rank": rank,
                    "rank_validation_rmse": {str(k): v for k, v in cv_errors.items()},
                    "n_missing": n_missing, "missing_fraction": float(n_missing / holes.size),
                    "iterations": int(iterations), "converged": bool(converged),
                    "per_benchmark": {str(c): int(n) for c, n in zip(m.columns, holes.sum(axis=0))}},
        dropped_models=dropped,
    )


# --------------------------------------------------------------------------------------------
# Per-family compute efficiency (Ruan et al. 2024: S ≈ θ_f·log C + ν_f)
# --------------------------------------------------------------------------------------------
@dataclass
class FamilyEfficiency:
    table: pd.DataFrame  # family, n_models, slope, intercept, r2, capability_at_reference, spearman
    reference_flops: float  # FLOPs where capability_at_reference is read (compare families there)
    skipped: dict  # family -> why it has no line (too few models with FLOPs)
    models_without_flops: list  # models left out because their FLOPs are unknown

    def to_dict(self) -> dict:
        return {"table": self.table.to_dict(orient="records"), "reference_flops": self.reference_flops,
                "skipped": self.skipped, "models_without_flops": list(map(str, self.models_without_flops))}


def _aligned(series, index, what: str) -> pd.Series:
    if isinstance(series, pd.Series):
        return series.reindex(index)
    arr = np.asarray(series)
    if len(arr) != len(index):
        raise InputError(f"{what} has {len(arr)} values for {len(index)} models; give one per model "
                         "(or a Series indexed by model).")
    return pd.Series(arr, index=index)


def family_compute_efficiency(capability: pd.Series, flops, family, *, reference_flops: float = 1e22,
                              min_models: int = 2) -> FamilyEfficiency:
    """Fit capability = slope·log10(FLOPs) + intercept for each family (Ruan et al. 2024).

    ``flops`` and ``family`` are Series indexed like ``capability`` (or arrays in its order).
    ``slope`` is capability gained per decade of compute; ``capability_at_reference`` compares
    families at the same compute (higher = more compute-efficient). ``spearman`` is the rank
    correlation of capability with FLOPs inside the family (1 = capability rises with compute).
    """
    cap = capability.astype(np.float64)
    fl = pd.to_numeric(_aligned(flops, cap.index, "flops"), errors="coerce")
    fam = _aligned(family, cap.index, "family")
    no_flops = cap.index[~(fl > 0)].tolist()
    rows, skipped = [], {}
    for name in pd.unique(fam.dropna()):
        members = fam.index[(fam == name).to_numpy()]
        ok = [mdl for mdl in members if fl[mdl] > 0 and np.isfinite(cap[mdl])]
        if len(ok) < min_models:
            skipped[str(name)] = (f"{len(ok)} model(s) with FLOPs (of {len(members)}); "
                                  f"a line needs {min_models}")
            continue
        lx = np.log10(fl[ok].to_numpy(dtype=np.float64))
        y = cap[ok].to_numpy()
        if np.ptp(lx) == 0:
            skipped[str(name)] = "all its models have the same FLOPs"
            continue
        slope, intercept = np.polyfit(lx, y, 1)
        pred = slope * lx + intercept
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        rows.append({
            "family": str(name), "n_models": len(ok), "slope": float(slope),
            "intercept": float(intercept),
            "r2": float(1 - np.sum((y - pred) ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
            "capability_at_reference": float(slope * np.log10(reference_flops) + intercept),
            "spearman": float(pd.Series(lx).corr(pd.Series(y), method="spearman")) if len(ok) > 2 else float(np.sign(slope)),
            "log10_flops_min": float(lx.min()), "log10_flops_max": float(lx.max()),
        })
    cols = ["family", "n_models", "slope", "intercept", "r2", "capability_at_reference", "spearman",
            "log10_flops_min", "log10_flops_max"]
    table = pd.DataFrame(rows, columns=cols).sort_values("capability_at_reference", ascending=False,
                                                         ignore_index=True)
    return FamilyEfficiency(table=table, reference_flops=float(reference_flops), skipped=skipped,
                            models_without_flops=no_flops)


# --------------------------------------------------------------------------------------------
# Back-tests
# --------------------------------------------------------------------------------------------
@dataclass
class HeldoutBacktest:
    target: str  # the benchmark predicted
    cutoff_flops: float  # models at or below were used to fit, above were predicted
    fit: DownstreamFit  # the sigmoid of the target on the PCs of the other benchmarks
    predictions: pd.DataFrame  # model, flops, split ("train"/"test"), actual, predicted, lower, upper
    mae_test: float  # mean absolute error on the larger-compute (test) models, score units
    rmse_test: float
    mae_train: float
    explained_variance_ratio: np.ndarray  # of the PCA on the other benchmarks
    models_without_flops: list  # left out: a compute split needs their FLOPs

    def to_dict(self) -> dict:
        return {"target": self.target, "cutoff_flops": self.cutoff_flops, "fit": self.fit.to_dict(),
                "predictions": self.predictions.to_dict(orient="records"), "mae_test": self.mae_test,
                "rmse_test": self.rmse_test, "mae_train": self.mae_train,
                "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
                "models_without_flops": list(map(str, self.models_without_flops))}


def backtest_heldout_benchmark(matrix: pd.DataFrame, target: str, flops, *, n_components: int = 3,
                               cutoff_flops: Optional[float] = None, train_quantile: float = 0.6,
                               floor: Optional[float] = None, ceiling: Optional[float] = 1.0,
                               pca_config: Optional[PCAConfig] = None,
                               fit_config: Optional[DownstreamFitConfig] = None) -> HeldoutBacktest:
    """Predict ``target`` from the top PCs of the other benchmarks (Ruan et al. 2024).

    The PCA uses every model's other benchmarks (they are observed for all models); the sigmoid
    target = b + (c − b)·σ(w·PCs + w₀) is fitted only on models with FLOPs ≤ ``cutoff_flops``
    (default: the ``train_quantile`` quantile of FLOPs) and scored on the rest. ``floor`` fixes b
    (e.g. 0.25 for 4-way multiple choice).
    """
    m = _as_matrix(matrix)
    if target not in m.columns:
        raise InputError(f"benchmark {target!r} is not a column; choose one of {list(m.columns)}.")
    fl = pd.to_numeric(_aligned(flops, m.index, "flops"), errors="coerce")
    no_flops = m.index[~(fl > 0)].tolist()
    if len(no_flops) == len(m):
        raise InputError("no model has FLOPs: the back-test splits models by compute; add a flops "
                         "column (or params and tokens) to the table.")
    pcfg = replace(pca_config or PCAConfig(), n_components=n_components)
    pca = benchmark_pca(m.drop(columns=[target]), pcfg)
    rows = [mdl for mdl in pca.models if fl.get(mdl, np.nan) > 0 and np.isfinite(m.loc[mdl, target])]
    if cutoff_flops is None:
        cutoff_flops = float(np.quantile(fl[rows].to_numpy(dtype=np.float64), train_quantile))
    train = [mdl for mdl in rows if fl[mdl] <= cutoff_flops]
    test = [mdl for mdl in rows if fl[mdl] > cutoff_flops]
    if len(test) == 0:
        raise InputError(f"no model has more than {cutoff_flops:.3g} FLOPs to test on; lower the cutoff.")
    x_train = pca.scores.loc[train].to_numpy()
    n_params = x_train.shape[1] + 3
    if len(train) < n_params + 1:
        raise FitError(f"only {len(train)} models at or below {cutoff_flops:.3g} FLOPs for a "
                       f"{n_params}-parameter sigmoid; raise the cutoff or use fewer components.")
    fit = fit_sigmoid(x_train, m.loc[train, target].to_numpy(), floor=floor, ceiling=ceiling,
                      config=fit_config or DownstreamFitConfig(n_bootstrap=100))
    all_rows = train + test
    band = fit.predict_interval(pca.scores.loc[all_rows].to_numpy())
    pred = pd.DataFrame({
        "model": all_rows, "flops": fl[all_rows].to_numpy(dtype=np.float64),
        "split": ["train"] * len(train) + ["test"] * len(test),
        "actual": m.loc[all_rows, target].to_numpy(), "predicted": band.value,
        "lower": band.lower, "upper": band.upper,
    })
    err = pred["predicted"] - pred["actual"]
    is_test = pred["split"] == "test"
    return HeldoutBacktest(
        target=target, cutoff_flops=float(cutoff_flops), fit=fit, predictions=pred,
        mae_test=float(err[is_test].abs().mean()), rmse_test=float(np.sqrt((err[is_test] ** 2).mean())),
        mae_train=float(err[~is_test].abs().mean()),
        explained_variance_ratio=pca.explained_variance_ratio, models_without_flops=no_flops,
    )


@dataclass
class FamilyBacktest:
    predictions: pd.DataFrame  # family, model, flops, n_train, capability_actual, capability_predicted,
    #                            capability_error, benchmark_mae (observed cells only)
    benchmark_errors: pd.DataFrame  # model × benchmark predicted − actual (NaN where not observed)
    mae_capability: float  # mean |error| of PC1 over held-out models
    mae_benchmark: float  # mean |error| over every observed held-out benchmark score
    skipped: dict  # family -> why it was not back-tested

    def to_dict(self) -> dict:
        return {"predictions": self.predictions.to_dict(orient="records"),
                "benchmark_errors": {str(i): {str(c): (None if pd.isna(v) else float(v))
                                              for c, v in row.items()}
                                     for i, row in self.benchmark_errors.iterrows()},
                "mae_capability": self.mae_capability, "mae_benchmark": self.mae_benchmark,
                "skipped": self.skipped}


def backtest_family_extrapolation(pca: BenchmarkPCA, flops, family, *, n_holdout: int = 1,
                                  min_train: int = 2) -> FamilyBacktest:
    """Predict each family's ``n_holdout`` largest-compute models from its smaller ones.

    Inside a family every PC score is a line in log10 FLOPs (Ruan et al. 2024, per family); the lines
    are fitted on the smaller models, evaluated at the held-out model's FLOPs, and mapped back to
    benchmark scores through the loadings. The PCA itself is the caller's (built on all models:
    it uses no held-out benchmark *targets*, only the shared low-dimensional space).
    """
    idx = pd.Index(pca.models)
    fl = pd.to_numeric(_aligned(flops, idx, "flops"), errors="coerce")
    fam = _aligned(family, idx, "family")
    if not (fl > 0).any():
        raise InputError("no model has FLOPs: extrapolating a family needs each model's training "
                         "compute; add a flops column (or params and tokens).")
    scores = pca.scores
    observed = ~pca.imputed
    pred_rows, err_rows, skipped = [], {}, {}
    for name in pd.unique(fam.dropna()):
        members = [mdl for mdl in idx[(fam == name).to_numpy()] if fl[mdl] > 0]
        if len(members) < min_train + n_holdout:
            skipped[str(name)] = (f"{len(members)} model(s) with FLOPs; needs {min_train + n_holdout}")
            continue
        members.sort(key=lambda mdl: fl[mdl])
        train, hold = members[:-n_holdout], members[-n_holdout:]
        lx = np.log10(fl[train].to_numpy(dtype=np.float64))
        if np.ptp(lx) == 0:
            skipped[str(name)] = "its smaller models all have the same FLOPs"
            continue
        coefs = [np.polyfit(lx, scores.loc[train, c].to_numpy(), 1) for c in scores.columns]
        for mdl in hold:
            lxh = np.log10(float(fl[mdl]))
            s_hat = np.array([a * lxh + b for a, b in coefs])
            bench_hat = pca.reconstruct(s_hat)[0]
            actual = pca.completed.loc[mdl].to_numpy()
            diff = np.where(observed.loc[mdl].to_numpy(), bench_hat - actual, np.nan)
            err_rows[mdl] = diff
            pred_rows.append({
                "family": str(name), "model": mdl, "flops": float(fl[mdl]), "n_train": len(train),
                "capability_actual": float(scores.loc[mdl, "PC1"]),
                "capability_predicted": float(s_hat[0]),
                "capability_error": float(s_hat[0] - scores.loc[mdl, "PC1"]),
                "benchmark_mae": float(np.nanmean(np.abs(diff))),
            })
    if not pred_rows:
        raise InputError(f"no family has {min_train + n_holdout} models with FLOPs to back-test; "
                         "add FLOPs or lower min_train.")
    preds = pd.DataFrame(pred_rows)
    errors = pd.DataFrame.from_dict(err_rows, orient="index", columns=pca.benchmarks)
    return FamilyBacktest(
        predictions=preds, benchmark_errors=errors,
        mae_capability=float(preds["capability_error"].abs().mean()),
        mae_benchmark=float(np.nanmean(np.abs(errors.to_numpy()))),
        skipped=skipped,
    )


# --------------------------------------------------------------------------------------------
# From long eval rows to a model × benchmark matrix
# --------------------------------------------------------------------------------------------
# When a task carries several metrics, the first present in this order fills its column.
METRIC_PREFERENCE = ["acc_norm", "acc", "exact_match", "pass@1", "f1", "mc2", "score"]


def eval_matrix(evals: pd.DataFrame, *, metric: Optional[str] = None, step: str = "last") -> pd.DataFrame:
    """Pivot long eval rows (run, step, task, metric, value) into run × task.

    ``metric`` picks one metric for every task; by default each task uses the metric most runs
    have (ties: the first in METRIC_PREFERENCE), so a column never mixes acc and acc_norm. ``step="last"`` keeps each run's latest step
    (a NaN step counts as the final one).
    """
    need = {"run", "task", "metric", "value"}
    if not need <= set(evals.columns):
        raise InputError(f"eval rows need columns {sorted(need)}; got {list(evals.columns)}.")
    df = evals.copy()
    if "step" not in df.columns:
        df["step"] = np.nan
    if step == "last":
        order = df["step"].fillna(np.inf)
        last = order.groupby(df["run"]).transform("max")
        df = df[order == last]
    elif step != "all":
        raise InputError(f"step must be 'last' or 'all', got {step!r}.")
    if metric is not None:
        df = df[df["metric"] == metric]
        if df.empty:
            raise InputError(f"no eval row has metric {metric!r}; pick one the data has.")
    else:
        def pick(group: pd.DataFrame) -> str:
            coverage = group.groupby("metric", sort=False)["run"].nunique()
            rank = {m: (METRIC_PREFERENCE.index(m) if m in METRIC_PREFERENCE else len(METRIC_PREFERENCE))
                    for m in coverage.index}
            return min(coverage.index, key=lambda m: (-coverage[m], rank[m]))
        chosen = {task: pick(g) for task, g in df.groupby("task", sort=False)}
        df = df[df["metric"] == df["task"].map(chosen)]
    return df.pivot_table(index="run", columns="task", values="value", aggfunc="last", sort=False)
