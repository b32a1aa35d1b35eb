"""CLI: capture a MoE checkpoint's routing on text files, list captures, import a trace (issue 5).

    python cli.py route --model DIR --text FILE... [--domain NAME per file] [--max-tokens N] [--json]
    python cli.py route --list [--json]
    python cli.py route --trace FILE [--model-ref NAME] [--json]
    python cli.py route --show ID [--json]

``--json`` prints ``capture_id`` and ``layers``: per MoE layer its index, ``load`` (assignments per
expert; sums to tokens × top-k), ``cv``, ``max_vio``, ``entropy`` and ``vocab_specialization``
(top-1, tokens seen at least 10 times; null when no token is that frequent).
"""
from __future__ import annotations

import argparse

from commands.common import add_common, emit, open_store
from core.errors import InputError
from core.progress import text_bar
from services import routing

VOCAB_MIN_COUNT = 10  # the issue's "tokens seen at least 10 times"


def register(sub) -> None:
    p = add_common(sub.add_parser(
        "route", help="capture MoE routing on text files, list captures, import a routing trace",
        description="Capture which experts a local MoE checkpoint (safetensors) routes each token to, and store it."))
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", metavar="DIR", help="local Hugging Face MoE checkpoint folder (config.json + *.safetensors)")
    what.add_argument("--list", action="store_true", help="list stored captures")
    what.add_argument("--trace", metavar="FILE", help="import a routing trace (.parquet/.csv with layer, doc_id, position, "
                                                      "token_id, domain, rank, expert, weight)")
    what.add_argument("--show", type=int, metavar="ID", help="print a stored capture's per-layer numbers")
    p.add_argument("--text", nargs="+", metavar="FILE", help="UTF-8 text files, one document each (with --model)")
    p.add_argument("--domain", action="append", metavar="NAME",
                   help="domain of each text file, repeated once per file in order (default: the file name)")
    p.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json or folder (default: the model folder's)")
    p.add_argument("--max-tokens", type=int, metavar="N", help="stop after N tokens (default: all the text)")
    p.add_argument("--checkpoint-step", type=int, metavar="S", help="training step of the checkpoint "
                   "(default: from train_state.json / trainer_state.json or a step-N folder name)")
    p.add_argument("--seq-len", type=int, metavar="T", help="tokens per window (default: min(512, the model's context))")
    p.add_argument("--batch-size", type=int, metavar="B", help="windows per forward pass (default 8)")
    p.add_argument("--device", help="cuda, mps or cpu (default: the first available in that order)")
    p.add_argument("--model-ref", metavar="NAME", help="name stored for the model (default: its folder / the trace file)")
    p.add_argument("--n-experts", type=int, metavar="E", help="experts per layer of a trace (default: largest id + 1)")
    p.set_defaults(handler=route)


def route(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args)
    if args.show is not None:
        return _report(args, open_store(args), args.show, "")
    if args.trace:
        store = open_store(args)
        capture_id = routing.import_trace(store, args.trace, model_ref=args.model_ref,
                                          checkpoint_step=args.checkpoint_step, n_experts=args.n_experts)
        return _report(args, store, capture_id, f"imported trace {args.trace} as capture #{capture_id}")
    return _capture(args)


def _capture(args: argparse.Namespace) -> int:
    from core.routing.capture import read_text_files

    if not args.text:
        raise InputError("give the text to route with --text FILE... (UTF-8 text files, one document each)")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1 (got {args.max_tokens})")
    docs = read_text_files(args.text, args.domain)  # InputError before the model is loaded
    _quiet_transformers()
    store = open_store(args)
    names = ", ".join(path.rsplit("/", 1)[-1] for path in args.text)
    capture_id = routing.run_capture(
        store, args.model, docs, corpus=f"files: {names}", model_ref=args.model_ref,
        checkpoint_step=args.checkpoint_step, tokenizer=args.tokenizer, max_tokens=args.max_tokens,
        batch_size=args.batch_size, seq_len=args.seq_len, device=args.device, progress=_bar(),
        info={"text_files": list(args.text)})
    return _report(args, store, capture_id, f"stored capture #{capture_id}")


def _report(args, store, capture_id: int, headline: str) -> int:
    capture = routing.get_capture(store, capture_id)
    layers = routing.capture_layer_summaries(store, capture_id, min_count=VOCAB_MIN_COUNT)
    payload = {"capture_id": int(capture_id), "model_ref": capture["model_ref"], "family": capture["family"],
               "checkpoint_step": capture["checkpoint_step"], "corpus": capture["corpus"],
               "n_experts": capture["n_experts"], "top_k": capture["top_k"], "n_tokens": capture["n_tokens"],
               "device": capture["info"].get("device"), "layers": layers}
    lines = [headline or f"capture #{capture_id}",
             f"{capture['model_ref']} ({capture['family']}), {capture['n_tokens']} tokens, "
             f"{capture['n_experts']} experts, top-{capture['top_k']}",
             f"{'layer':>5} {'cv':>7} {'max_vio':>8} {'entropy':>8} {'vocab':>7}  load per expert"]
    for row in layers:
        vocab = "-" if row["vocab_specialization"] is None else f"{row['vocab_specialization']:.3f}"
        lines.append(f"{row['layer']:>5} {row['cv']:>7.3f} {row['max_vio']:>8.3f} {row['entropy']:>8.3f} {vocab:>7}  "
                     + " ".join(str(x) for x in row["load"]))
    emit(args, payload, "\n".join(lines))
    return 0


def _list(args: argparse.Namespace) -> int:
    captures = routing.list_captures(open_store(args))
    cols = ["id", "model_ref", "family", "checkpoint_step", "corpus", "n_layers", "n_experts", "top_k", "n_tokens"]
    rows = captures[cols].to_dict("records") if len(captures) else []
    emit(args, {"captures": rows}, captures[cols].to_string(index=False) if rows else "no routing captures")
    return 0


def _quiet_transformers() -> None:
    """No weight-loading bars or warnings from transformers: stderr keeps our bar and, on a bad
    input, the one error line."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _bar():
    """core.progress.text_bar, redrawn only when the percentage changes (a quiet log)."""
    draw = text_bar()
    last = {"percent": None}

    def update(done: int, total: int, message: str = "") -> None:
        percent = int(100 * done / total) if total > 0 else 100
        if percent != last["percent"]:
            last["percent"] = percent
            draw(done, total, message)

    return update
