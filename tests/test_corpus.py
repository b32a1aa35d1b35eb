"""The bundled corpus: sources, split, committed held-out sample, tokenizer, token blocks."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from core import corpus
from core.corpus import CorpusConfig, Document
from core.errors import InputError

torch.set_num_threads(1)

SMALL = CorpusConfig(max_train_chars={d: 40_000 for d in corpus.DOMAINS}, max_heldout_chars=15_000,
                     n_generated_files=60)


@pytest.fixture(scope="module")
def small_corpus():
    return corpus.build_corpus(SMALL)


@pytest.fixture(scope="module")
def bundled_tokenizer():
    return corpus.load_tokenizer()


def _source(doc: Document) -> str:
    return doc.doc_id.rsplit("#", 1)[0]


def test_every_domain_on_both_sides_and_within_caps(small_corpus):
    train, held = corpus.by_domain(small_corpus.train), corpus.by_domain(small_corpus.heldout)
    assert sorted(train) == sorted(corpus.DOMAINS)
    assert sorted(held) == sorted(corpus.DOMAINS)
    for domain in corpus.DOMAINS:
        chars = sum(len(d.text) for d in train[domain])
        # a domain stops at the first chunk that crosses its cap
        assert 0 < chars <= 40_000 + SMALL.chunk_chars
        assert all(d.domain == domain and d.doc_id.startswith(domain + "/") for d in train[domain])
    assert small_corpus.manifest["domains"]["python"]["train_chars"] == sum(len(d.text) for d in train["python"])


def test_split_is_by_source_file_and_ids_unique(small_corpus):
    ids = [d.doc_id for d in small_corpus.train + small_corpus.heldout]
    assert len(ids) == len(set(ids))
    assert not {_source(d) for d in small_corpus.train} & {_source(d) for d in small_corpus.heldout}
    for d in small_corpus.heldout:
        assert corpus._hash01(f"split:{_source(d)}") < SMALL.heldout_fraction


def test_build_is_deterministic(small_corpus):
    again = corpus.build_corpus(SMALL, domains=("prose", "json", "csv"))
    first = [d for d in small_corpus.train if d.domain in ("json", "csv", "prose")]
    assert [(d.doc_id, d.text) for d in again.train] == [(d.doc_id, d.text) for d in first]


def test_sources_are_what_they_claim(small_corpus):
    docs = corpus.by_domain(small_corpus.train)
    assert any("def " in d.text for d in docs["python"])
    assert any("#define" in d.text or "#ifndef" in d.text for d in docs["c"])
    assert any(" the " in d.text for d in docs["prose"])
    for d in corpus.json_sources(20, seed=3):
        text = d[1]
        parsed = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines()]
        assert len(parsed) >= 5 and all(isinstance(r, dict) for r in parsed)
    for _, text in corpus.csv_sources(20, seed=3):
        rows = list(csv.reader(io.StringIO(text)))
        assert len(rows) >= 11 and len({len(r) for r in rows}) == 1  # a header and rows of equal width


def test_generated_records_depend_on_seed_only():
    assert corpus.json_sources(5, seed=1) == corpus.json_sources(5, seed=1)
    assert corpus.json_sources(5, seed=1) != corpus.json_sources(5, seed=2)


def test_chunks_join_back_and_respect_the_limit():
    text = "".join(f"line {i} " + "x" * (i % 50) + "\n" for i in range(500))
    pieces = corpus.chunk_text(text, 1000)
    assert "".join(pieces) == text
    assert len(pieces) > 5 and all(len(p) <= 1000 for p in pieces)
    long_line = "y" * 5000
    assert corpus.chunk_text(long_line, 1000) == [long_line]


def test_documents_round_trip_and_bad_files_fail_clearly(tmp_path):
    docs = [Document("prose/a#0", "prose", "Héllo wörld\nsecond line"), Document("c/b.h#0", "c", "#define X 1\n")]
    path = tmp_path / "docs.jsonl"
    assert corpus.save_documents(docs, path) > 0
    assert corpus.load_documents(path) == docs
    with pytest.raises(InputError, match="build_assets"):
        corpus.load_documents(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"doc_id": "x"}\n')
    with pytest.raises(InputError, match="line 1"):
        corpus.load_documents(tmp_path / "bad.jsonl")


def test_committed_heldout_sample_is_small_complete_and_held_out():
    assert corpus.HELDOUT_PATH.stat().st_size <= 2_000_000
    held = corpus.load_heldout()
    domains = corpus.by_domain(held)
    assert sorted(domains) == sorted(corpus.DOMAINS)
    for domain, docs in domains.items():
        assert sum(len(d.text) for d in docs) >= 20_000, domain
    for d in held:  # every committed document falls on the held-out side of the hash split
        assert corpus._hash01(f"split:{_source(d)}") < CorpusConfig().heldout_fraction


def test_bundled_tokenizer_is_byte_level_bpe_of_4096(bundled_tokenizer):
    assert bundled_tokenizer.get_vocab_size() == 4096
    assert bundled_tokenizer.token_to_id(corpus.EOS_TOKEN) == 0
    for text in ["def f(x):\n    return x ** 2\n", "Ünïcödé → ✓ 漢字", '{"a": [1, 2.5, null]}', "a,b,c\n1,2,3\n"]:
        enc = bundled_tokenizer.encode(text)
        assert bundled_tokenizer.decode(enc.ids) == text
    # trained on the corpus: common Python and prose are far shorter than bytes
    code = "import os\nfrom collections import defaultdict\n\nclass Foo:\n    def __init__(self):\n        pass\n"
    assert len(bundled_tokenizer.encode(code).ids) < len(code.encode()) / 2.5


def test_train_tokenizer_small_vocab_round_trips(small_corpus):
    tok = corpus.train_tokenizer(small_corpus.train[:40], vocab_size=400)
    assert tok.get_vocab_size() == 400
    text = "while True:\n    break  # ∑ 日本"
    assert tok.decode(tok.encode(text).ids) == text
    with pytest.raises(InputError, match="300"):
        corpus.train_tokenizer(small_corpus.train[:5], vocab_size=100)


def test_blocks_are_single_domain_fixed_length_with_eos_between_docs(bundled_tokenizer):
    docs = [Document("json/a#0", "json", '{"a": 1}\n' * 40), Document("json/b#0", "json", '{"b": 2}\n' * 40),
            Document("prose/c#0", "prose", "The quick brown fox jumps over the lazy dog. " * 30)]
    blocks = corpus.tokenize_blocks(docs, bundled_tokenizer, seq_len=16)
    n_json = sum(len(bundled_tokenizer.encode(d.text).ids) + 1 for d in docs[:2]) // 16
    n_prose = (len(bundled_tokenizer.encode(docs[2].text).ids) + 1) // 16
    assert blocks.ids.shape == (n_json + n_prose, 16) and blocks.ids.dtype == torch.long
    assert blocks.domains == ["json"] * n_json + ["prose"] * n_prose
    first_len = len(bundled_tokenizer.encode(docs[0].text).ids)
    assert blocks.ids.view(-1)[first_len].item() == 0  # EOS right after the first document
    assert len(blocks.of_domain("prose")) == n_prose
    assert blocks.n_tokens == (n_json + n_prose) * 16
    with pytest.raises(InputError, match="seq_len"):
        corpus.tokenize_blocks(docs, bundled_tokenizer, seq_len=1)
    with pytest.raises(InputError, match="fewer than"):
        corpus.tokenize_blocks(docs[:1], bundled_tokenizer, seq_len=100_000)
