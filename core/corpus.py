"""The bundled multi-domain corpus: built from text already on the machine, split, tokenized.

Five domains, each document tagged with its domain (the routing analysis asks which domain goes to
which expert, the probes report a held-out loss per domain):
- ``python``: the Python standard library's own source (``sysconfig.get_paths()['stdlib']``);
- ``c``: the C headers shipped with CPython (``sysconfig.get_paths()['include']``);
- ``prose``: English prose, the documentation topics of ``pydoc_data.topics``;
- ``json`` / ``csv``: records generated from a seeded random generator.

The split is by source file (a file's chunks all land on the same side), decided by a hash of the
file's id, so the held-out set is the same whatever else the machine holds. The held-out side is
small and committed (``assets/corpus/heldout.jsonl``); the training side is rebuilt from the
machine's text (deterministic for a given Python version, which the manifest records).
"""
from __future__ import annotations

import hashlib
import json
import random
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from core.errors import InputError

DOMAINS = ("python", "c", "prose", "json", "csv")
ASSETS = Path(__file__).resolve().parents[1] / "assets"
HELDOUT_PATH = ASSETS / "corpus" / "heldout.jsonl"
TOKENIZER_DIR = ASSETS / "tokenizer"
EOS_TOKEN = "<|endoftext|>"  # separates documents in a token stream; also the pad token
SPECIAL_TOKENS = (EOS_TOKEN,)

# Stdlib folders that are tests, GUI demos or vendored code: not the library's own prose-like source.
_SKIP_STDLIB = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo",
                "tkinter", "ensurepip", "__pycache__"}


@dataclass(frozen=True)
class Document:
    doc_id: str  # stable id: "<domain>/<source file>#<chunk>", unique in the corpus
    domain: str  # one of DOMAINS
    text: str


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0  # seeds the generated json/csv records; the split itself is a hash, not random
    heldout_fraction: float = 0.08  # share of source files held out; prose has only 79, so not less
    chunk_chars: int = 4000  # documents longer than this are cut at line ends: many short docs mix better
    # Per-domain caps in characters for the training side. The stdlib holds ~11 MB of Python, the
    # headers ~0.9 MB and the topics ~0.47 MB; the caps keep Python from drowning the rest while
    # leaving ~2.5M tokens, more than any CPU sweep trains on (so sweeps see each token once).
    max_train_chars: dict = field(default_factory=lambda: {
        "python": 6_000_000, "c": 2_000_000, "prose": 2_000_000, "json": 1_000_000, "csv": 1_000_000})
    max_heldout_chars: int = 160_000  # per domain; keeps the committed sample ≤ 1 MB in all
    n_generated_files: int = 400  # json and csv "files" each (a file holds a few dozen records)


@dataclass
class Corpus:
    train: list  # [Document]
    heldout: list  # [Document]
    manifest: dict  # what was built and how: sizes per domain, python version, config


# ------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------
def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def python_sources() -> list:
    """(source id, text) for the stdlib's own .py files, in sorted path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in _SKIP_STDLIB or part.startswith("config-") for part in rel.parts):
            continue
        text = _read_text(path)
        if text and text.strip():
            out.append((rel.as_posix(), text))
    return out


def c_sources() -> list:
    """(source id, text) for the C headers shipped with CPython."""
    root = Path(sysconfig.get_paths()["include"])
    out = []
    for path in sorted(root.rglob("*.h")):
        text = _read_text(path)
        if text and text.strip():
            out.append((path.relative_to(root).as_posix(), text))
    return out


def prose_sources() -> list:
    """(topic, text) for Python's documentation topics (English prose with a little code)."""
    from pydoc_data.topics import topics

    return [(name, topics[name]) for name in sorted(topics) if topics[name].strip()]


_FIRST = ["ada", "bo", "cai", "dana", "eli", "femi", "gus", "hana", "ivo", "jun", "kemal", "lena",
          "mira", "nils", "olga", "pia", "quinn", "rafa", "sana", "tomas", "uma", "vera", "wei", "yara"]
_LAST = ["abe", "berg", "costa", "diallo", "eriksen", "fischer", "garcia", "haddad", "ito", "jensen",
         "kowalski", "lopez", "moreau", "nakamura", "okafor", "petrov", "rossi", "silva", "tanaka"]
