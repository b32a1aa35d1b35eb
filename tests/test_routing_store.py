"""Routing store glue (db/routing.py), first-start seeding (db/routing_seed.py) and the page's pure
helpers (core/routing/views.py): captures of the bundled checkpoints land whole or not at all,
line up across checkpoints, survive a trace round trip, and the views give closed-form values on
hand-built routings."""
from __future__ import annotations

import json
import math
import tempfile

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from core.corpus import load_heldout
from core.errors import Cancelled, InputError, RoutingError
from core.routing import metrics, views
from core.routing.capture import ASSIGNMENT_COLUMNS, layer_arrays, load_tokenizer
from services import routing
from services.routing_seed import (
    BUNDLED_TOKENIZER, bundled_checkpoints, bundled_documents, bundled_tokenizer, seed_bundled_capture,
)
from db.store import Store

torch.set_num_threads(1)
SEED_TOKENS = 600  # 5 domains × 120 tokens: enough rows for every view, ~0.2 s of capture per checkpoint


def counts(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM routing_captures")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM routing_assignments")).scalar_one())


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    store = Store(f"duckdb:///{tmp_path_factory.mktemp('routing') / 'seeded.duckdb'}")
    ids = seed_bundled_capture(store, max_tokens=SEED_TOKENS)
    yield store, ids
    store.close()


def frame_from(expert_ids, token_ids, *, weights=None, domains=None, doc_ids=None, positions=None, layer=0):
    """An assignments frame (capture's columns) for one layer from (T, k) expert ids."""
    expert_ids = np.asarray(expert_ids)
    n_tokens, top_k = expert_ids.shape
    weights = np.full((n_tokens, top_k), 1.0 / top_k) if weights is None else np.asarray(weights)
    doc_ids = np.zeros(n_tokens, dtype=int) if doc_ids is None else np.asarray(doc_ids)
    positions = np.arange(n_tokens) if positions is None else np.asarray(positions)
    domains = np.array(["d"] * n_tokens) if domains is None else np.asarray(domains)
    per_row = lambda values: np.repeat(np.asarray(values), top_k)  # noqa: E731
    return pd.DataFrame({"layer": layer, "doc_id": per_row(doc_ids), "position": per_row(positions),
                         "token_id": per_row(token_ids), "domain": per_row(domains),
                         "rank": np.tile(np.arange(top_k), n_tokens), "expert": expert_ids.reshape(-1),
                         "weight": weights.reshape(-1)})


# ----------------------------------------------------------------------------- seeding and capture


def test_seed_captures_every_bundled_checkpoint_on_the_same_balanced_tokens(seeded):
    store, ids = seeded
    checkpoints = bundled_checkpoints()
    assert len(checkpoints) >= 2 and len(ids) == len(checkpoints)
    captures = routing.list_captures(store)
    steps = [routing.checkpoint_step_of(p) for p in checkpoints]
    assert captures["id"].tolist() == ids and captures["checkpoint_step"].tolist() == steps == sorted(steps)
    assert set(captures["family"]) == {"qwen3_moe"} and set(captures["n_layers"]) == {4}
    assert set(captures["n_experts"]) == {8} and set(captures["top_k"]) == {2}
    n_tokens = int(captures["n_tokens"].iloc[0])
    assert set(captures["n_tokens"]) == {n_tokens} and 500 <= n_tokens <= SEED_TOKENS
    assert counts(store) == (len(ids), len(ids) * n_tokens * 4 * 2)  # one row per (token, layer, rank)

    first, last = routing.load_assignments(store, ids[0]), routing.load_assignments(store, ids[-1])
    assert list(first.columns) == list(ASSIGNMENT_COLUMNS)
    # every domain of the held-out file is in the sample, each with about a fifth of the tokens
    per_domain = last[(last["layer"] == 0) & (last["rank"] == 0)].groupby("domain").size()
    assert sorted(per_domain.index) == ["c", "csv", "json", "prose", "python"]
    assert per_domain.min() >= 60 and per_domain.sum() == n_tokens
    # the same tokens at the same (doc, position) in every checkpoint's capture
    key = ["layer", "doc_id", "position", "rank"]
    assert first[key + ["token_id"]].equals(last[key + ["token_id"]])
    assert not first["expert"].equals(last["expert"])  # ... routed differently as training went on

    assert seed_bundled_capture(store, max_tokens=SEED_TOKENS) == []  # the store has captures: nothing added
    assert counts(store)[0] == len(ids)


