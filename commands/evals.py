"""CLI: import eval results and run the observational PCA (issue 7).

    python cli.py evals import FILE... [--run NAME] [--step N] [--db URL] [--json]
    python cli.py evals pca [--csv FILE] [--metric M] [--components K] [--db URL] [--json]
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from commands.common import add_common, emit, open_store
from core.errors import InputError
from core.observational import PCAConfig, benchmark_pca, family_compute_efficiency
from services.evals import import_eval_paths, load_evals, model_table, pca_matrix
from importers.evals import parse_eval_file


def register(sub) -> None:
    evals = sub.add_parser("evals", help="eval results: import files, PCA of a model × benchmark table")
    actions = evals.add_subparsers(dest="evals_command", required=True, metavar="{import,pca}")

    p = add_common(actions.add_parser(
        "import", help="store eval results (harness results .json, a folder or .zip of them, long/wide CSV)"))
    p.add_argument("files", nargs="+", help="results files, eval CSVs, folders or .zip archives (one transaction)")
    p.add_argument("--run", help="model/run name for harness files (overrides the one in the file)")
    p.add_argument("--step", type=float, help="checkpoint step for harness files (overrides the file's)")
    p.set_defaults(handler=import_evals)

    p = add_common(actions.add_parser(
        "pca", help="principal components of a model × benchmark table (Ruan et al. 2024)"))
    p.add_argument("--csv", help="a wide or long eval table; without it, the evals in the store")
    p.add_argument("--metric", help="use this metric for every task (default: each task's most common)")
    p.add_argument("--components", type=int, default=PCAConfig.n_components,
                   help=f"principal components to keep (default {PCAConfig.n_components})")
    p.add_argument("--reference-flops", type=float, default=1e22,
                   help="compute at which families' capabilities are compared (default 1e22)")
    p.set_defaults(handler=pca)


def import_evals(args) -> int:
    result = import_eval_paths(open_store(args), args.files, run=args.run, step=args.step)
    lines = [f"stored {result['rows']} eval rows ({result['source_format']}, {len(result['tasks'])} tasks): "
             f"{result['runs_matched']} run(s) matched, {result['runs_created']} created"
             + (f", {result['rows_replaced']} earlier score(s) replaced" if result["rows_replaced"] else "")]
    lines += [f"warning: {w}" for w in result["warnings"]]
    emit(args, result, "\n".join(lines))
    return 0


def _evals_for_pca(args) -> tuple:
    """Eval rows (run, step, task, metric, value) and one row of sizes per model."""
    if args.csv:
        parsed = parse_eval_file(args.csv)
        models = parsed.models.set_index("run")[["family", "n_params", "tokens", "flops"]]
        return parsed.evals, models, args.csv
    evals = load_evals(open_store(args))
    if evals.empty:
        raise InputError("The store holds no eval results; import some with `python cli.py evals import FILE` "
                         "or give --csv FILE.")
    return evals, model_table(evals), args.db or "store"


def pca(args) -> int:
    if args.components < 1:
        raise InputError(f"--components must be at least 1, got {args.components}.")
    evals, models, source = _evals_for_pca(args)
    try:
        matrix, dropped_metrics, sparse_tasks = pca_matrix(evals, metric=args.metric)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    result = benchmark_pca(matrix, PCAConfig(n_components=args.components))
    payload = result.to_dict()
    payload["capability_score"] = payload["capability"]
    payload["left_out_metrics"] = dropped_metrics
    payload["left_out_tasks"] = sparse_tasks
    sizes = models.reindex(result.models)
    if sizes["family"].notna().any() and (pd.to_numeric(sizes["flops"], errors="coerce") > 0).any():
        efficiency = family_compute_efficiency(result.capability, sizes["flops"], sizes["family"],
                                               reference_flops=args.reference_flops)
        payload["family_efficiency"] = efficiency.to_dict()
    emit(args, payload, _pca_text(result, dropped_metrics, sparse_tasks))
    return 0


def _pca_text(result, dropped_metrics: list, sparse_tasks: list) -> str:
    ratio = np.asarray(result.explained_variance_ratio)
    lines = [f"{len(result.models)} models × {len(result.benchmarks)} benchmarks; "
             f"{result.imputation['n_missing']} missing score(s) filled ({result.imputation['method']})"
             + (f"; {len(result.dropped_models)} model(s) dropped (too few benchmarks)" if result.dropped_models else "")]
    if dropped_metrics:
        lines.append("left out (lower is better): " + ", ".join(dropped_metrics))
    if sparse_tasks:
        lines.append("left out (only models with too few benchmarks have them): " + ", ".join(sparse_tasks))
    lines.append("explained variance: " + ", ".join(f"PC{i + 1} {r:.1%}" for i, r in enumerate(ratio)))
    lines.append("loadings:")
    lines.append(result.loadings.round(3).to_string())
    top = result.capability.sort_values(ascending=False)
    lines.append("capability (PC1), highest first:")
    lines += [f"  {v:+.3f}  {m}" for m, v in top.head(10).items()]
    if len(top) > 10:
        lines.append(f"  … {len(top) - 10} more (use --json for all)")
    return "\n".join(lines)
