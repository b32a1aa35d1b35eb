"""Probes into the store: what the Probes page and ``cli.py probe`` share.

- A sweep (core.probes.sweep) is checked, trained and then stored in ONE transaction: every run with
  its curves, its final held-out loss per corpus domain (``evals``, task ``heldout_<domain>``), the
  MoE runs' routing snapshots (``routing_captures`` / ``routing_assignments``, taken through
  core.routing.capture at a few checkpoints, kept in memory until then), and a ``sweep`` row in
  ``probes``. A failed or cancelled sweep stores nothing; a finished one lands whole.
- Every run of a sweep carries the tag ``sweep=<id>``: the Fits page selects a sweep by that tag.
- A throughput probe (core.probes.throughput) stores one ``probes`` row per pass kind (forward,
  forward_backward), in one transaction.

Everything that can be checked before training is checked first: sizes against budgets, step
limits, the device and precision, run names already in the store.

Under torchrun (core.probes.distributed) every rank trains or measures, and only rank 0 touches
the store: callers pass ``store=None`` on the other ranks. The checks against the store and the
write run on rank 0 through ``distributed.on_main``, which raises their error on every rank, so a
refused sweep stops all ranks before training and each run is stored once.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from core import corpus as corpus_mod
from core.corpus import Blocks
from core.errors import DuplicateRunError, InputError, ProbeError
from core.progress import ProgressFn
from core.runs import ParsedRun
from db.evals import insert_evals
from db.probes import SWEEP_KIND, THROUGHPUT_KINDS, insert_probe, list_probes
from db.routing import delete_captures_of, insert_assignments, insert_capture
from db.store import Store, validate_parsed

SWEEP_TAG_PREFIX = "sweep="
# Duplicate-name policies a sweep accepts: "skip" would throw trained runs away, so it is not one.
SWEEP_DUPLICATE_POLICIES = ("error", "replace", "rename")
CORPORA = {
    "bundled": "bundled corpus: training text rebuilt from this machine's Python sources (~2.8M tokens, "
               "~20 s to load), scored on the committed held-out sample",
    "sample": "held-out sample only, split 2:1 by source file (~95k training tokens, loads in a second): "
              "for trying a configuration quickly, not for fitting a law",
}
DTYPES = ("auto", "fp32", "bf16")  # auto = what the device trains in (devices.pick_device)
ROUTING_CORPUS = "probe held-out snapshot"  # the ``corpus`` of every routing snapshot of a sweep
SNAPSHOT_SOURCE = "probe_sweep"  # ``info["source"]`` of those snapshots (a replaced run's are deleted)
ROUTING_TOKENS = 4096  # tokens routed per snapshot: a few per domain, the same tokens at every checkpoint
ROUTING_DOC_CHARS = 800  # each snapshot document is cut to this, so every domain gets some of the tokens


# ============================================================================================ inputs
def parse_numbers(text: str, what: str) -> list:
    """Numbers separated by commas or spaces ("1e11, 3e11") as floats; ProbeError for anything else."""
    parts = [p for p in re.split(r"[,;\s]+", str(text or "").strip()) if p]
    values = []
    for p in parts:
        try:
            value = float(p)
        except ValueError:
            raise ProbeError(f"{what}: {p!r} is not a number; give numbers separated by commas, e.g. 1e11, 3e11.") from None
        if not (math.isfinite(value) and value > 0):
            raise ProbeError(f"{what}: {p!r} must be a positive number.")
        values.append(value)
    if not values:
        raise ProbeError(f"{what}: give at least one number, e.g. 1e11, 3e11.")
    return values


@dataclass(frozen=True)
class SweepStep:
    """One training step as run_sweep reports it: "run i/n NAME: step s/S loss x"."""

    run_index: int  # 1-based
    n_runs: int
    run: str
    step: int
    steps: int
    loss: float  # training loss of this step

    def short(self) -> str:
        """What a 40-character progress line can show."""
        return f"run {self.run_index}/{self.n_runs} step {self.step}/{self.steps} loss {self.loss:.3f}"


def parse_progress(message: str) -> Optional[SweepStep]:
    """The SweepStep a run_sweep progress message describes, else None (the live loss chart and
    the CLI's short progress line are drawn from these)."""
    m = re.match(r"^run (\d+)/(\d+) (.+?): step (\d+)/(\d+) loss (\S+)$", message or "")
    if not m:
        return None
    try:
        loss = float(m.group(6))
    except ValueError:
        return None
    return SweepStep(int(m.group(1)), int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5)), loss)