_CITIES = ["Lisbon", "Osaka", "Nairobi", "Lima", "Oslo", "Pune", "Accra", "Quito", "Hanoi", "Perth",
           "Tunis", "Riga", "Austin", "Leeds", "Cebu", "Bergen"]
_PRODUCTS = ["widget", "gear", "sensor", "cable", "valve", "panel", "filter", "pump", "relay", "lens"]
_TAGS = ["new", "sale", "bulk", "eco", "pro", "lite", "refurb", "export", "priority", "fragile"]
_STATUS = ["pending", "shipped", "delivered", "cancelled", "returned"]


def _date(rng: random.Random) -> str:
    return f"20{rng.randint(15, 24):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _json_record(rng: random.Random, kind: str, i: int) -> dict:
    if kind == "user":
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        return {"id": i, "name": f"{first.title()} {last.title()}", "email": f"{first}.{last}@example.org",
                "city": rng.choice(_CITIES), "age": rng.randint(18, 90), "active": rng.random() < 0.7,
                "tags": rng.sample(_TAGS, rng.randint(0, 3)), "joined": _date(rng)}
    if kind == "order":
        items = [{"sku": f"{rng.choice(_PRODUCTS)}-{rng.randint(100, 999)}", "qty": rng.randint(1, 20),
                  "price": round(rng.uniform(0.5, 500.0), 2)} for _ in range(rng.randint(1, 4))]
        return {"order_id": f"A{rng.randint(10000, 99999)}", "customer_id": rng.randint(1, 5000),
                "status": rng.choice(_STATUS), "created": _date(rng), "items": items,
                "total": round(sum(it["qty"] * it["price"] for it in items), 2)}
    # sensor reading
    return {"sensor": f"{rng.choice(_CITIES).lower()}-{rng.randint(1, 64):02d}", "ts": f"{_date(rng)}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z", "temperature_c": round(rng.gauss(15, 9), 2),
            "humidity": round(rng.uniform(0.05, 1.0), 3), "battery": rng.randint(0, 100),
            "ok": rng.random() < 0.95}


def json_sources(n_files: int, seed: int) -> list:
    """Generated JSON files: a pretty-printed array or JSON lines of one record kind each."""
    rng = random.Random(f"json:{seed}")
    out = []
    for f in range(n_files):
        kind = rng.choice(["user", "order", "sensor"])
        records = [_json_record(rng, kind, rng.randint(1, 99999)) for _ in range(rng.randint(5, 30))]
        if rng.random() < 0.5:
            text = json.dumps(records, indent=2)
        else:
            text = "\n".join(json.dumps(r) for r in records)
        out.append((f"{kind}s_{f:04d}.json", text + "\n"))
    return out


def csv_sources(n_files: int, seed: int) -> list:
    """Generated CSV files: a header and a few dozen rows of one table kind each."""
    rng = random.Random(f"csv:{seed}")
    out = []
    for f in range(n_files):
        kind = rng.choice(["sales", "weather", "people"])
        if kind == "sales":
            rows = ["date,store,product,units,unit_price,revenue"]
            for _ in range(rng.randint(10, 60)):
                units, price = rng.randint(1, 300), round(rng.uniform(1, 99), 2)
                rows.append(f"{_date(rng)},{rng.choice(_CITIES)},{rng.choice(_PRODUCTS)},{units},{price},"
                            f"{units * price:.2f}")
        elif kind == "weather":
            rows = ["station,date,t_min,t_max,rain_mm,wind_kmh"]
            for _ in range(rng.randint(10, 60)):
                t = rng.gauss(12, 8)
                rows.append(f"{rng.choice(_CITIES).upper()[:4]}{rng.randint(1, 9)},{_date(rng)},{t:.1f},"
                            f"{t + rng.uniform(2, 14):.1f},{max(0.0, rng.gauss(2, 4)):.1f},{rng.randint(0, 80)}")
        else:
            rows = ["id,first_name,last_name,city,age,score"]
            for _ in range(rng.randint(10, 60)):
                rows.append(f"{rng.randint(1, 99999)},{rng.choice(_FIRST).title()},{rng.choice(_LAST).title()},"
                            f"{rng.choice(_CITIES)},{rng.randint(18, 90)},{rng.uniform(0, 100):.1f}")
        out.append((f"{kind}_{f:04d}.csv", "\n".join(rows) + "\n"))
    return out


