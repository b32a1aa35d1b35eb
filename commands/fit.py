"""CLI: fit a scaling law to stored runs or a run-summary table, and list stored fits (issue 3).

    python cli.py fit --law chinchilla --method approach3 [--runs NAME...|--csv FILE|--tag T|--filter S]
                      [--bootstrap B] [--drop-highest K] [--seed S] [--fix-alpha-beta] [--json]
    python cli.py fits [--json] [--delete ID]

A text bar on stderr follows the grid of starts and the bootstrap; Ctrl-C stops the fit and
nothing is stored. Every fit is stored (with its selection and settings) and printed with its id.
"""
from __future__ import annotations

import json

from commands.common import add_common, emit, open_store
from core.errors import InputError
from core.fitting.chinchilla import Approach3Settings
from core.registry import LAW_NAMES, LAWS
from core.progress import text_bar
from services import fits as fit_data
from services.fits import delete_fit, list_fits


def register(sub) -> None:
    p = add_common(sub.add_parser("fit", help="fit a scaling law (Chinchilla Approach 1/2/3, Kaplan, power law, routed, "
                                               "data-constrained)"))
    p.add_argument("--law", default="chinchilla", choices=LAW_NAMES)
    p.add_argument("--method", help="chinchilla: approach3 (default), approach1, approach2; other laws: huber_log")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--runs", nargs="+", metavar="NAME", help="stored runs to fit (default: all runs)")
    src.add_argument("--csv", metavar="FILE", help="a run-summary table (N, D or C, loss); its runs are not stored")
    p.add_argument("--tag", nargs="+", default=[], metavar="TAG", help="keep runs carrying any of these tags")
    p.add_argument("--filter", metavar="TEXT", help="keep runs whose name or a tag contains TEXT")
    p.add_argument("--target", default="final", choices=list(fit_data.TARGET_KINDS),
                   help="final value (default), value at --step, points along the curves, or an eval (--task)")
    p.add_argument("--metric", default="loss", help="metric to fit (default loss; for --target eval the eval's metric)")
    p.add_argument("--step", type=float, help="step of --target at_step")
    p.add_argument("--task", help="benchmark of --target eval")
    p.add_argument("--n-kind", default="total", choices=list(fit_data.N_KINDS),
                   help="which parameter count is N (Kaplan et al. 2020 use non-embedding)")
    p.add_argument("--x", default="flops", choices=fit_data.X_CHOICES, help="variable of power_law_offset")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples (0: none; default 1000)")
    p.add_argument("--drop-highest", type=int, default=0, metavar="K", help="drop the K highest-loss points first")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--fix-alpha-beta", action="store_true", help="Chinchilla: tie alpha = beta (few model sizes)")
    p.add_argument("--weight-by-run", action="store_true", help="give every run the same total weight")
    p.add_argument("--grid", default="full", choices=list(fit_data.START_GRIDS),
                   help="Approach 3 start grid: full (4,500 starts, published), coarse (243), quick (32)")
    p.add_argument("--budgets", nargs="+", type=float, metavar="C", default=list(Approach3Settings.budgets),
                   help="FLOP budgets for N*, D* and tokens per parameter")
    p.add_argument("--name", help="a name for the stored fit")
    p.set_defaults(handler=fit)

    p = add_common(sub.add_parser("fits", help="list stored fits"))
    p.add_argument("--delete", type=int, metavar="ID", help="delete the stored fit ID")
    p.set_defaults(handler=fits)


def _check_args(args) -> None:
    if args.bootstrap < 0:
        raise InputError("--bootstrap must be ≥ 0")
    if args.drop_highest < 0:
        raise InputError("--drop-highest must be ≥ 0")
    if args.csv and (args.tag or args.filter):
        raise InputError("--tag and --filter select stored runs; a --csv table is fitted whole")
    if args.csv and args.target != "final":
        raise InputError("a --csv run-summary table has final values only: drop --target")
    if any(not b > 0 for b in args.budgets):
        raise InputError("--budgets must be positive FLOP counts, e.g. 1e21 5.76e23")


def _keep_freed_memory() -> None:
    """Let this process reuse the memory the fit frees instead of handing it back to the OS.

    The fit allocates and frees arrays of (starts × points) on every Newton step; glibc returns blocks
    over 128 KiB (and the top of the heap over 128 KiB) to the kernel at once, so each step faults its
    pages in again: 0.2–0.3 s of system time in `cli.py fit` on the Chinchilla table (benchmarks/README.md,
    Approach 3). Raising both thresholds keeps them in the heap (peak memory unchanged, 236 MB). A no-op
    where the C library has no mallopt (macOS, musl, Windows).
    """
    import ctypes  # only here: nothing else in the CLI needs it

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest allowed value on 64-bit
    mallopt(m_trim_threshold, 1 << 30)