def test_capture_row_keeps_what_the_page_needs(seeded):
    store, ids = seeded
    capture = routing.get_capture(store, ids[-1])
    info = capture["info"]
    assert capture["model_ref"] == routing.display_path(bundled_checkpoints()[-1])
    assert capture["model_ref"].startswith("assets/models/tiny-moe/step-")
    assert capture["corpus"] == "bundled held-out sample, 120 tokens/domain"
    assert info["layers"] == [0, 1, 2, 3] and info["device"] == "cpu" and info["source"] == "capture"
    assert info["model_group"] == "assets/models/tiny-moe" and info["bundled"] is True
    assert info["max_tokens"] == SEED_TOKENS and info["seq_len"] == 256  # the checkpoint's context, not 512
    probs = np.array(info["router_prob_mean"])
    assert probs.shape == (4, 8) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert routing.model_dir_of(capture) == bundled_checkpoints()[-1]
    assert routing.tokenizer_of(capture).name == "tokenizer.json"


def test_layer_summaries_match_the_metrics_on_the_stored_rows(seeded):
    store, ids = seeded
    capture = routing.get_capture(store, ids[-1])
    summaries = routing.capture_layer_summaries(store, ids[-1])
    assert [s["layer"] for s in summaries] == [0, 1, 2, 3]
    frame = routing.load_assignments(store, ids[-1])
    for summary in summaries:
        arrays = layer_arrays(frame, summary["layer"])
        assert sum(summary["load"]) == capture["n_tokens"] * 2 and len(summary["load"]) == 8
        assert summary["load"] == metrics.expert_load(arrays.expert_ids, 8).tolist()
        assert summary["cv"] == pytest.approx(metrics.coefficient_of_variation(summary["load"]))
        assert 0 < summary["entropy"] <= 1 and summary["max_vio"] >= 0
        vocab = summary["vocab_specialization"]
        assert vocab == pytest.approx(metrics.vocab_specialization(arrays.expert_ids, arrays.token_ids, 8).score)
        assert 0.125 < vocab <= 1.0


def test_saturation_across_the_bundled_checkpoints(seeded):
    store, ids = seeded
    same_run = routing.captures_like(store, ids[0])
    assert same_run["id"].tolist() == ids  # oldest step first
    series = views.saturation_series([(int(r["id"]), r["checkpoint_step"], routing.load_assignments(store, int(r["id"])))
                                      for r in same_run.to_dict("records")])
    assert len(series) == len(ids) * 4
    final = series[series["capture_id"] == ids[-1]]
    assert (final["saturation"] == 1.0).all() and (final["saturation_top1"] == 1.0).all()
    earlier = series[series["capture_id"] != ids[-1]]
    assert ((earlier["saturation"] > 0) & (earlier["saturation"] < 1)).all()
    n_tokens = int(routing.get_capture(store, ids[0])["n_tokens"])
    assert set(series["tokens"]) == {n_tokens}  # all tokens line up
    # by hand for one layer: share of the first checkpoint's top-2 set the final one also picks
    a = layer_arrays(routing.load_assignments(store, ids[0]), 2).expert_ids
    b = layer_arrays(routing.load_assignments(store, ids[-1]), 2).expert_ids
    by_hand = np.mean([len(set(x) & set(y)) / 2 for x, y in zip(a.tolist(), b.tolist())])
    assert series[(series["capture_id"] == ids[0]) & (series["layer"] == 2)]["saturation"].item() == pytest.approx(by_hand)


