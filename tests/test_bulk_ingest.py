"""The DuckDB-native fast path for long metric tables (db/bulk.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import DuplicateRunError, InputError
from db.bulk import ingest_long_table


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