def fit(args) -> int:
    method = args.method or LAWS[args.law].method
    fit_data.check_method(args.law, method)
    _check_args(args)
    _keep_freed_memory()
    options = fit_data.FitOptions(law=args.law, method=method, drop_highest=args.drop_highest,
                                  n_bootstrap=args.bootstrap, seed=args.seed, fix_alpha_eq_beta=args.fix_alpha_beta,
                                  grid=args.grid, budgets=tuple(args.budgets), x=args.x)
    store = open_store(args)
    try:
        if args.csv:
            data = fit_data.load_csv_data(args.csv, metric=args.metric, n_kind=args.n_kind)
            data.selection["weight_by_run"] = bool(args.weight_by_run)
        else:
            runs = fit_data.select_runs(store, args.runs, args.filter, args.tag)
            target = fit_data.Target(kind=args.target, metric=args.metric, step=args.step, task=args.task)
            data = fit_data.load_fit_data(store, runs, target, args.n_kind, args.weight_by_run,
                                          {"filter": {"names": args.runs, "name_contains": args.filter, "tags": args.tag}})
        fit_id, result = fit_data.fit_and_save(store, data, options, name=args.name, progress=_bar())
    finally:
        store.close()
    payload = {
        "fit_id": fit_id, "law": result.law, "method": result.method, "target": data.target.label(),
        "params": result.params, "stderr": result.stderr, "intervals": result.intervals,
        "objective": result.objective, "n_points": result.n_points, "derived": result.derived,
        "optima": [row.to_dict() for row in result.optima],
        "warnings": result.warnings, "selection": _selection_summary(data.selection),
    }
    emit(args, payload, _text(fit_id, result, data))
    return 0


def _bar():
    """core.progress.text_bar, redrawn only when the percentage or the phase changes (a quiet log)."""
    draw = text_bar()
    last = {"key": None}

    def update(done: int, total: int, message: str = "") -> None:
        key = (int(100 * done / total) if total > 0 else 100, message.split(" (")[0] if done < total else "end")
        if key != last["key"]:
            last["key"] = key
            draw(done, total, message)

    return update


def _selection_summary(selection: dict) -> dict:
    """The selection without the per-point arrays (those stay in the store)."""
    out = {k: v for k, v in selection.items() if k not in ("points", "runs")}
    out["n_runs"] = len(selection.get("runs") or [])
    return out


def _text(fit_id: int, result, data) -> str:
    source = data.selection.get("file") or f"{len(data.selection.get('runs', []))} runs"
    lines = [f"fit #{fit_id}: {result.law} by {result.method} on {source} ({result.n_points} points), "
             f"target {data.target.label()}"]
    for name, value in result.params.items():
        se = result.stderr.get(name)
        lo, hi = result.intervals.get(name, [None, None])
        extra = f" ± {se:.4g} (95%: {lo:.4g} – {hi:.4g})" if se is not None and lo is not None else ""
        lines.append(f"  {name:>8} = {value:.6g}{extra}")
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def fits(args) -> int:
    store = open_store(args)
    try:
        if args.delete is not None:
            delete_fit(store, args.delete)
            emit(args, {"deleted": args.delete}, f"deleted fit #{args.delete}")
            return 0
        frame = list_fits(store)
    finally:
        store.close()
    rows = []
    for r in frame.to_dict("records"):
        sel = r["selection"] or {}
        rows.append({"id": r["id"], "name": r["name"], "law": r["law"], "method": r["method"], "target": r["target"],
                     "source": sel.get("file") or sel.get("source") or "", "n_runs": len(sel.get("runs") or []),
                     "n_points": (r["diagnostics"] or {}).get("n_points"), "params": r["params"],
                     "intervals": r["intervals"], "created_at": str(r["created_at"])})
    text = "\n".join(f"#{r['id']:<4} {r['law']:<16} {r['method']:<10} {r['target']:<18} "
                     f"{r['n_points'] if r['n_points'] is not None else '':>5} pts  "
                     + json.dumps({k: float(f"{v:.4g}") for k, v in r["params"].items()
                                   if isinstance(v, (int, float))}) for r in rows) or "no fits stored"
    emit(args, {"fits": rows}, text)
    return 0
