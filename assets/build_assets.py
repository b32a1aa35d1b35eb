"""Build the bundled example: corpus sample, tokenizer and a tiny MoE with a few checkpoints.

    nice -n 10 python assets/build_assets.py            # everything (~2 min on 2 idle CPU cores)
    python assets/build_assets.py --skip-model          # corpus + tokenizer only (~30 s)

Writes, deterministically (fixed seeds, hash-based split, CPU fp32 training):
- assets/corpus/heldout.jsonl   the held-out documents (doc_id, domain, text), committed (< 1 MB)
- assets/corpus/manifest.json   sizes per domain, Python version, corpus config
- assets/tokenizer/             byte-level BPE (vocab 4096), loadable with AutoTokenizer
- assets/models/tiny-moe/step-XXXX/   Qwen3-MoE (8 experts, top-2, ~3.2M params), bf16 safetensors
                                      + config + tokenizer + train_state.json, 4 checkpoints
The training side of the corpus is not committed: it is rebuilt from this machine's Python
installation (core.corpus.build_corpus) whenever it is needed.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import corpus  # noqa: E402
from core.probes.model_configs import ModelShape, build_model, count_params  # noqa: E402
from core.probes.devices import pick_device  # noqa: E402
from core.probes.train import TrainConfig, domain_subsets, domain_weights, heldout_loss, train_model  # noqa: E402

ASSETS = ROOT / "assets"
VOCAB_SIZE = 4096  # issue 5: 4-8k; the low end keeps the tied embedding a modest share of tiny models
SEED = 0
# The tiny MoE: 4 layers of 8 experts, top-2, d=128; ~3.15M parameters in all, ~1.38M active.
# seq_len 256 is the positions the config allows (captures may use longer windows than training).
TINY_MOE = ModelShape(d_model=128, n_layers=4, n_heads=4, d_ff=192, vocab_size=VOCAB_SIZE, seq_len=256,
                      n_experts=8, top_k=2)
TRAIN_SEQ_LEN = 128  # blocks trained on: attention is a small share at d=128, T=128
BATCH_SIZE = 16  # 16 × 128 = 2048 tokens per step
TINY_MOE_STEPS = 240  # 240 × 2048 ≈ 0.5M tokens: 67 s on 2 idle CPU cores, 45 min on a busy one
TINY_MOE_CHECKPOINTS = (20, 60, 120, 240)  # early ones dense in time: routing settles early (OLMoE §5)


def build_corpus_and_tokenizer(log) -> tuple:
    t0 = time.time()
    built = corpus.build_corpus(corpus.CorpusConfig(seed=SEED))
    out = ASSETS / "corpus"
    size = corpus.save_documents(built.heldout, out / "heldout.jsonl")
    built.manifest["heldout_bytes"] = size
    (out / "manifest.json").write_text(json.dumps(built.manifest, indent=2) + "\n")
    log(f"corpus: {len(built.train)} train docs, {len(built.heldout)} held-out docs ({size / 1e6:.2f} MB) "
        f"in {time.time() - t0:.1f}s")
    t0 = time.time()
    tokenizer = corpus.train_tokenizer(built.train, vocab_size=VOCAB_SIZE)
    corpus.save_tokenizer(tokenizer, ASSETS / "tokenizer")
    log(f"tokenizer: vocab {tokenizer.get_vocab_size()} in {time.time() - t0:.1f}s")
    return built, tokenizer


def build_tiny_moe(built, tokenizer, steps: int, log) -> None:
    shape = TINY_MOE
    train_blocks = corpus.tokenize_blocks(built.train, tokenizer, TRAIN_SEQ_LEN)
    heldout_blocks = corpus.tokenize_blocks(built.heldout, tokenizer, TRAIN_SEQ_LEN)
    counts = count_params(shape)
    log(f"tiny MoE: {counts.total:,} params ({counts.active:,} active), {len(train_blocks)} train blocks")
    model = build_model(shape, seed=SEED, eos_token_id=tokenizer.token_to_id(corpus.EOS_TOKEN))
    cfg = TrainConfig(tokens=steps * BATCH_SIZE * TRAIN_SEQ_LEN, batch_size=BATCH_SIZE, lr=3e-3, seed=SEED,
                      max_warmup_fraction=0.25, device="cpu")
    out_root = ASSETS / "models" / "tiny-moe"
    checkpoints = [s for s in TINY_MOE_CHECKPOINTS if s <= steps] or [steps]
    weights = domain_weights(train_blocks, dict.fromkeys(heldout_blocks.domains))
    eval_subsets = domain_subsets(heldout_blocks, cfg.final_tokens_per_domain // TRAIN_SEQ_LEN)

    def save(model, step: int) -> None:
        folder = out_root / f"step-{step:04d}"
        frozen = copy.deepcopy(model).to(torch.bfloat16)  # bf16 halves the files; training stays fp32
        frozen.save_pretrained(str(folder))
        corpus.save_tokenizer(tokenizer, folder)
        loss, _ = heldout_loss(model, eval_subsets, weights, pick_device("cpu"))
        state = {"step": step, "tokens": step * cfg.batch_size * TRAIN_SEQ_LEN, "train_seq_len": TRAIN_SEQ_LEN, "heldout_loss": round(loss, 4),
                 "shape": shape.as_dict(), "params": counts.as_dict(), "seed": SEED,
                 "train": cfg.as_dict(), "corpus": "assets/corpus (core.corpus.build_corpus, seed 0)"}
        (folder / "train_state.json").write_text(json.dumps(state, indent=2) + "\n")
        log(f"  saved {folder} (held-out loss {loss:.3f})")

    def every_25(done: int, total: int, message: str) -> None:
        if done % 25 == 0 or done == total:
            log(f"  {message}")

    result = train_model(model, train_blocks, heldout_blocks, cfg, progress=every_25,
                         on_checkpoint=save, checkpoint_steps=checkpoints)
    log(f"tiny MoE trained: {result.steps} steps, {result.tokens:,} tokens, {result.wall_time_s:.0f}s, "
        f"final held-out {result.final_eval_loss:.3f}; per domain "
        + ", ".join(f"{d} {v:.2f}" for d, v in result.domain_loss.items()))
    keep = {f"step-{s:04d}" for s in checkpoints}
    for stale in out_root.iterdir():  # folders of an earlier build with other steps (removed last, so
        if stale.is_dir() and stale.name not in keep:  # a reader never finds the folder empty)
            shutil.rmtree(stale)
    total = sum(p.stat().st_size for p in out_root.rglob("*") if p.is_file())
    log(f"checkpoints: {total / 1e6:.1f} MB in {out_root}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-model", action="store_true", help="build corpus and tokenizer only")
    ap.add_argument("--steps", type=int, default=TINY_MOE_STEPS, help="training steps of the tiny MoE")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    built, tokenizer = build_corpus_and_tokenizer(log)
    if not args.skip_model:
        build_tiny_moe(built, tokenizer, args.steps, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