def sweep_tag(sweep_id: str) -> str:
    return f"{SWEEP_TAG_PREFIX}{sweep_id}"


def new_sweep_id() -> str:
    """A readable, practically unique id: the local start time to the millisecond."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"


# ============================================================================================ corpus
@dataclass
class ProbeCorpus:
    name: str  # a key of CORPORA
    train: Blocks
    heldout: Blocks
    heldout_docs: list  # [corpus.Document] scored (and routed, for MoE snapshots)
    tokenizer: object  # tokenizers.Tokenizer
    info: dict  # stored in every run's config

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())


def sample_split(documents: Sequence) -> tuple:
    """(train, held-out) documents: every third source file of each domain held out (a file's
    chunks stay together, as in the bundled split)."""
    train, held = [], []
    for domain, docs in corpus_mod.by_domain(documents).items():
        sources = list(dict.fromkeys(d.doc_id.split("#", 1)[0] for d in docs))
        held_sources = set(sources[2::3]) if len(sources) >= 2 else set()
        for d in docs:
            (held if d.doc_id.split("#", 1)[0] in held_sources else train).append(d)
    return train, held


def load_corpus(name: str, seq_len: int, tokenizer=None) -> ProbeCorpus:
    """Training and held-out blocks of ``seq_len`` tokens for a corpus of CORPORA, with the bundled tokenizer."""
    if name not in CORPORA:
        raise ProbeError(f"Unknown corpus {name!r}; use one of {', '.join(CORPORA)}.")
    tokenizer = tokenizer or corpus_mod.load_tokenizer()
    if name == "bundled":
        heldout_docs = corpus_mod.load_heldout()
        train, heldout = corpus_mod.bundled_blocks(seq_len, tokenizer=tokenizer)
    else:
        train_docs, heldout_docs = sample_split(corpus_mod.load_heldout())
        train = corpus_mod.tokenize_blocks(train_docs, tokenizer, seq_len)
        heldout = corpus_mod.tokenize_blocks(heldout_docs, tokenizer, seq_len)
    info = {"corpus": name, "tokenizer": "assets/tokenizer", "vocab_size": int(tokenizer.get_vocab_size()),
            "train_tokens": train.n_tokens, "heldout_tokens": heldout.n_tokens}
    return ProbeCorpus(name, train, heldout, heldout_docs, tokenizer, info)


# ============================================================================================ checks
def check_sweep(store: Store, plan, *, on_duplicate: str = "error", max_steps: Optional[int] = None) -> None:
    """What the core plan cannot know: a step limit, and run names already in the store."""
    if on_duplicate not in SWEEP_DUPLICATE_POLICIES:
        raise InputError(f"Unknown duplicate policy {on_duplicate!r}: choose one of {', '.join(SWEEP_DUPLICATE_POLICIES)}.")
    if max_steps is not None:
        if max_steps < 1:
            raise ProbeError(f"max_steps must be at least 1 (got {max_steps}): a run of zero steps trains nothing.")
        longest = max(plan.runs, key=lambda r: r.steps)
        if longest.steps > max_steps:
            raise ProbeError(f"Run {longest.name} needs {longest.steps:,} steps, more than max_steps {max_steps:,}; "
                             "lower its budget, drop small sizes, or raise max_steps.")
    if on_duplicate == "error":
        taken = set(store.run_names()) & {r.name for r in plan.runs}
        if taken:
            raise DuplicateRunError(f"A run named {sorted(taken)[0]!r} already exists ({len(taken)} of this sweep's "
                                    "names do): change the seed or name prefix, or choose replace or rename.")


def check_dtype(choice, dtype: str) -> None:
    """The throughput probe runs in the device's precision (bf16 autocast on cuda, fp32 elsewhere)."""
    if dtype not in DTYPES:
        raise ProbeError(f"Unknown dtype {dtype!r}; use auto, fp32 or bf16.")
    if dtype != "auto" and dtype != choice.dtype:
        raise ProbeError(f"{choice.kind} runs probes in {choice.dtype}, not {dtype}"
                         + ("; bf16 needs a CUDA GPU with bf16 support" if dtype == "bf16" else "")
                         + ": choose dtype auto or " + choice.dtype + ".")


# ============================================================================================ routing
@dataclass
class RoutingSnapshot:
    run: str  # the run's name in the sweep (before any rename)
    step: int
    summary: object  # core.routing.capture.CaptureSummary
    assignments: pd.DataFrame  # ASSIGNMENT_COLUMNS


