"""Backups round-trip (issue 12 §4): `cli.py backup DIR` → `cli.py restore DIR --db URL` gives back
every table with the same rows, ids and id sequences; a bad folder or a non-empty target is refused
with one line and exit 2, and the target is left as it was."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import cli
from db import schema
from db.store import Store

TABLES = [t.name for t in schema.metadata.sorted_tables if t.name != "schema_info"]


def _trace(path: Path) -> Path:
    """A small routing trace: 2 layers × 6 tokens, top-2 of 4 experts."""
    rows = [{"layer": layer, "doc_id": 0, "position": pos, "token_id": 10 + pos, "domain": "web", "rank": rank,
             "expert": (pos + rank + layer) % 4, "weight": 0.6 if rank == 0 else 0.4}
            for layer in (0, 1) for pos in range(6) for rank in (0, 1)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def seeded(tmp_path, monkeypatch, request, new_db_url) -> str:
    """A store holding a bit of everything: runs + metrics (the bundled probe sweep, or the synthetic
    one), its evals and fit, a routing capture and a probe row; one run deleted, so the runs id
    sequence is ahead of the largest id."""
    from db.fits import save_fit
    from db.probes import save_probe
    from services.routing import import_trace
    from services.seed import probe_demo, seed_if_empty

    monkeypatch.setenv("SCALESCOPE_DEMO", "probe" if probe_demo() else "synthetic")
    # The source's engine: DuckDB unless a test names another (indirect parametrisation).
    url = new_db_url(getattr(request, "param", "duckdb"), "source")
    store = Store(url)
    seed_if_empty(store)
    save_fit(store, law="chinchilla", method="approach3", target="loss", selection={"runs": ["x"]},
             settings={"seed": 0}, params={"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28},
             intervals={}, diagnostics={}, name="hand-made fit")
    import_trace(store, _trace(tmp_path / "trace.csv"), model_ref="tiny-moe")
    save_probe(store, kind="throughput", device="cpu", dtype="float32", config={"d_model": 64},
               tokens_per_s=1234.5, achieved_tflops=0.01, mfu=None, peak_memory_bytes=None)
    last = store.run_names()[-1]
    store.delete_runs([last])
    store.close()
    return url


def contents(url: str) -> dict:
    """{table: (row count, SHA-256 of its rows sorted)} — the checksum the round trip must keep."""
    store = Store(url, create=False)
    out = {}
    try:
        with store.read() as conn:
            for name in TABLES:
                frame = pd.read_sql(sa.text(f'SELECT * FROM "{name}"'), conn)
                rows = sorted(json.dumps([None if pd.isna(v) else str(v) for v in row])
                              for row in frame.itertuples(index=False))
                out[name] = (len(frame), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    finally:
        store.close()
    return out


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err


# Every pair of engines: a backup made on one restores on the other (tests/conftest.py, new_db_url).
ENGINE_PAIRS = [("duckdb", "duckdb"), ("postgresql", "postgresql"), ("duckdb", "postgresql"),
                ("postgresql", "duckdb")]


@pytest.mark.parametrize("seeded, target_engine", ENGINE_PAIRS, indirect=["seeded"],
                         ids=[f"{a}-to-{b}" for a, b in ENGINE_PAIRS])
def test_backup_restore_round_trip_keeps_rows_ids_and_sequences(seeded, target_engine, new_db_url, tmp_path,
                                                                 capsys):
    before = contents(seeded)
    assert all(before[t][0] > 0 for t in ("runs", "metrics", "evals", "fits", "routing_captures",
                                          "routing_assignments", "probes")), before
    folder = tmp_path / "backup"
    code, out, err = run(capsys, "backup", str(folder), "--db", seeded, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["tables"] == {t: before[t][0] for t in TABLES}
    assert report["rows"] == sum(n for n, _ in before.values())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert {t: e["rows"] for t, e in manifest["tables"].items()} == report["tables"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["manifest.json"] + [f"{t}.parquet" for t in TABLES])

    target = (f"duckdb:///{tmp_path / 'new' / 'restored.duckdb'}" if target_engine == "duckdb"
              else new_db_url(target_engine))
    code, out, err = run(capsys, "restore", str(folder), "--db", target, "--json")
    assert code == 0, err
    restored = json.loads(out)
    assert restored["tables"] == report["tables"] and restored["rows"] == report["rows"]
    assert contents(target) == before  # every table: same row count, same rows

    # Ids continue where the source left off (the deleted last run's id is not handed out again).
    source_seq = manifest["sequences"]
    store = Store(target)
    with store.write() as conn:
        new_id = conn.execute(sa.insert(schema.runs).values(name="after restore", source_format="csv", arch="dense")
                              .returning(schema.runs.c.id)).scalar_one()
        fit_id = conn.execute(sa.insert(schema.fits).values(law="l", method="m", target="loss")
                              .returning(schema.fits.c.id)).scalar_one()
    store.close()
    assert new_id == source_seq["runs_id_seq"] + 1 and new_id > before["runs"][0]
    assert fit_id == source_seq["fits_id_seq"] + 1


def test_text_output_and_backup_folder_must_be_new(seeded, tmp_path, capsys):
    folder = tmp_path / "backup [nightly] *"  # names are literal, never globs
    code, out, err = run(capsys, "backup", str(folder), "--db", seeded)
    assert code == 0 and out.startswith("backed up ") and f"to {folder}" in out and err == ""
    code, out, err = run(capsys, "backup", str(folder), "--db", seeded)  # never mixed into an old backup
    one_line_error(code, err, "is not empty")
    target = tmp_path / "r.duckdb"
    code, out, err = run(capsys, "restore", str(folder), "--db", f"duckdb:///{target}")
    assert code == 0 and out.startswith("restored ") and err == ""


def test_bad_backups_and_a_non_empty_target_are_refused_and_change_nothing(seeded, tmp_path, capsys):
    folder = tmp_path / "backup"
    assert run(capsys, "backup", str(folder), "--db", seeded)[0] == 0
    new_target = tmp_path / "never.duckdb"
    url = f"duckdb:///{new_target}"

    def damaged(name: str, change) -> Path:
        copy = tmp_path / name
        shutil.copytree(folder, copy)
        change(copy)
        return copy

    def rewrite_manifest(copy: Path, edit) -> None:
        manifest = json.loads((copy / "manifest.json").read_text())
        edit(manifest)
        (copy / "manifest.json").write_text(json.dumps(manifest))

    cases = [
        (tmp_path / "missing", "No backup folder"),
        (damaged("no_manifest", lambda c: (c / "manifest.json").unlink()), "has no manifest.json"),
        (damaged("garbled", lambda c: (c / "manifest.json").write_text('{"format": "scalescope-bac')), "is damaged"),
        (damaged("not_ours", lambda c: (c / "manifest.json").write_text("[1, 2]")), "not a ScaleScope backup"),
        (damaged("no_runs_entry", lambda c: rewrite_manifest(c, lambda m: m["tables"].pop("runs"))), "runs table"),
        (damaged("newer", lambda c: rewrite_manifest(c, lambda m: m.update(schema_version=99))), "schema version 99"),
        (damaged("lost_file", lambda c: (c / "metrics.parquet").unlink()), "lacks metrics.parquet"),
        (damaged("flipped", lambda c: (c / "metrics.parquet").write_bytes(
            (c / "metrics.parquet").read_bytes()[:-100] + os.urandom(100))), "does not match the checksum"),
        (damaged("escape", lambda c: rewrite_manifest(c, lambda m: m["tables"]["runs"].update(file="../x"))),
         "lacks ../x"),
    ]
    for path, message in cases:
        code, out, err = run(capsys, "restore", str(path), "--db", url)
        one_line_error(code, err, message)
        assert out == ""
        assert not new_target.exists(), path  # checked before the target is even opened

    # A row count the manifest got wrong (checksums re-made to match): rolled back, new file removed.
    def miscount(c: Path) -> None:
        rewrite_manifest(c, lambda m: m["tables"]["probes"].update(rows=5))
    code, out, err = run(capsys, "restore", str(damaged("miscount", miscount)), "--db", url)
    one_line_error(code, err, "manifest says 5")
    assert not new_target.exists()

    # A target that holds data: refused, byte for byte unchanged.
    source_file = Path(seeded.removeprefix("duckdb:///"))
    digest = hashlib.sha256(source_file.read_bytes()).hexdigest()
    code, out, err = run(capsys, "restore", str(folder), "--db", seeded)
    one_line_error(code, err, "is not empty")
    assert hashlib.sha256(source_file.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("backup_fast, restore_fast", [(False, False), (False, True), (True, False)])
def test_dialect_neutral_path_round_trips_and_mixes_with_duckdbs(seeded, tmp_path, monkeypatch,
                                                                 backup_fast, restore_fast):
    """The plain SELECT/INSERT path (what PostgreSQL will use) writes the same Parquet schema as
    DuckDB's COPY, so a backup made by either restores through the other."""
    import db.backup as backup_db
    from services.backup import backup_store, restore_store

    before = contents(seeded)
    monkeypatch.setattr(backup_db, "_fast_path", lambda conn: backup_fast)
    store = Store(seeded, create=False)
    backup_store(store, tmp_path / "b")
    store.close()
    monkeypatch.setattr(backup_db, "_fast_path", lambda conn: restore_fast)
    target = f"duckdb:///{tmp_path / 'r.duckdb'}"
    assert restore_store(tmp_path / "b", target)["rows"] == sum(n for n, _ in before.values())
    assert contents(target) == before