# ------------------------------------------------------------------------------------------
# Building and splitting
# ------------------------------------------------------------------------------------------
def _hash01(key: str) -> float:
    """A stable number in [0, 1) from a string (sha1), for splits and orders that never drift."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)


def chunk_text(text: str, chunk_chars: int) -> list:
    """Cut ``text`` at line ends into pieces of at most ~``chunk_chars`` characters (a longer
    single line stays whole). Joining the pieces gives ``text`` back."""
    if len(text) <= chunk_chars:
        return [text]
    pieces, current, size = [], [], 0
    for line in text.splitlines(keepends=True):
        if size and size + len(line) > chunk_chars:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        pieces.append("".join(current))
    return pieces


def _sources(domain: str, config: CorpusConfig) -> list:
    if domain == "python":
        return python_sources()
    if domain == "c":
        return c_sources()
    if domain == "prose":
        return prose_sources()
    if domain == "json":
        return json_sources(config.n_generated_files, config.seed)
    if domain == "csv":
        return csv_sources(config.n_generated_files, config.seed)
    raise InputError(f"Unknown corpus domain {domain!r}; use one of {', '.join(DOMAINS)}.")


def build_corpus(config: CorpusConfig = CorpusConfig(), domains: Sequence[str] = DOMAINS) -> Corpus:
    """Assemble the corpus from this machine's text: train and held-out documents per domain.

    Each source file is held out when the hash of its id falls below ``heldout_fraction``. Files
    are then taken in hash order (a spread over the whole stdlib, not its first folders) until a
    domain's cap is reached, and cut into chunks of ≤ ``chunk_chars``.
    """
    if not 0.0 < config.heldout_fraction < 1.0:
        raise InputError(f"heldout_fraction must lie in (0, 1), got {config.heldout_fraction}; use e.g. 0.08.")
    train, heldout, sizes = [], [], {}
    for domain in domains:
        sources = _sources(domain, config)
        if not sources:
            raise InputError(f"No {domain} text found on this machine; build the corpus without it.")
        ordered = sorted(sources, key=lambda s: _hash01(f"order:{domain}/{s[0]}"))
        caps = {"train": config.max_train_chars.get(domain, 1_000_000), "heldout": config.max_heldout_chars}
        used = {"train": 0, "heldout": 0}
        n_files = {"train": 0, "heldout": 0}
        for source_id, text in ordered:
            side = "heldout" if _hash01(f"split:{domain}/{source_id}") < config.heldout_fraction else "train"
            if used[side] >= caps[side]:
                continue
            n_files[side] += 1
            for k, piece in enumerate(chunk_text(text, config.chunk_chars)):
                if used[side] >= caps[side]:
                    break
                doc = Document(f"{domain}/{source_id}#{k}", domain, piece)
                (heldout if side == "heldout" else train).append(doc)
                used[side] += len(piece)
        sizes[domain] = {"train_chars": used["train"], "heldout_chars": used["heldout"],
                         "train_files": n_files["train"], "heldout_files": n_files["heldout"]}
    manifest = {
        "python_version": sys.version.split()[0],
        "config": asdict(config),
        "domains": sizes,
        "n_train_docs": len(train),
        "n_heldout_docs": len(heldout),
    }
    return Corpus(train=train, heldout=heldout, manifest=manifest)


def save_documents(documents: Iterable[Document], path: Path) -> int:
    """Write documents as JSON lines (doc_id, domain, text); returns the bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for d in documents:
            f.write(json.dumps({"doc_id": d.doc_id, "domain": d.domain, "text": d.text}, ensure_ascii=False) + "\n")
    return path.stat().st_size