def snapshot_docs(documents: Sequence, max_chars: int = ROUTING_DOC_CHARS) -> list:
    """(text, domain) pairs, domains interleaved and texts cut short, so a few thousand routed tokens
    cover every domain."""
    queues = [list(docs) for docs in corpus_mod.by_domain(documents).values()]
    out = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend((q[i].text[:max_chars], q[i].domain) for q in queues if i < len(q))
    return out


@dataclass
class RoutingSnapshots:
    """The sweep's ``on_checkpoint`` hook: captures each MoE checkpoint's routing on the same held-out
    tokens (core.routing.capture), in memory until the sweep is stored."""

    docs: list  # (text, domain)
    tokenizer: object
    seq_len: int
    max_tokens: int = ROUTING_TOKENS
    snapshots: list = field(default_factory=list)

    def __call__(self, model, step: int, run_name: str) -> None:
        from core.routing.capture import capture_routing  # torch: imported when a sweep trains MoE runs

        chunks: list = []
        summary = capture_routing(model, self.tokenizer, self.docs, sink=chunks.append, max_tokens=self.max_tokens,
                                  seq_len=self.seq_len)
        self.snapshots.append(RoutingSnapshot(run_name, int(step), summary, pd.concat(chunks, ignore_index=True)))


def _insert_snapshot(conn, snap: RoutingSnapshot, run_name: str, sweep_id: str, max_tokens: Optional[int]) -> int:
    s = snap.summary
    info = {"source": SNAPSHOT_SOURCE, "run": run_name, "sweep": sweep_tag(sweep_id), "layers": s.layers,
            "device": s.device, "seconds": round(s.seconds, 3), "truncated": s.truncated, "n_docs": s.n_docs,
            "n_rows": s.n_rows, "domains": s.domains, "max_tokens": max_tokens, "model_dir": None,
            "model_group": run_name, "tokenizer": str(corpus_mod.TOKENIZER_DIR / "tokenizer.json"),
            "router_prob_mean": None if s.router_prob_mean is None else np.asarray(s.router_prob_mean).tolist()}
    capture_id = insert_capture(conn, {
        "model_ref": run_name, "family": s.family, "corpus": ROUTING_CORPUS, "checkpoint_step": snap.step,
        "n_layers": s.n_layers, "n_experts": s.n_experts, "top_k": s.top_k, "n_tokens": s.n_tokens, "info": info})
    insert_assignments(conn, capture_id, snap.assignments)
    return capture_id


def _delete_probe_captures(conn, run_name: str) -> None:
    """Routing snapshots an earlier sweep stored for a run that is being replaced."""
    delete_captures_of(conn, run_name, source=SNAPSHOT_SOURCE)


# ============================================================================================ sweeps
def sweep_summary(runs: Sequence, sweep_id: str, extra: Optional[dict] = None) -> dict:
    """The ``probes`` row of a sweep: its training throughput over all runs and what it was."""
    wall = sum(float(r.config.get("wall_time_s") or 0.0) for r in runs)
    tokens = sum(float(r.tokens or 0.0) for r in runs)
    flops = sum(float(r.flops or 0.0) for r in runs)
    hardware = runs[0].config.get("hardware", {}) if runs else {}
    return {
        "kind": SWEEP_KIND, "device": hardware.get("name") or hardware.get("kind") or "",
        "dtype": hardware.get("dtype") or "",
        "tokens_per_s": tokens / wall if wall > 0 else None,
        "achieved_tflops": flops / wall / 1e12 if wall > 0 else None,
        "mfu": None, "peak_memory_bytes": None,
        "config": {"sweep_id": sweep_id, "tag": sweep_tag(sweep_id), "hardware": hardware,
                   "sweep": runs[0].config.get("sweep") if runs else None, "corpus": runs[0].config.get("corpus")
                   if runs else None, "total_tokens": tokens, "total_flops": flops, "train_wall_time_s": wall,
                   **(extra or {})},
    }


