"""The DuckDB-native fast path for long metric tables (db/bulk.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import DuplicateRunError, InputError
from db.bulk import ingest_long_table


@pytest.fixture
def db_url(any_db_url):
    """Each test here runs on both engines: a DuckDB file and a PostgreSQL database (tests/conftest.py)."""
    return any_db_url


def write_long(path, runs=("a", "b"), steps=50, value=None):
    rows = []
    for r in runs:
        for s in range(steps):
            rows.append({"Run": r, "step": s, "metric": "loss", "value": 3.0 - s / steps if value is None else value,
                         "tokens": s * 1024.0})
    frame = pd.DataFrame(rows)
    if str(path).endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return frame


def n_rows(store):
    with store.read() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM metrics")).scalar_one()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_table_lands_whole(store, tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    write_long(path, runs=("a", "'; DROP TABLE runs;--"), steps=50)
    added = ingest_long_table(store, path)
    assert sorted(a["name"] for a in added) == sorted(["a", "'; DROP TABLE runs;--"])
    assert all(a["n_metric_rows"] == 50 for a in added)
    runs = store.runs().set_index("name")
    assert runs.loc["a", "tokens"] == 49 * 1024.0
    m = store.metrics(["a"])
    assert m["value"].tolist() == pytest.approx([3.0 - s / 50 for s in range(50)])


def test_long_table_bad_rows_leave_store_unchanged(store, tmp_path):
    write_long(tmp_path / "ok.csv", runs=("keep",))
    ingest_long_table(store, tmp_path / "ok.csv")
    before = n_rows(store)
    bad = tmp_path / "bad.csv"
    frame = write_long(bad, runs=("x",)).astype({"value": object})
    frame.loc[7, "value"] = "oops"
    frame.to_csv(bad, index=False)
    with pytest.raises(InputError, match=r"oops|Line: 9"):
        ingest_long_table(store, bad)
    frame.loc[7, "value"] = 1.0
    frame.loc[3, "step"] = -2
    frame.to_csv(bad, index=False)
    with pytest.raises(InputError, match="run 'x' has a negative"):
        ingest_long_table(store, bad)
    frame.loc[3, "step"] = 3
    frame.loc[5, "value"] = float("nan")
    frame.to_csv(bad, index=False, na_rep="nan")
    with pytest.raises(InputError, match="NaN or infinite value at step 5"):
        ingest_long_table(store, bad)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        ingest_long_table(store, tmp_path / "empty.csv")
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="run, step, metric, value"):
        ingest_long_table(store, tmp_path / "cols.csv")
    assert n_rows(store) == before and store.run_names() == ["keep"]


def test_long_table_duplicates(store, tmp_path):
    path = tmp_path / "m.csv"
    write_long(path, runs=("a", "b"))
    ingest_long_table(store, path)
    with pytest.raises(DuplicateRunError):
        ingest_long_table(store, path)
    assert ingest_long_table(store, path, on_duplicate="skip") == []
    added = ingest_long_table(store, path, on_duplicate="rename")
    assert sorted(a["name"] for a in added) == ["a (2)", "b (2)"]
    ingest_long_table(store, path, on_duplicate="replace")
    assert n_rows(store) == 4 * 50


# ---------------------------------------------------------------------------------------------
# One validation for every import path: each bad long table is refused by the small-file path
# (importers/) and by the bulk path (db/bulk.py) alike, with one line, the store unchanged. The
# bulk threshold is lowered in the test (services.ingest.BULK_BYTES) instead of writing 32 MiB.

HEADER = b"run,step,metric,value\n"
# 2 MB of valid rows and then zeros is what a crash leaves; 70 KB is past the 64 KiB sniff.
VALID_ROWS = b"".join(b"r,%d,loss,%d.5\n" % (i, i % 7) for i in range(5000))
LONG_BAD = [
    ("ansi_run.csv", HEADER + b'"a\x1b[31mred",1,loss,2.0\n', "control characters"),
    ("ansi_metric.csv", HEADER + b"a,1,lo\x1b[0mss,2.0\n", "control characters"),
    ("tab_in_run.csv", HEADER + b'"a\tb",1,loss,2.0\n', "control characters"),
    ("dup_value.csv", b"run,step,metric,value,value\na,1,loss,2.0,3.0\n", "column 'value' appears twice"),
    ("dup_value_case.csv", b"run,step,metric,value,Value\na,1,loss,2.0,3.0\n", "appears twice"),
    ("nul_tail.csv", HEADER + VALID_ROWS + b"\x00" * 100_000, "NUL bytes from byte"),
    ("nul_head.csv", HEADER + b"a,1,loss,2.0\n" + b"\x00" * 64, "binary"),
    ("blank_run.csv", HEADER + b"   ,1,loss,2.0\n", "run name is empty"),
    ("no_run.csv", HEADER + b"a,1,loss,2.0\n,2,loss,1.0\n", "give every row a run name"),
    ("no_metric.csv", HEADER + b"a,1,loss,2.0\na,2,,1.0\n", "name the metric on every row"),
    ("nan_value.csv", HEADER + b"a,1,loss,2.0\na,2,loss,nan\n", "NaN"),
    ("inf_value.csv", HEADER + b"a,1,loss,inf\n", "infinite"),
    ("neg_step.csv", HEADER + b"a,-1,loss,2.0\n", "negative"),
    ("neg_tokens.csv", b"run,step,metric,value,tokens\na,1,loss,2.0,-5\n", "negative"),
    ("inf_tokens.csv", b"run,step,metric,value,tokens\na,1,loss,2.0,inf\n", "infinite"),
    ("text_value.csv", HEADER + b"a,1,loss,2.0\na,2,loss,abc\n", "non-numeric value"),
    ("header_only.csv", HEADER, "no rows"),
    ("binary.csv", bytes(range(256)) * 4, "binary"),
    ("empty.csv", b"", "is empty"),
]


def store_state(store):
    with store.read() as conn:
        runs = conn.execute(sa.text("SELECT id, name, source_file, tokens, flops FROM runs ORDER BY id")).fetchall()
        return runs, conn.execute(sa.text("SELECT count(*) FROM metrics")).scalar_one()


@pytest.fixture(params=["small", "bulk"])
def route(request, monkeypatch):
    """Which path a long CSV takes: the importers (threshold never reached) or DuckDB (threshold 0).

    Yields the list of files the bulk path was called with, to prove the route taken."""
    import services.ingest as ingest

    monkeypatch.setattr(ingest, "BULK_BYTES", 0 if request.param == "bulk" else 1 << 62)
    monkeypatch.delenv(ingest.BULK_BYTES_ENV, raising=False)
    calls = []
    real = ingest.ingest_long_table

    def spy(store, path, *args, **kwargs):
        calls.append(kwargs.get("what") or Path(path).name)
        return real(store, path, *args, **kwargs)

    monkeypatch.setattr(ingest, "ingest_long_table", spy)
    return request.param, calls


def one_line(message: str) -> str:
    assert "\n" not in message and message.strip() == message and len(message) < 400, message
    return message


@pytest.mark.parametrize("filename,data,expected", LONG_BAD, ids=[c[0] for c in LONG_BAD])
@pytest.mark.parametrize("entry", ["paths", "uploads"])
def test_bad_long_tables_are_refused_by_both_paths(store, tmp_path, route, entry, filename, data, expected):
    from services.ingest import ingest_paths, ingest_uploads

    kind, calls = route
    write_long(tmp_path / "keep.csv", runs=("keep",), steps=5)
    ingest_paths(store, [tmp_path / "keep.csv"])
    before = store_state(store)
    calls.clear()
    path = tmp_path / filename
    path.write_bytes(data)
    with pytest.raises(InputError) as exc:
        if entry == "paths":
            ingest_paths(store, [path])
        else:
            ingest_uploads(store, [(filename, data)])
    message = one_line(str(exc.value))
    assert expected in message, message
    assert message.count(filename) == 1, message  # the file is named, once
    assert store_state(store) == before
    detected_long = filename not in ("binary.csv", "empty.csv", "nul_head.csv")
    assert bool(calls) == (kind == "bulk" and detected_long and data != b"")


def test_good_long_table_lands_the_same_by_both_paths(store, tmp_path, route):
    """Names are trimmed alike; the run rows and metric rows are the same whichever path read them."""
    from services.ingest import ingest_paths

    kind, calls = route
    path = tmp_path / "trim.csv"
    path.write_bytes(b"run,step,metric,value,tokens\n  a  ,1, loss ,2.5,10\na,2,loss,2.0,20\n b,1,acc,0.5,\n")
    added = ingest_paths(store, [path])
    assert sorted(a["name"] for a in added) == ["a", "b"] and bool(calls) == (kind == "bulk")
    assert store.run_names() == ["a", "b"]
    m = store.metrics(["a", "b"]).sort_values(["run", "name", "step"])
    assert m[["run", "name", "step", "value"]].values.tolist() == [
        ["a", "loss", 1.0, 2.5], ["a", "loss", 2.0, 2.0], ["b", "acc", 1.0, 0.5]]
    assert store.runs().set_index("name").loc["a", "tokens"] == 20.0
    assert store.runs().set_index("name").loc["a", "source_file"] == "trim.csv"


def test_unix_wall_times_are_measured_from_the_runs_first_point_by_both_paths(store, tmp_path, route):
    """Timestamps (> 1e9 s) become seconds since the run's first logged point, whichever path reads
    them (the run's first point over all its metrics, and across raw names that trim to one run);
    durations are kept as they are."""
    from services.ingest import ingest_paths

    kind, calls = route
    path = tmp_path / "clock.csv"
    path.write_bytes(b"run,step,metric,value,wall_time\n"
                     b"a,1,loss,2.5,1700000005.5\na,2,loss,2.0,1700000010\n a ,1,acc,0.5,1700000000\n"
                     b"d,1,loss,3.0,12.5\nd,2,loss,2.9,20\n")
    ingest_paths(store, [path])
    assert bool(calls) == (kind == "bulk")
    m = store.metrics(["a", "d"]).sort_values(["run", "name", "step"])
    assert m[["run", "name", "wall_time"]].values.tolist() == [
        ["a", "acc", 0.0], ["a", "loss", 5.5], ["a", "loss", 10.0], ["d", "loss", 12.5], ["d", "loss", 20.0]]


def test_size_limit_applies_to_the_bulk_path(store, tmp_path, monkeypatch, route):
    from services.ingest import ingest_paths, ingest_uploads

    kind, calls = route
    path = tmp_path / "big.csv"
    write_long(path, runs=("a",), steps=200)
    monkeypatch.setenv("SCALESCOPE_MAX_UPLOAD_BYTES", "1024")
    for attempt in (lambda: ingest_paths(store, [path]), lambda: ingest_uploads(store, [("big.csv", path.read_bytes())])):
        with pytest.raises(InputError, match=r"big.csv is .* over the 1.0 KB upload limit") as exc:
            attempt()
        one_line(str(exc.value))
    parquet = tmp_path / "big.parquet"
    write_long(parquet, runs=("a",), steps=200)
    assert parquet.stat().st_size > 1024
    with pytest.raises(InputError, match="over the 1.0 KB upload limit"):
        ingest_paths(store, [parquet])
    with pytest.raises(InputError, match="over the 1.0 KB upload limit"):
        ingest_long_table(store, parquet)  # the bulk path itself applies the limit too
    assert store.run_names() == []
    monkeypatch.delenv("SCALESCOPE_MAX_UPLOAD_BYTES")
    assert [a["name"] for a in ingest_paths(store, [path])] == ["a"]


def test_over_the_limit_is_checked_before_the_content(store, tmp_path, monkeypatch, route):
    """An all-NUL file over the limit is 'over the limit', not 'binary' (a sparse file: no bytes written)."""
    from services.ingest import ingest_paths

    path = tmp_path / "zeros.csv"
    with open(path, "wb") as fh:
        fh.truncate(3 << 30)
    with pytest.raises(InputError, match=r"zeros.csv is 3.0 GB, over the 1.0 GB upload limit") as exc:
        ingest_paths(store, [path])
    assert "binary" not in one_line(str(exc.value))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_file_names_are_literal_never_globs(store, tmp_path, suffix, monkeypatch):
    import services.ingest as ingest

    monkeypatch.setattr(ingest, "BULK_BYTES", 0)
    for name in ("ra", "rb", "r1", "rx", "r[ab]", "r*", "r?"):
        write_long(tmp_path / f"{name}{suffix}", runs=(f"run-{name}",), steps=3)
    assert [a["name"] for a in ingest.ingest_paths(store, [tmp_path / f"r[ab]{suffix}"])] == ["run-r[ab]"]
    assert [a["name"] for a in ingest_long_table(store, tmp_path / f"r*{suffix}")] == ["run-r*"]
    assert [a["name"] for a in ingest_long_table(store, tmp_path / f"r?{suffix}")] == ["run-r?"]
    assert store.run_names() == ["run-r[ab]", "run-r*", "run-r?"]
    odd = tmp_path / "we[i]rd {a,b} 'q'" / f"x{suffix}"
    odd.parent.mkdir()
    write_long(odd, runs=("odd",), steps=3)
    assert [a["name"] for a in ingest_long_table(store, odd)] == ["odd"]


def test_parquet_names_and_columns_follow_the_same_rules(store, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = tmp_path / "ansi.parquet"
    pd.DataFrame({"run": ["a\x1b[31m"], "step": [1], "metric": ["loss"], "value": [2.0]}).to_parquet(bad)
    with pytest.raises(InputError, match="run name 'a\\\\x1b\\[31m' contains control characters"):
        ingest_long_table(store, bad)
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array([1]), pa.array(["loss"]), pa.array([2.0]),
                                         pa.array([3.0])], names=["run", "step", "metric", "value", "value"]), dup)
    with pytest.raises(InputError, match="column 'value' appears twice"):
        ingest_long_table(store, dup)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1" + b"\x01" * 100)
    with pytest.raises(InputError, match="not a readable Parquet file"):
        ingest_long_table(store, junk)
    assert store.run_names() == []
