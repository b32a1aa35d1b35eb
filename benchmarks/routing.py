"""Routing capture cost: capture + storage against the plain forward pass, and its peak memory.

    python benchmarks/routing.py            # ~1.5 CPU-minutes; 3-4 min wall on a busy 2-core machine
    python benchmarks/routing.py --quick    # smaller token counts, about a third of that

Issue 5 targets: capture overhead ≤ 15% of the forward time on CPU; peak memory independent of
corpus length. Two timings per model, on the same batches (the windows capture_routing cuts, padded
the same way), one torch thread:
  paired      batch by batch, alternately: the plain decoder (no hooks), then the capture step on
              the same batch (router hooks, the batch's rows built and inserted into a temporary
              DuckDB table), then the plain decoder again; process CPU time. Interleaving per
              batch and counting CPU time rather than wall time keeps the other users of a
              shared machine out of the comparison; this is the overhead figure.
  end to end  capture_routing (tokenize, window, pad, forward, rows, DuckDB) against the plain
              forward over all batches, best of ``--repeats``, CPU and wall clock (noisier).
Peak memory: the bundled-size model captures 1× and 4× the token count in fresh processes, once
streaming into DuckDB and once into a sink that drops each chunk; the resident set size, sampled
after every batch, should not grow with the corpus (DuckDB's own page cache may).
Models are random-weight configs, built here: the bundled shape (Qwen3-MoE, d=128, 4 layers, 8
experts, top-2, vocab 4096, as in assets/build_assets.py) and a ~100M-parameter Mixtral-style one.
Text: the bundled held-out corpus (assets/corpus/heldout.jsonl), tokenized with the bundled tokenizer.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from core.routing import capture  # noqa: E402

hf_logging.set_verbosity_error()
torch.set_num_threads(1)

CORPUS = ROOT / "assets" / "corpus" / "heldout.jsonl"
TOKENIZER = ROOT / "assets" / "tokenizer" / "tokenizer.json"

# name → (model_type, config overrides, batch_size, seq_len)
MODELS = {
    "bundled-size (Qwen3-MoE)": (
        "qwen3_moe",
        dict(hidden_size=128, intermediate_size=192, moe_intermediate_size=192, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=4, head_dim=32, num_experts=8, num_experts_per_tok=2,
             vocab_size=4096, max_position_embeddings=512, decoder_sparse_step=1, mlp_only_layers=[]),
        8, 256,
    ),
    "~100M (Mixtral-style)": (
        "mixtral",
        dict(hidden_size=512, intermediate_size=896, num_hidden_layers=8, num_attention_heads=8,
             num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2, vocab_size=4096,
             max_position_embeddings=512),
        4, 256,
    ),
}


def build(model_type: str, overrides: dict) -> torch.nn.Module:
    config = AutoConfig.for_model(model_type, **overrides)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def load_docs() -> list[tuple[str, str]]:
    docs = []
    with open(CORPUS, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            docs.append((record["text"], record["domain"]))
    return docs


def repeat_docs(docs, n_tokens: int, encode) -> list:
    """Enough copies of the corpus to hold n_tokens."""
    per_copy = sum(len(encode(t)) for t, _ in docs)
    return docs * max(1, -(-n_tokens // per_copy))


def encoder():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    return tok, (lambda text: tok.encode(text).ids)


def batches_like_capture(docs, encode, batch_size: int, seq_len: int, max_tokens: int):
    """The (input_ids, attention_mask) pairs capture_routing runs, for the plain forward baseline."""
    windows = list(capture._Windows(docs, encode, seq_len, max_tokens, None))
    out = []
    for start in range(0, len(windows), batch_size):
        group = windows[start : start + batch_size]
        width = max(len(w.ids) for w in group)
        ids = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, w in enumerate(group):
            ids[row, : len(w.ids)] = torch.tensor(w.ids)
            mask[row, : len(w.ids)] = 1
        out.append((ids, mask))
    return out


@torch.inference_mode()
def time_forward(model, batches) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of the plain decoder over the batches."""
    decoder = capture._decoder(model)
    cpu, wall = time.process_time(), time.perf_counter()
    for ids, mask in batches:
        decoder(input_ids=ids, attention_mask=mask, use_cache=False)
    return time.process_time() - cpu, time.perf_counter() - wall


def duckdb_sink(path: Path):
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("SET threads = 1")  # a fair share of a 2-core machine; the forward pass uses one thread too
    con.execute(
        "CREATE TABLE routing_assignments (layer INTEGER, doc_id INTEGER, position INTEGER, token_id INTEGER, "
        "domain VARCHAR, rank INTEGER, expert INTEGER, weight FLOAT)"
    )

    def sink(frame):
        con.register("chunk", frame)
        con.execute("INSERT INTO routing_assignments SELECT layer, doc_id, position, token_id, "
                    "CAST(domain AS VARCHAR), rank, expert, weight FROM chunk")
        con.unregister("chunk")

    return con, sink