def store_sweep(store: Store, runs: Sequence, *, sweep_id: Optional[str] = None, on_duplicate: str = "error",
                snapshots: Sequence[RoutingSnapshot] = (), routing_tokens: Optional[int] = None,
                extra: Optional[dict] = None) -> dict:
    """Store a sweep's runs (core.probes.sweep.ProbeRun), their held-out evals, routing snapshots and
    a ``sweep`` probes row in ONE transaction. Returns sweep_id, tag, probe_id, runs (id, name,
    n_metric_rows, n_evals per stored run, in sweep order) and capture_ids."""
    if not runs:
        raise ProbeError("The sweep has no runs to store.")
    if on_duplicate not in SWEEP_DUPLICATE_POLICIES:
        raise InputError(f"Unknown duplicate policy {on_duplicate!r}: choose one of {', '.join(SWEEP_DUPLICATE_POLICIES)}.")
    sweep_id = sweep_id or new_sweep_id()
    tag = sweep_tag(sweep_id)
    parsed = []
    for r in runs:
        fields = r.parsed_run_fields()
        fields["tags"] = list(fields.get("tags") or []) + [tag]
        fields["source_file"] = fields.get("source_file") or f"probe sweep {sweep_id}"
        parsed.append(ParsedRun(**fields))
    for p in parsed:
        validate_parsed(p)
    names = [p.name for p in parsed]
    if len(set(names)) != len(names):
        raise InputError("Two runs of the sweep share a name; give distinct budgets and sizes.")
    summary = sweep_summary(runs, sweep_id, extra)
    added, stored_name = [], {}
    with store.write() as conn:
        try:  # no "skip" for sweeps, so stored rows line up with runs
            stored = store.ingest_into(conn, parsed, on_duplicate, on_replace=_delete_probe_captures)
        except DuplicateRunError as exc:
            raise DuplicateRunError(str(exc).replace("skip, replace or rename", "replace or rename")) from None
        for row, run in zip(stored, runs):
            stored_name[row["parsed_name"]] = row["name"]
            evals = run.evals[["step", "task", "metric", "value"]]
            n_evals = insert_evals(conn, evals.assign(run_id=row["id"], source_file=f"probe sweep {sweep_id}"))
            added.append({"id": row["id"], "name": row["name"], "n_metric_rows": row["n_metric_rows"],
                          "n_evals": n_evals})
        capture_ids = [_insert_snapshot(conn, s, stored_name.get(s.run, s.run), sweep_id, routing_tokens)
                       for s in snapshots]
        summary["config"]["runs"] = [a["name"] for a in added]
        summary["config"]["capture_ids"] = capture_ids
        probe_id = insert_probe(conn, **summary)
    return {"sweep_id": sweep_id, "tag": tag, "probe_id": probe_id, "runs": added, "capture_ids": capture_ids}


@dataclass
class SweepOutcome:
    stored: dict  # what store_sweep returned
    runs: list  # [ProbeRun] as trained (names before any rename)
    plan: object  # the SweepPlan that ran
    seconds: float  # wall time from the first step to the commit

    @property
    def names(self) -> list:
        return [r["name"] for r in self.stored["runs"]]

    def table(self) -> pd.DataFrame:
        """runs_table of the sweep, with the names as stored."""
        from core.probes.sweep import runs_table  # torch (see run_and_store_sweep)

        table = runs_table(self.runs)
        table["name"] = self.names
        return table


def run_and_store_sweep(store: Store, cfg, data: ProbeCorpus, *, plan=None, progress: Optional[ProgressFn] = None,
                        on_duplicate: str = "error", max_steps: Optional[int] = None,
                        routing_tokens: int = ROUTING_TOKENS, sweep_id: Optional[str] = None) -> SweepOutcome:
    """Check the sweep (plan, step limit, names), train it, store it whole; see the module note.

    ``routing_tokens`` = 0 (or ``cfg.moe_checkpoints`` = 0) takes no routing snapshots of MoE runs.
    Under torchrun: call it on every rank, with the store on rank 0 and None elsewhere; the outcome's
    ``stored`` is None on the other ranks.
    """
    from core.probes import distributed  # torch: only a sweep that trains pays for it
    from core.probes.sweep import plan_sweep, run_sweep

    if cfg.vocab_size != data.vocab_size:
        raise ProbeError(f"The sweep's vocab_size {cfg.vocab_size} differs from the tokenizer's {data.vocab_size}.")
    if plan is None:
        plan = plan_sweep(cfg, train_tokens=data.train.n_tokens, calibrate=False)
    distributed.on_main(lambda: check_sweep(store, plan, on_duplicate=on_duplicate, max_steps=max_steps))
    hook = None
    if "moe" in cfg.archs and cfg.moe_checkpoints > 0 and routing_tokens > 0:
        hook = RoutingSnapshots(snapshot_docs(data.heldout_docs), data.tokenizer, cfg.seq_len, routing_tokens)
    started = time.perf_counter()
    runs = run_sweep(cfg, data.train, data.heldout, plan=plan, progress=progress, on_checkpoint=hook,
                     corpus_info=data.info)
    ctx = distributed.current()
    extra = {"est_seconds": plan.est_seconds, "max_steps": max_steps}
    if ctx.enabled:
        extra["distributed"] = distributed.describe(None, ctx, strategies=sorted({str(r.parallel) for r in plan.runs}))
    stored = distributed.on_main(lambda: store_sweep(
        store, runs, sweep_id=sweep_id, on_duplicate=on_duplicate, snapshots=hook.snapshots if hook else (),
        routing_tokens=routing_tokens if hook else None, extra=extra))
    return SweepOutcome(stored, runs, plan, time.perf_counter() - started)


