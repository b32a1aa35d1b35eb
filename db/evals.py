"""Eval rows (table ``evals``): bulk insert, replace-on-reimport, and the read-back join that gives
each eval its run's sizes and, at the eval's step, the logged tokens, FLOPs and training loss.

Writers take the caller's open write transaction (``Store.write()``), so an eval import, a probe
sweep or the demo seed stores its evals with its runs in one transaction. Stored eval *fits* live
in ``fits`` (db/fits.py), with the eval metric as their target.
"""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from db import dialects, schema
from db.store import Store

# Score identity: importing a score again for the same run, step, task and metric replaces it.
SCORE_KEY = ["run_id", "step", "task", "metric"]


def eval_table(rows: pd.DataFrame) -> pa.Table:
    """The ``evals`` columns as typed Arrow: ``rows`` has run_id, step, task, metric, value and
    optionally stderr and source_file (missing: NULL). A NaN step or stderr is stored as NULL
    (a step-less eval is of the final model)."""
    n = len(rows)

    def optional(col: str, arrow_type) -> pa.Array:
        if col not in rows.columns:
            return pa.nulls(n, type=arrow_type)
        if arrow_type == pa.string():
            return pa.array(rows[col].astype(str).tolist(), type=arrow_type)
        return pa.array(pd.to_numeric(rows[col]).to_numpy(dtype=np.float64), from_pandas=True)

    return pa.table({
        "run_id": pa.array(np.asarray(rows["run_id"], dtype=np.int32)),
        "step": pa.array(pd.to_numeric(rows["step"]).to_numpy(dtype=np.float64), from_pandas=True),
        "task": pa.array(rows["task"].astype(str).tolist(), type=pa.string()),
        "metric": pa.array(rows["metric"].astype(str).tolist(), type=pa.string()),
        "value": pa.array(pd.to_numeric(rows["value"]).to_numpy(dtype=np.float64)),
        "stderr": optional("stderr", pa.float64()),
        "source_file": optional("source_file", pa.string()),
    })


def insert_evals(conn, rows: pd.DataFrame) -> int:
    """Append eval rows (see :func:`eval_table`) inside an open write transaction; returns how many."""
    return Store.bulk_insert(conn, schema.evals, eval_table(rows))


def delete_same_scores(conn, rows: pd.DataFrame) -> int:
    """Delete stored scores that ``rows`` give again (same run, step, task, metric); returns how many."""
    table = eval_table(rows).select(SCORE_KEY)
    if conn.dialect.name == "postgresql":  # the keys go to a temporary table through COPY
        conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS _ss_score_keys (run_id integer, step double precision, "
                             "task text, metric text) ON COMMIT DELETE ROWS")
        dialects.POSTGRESQL.bulk_insert(conn, "_ss_score_keys", table)
        result = conn.exec_driver_sql(
            "DELETE FROM evals e USING _ss_score_keys v WHERE e.run_id = v.run_id AND e.task = v.task "
            "AND e.metric = v.metric AND e.step IS NOT DISTINCT FROM v.step")
        conn.exec_driver_sql("TRUNCATE _ss_score_keys")
        return max(int(result.rowcount or 0), 0)
    raw = conn.connection.driver_connection
    view = f"_ss_evals_{threading.get_ident()}"
    raw.register(view, table)
    try:
        result = conn.exec_driver_sql(
            f'DELETE FROM evals e USING "{view}" v WHERE e.run_id = v.run_id AND e.task = v.task '
            f"AND e.metric = v.metric AND e.step IS NOT DISTINCT FROM v.step")
        return max(int(result.rowcount or 0), 0)
    finally:
        raw.unregister(view)


def evals_with_scale(store: Store, loss_metric: str = "loss") -> pd.DataFrame:
    """Every eval row joined to its run (id, name, source_format, config JSON text, sizes) and to the
    run's latest ``loss_metric`` row at or before the eval's step (a DuckDB ASOF join; a LATERAL
    join on PostgreSQL): m_step, m_tokens, m_flops, and ``loss`` (the run's last value for a
    final-model eval, step NULL)."""
    with store.read() as conn:
        sql = _EVALS_WITH_SCALE_PG if conn.dialect.name == "postgresql" else _EVALS_WITH_SCALE_DUCKDB
        return pd.read_sql(sql, conn, params={"loss_metric": loss_metric})


_EVALS_WITH_SCALE_DUCKDB = sa.text("""
        WITH m AS (SELECT run_id, step, tokens, flops, value FROM metrics
                   WHERE name = :loss_metric AND step IS NOT NULL),
             fin AS (SELECT run_id, arg_max(value, step) AS loss FROM m GROUP BY run_id),
             e AS (SELECT ev.*, coalesce(ev.step, -1) AS s FROM evals ev)
        SELECT r.id AS run_id, r.name AS run, r.source_format, r.config, e.step, e.task, e.metric, e.value,
               e.stderr, e.source_file, coalesce(r.n_params, r.n_active_params) AS n_params,
               r.n_active_params, r.tokens AS run_tokens, r.flops AS run_flops, r.tokens_per_step,
               a.step AS m_step, a.tokens AS m_tokens, a.flops AS m_flops,
               CASE WHEN e.step IS NULL THEN fin.loss ELSE a.value END AS loss
        FROM e JOIN runs r ON r.id = e.run_id
        ASOF LEFT JOIN m a ON a.run_id = e.run_id AND e.s >= a.step
        LEFT JOIN fin ON fin.run_id = e.run_id
        ORDER BY r.id, e.task, e.metric, e.step NULLS LAST""")
_EVALS_WITH_SCALE_PG = sa.text("""
        WITH m AS (SELECT run_id, step, tokens, flops, value FROM metrics
                   WHERE name = :loss_metric AND step IS NOT NULL),
             fin AS (SELECT DISTINCT ON (run_id) run_id, value AS loss FROM m ORDER BY run_id, step DESC)
        SELECT r.id AS run_id, r.name AS run, r.source_format, r.config, e.step, e.task, e.metric, e.value,
               e.stderr, e.source_file, coalesce(r.n_params, r.n_active_params) AS n_params,
               r.n_active_params, r.tokens AS run_tokens, r.flops AS run_flops, r.tokens_per_step,
               a.step AS m_step, a.tokens AS m_tokens, a.flops AS m_flops,
               CASE WHEN e.step IS NULL THEN fin.loss ELSE a.value END AS loss
        FROM evals e JOIN runs r ON r.id = e.run_id
        LEFT JOIN LATERAL (SELECT m.step, m.tokens, m.flops, m.value FROM m
                           WHERE m.run_id = e.run_id AND m.step <= coalesce(e.step, -1)
                           ORDER BY m.step DESC LIMIT 1) a ON true
        LEFT JOIN fin ON fin.run_id = e.run_id
        ORDER BY r.id, e.task, e.metric, e.step NULLS LAST""")