def time_capture(model, tok, docs, batch_size, seq_len, max_tokens, store: str) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, tokens) of one capture_routing into a list or a temporary DuckDB file."""
    with tempfile.TemporaryDirectory() as tmp:
        if store == "duckdb":
            con, sink = duckdb_sink(Path(tmp) / "bench.duckdb")
        else:
            kept = []
            sink = kept.append
        cpu, wall = time.process_time(), time.perf_counter()
        summary = capture.capture_routing(model, tok, docs, sink=sink, max_tokens=max_tokens,
                                          batch_size=batch_size, seq_len=seq_len, device="cpu")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if store == "duckdb":
            stored = con.execute("SELECT count(*) FROM routing_assignments").fetchone()[0]
            assert stored == summary.n_rows, (stored, summary.n_rows)
            con.close()
    return cpu, wall, summary.n_tokens


def paired(model, tok, docs, batch_size, seq_len, max_tokens, passes: int) -> dict:
    """Per batch, in turn: the plain decoder, the capture step on the same batch (router hooks on,
    the batch's rows built and inserted into DuckDB), the plain decoder again. Interleaving batch by
    batch lets both sides see the same machine load; times are process CPU seconds (all threads of
    this process, DuckDB's included), so other users of a shared machine barely move them."""
    loaded = capture._as_loaded(model)
    windows = list(capture._Windows(docs, lambda t: tok.encode(t).ids, seq_len, max_tokens, None))
    groups = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
    layer_ids = np.array([m.layer for m in loaded.moe_layers], dtype=np.int32)
    domains = list(dict.fromkeys(d for _, d in docs))
    doc_domain = np.array([domains.index(d) for _, d in docs], dtype=np.int32)
    decoder = capture._decoder(model)

    def plain(group) -> float:
        ids, mask = batches_like_capture_windows(group)
        start = time.process_time()
        with torch.inference_mode():
            decoder(input_ids=ids, attention_mask=mask, use_cache=False)
        return time.process_time() - start

    forward_s, capture_s, ratios = 0.0, 0.0, []
    with tempfile.TemporaryDirectory() as tmp:
        con, sink = duckdb_sink(Path(tmp) / "paired.duckdb")
        for _ in range(passes):
            for group in groups:
                before = plain(group)
                start = time.process_time()
                tap = capture._RouterTap(loaded.moe_layers)
                frame, _ = capture._run_batch(decoder, tap, group, loaded, layer_ids, doc_domain, domains, loaded.device)
                tap.remove()
                sink(frame)
                captured = time.process_time() - start
                forward = (before + plain(group)) / 2
                forward_s += forward
                capture_s += captured
                ratios.append(captured / forward)
        con.close()
    return {"forward_s": forward_s, "capture_s": capture_s, "median_ratio": float(np.median(ratios)),
            "batches": len(ratios)}


def batches_like_capture_windows(group):
    width = max(len(w.ids) for w in group)
    ids = torch.zeros((len(group), width), dtype=torch.long)
    mask = torch.zeros((len(group), width), dtype=torch.long)
    for row, w in enumerate(group):
        ids[row, : len(w.ids)] = torch.tensor(w.ids)
        mask[row, : len(w.ids)] = 1
    return ids, mask


def speed(n_tokens_by_model: dict, repeats: int) -> list[dict]:
    tok, encode = encoder()
    base_docs = load_docs()
    rows = []
    for name, (model_type, overrides, batch_size, seq_len) in MODELS.items():
        model = build(model_type, overrides)
        n_params = sum(p.numel() for p in model.parameters())
        max_tokens = n_tokens_by_model[name]
        docs = repeat_docs(base_docs, max_tokens, encode)
        batches = batches_like_capture(docs, encode, batch_size, seq_len, max_tokens)
        time_forward(model, batches[:2])  # warm-up
        pair = paired(model, tok, docs, batch_size, seq_len, max_tokens, passes=repeats)
        best = {"forward": np.inf, "duckdb": np.inf, "forward_wall": np.inf, "duckdb_wall": np.inf}
        for _ in range(repeats):
            cpu, wall = time_forward(model, batches)
            best["forward"], best["forward_wall"] = min(best["forward"], cpu), min(best["forward_wall"], wall)
            cpu, wall, _ = time_capture(model, tok, docs, batch_size, seq_len, max_tokens, "duckdb")
            best["duckdb"], best["duckdb_wall"] = min(best["duckdb"], cpu), min(best["duckdb_wall"], wall)
        t0 = time.process_time()
        n_encoded = sum(len(encode(text)) for text, _ in docs)
        tokenize_s = (time.process_time() - t0) * max_tokens / n_encoded
        rows.append(dict(model=name, params=n_params, tokens=max_tokens, batch=f"{batch_size}×{seq_len}",
                         tokenize_s=tokenize_s, pair=pair, **{f"{k}_s": v for k, v in best.items()}))
        del model
    return rows


def memory_child(n_tokens: int, store: str) -> None:
    """Run in a fresh process: one capture of n_tokens into DuckDB or nowhere; print RSS in MiB as JSON."""
    tok, encode = encoder()
    model_type, overrides, batch_size, seq_len = MODELS["bundled-size (Qwen3-MoE)"]
    model = build(model_type, overrides)
    docs = repeat_docs(load_docs(), n_tokens, encode)
    before = current_rss_mib()
    samples = [before]
    with tempfile.TemporaryDirectory() as tmp:
        con, to_duckdb = duckdb_sink(Path(tmp) / "mem.duckdb")

        def sink(frame):
            if store == "duckdb":
                to_duckdb(frame)
            samples.append(current_rss_mib())  # after each batch: its tensors and its frame still alive

        summary = capture.capture_routing(model, tok, docs, sink=sink, max_tokens=n_tokens,
                                          batch_size=batch_size, seq_len=seq_len, device="cpu")
        con.close()
    half = len(samples) // 2
    print(json.dumps({"store": store, "tokens": summary.n_tokens, "rows": summary.n_rows, "rss_before_mib": before,
                      "peak_mib": max(samples), "peak_first_half_mib": max(samples[: half + 1]),
                      "peak_second_half_mib": max(samples[half:]), "batches": len(samples) - 1,
                      "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def current_rss_mib() -> float:
    """Resident memory of this process now (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def memory(token_counts: list[int]) -> list[dict]:
    results = []
    for store in ("drop", "duckdb"):
        for n in token_counts:
            out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--store", store],
                                 capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tokens, one pass")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant; the best is reported")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", default="duckdb", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.store)
        return

    tokens = {"bundled-size (Qwen3-MoE)": 4_096 if args.quick else 16_384,
              "~100M (Mixtral-style)": 1_024 if args.quick else 2_048}
    repeats = 1 if args.quick else args.repeats
    print(f"# routing capture benchmark — {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch thread, torch {torch.__version__}, Python {platform.python_version()}")
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[0]}")
    rows = speed(tokens, repeats)
    print()
    print("Paired, batch by batch (plain forward, capture + DuckDB, plain forward on the same batch; "
          "tokens per process-CPU second):\n")
    print("| model | params | tokens × passes | batch | forward tok/s | capture+DuckDB tok/s | overhead (sum) | "
          "overhead (median batch) |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        p = r["pair"]
        n = r["tokens"] * repeats
        print(f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['tokens']} × {repeats} | {r['batch']} | "
              f"{n / p['forward_s']:,.0f} | {n / p['capture_s']:,.0f} | {p['capture_s'] / p['forward_s'] - 1:+.1%} | "
              f"{p['median_ratio'] - 1:+.1%} |")
    print("\nEnd to end through capture_routing (tokenize, window, pad, forward, rows, DuckDB) against the "
          f"plain forward over all batches, best of {repeats}; tokens per process-CPU second (wall clock after):\n")
    print("| model | forward tok/s | capture_routing + DuckDB tok/s | overhead CPU | overhead wall |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['tokens'] / r['forward_s']:,.0f} | {r['tokens'] / r['duckdb_s']:,.0f} | "
              f"{r['duckdb_s'] / r['forward_s'] - 1:+.1%} | {r['duckdb_wall_s'] / r['forward_wall_s'] - 1:+.1%} |")
    print("\n(capture includes tokenization: "
          + ", ".join(f"{r['model']}: {r['tokenize_s'] / r['forward_s']:.1%} of forward" for r in rows) + ")")

    counts = [4_096, 16_384] if args.quick else [8_192, 32_768]  # 4× apart
    mem = memory(counts)
    print("\nMemory (bundled-size model, fresh process per row, RSS sampled after every batch):\n")
    print("| sink | tokens captured | rows | batches | RSS before capture MiB | peak RSS, first half MiB | "
          "peak RSS, second half MiB | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for m in mem:
        print(f"| {m['store']} | {m['tokens']} | {m['rows']} | {m['batches']} | {m['rss_before_mib']:.0f} | "
              f"{m['peak_first_half_mib']:.0f} | {m['peak_second_half_mib']:.0f} | {m['peak_mib']:.0f} |")
    for store in ("drop", "duckdb"):
        first, last = [m for m in mem if m["store"] == store][0], [m for m in mem if m["store"] == store][-1]
        print(f"\npeak RSS growth for {counts[-1] // counts[0]}× the tokens, sink {store}: "
              f"{last['peak_mib'] - first['peak_mib']:+.0f} MiB")
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[0]}")


if __name__ == "__main__":
    main()