def list_sweeps(store: Store) -> pd.DataFrame:
    """Stored sweeps, newest first: probe id, sweep id, tag, runs, device, FLOPs, training time, created."""
    probes = list_probes(store, kinds=[SWEEP_KIND])
    rows = [{"probe_id": int(r.id), "sweep_id": r.config.get("sweep_id"), "tag": r.config.get("tag"),
             "runs": list(r.config.get("runs") or []), "n_runs": len(r.config.get("runs") or []),
             "device": r.device, "dtype": r.dtype, "total_flops": r.config.get("total_flops"),
             "train_wall_time_s": r.config.get("train_wall_time_s"), "created_at": r.created_at}
            for r in probes.itertuples()]
    return pd.DataFrame(rows, columns=["probe_id", "sweep_id", "tag", "runs", "n_runs", "device", "dtype",
                                       "total_flops", "train_wall_time_s", "created_at"])


def sweep_runs(store: Store, tag: str) -> pd.DataFrame:
    """The stored runs carrying ``tag``, with their budget and final losses (from each run's config)."""
    runs = store.runs()
    mine = runs[runs["tags"].fillna("[]").map(lambda t: tag in json.loads(t or "[]"))]
    configs = mine["config"].map(lambda c: json.loads(c or "{}"))
    out = mine[["name", "arch", "n_params", "n_active_params", "n_experts", "top_k", "tokens", "flops"]].copy()
    out.insert(2, "budget_flops", configs.map(lambda c: c.get("budget_flops")))
    out["final_eval_loss"] = configs.map(lambda c: c.get("final_eval_loss"))
    out["final_train_loss"] = configs.map(lambda c: c.get("final_train_loss"))
    out["wall_time_s"] = configs.map(lambda c: c.get("wall_time_s"))
    # a D-CPT mixture sweep (core/probes/mixture.py) has no budget: its runs vary the domain ratio
    for key in MIXTURE_COLUMNS:
        out[key] = configs.map(lambda c: c.get(key))
    return out.reset_index(drop=True)


MIXTURE_COLUMNS = ("mixture_ratio", "final_domain_loss", "final_general_loss")


def is_mixture_sweep(runs: pd.DataFrame) -> bool:
    """Whether :func:`sweep_runs` rows are a mixture sweep's (each run has its domain ratio)."""
    return not runs.empty and bool(runs["mixture_ratio"].notna().all())


# ============================================================================================ throughput
def throughput_shape(params: float, arch: str = "dense", *, n_experts: int = 8, top_k: int = 2, seq_len: int = 128,
                     vocab_size: int = 4096):
    """The probe model shape for a target ACTIVE parameter count (core.probes.model_configs)."""
    from core.probes.model_configs import shape_for_params  # torch and transformers configs

    if arch == "moe" and not (n_experts >= 2 and 1 <= top_k <= n_experts):
        raise ProbeError(f"MoE needs experts ≥ 2 and 1 ≤ top-k ≤ experts (got {n_experts}, {top_k}).")
    if seq_len < 2:
        raise ProbeError(f"seq_len {seq_len} must be at least 2.")
    return shape_for_params(float(params), arch, vocab_size, int(seq_len), int(n_experts), int(top_k))