def test_failed_or_cancelled_capture_stores_nothing(store, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where CaptureWriter spools its Parquet file
    folder = bundled_checkpoints()[-1]
    docs, corpus = bundled_documents(400, bundled_tokenizer(folder))

    def cancel_after_first_batch(done, total, message):
        raise Cancelled("capture stopped by the user; nothing was stored")

    with pytest.raises(Cancelled):
        routing.run_capture(store, folder, docs, corpus=corpus, batch_size=1, seq_len=32, max_tokens=400,
                            progress=cancel_after_first_batch)
    with pytest.raises(InputError, match="corpus is empty"):
        routing.run_capture(store, folder, [], corpus="nothing")
    with pytest.raises(InputError, match="not valid UTF-8"):
        routing.run_capture(store, folder, [(b"caf\xe9 latin-1", "prose")], corpus="latin-1")
    with pytest.raises(RoutingError, match="no config.json"):
        routing.run_capture(store, tmp_path, docs, corpus=corpus)
    assert counts(store) == (0, 0)
    assert not list(tmp_path.glob("ss_capture_*"))  # the spooled chunks are gone too

    capture_id = routing.run_capture(store, folder, docs, corpus=corpus, max_tokens=100, checkpoint_step=7)
    assert counts(store) == (1, 100 * 4 * 2)
    assert routing.get_capture(store, capture_id)["checkpoint_step"] == 7  # an explicit step wins
    routing.delete_capture(store, capture_id)
    assert counts(store) == (0, 0)
    with pytest.raises(InputError, match="No routing capture with id"):
        routing.get_capture(store, capture_id)


def test_trace_round_trip_gives_the_same_numbers(seeded, store, tmp_path):
    source_store, ids = seeded
    frame = routing.load_assignments(source_store, ids[-1])
    frame.to_parquet(tmp_path / "olmoe_trace.parquet", index=False)
    frame.to_csv(tmp_path / "olmoe_trace.csv", index=False)
    from_parquet = routing.import_trace(store, tmp_path / "olmoe_trace.parquet", checkpoint_step=60)
    from_csv = routing.import_trace(store, tmp_path / "olmoe_trace.csv", model_ref="same, as CSV", n_experts=16)
    original = routing.capture_layer_summaries(source_store, ids[-1])
    assert routing.capture_layer_summaries(store, from_parquet) == original
    parquet_row, csv_row = routing.get_capture(store, from_parquet), routing.get_capture(store, from_csv)
    assert parquet_row["model_ref"] == "olmoe_trace" and parquet_row["family"] == "external"
    assert parquet_row["n_tokens"] == routing.get_capture(source_store, ids[-1])["n_tokens"]
    assert parquet_row["info"]["source"] == "trace" and parquet_row["info"]["router_prob_mean"] is None
    assert routing.model_dir_of(parquet_row) is None and routing.tokenizer_of(parquet_row) is None
    assert csv_row["model_ref"] == "same, as CSV" and csv_row["n_experts"] == 16
    assert [len(s["load"]) for s in routing.capture_layer_summaries(store, from_csv)] == [16] * 4

    before = counts(store)
    frame.drop(columns=["weight"]).to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(InputError, match="lacks column"):
        routing.import_trace(store, tmp_path / "broken.csv")
    with pytest.raises(InputError, match="not below n_experts=4"):
        routing.import_trace(store, tmp_path / "olmoe_trace.csv", n_experts=4)
    assert counts(store) == before


def test_checkpoint_steps_groups_and_siblings(tmp_path):
    run = tmp_path / "run"
    for name in ("step-0010", "checkpoint-200", "step-0100", "notes"):
        (run / name).mkdir(parents=True)
        (run / name / "config.json").write_text("{}")
    (run / "checkpoint-200" / "trainer_state.json").write_text(json.dumps({"global_step": 200}))
    (run / "step-0100" / "train_state.json").write_text(json.dumps({"step": 99}))  # the file wins over the name
    assert routing.checkpoint_step_of(run / "step-0010") == 10
    assert routing.checkpoint_step_of(run / "checkpoint-200") == 200
    assert routing.checkpoint_step_of(run / "step-0100") == 99
    assert routing.checkpoint_step_of(run / "notes") is None
    assert [p.name for p in routing.sibling_checkpoints(run / "step-0100")] == ["step-0010", "step-0100", "checkpoint-200"]
    assert routing.sibling_checkpoints(run / "notes") == [run / "notes"]
    assert routing.model_group_of(run / "step-0010") == str(run.resolve())
    assert routing.model_group_of(run / "notes") == str((run / "notes").resolve())


# ----------------------------------------------------------------------------- views


def test_balanced_sample_gives_every_domain_its_budget():
    encode = load_tokenizer(BUNDLED_TOKENIZER)
    docs = load_heldout()
    sample = views.sample_by_domain(docs, 300, encode)
    per_domain = pd.Series([len(encode(t)) for t, _ in sample]).groupby([d for _, d in sample]).sum()
    assert sorted(per_domain.index) == ["c", "csv", "json", "prose", "python"]
    assert (per_domain <= 300).all() and (per_domain >= 297).all()  # the last document cut to fit the budget
    assert [d for _, d in sample] == sorted([d for _, d in sample], key=[x.domain for x in docs].index)
    assert sample[0][0] == docs[0].text[: len(sample[0][0])]  # documents are cut, never rewritten
    with pytest.raises(InputError, match="at least 1"):
        views.sample_by_domain(docs, 0, encode)


def test_uploaded_files_one_domain_each():
    files = [("notes.txt", "plain prose here".encode()), ("code.py", b"def f():\n    return 1\n")]
    assert views.documents_from_uploads(files) == [("plain prose here", "notes"), ("def f():\n    return 1\n", "code")]
    assert views.documents_from_uploads(files, views.parse_domains(" prose , python", 2))[1][1] == "python"
    assert views.parse_domains("  ", 2) is None
    with pytest.raises(InputError, match="give 2 non-empty domain name"):
        views.parse_domains("prose", 2)
    with pytest.raises(InputError, match="latin.txt is not valid UTF-8"):
        views.documents_from_uploads([("latin.txt", b"caf\xe9")])
    with pytest.raises(InputError, match="empty.txt is empty"):
        views.documents_from_uploads([("empty.txt", b" \n ")])
    with pytest.raises(InputError, match="no text files"):
        views.documents_from_uploads([])


def test_layer_metrics_closed_forms_when_every_token_uses_the_same_two_experts():
    n_experts, top_k, n_tokens = 8, 2, 400
    tokens = np.arange(n_tokens) % 20  # 20 token ids, 20 occurrences each
    frame = frame_from(np.tile([0, 1], (n_tokens, 1)), tokens)
    row = views.layer_metrics(frame, n_experts, n_permutations=3).iloc[0]
    assert row["cv"] == pytest.approx(math.sqrt(n_experts / top_k - 1))
    assert row["max_vio"] == pytest.approx(n_experts / top_k - 1)
    assert row["entropy"] == pytest.approx(math.log(top_k) / math.log(n_experts))
    assert row["aux_loss"] == pytest.approx(n_experts * 0.5) and row["aux_loss_from"] == "top-k weights"
    # capacity ⌊1·2·400/8⌋ = 100 per expert; experts 0 and 1 get 400 each: (300+300)/800 dropped
    assert row["drop_rate"] == pytest.approx(0.75)
    assert row["vocab_top1"] == 1.0 and row["vocab_top1_null"] == 1.0 and row["vocab_tokens"] == 20
    assert row["same_first"] == 1.0 and row["overlap_topk"] == 1.0
    assert row["same_first_random"] == pytest.approx(1 / 8)
    assert row["overlap_topk_random"] == pytest.approx(1 - math.comb(6, 2) / math.comb(8, 2))
    # with the true router probabilities the aux loss uses them: P = f gives E·Σf² = 8·(0.25+0.25)
    probs = [[0.5, 0.5, 0, 0, 0, 0, 0, 0]]
    with_probs = views.layer_metrics(frame, n_experts, router_prob_mean=probs, n_permutations=1).iloc[0]
    assert with_probs["aux_loss"] == pytest.approx(4.0) and with_probs["aux_loss_from"] == "router"

    balanced = frame_from(np.stack([np.arange(n_tokens) % 8, (np.arange(n_tokens) + 1) % 8], axis=1), tokens)
    other = views.layer_metrics(balanced, n_experts, n_permutations=1)
    compared = views.compare_layer_metrics(views.layer_metrics(frame, n_experts, n_permutations=1), other)
    assert compared.loc[0, "cv A"] == pytest.approx(math.sqrt(3)) and compared.loc[0, "cv B"] == 0.0
    assert compared.loc[0, "Δ cv"] == pytest.approx(-math.sqrt(3)) and compared.loc[0, "Δ drop_rate"] == pytest.approx(-0.75)
    layers, load = views.load_matrix(frame, n_experts)
    assert layers == [0] and load.tolist() == [[400, 400, 0, 0, 0, 0, 0, 0]]


def test_preferred_tokens_of_a_modular_router():
    n_experts, n_tokens = 4, 240
    tokens = np.arange(n_tokens) % 12  # token x goes to x mod 4 first, (x + 1) mod 4 second
    experts = np.stack([tokens % n_experts, (tokens + 1) % n_experts], axis=1)
    arrays = layer_arrays(frame_from(experts, tokens), 0)
    top1 = views.preferred_tokens(arrays, n_experts, top_n=5, min_count=5, top="1")
    assert top1[top1["expert"] == 1]["token_id"].tolist() == [1, 5, 9]  # x ≡ 1 (mod 4), each share 1.0
    assert (top1["share"] == 1.0).all() and (top1["count"] == 20).all() and len(top1) == 12
    topk = views.preferred_tokens(arrays, n_experts, top_n=10, min_count=5, top="k")
    assert sorted(topk[topk["expert"] == 1]["token_id"]) == [0, 1, 4, 5, 8, 9]  # first or second choice
    assert views.preferred_tokens(arrays, n_experts, min_count=21).empty  # nobody seen 21 times
    summary = views.preferred_tokens_summary(top1, n_experts)
    assert summary.iloc[1, 1] == "'⟨1⟩' 100% (20), '⟨5⟩' 100% (20), '⟨9⟩' 100% (20)"


def test_token_pieces_rejoin_multibyte_text_and_the_view_colours_by_top_expert():
    decode = views.load_decoder(BUNDLED_TOKENIZER)
    text = "naïve café — 東京 ✓ <b>"
    ids = load_tokenizer(BUNDLED_TOKENIZER)(text)
    pieces = views.token_pieces(ids, decode)
    assert "".join(pieces) == text and len(pieces) == len(ids)
    assert "" in pieces  # 東京 is split into byte tokens; the character goes to the token that completes it
    assert "\ufffd" not in "".join(pieces)

    experts = np.stack([np.arange(len(ids)) % 3, np.arange(len(ids)) % 3 + 3], axis=1)
    weights = np.tile([0.7, 0.3], (len(ids), 1))
    arrays = layer_arrays(frame_from(experts, ids, weights=weights, doc_ids=[4] * len(ids)), 0)
    view = views.token_view(arrays, 4, decode)
    assert view["piece"].tolist() == pieces and view["expert"].tolist() == (np.arange(len(ids)) % 3).tolist()
    assert view["choices"].iloc[1] == "1 (0.70), 4 (0.30)"
    page_html = views.token_html(view, 6, layer=2)
    assert page_html.count('class="ss-token"') == len(ids)
    assert ">&gt;</span>" in page_html and "> &lt;</span>" in page_html and "<b>" not in page_html  # escaped
    assert 'data-expert="1" style="background:#ffffb3"' in page_html and "layer 2 · experts 1 (0.70), 4 (0.30)" in page_html
    with pytest.raises(InputError, match="document 5 has no tokens"):
        views.token_view(arrays, 5, decode)
    assert views.token_view(arrays, 4, None)["piece"].iloc[0] == f"⟨{ids[0]}⟩"
    assert views.load_decoder(None) is None


def test_alignment_uses_only_tokens_both_captures_saw():
    experts_a = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
    frame_a = frame_from(experts_a, [10, 11, 12, 13], positions=[0, 1, 2, 3])
    # B saw positions 1..4 of the same document; position 3 holds another token there
    frame_b = frame_from(np.array([[2, 3], [5, 0], [7, 1], [1, 2]]), [11, 12, 99, 14], positions=[1, 2, 3, 4])
    ids_a, ids_b = views.aligned_experts(frame_a, frame_b, 0)
    assert ids_a.tolist() == [[2, 3], [4, 5]] and ids_b.tolist() == [[2, 3], [5, 0]]
    agreement = views.capture_agreement(frame_a, frame_b)
    assert agreement.to_dict("records") == [{"layer": 0, "agreement_topk": 0.75, "agreement_top1": 0.5, "tokens": 2}]
    other_text = frame_from(experts_a, [1, 2, 3, 4])
    assert views.capture_agreement(frame_a, other_text).empty
    with pytest.raises(InputError, match="share no tokens"):
        views.aligned_experts(frame_a, other_text, 0)
    with pytest.raises(InputError, match="at least two checkpoints"):
        views.saturation_series([(1, 10, frame_a)])
