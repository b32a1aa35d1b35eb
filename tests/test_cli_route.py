"""CLI `route`: capture the bundled checkpoint on small text files as a user runs it (one real
subprocess), then --list, --show, --trace and bad inputs through cli.main in this process (exit 2,
one line on stderr, nothing stored): every CLI start imports torch and transformers, seconds on a
busy machine, so only the main path pays for one. The main path runs on both engines (``any_db_url``)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch

import cli
from core.routing import metrics
from core.routing.capture import layer_arrays
from services import routing
from services.routing_seed import bundled_checkpoints
from db.store import Store

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
PYTHON_TEXT = "".join(f"def area_{i}(width, height):\n    return width * height + {i}\n\n" for i in range(15))
PROSE_TEXT = " ".join(["The router sends each token to two of the eight experts, and the experts that "
                       "receive it compute a gated feed-forward layer."] * 12)


def run_cli(*args):
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=180)


def stored(db_url: str) -> tuple[int, int]:
    store = Store(db_url)
    try:
        with store.read() as conn:
            return (conn.execute(sa.text("SELECT count(*) FROM routing_captures")).scalar_one(),
                    conn.execute(sa.text("SELECT count(*) FROM routing_assignments")).scalar_one())
    finally:
        store.close()  # DuckDB: one process per file — let the next CLI open it


@pytest.fixture
def text_files(tmp_path):
    code, prose = tmp_path / "code.py.txt", tmp_path / "notes.txt"
    code.write_text(PYTHON_TEXT, encoding="utf-8")
    prose.write_text(PROSE_TEXT, encoding="utf-8")
    return [str(code), str(prose)]


def test_route_the_bundled_checkpoint_then_list_show_and_import_its_trace(any_db_url, text_files, tmp_path, capsys):
    checkpoint = bundled_checkpoints()[-1]
    proc = run_cli("route", "--model", str(checkpoint), "--text", *text_files, "--domain", "python",
                   "--domain", "prose", "--max-tokens", "400", "--db", any_db_url, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["capture_id"] == 1 and out["n_tokens"] == 400 and out["family"] == "qwen3_moe"
    assert out["checkpoint_step"] == routing.checkpoint_step_of(checkpoint) and out["device"] == "cpu"
    assert out["model_ref"] == routing.display_path(checkpoint)
    assert [layer["layer"] for layer in out["layers"]] == [0, 1, 2, 3]  # one entry per MoE layer
    for layer in out["layers"]:
        assert len(layer["load"]) == 8 and sum(layer["load"]) == 400 * 2  # n_tokens × top_k
        assert set(layer) == {"layer", "load", "cv", "max_vio", "entropy", "vocab_specialization"}
        assert layer["cv"] == pytest.approx(float(np.std(layer["load"]) / np.mean(layer["load"])))
        assert layer["max_vio"] == pytest.approx(max(layer["load"]) / 100 - 1)
        assert 0 < layer["entropy"] <= 1
        assert 0.125 < layer["vocab_specialization"] <= 1  # the repeated words are seen ≥ 10 times
    assert stored(any_db_url) == (1, 400 * 4 * 2)

    # the stored rows give the printed numbers; domains come from --domain, in file order
    store = Store(any_db_url)
    try:
        frame = routing.load_assignments(store, 1)
        arrays = layer_arrays(frame, 3)
        assert out["layers"][3]["vocab_specialization"] == pytest.approx(
            metrics.vocab_specialization(arrays.expert_ids, arrays.token_ids, 8, "1", 10).score)
        assert list(dict.fromkeys(arrays.domains)) == ["python", "prose"]
        assert routing.get_capture(store, 1)["corpus"] == "files: code.py.txt, notes.txt"
        frame.to_parquet(tmp_path / "exported_trace.parquet", index=False)
    finally:
        store.close()

    assert cli.main(["route", "--list", "--db", any_db_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["captures"]
    assert [(c["id"], c["n_tokens"], c["n_layers"]) for c in listed] == [(1, 400, 4)]

    assert cli.main(["route", "--trace", str(tmp_path / "exported_trace.parquet"), "--model-ref", "re-imported",
                     "--db", any_db_url, "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["capture_id"] == 2 and imported["model_ref"] == "re-imported" and imported["family"] == "external"
    assert imported["layers"] == out["layers"]  # same assignments, same numbers

    assert cli.main(["route", "--show", "1", "--db", any_db_url]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "capture #1" and "400 tokens, 8 experts, top-2" in text
    assert len(text.splitlines()) == 3 + 4  # header lines + one per layer


def _dense_checkpoint(folder: Path) -> Path:
    """A Llama (dense) checkpoint folder: its config is refused before any weight is read."""
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 4096, "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2}))
    save_file({"model.embed_tokens.weight": torch.zeros(4096, 16)}, str(folder / "model.safetensors"))
    return folder


def test_bad_inputs_exit_2_with_one_line_and_store_nothing(db_url, text_files, tmp_path, capsys):
    checkpoint = str(bundled_checkpoints()[-1])
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café crème".encode("latin-1"))
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((Path(checkpoint) / "config.json").read_text())
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((Path(checkpoint) / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    bad_trace = tmp_path / "trace.csv"
    bad_trace.write_text("layer,doc_id,position,token_id,domain,rank,expert\n0,0,0,5,x,0,1\n")
    dense = _dense_checkpoint(tmp_path / "dense")

    cases = [
        (["--model", str(no_config), "--text", *text_files], "has no config.json"),
        (["--model", str(no_weights), "--text", *text_files], "has no weights (*.safetensors)"),
        (["--model", str(pickled), "--text", *text_files], "holds only pickled weights (pytorch_model.bin)"),
        (["--model", str(dense), "--text", *text_files], "not a supported mixture-of-experts"),
        (["--model", checkpoint, "--text", str(empty)], "the corpus has no text"),
        (["--model", checkpoint, "--text", str(latin)], "latin1.txt is not valid UTF-8"),
        (["--model", checkpoint, "--text", *text_files, "--domain", "python"], "1 domains for 2 files"),
        (["--model", checkpoint, "--text", str(tmp_path / "missing.txt")], "does not exist"),
        (["--model", checkpoint], "give the text to route with --text"),
        (["--model", checkpoint, "--text", *text_files, "--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["--trace", str(bad_trace)], "lacks column(s) weight"),
        (["--show", "7"], "No routing capture with id 7"),
    ]
    for args, message in cases:
        assert cli.main(["route", *args, "--db", db_url]) == 2, args
        captured = capsys.readouterr()
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, (args, captured.err)
        assert message in captured.err, (args, captured.err)
        assert captured.out == ""
    assert stored(db_url) == (0, 0)