def store_throughput(store: Store, results: Sequence) -> list:
    """One ``probes`` row per ThroughputResult, in one transaction; returns their ids."""
    if not results:
        raise ProbeError("The throughput probe returned no results to store.")
    ids = []
    with store.write() as conn:
        for r in results:
            config = {**r.config, "device_kind": r.device, "peak_tflops": r.peak_tflops, "peak_source": r.peak_source,
                      "world_size": r.world_size, "parallel": r.parallel}
            ids.append(insert_probe(conn, kind=r.kind, device=r.device_name, dtype=r.dtype, config=config,
                                    tokens_per_s=float(r.tokens_per_s), achieved_tflops=float(r.achieved_tflops),
                                    mfu=None if r.mfu is None else float(r.mfu),
                                    peak_memory_bytes=float(r.peak_memory_bytes)))
    return ids


def run_and_store_throughput(store: Store, shape, *, batch_size: int = 8, seq_len: Optional[int] = None,
                             device: str = "auto", dtype: str = "auto", compile: bool = False, iters: int = 5,
                             warmup: int = 2, progress: Optional[ProgressFn] = None, parallel: str = "auto") -> tuple:
    """Check, measure (forward and forward+backward) and store; returns (results, probe ids).

    Under torchrun: call it on every rank, with the store on rank 0 and None elsewhere (``batch_size``
    is per rank; the results are the job's); the probe ids are [] on the other ranks.
    """
    from core.probes import distributed  # torch: only a probe that measures pays for it
    from core.probes.devices import pick_device
    from core.probes.throughput import measure_throughput

    choice = pick_device(device)
    check_dtype(choice, dtype)
    if iters < 1 or warmup < 0:
        raise ProbeError(f"iters {iters} must be at least 1 and warmup {warmup} at least 0.")
    results = measure_throughput(shape, batch_size, seq_len, device=device, compile=compile, iters=iters,
                                 warmup=warmup, progress=progress, parallel=parallel)
    return results, distributed.on_main(lambda: store_throughput(store, results)) or []


def throughput_table(store: Store) -> pd.DataFrame:
    """Stored throughput probes for display, newest first."""
    probes = list_probes(store, kinds=THROUGHPUT_KINDS)
    rows = []
    for r in probes.itertuples():
        c = r.config
        rows.append({"id": int(r.id), "kind": r.kind, "device": r.device, "dtype": r.dtype,
                     "arch": c.get("arch"), "params": c.get("n_params"), "active params": c.get("n_active_params"),
                     "batch": c.get("batch_size"), "seq_len": c.get("seq_len"), "compile": c.get("compile"),
                     "tokens/s": r.tokens_per_s, "TFLOP/s": r.achieved_tflops, "MFU": r.mfu,
                     "peak memory (MiB)": None if r.peak_memory_bytes is None or pd.isna(r.peak_memory_bytes)
                     else r.peak_memory_bytes / 2 ** 20,
                     "peak source": c.get("peak_source"), "created": r.created_at})
    return pd.DataFrame(rows, columns=["id", "kind", "device", "dtype", "arch", "params", "active params", "batch",
                                       "seq_len", "compile", "tokens/s", "TFLOP/s", "MFU", "peak memory (MiB)",
                                       "peak source", "created"])


# ============================================================================================ mixture sweeps
def run_and_store_mixture(store: Store, cfg, data: ProbeCorpus, *, progress: Optional[ProgressFn] = None,
                          on_duplicate: str = "error", max_steps: Optional[int] = None,
                          sweep_id: Optional[str] = None) -> SweepOutcome:
    """A D-CPT mixture sweep (core/probes/mixture.py: sizes × tokens × domain ratios, each run's
    domain_loss and general_loss): checked, trained and stored whole like an IsoFLOP sweep, every run
    tagged ``sweep=<id>`` and ``mixture``. Single-process."""
    from types import SimpleNamespace

    from core.probes.mixture import plan_mixture, run_mixture  # torch: only a sweep that trains pays for it

    if cfg.vocab_size != data.vocab_size:
        raise ProbeError(f"The sweep's vocab_size {cfg.vocab_size} differs from the tokenizer's {data.vocab_size}.")
    plan = SimpleNamespace(runs=plan_mixture(cfg, list(dict.fromkeys(data.train.domains))), est_seconds=None)
    check_sweep(store, plan, on_duplicate=on_duplicate, max_steps=max_steps)
    started = time.perf_counter()
    runs = run_mixture(cfg, data.train, data.heldout, progress=progress, corpus_info=data.info)
    stored = store_sweep(store, runs, sweep_id=sweep_id, on_duplicate=on_duplicate,
                         extra={"sweep_kind": "mixture", "max_steps": max_steps})
    return SweepOutcome(stored, runs, plan, time.perf_counter() - started)
