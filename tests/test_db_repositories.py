"""The db/ repositories that services write through inside one transaction: run rows (db/runs.py),
eval rows (db/evals.py) and routing captures (db/routing.py)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from core.errors import InputError
from core.runs import ParsedRun
from db import evals as eval_rows, routing as captures, runs as run_rows


@pytest.fixture
def db_url(any_db_url):
    """Each test here runs on both engines: a DuckDB file and a PostgreSQL database (tests/conftest.py)."""
    return any_db_url


def _run(name: str, steps=(0.0, 10.0, 20.0)) -> ParsedRun:
    metrics = pd.DataFrame({"name": "loss", "step": list(steps), "tokens": None, "flops": None,
                            "wall_time": None, "value": [3.0, 2.5, 2.0][:len(steps)]})
    return ParsedRun(name=name, source_format="csv_long", metrics=metrics)


def test_run_rows_match_fill_and_create(store):
    store.ingest([_run("a"), _run("b", steps=())])
    with store.write() as conn:
        found = run_rows.runs_named(conn, ["a", "b", "nope"])
        assert sorted(found) == ["a", "b"] and found["a"]["n_params"] is None
        assert run_rows.last_logged_steps(conn, [found["a"]["id"], found["b"]["id"]]) == {found["a"]["id"]: 20.0}
        assert run_rows.last_logged_steps(conn, []) == {}
        run_rows.update_run_fields(conn, found["a"]["id"], {"n_params": 1e6})
        run_rows.update_run_fields(conn, found["a"]["id"], {})  # nothing to set: no statement
        assert run_rows.insert_runs(conn, [{"name": "c", "source_format": "evals", "arch": "dense",
                                            "config": "{}", "tags": "[]"}]) == 1
        ids = run_rows.run_ids_named(conn, ["a", "c", "nope"])
    assert sorted(ids) == ["a", "c"] and ids["c"] > ids["a"]
    runs = store.runs().set_index("name")
    assert runs.loc["a", "n_params"] == 1e6 and runs.loc["c", "source_format"] == "evals"


def test_eval_table_types_and_nulls():
    rows = pd.DataFrame({"run_id": [1, 2], "step": [float("nan"), 5], "task": ["t", "t"], "metric": ["acc", "acc"],
                         "value": [0.5, 0.6]})
    table = eval_rows.eval_table(rows)
    assert table.column_names == ["run_id", "step", "task", "metric", "value", "stderr", "source_file"]
    assert table.column("step").to_pylist() == [None, 5.0]  # no step: the final model
    assert table.column("stderr").null_count == 2 and table.column("source_file").null_count == 2
    with_optional = eval_rows.eval_table(rows.assign(stderr=[0.01, float("nan")], source_file="f.json"))
    assert with_optional.column("stderr").to_pylist() == [0.01, None]
    assert with_optional.column("source_file").to_pylist() == ["f.json", "f.json"]


def test_same_scores_are_deleted_step_null_included(store):
    store.ingest([_run("a")])
    run_id = store.run_ids(["a"])["a"]
    scores = pd.DataFrame({"run_id": run_id, "step": [float("nan"), 10.0, 20.0], "task": "t", "metric": "acc",
                           "value": [0.5, 0.4, 0.45]})
    with store.write() as conn:
        assert eval_rows.insert_evals(conn, scores) == 3
    again = scores.iloc[[0, 2]].assign(value=[0.55, 0.5])
    with store.write() as conn:
        assert eval_rows.delete_same_scores(conn, again) == 2
        eval_rows.insert_evals(conn, again)
    stored = eval_rows.evals_with_scale(store).sort_values("step", na_position="first")
    assert [None if math.isnan(s) else s for s in stored["step"]] == [None, 10.0, 20.0]
    assert stored["value"].tolist() == [0.55, 0.4, 0.5]
    assert stored["loss"].tolist() == [2.0, 2.5, 2.0]  # final loss for the final model, else at the step


def _assignments(n: int) -> pd.DataFrame:
    return pd.DataFrame({"layer": [1] * n, "doc_id": range(n), "position": [0] * n, "token_id": range(n),
                         "domain": ["python"] * n, "rank": [0] * n, "expert": [i % 2 for i in range(n)],
                         "weight": [0.5] * n})


def test_captures_written_in_a_transaction_and_deleted_by_source(store):
    meta = {"model_ref": "run-1", "family": "tiny", "corpus": "c", "checkpoint_step": 5, "n_layers": 1,
            "n_experts": 2, "top_k": 1, "n_tokens": 4}
    with store.write() as conn:
        sweep = captures.insert_capture(conn, {**meta, "info": {"source": "probe_sweep", "layers": [1]}})
        assert captures.insert_assignments(conn, sweep, _assignments(4)) == 4
        other = captures.insert_capture(conn, {**meta, "info": {"source": "capture"}})
        captures.insert_assignments(conn, other, _assignments(3))
    assert captures.get_capture(store, sweep)["info"] == {"source": "probe_sweep", "layers": [1]}
    loaded = captures.load_assignments(store, sweep)
    assert list(loaded.columns) == captures.ASSIGNMENT_COLUMNS and len(loaded) == 4
    assert len(captures.load_assignments(store, sweep, layer=2)) == 0
    assert captures.capture_layers(store, other) == [1]
    with store.write() as conn:
        captures.delete_captures_of(conn, "run-1", source="probe_sweep")
    assert captures.list_captures(store)["id"].tolist() == [other]
    with pytest.raises(InputError, match="No routing capture"):
        captures.load_assignments(store, sweep)
    captures.delete_capture(store, other)
    assert captures.list_captures(store).empty