def load_documents(path: Path) -> list:
    """Read documents written by :func:`save_documents`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"No corpus file at {path}; run `python assets/build_assets.py` to build it.")
    docs = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                docs.append(Document(row["doc_id"], row["domain"], row["text"]))
            except (ValueError, KeyError) as e:
                raise InputError(f"{path.name} line {line_no} is not a corpus document ({e}); "
                                 "rebuild it with `python assets/build_assets.py`.") from None
    return docs


def load_heldout(path: Path = HELDOUT_PATH) -> list:
    """The committed held-out sample of the bundled corpus (a list of Document)."""
    return load_documents(path)


def by_domain(documents: Iterable[Document]) -> dict:
    """{domain: [Document]} in first-seen order."""
    out: dict = {}
    for d in documents:
        out.setdefault(d.domain, []).append(d)
    return out


# ------------------------------------------------------------------------------------------
# Tokenizer and blocks
# ------------------------------------------------------------------------------------------
def train_tokenizer(documents: Sequence[Document], vocab_size: int = 4096, min_frequency: int = 2):
    """A byte-level BPE tokenizer (GPT-2 style: any byte string encodes, nothing is unknown)
    trained on ``documents`` with the ``tokenizers`` library. Returns a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 300:
        raise InputError(f"vocab_size {vocab_size} is below the 256 byte symbols plus merges; use ≥ 300.")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((d.text for d in documents), trainer=trainer, length=len(documents))
    return tok


def save_tokenizer(tokenizer, directory: Path) -> None:
    """Save as a transformers-loadable folder (tokenizer.json + tokenizer_config.json), so
    ``AutoTokenizer.from_pretrained(directory)`` works offline."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN,
                                   pad_token=EOS_TOKEN, unk_token=None)
    fast.save_pretrained(str(directory))


def load_tokenizer(directory: Path = TOKENIZER_DIR):
    """The bundled tokenizer as a ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer

    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise InputError(f"No tokenizer at {path}; run `python assets/build_assets.py` to build it.")
    return Tokenizer.from_file(str(path))


@dataclass
class Blocks:
    """Fixed-length token blocks, each from one domain (documents joined by EOS inside a domain)."""

    ids: torch.Tensor  # (n_blocks, seq_len) int64 token ids
    domains: list  # (n_blocks,) domain name of each block
    seq_len: int

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def select(self, index) -> "Blocks":
        index = torch.as_tensor(index, dtype=torch.long)
        return Blocks(self.ids[index], [self.domains[i] for i in index.tolist()], self.seq_len)

    def of_domain(self, domain: str) -> "Blocks":
        return self.select([i for i, d in enumerate(self.domains) if d == domain])

    @property
    def n_tokens(self) -> int:
        return int(self.ids.numel())


def tokenize_blocks(documents: Sequence[Document], tokenizer, seq_len: int) -> Blocks:
    """Tokenize documents per domain into a stream (doc, EOS, doc, EOS, …) and cut it into
    ``seq_len``-token blocks; a domain's last partial block is dropped."""
    if seq_len < 2:
        raise InputError(f"seq_len must be at least 2 tokens, got {seq_len}.")
    eos = tokenizer.token_to_id(EOS_TOKEN)
    if eos is None:
        raise InputError(f"The tokenizer has no {EOS_TOKEN!r} token; train it with core.corpus.train_tokenizer.")
    rows, domains = [], []
    for domain, docs in by_domain(documents).items():
        stream = []
        for enc in tokenizer.encode_batch([d.text for d in docs]):
            stream.extend(enc.ids)
            stream.append(eos)
        n_blocks = len(stream) // seq_len
        if n_blocks == 0:
            continue
        rows.append(torch.tensor(stream[: n_blocks * seq_len], dtype=torch.long).view(n_blocks, seq_len))
        domains.extend([domain] * n_blocks)
    if not rows:
        raise InputError(f"The documents give fewer than {seq_len} tokens; give more text or a shorter seq_len.")
    return Blocks(torch.cat(rows), domains, seq_len)


def bundled_blocks(seq_len: int, config: CorpusConfig = CorpusConfig(), tokenizer=None) -> tuple:
    """(train Blocks, held-out Blocks) of the bundled corpus with the bundled tokenizer: the train
    side rebuilt from this machine's text, the held-out side from the committed sample."""
    tokenizer = tokenizer or load_tokenizer()
    heldout_docs = load_heldout()
    held_ids = {d.doc_id for d in heldout_docs}
    train_docs = [d for d in build_corpus(config).train if d.doc_id not in held_ids]
    return tokenize_blocks(train_docs, tokenizer, seq_len), tokenize_blocks(heldout_docs, tokenizer, seq_len)
