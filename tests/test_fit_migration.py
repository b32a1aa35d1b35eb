"""Schema version 2 → 3: a fit stored in version 2's layout (db/fits.py at schema 2: the FitResult's
fields mixed into ``diagnostics``, budget quantities as "N_opt@1e+21" string keys in ``derived``,
``intervals`` and ``stderr``) is rewritten when the file opens, and then loads and predicts identically."""
import json

import duckdb
import numpy as np
import pytest

from core.fitting.chinchilla import Approach3Settings, fit_chinchilla
from core.fitting.generic import fit_law
from core.jsonable import jsonable
from core.laws import BESIROGLU_2024, chinchilla_loss, chinchilla_optimal, power_law_offset
from db import schema
from db.fits import get_fit, load_result
from db.store import Store
from services import fits as fit_data

V2_RESULT_FIELDS = ("stderr", "objective", "n_points", "bootstrap_samples", "derived", "param_names")


def v2_columns(result) -> dict:
    """The columns version 2's ``db.fits.save_result`` wrote for ``result`` (git show <v2>:db/fits.py)."""
    d = result.to_dict()
    derived, intervals, stderr = dict(d["derived"]), dict(d["intervals"]), dict(d["stderr"])
    for row in d["optima"]:
        key = f"{row['budget']:.3g}"
        for old, new in (("N_opt", "n_params"), ("D_opt", "tokens"), ("tokens_per_param", "tokens_per_param")):
            derived[f"{old}@{key}"] = row[new]
            if row.get(f"{new}_lo") is not None:
                intervals[f"{old}@{key}"] = [row[f"{new}_lo"], row[f"{new}_hi"]]
                stderr[f"{old}@{key}"] = 0.1 * row[new]  # version 2 kept their standard errors too
    diagnostics = dict(d["diagnostics"])
    diagnostics.update({"stderr": stderr, "objective": d["objective"], "n_points": d["n_points"],
                        "bootstrap_samples": d["bootstrap_samples"], "derived": derived,
                        "param_names": d["param_names"]})
    return {"law": d["law"], "method": d["method"], "target": "loss", "selection": json.dumps({"runs": []}),
            "settings": json.dumps(d["settings"]), "params": json.dumps(d["params"]),
            "intervals": json.dumps(jsonable(intervals)), "diagnostics": json.dumps(jsonable(diagnostics))}


@pytest.fixture
def fits():
    rng = np.random.default_rng(3)
    n = np.geomspace(1e7, 3e9, 7).repeat(4)
    d = np.tile(np.geomspace(2e8, 1e11, 4), 7)
    loss = chinchilla_loss(n, d, BESIROGLU_2024) * np.exp(rng.normal(0, 0.003, n.size))
    chinchilla = fit_chinchilla(n, d, loss, Approach3Settings(
        a_grid=(5.0, 7.0), b_grid=(7.0, 8.0), e_grid=(0.5,), alpha_grid=(0.3,), beta_grid=(0.3,), n_bootstrap=40,
        seed=5, budgets=(1e21, 5.76e23, 1.2345e22)))
    x = np.logspace(1, 5, 30)
    power = fit_law("power_law_offset", {"x": x}, power_law_offset(x, 1.7, 8.0, 0.4) * np.exp(rng.normal(0, 1e-3, 30)),
                    n_bootstrap=20)
    # Approach 2 (IsoFLOP parabolas), as services/fits.py builds its FitResult
    budgets = np.repeat([1e18, 3e18, 1e19, 3e19, 1e20], 6)
    sizes = np.concatenate([np.geomspace(0.25, 4.0, 6) * float(chinchilla_optimal(c, BESIROGLU_2024)[0])
                            for c in (1e18, 3e18, 1e19, 3e19, 1e20)])
    tokens = budgets / (6 * sizes)
    data = fit_data.FitData(run=np.array([f"r{i}" for i in range(30)], dtype=object), n_params=sizes, tokens=tokens,
                            flops=budgets, n_experts=np.ones(30), y=chinchilla_loss(sizes, tokens, BESIROGLU_2024),
                            target=fit_data.Target(), n_kind="total", selection={"source": "csv"}, budget=budgets)
    approach2 = fit_data.run_fit(data, fit_data.FitOptions(method="approach2"))
    return {"chinchilla": (chinchilla, {"n_params": n, "tokens": d}), "power": (power, {"x": x}),
            "approach2": (approach2, None)}


def test_a_version_2_file_is_migrated_and_its_fits_load_and_predict_identically(tmp_path, fits):
    path = tmp_path / "v2.duckdb"
    Store(f"duckdb:///{path}").close()  # the tables; then make the file what version 2 wrote
    con = duckdb.connect(str(path))
    for result, _ in fits.values():
        cols = v2_columns(result)
        con.execute(f"INSERT INTO fits ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", list(cols.values()))
    eval_diag = {"stderr": {"a": 0.1}, "n_points": 5, "rmse": 0.01}  # an eval fit: not a FitResult, left alone
    con.execute("INSERT INTO fits (law, method, target, params, intervals, diagnostics) VALUES (?, ?, ?, ?, ?, ?)",
                ["sigmoid_floor_ceiling", "least_squares[soft_l1]+bootstrap", "mmlu/acc", json.dumps({"a": 1.0}),
                 json.dumps({"a": [0.9, 1.1]}), json.dumps(eval_diag)])
    con.execute("UPDATE schema_info SET version = 2")
    con.close()

    store = Store(f"duckdb:///{path}")
    assert store.schema_version() == schema.SCHEMA_VERSION == 4
    for fit_id, (original, inputs) in zip((1, 2, 3), fits.values()):
        row = get_fit(store, fit_id)
        assert "method_diagnostics" in row["diagnostics"]
        assert not any("@" in k for k in row["intervals"]) and not any("@" in k for k in row["diagnostics"]["derived"])
        back = load_result(row)
        if inputs is not None:
            np.testing.assert_array_equal(back.predict(inputs), original.predict(inputs))  # identically
        assert back.params == original.params and back.derived == original.derived
        assert back.intervals == original.intervals and back.stderr == original.stderr
        assert [r.to_dict() for r in back.optima] == [r.to_dict() for r in original.optima]
        np.testing.assert_array_equal(back.bootstrap_samples, original.bootstrap_samples)
        assert back.objective == original.objective or np.isnan(back.objective) and np.isnan(original.objective)
        assert back.n_points == original.n_points
        assert back.warnings == original.warnings
        assert back.diagnostics.to_dict() == original.diagnostics.to_dict()
    chinchilla = load_result(get_fit(store, 1))
    assert [r.budget for r in chinchilla.optima] == [1e21, 5.76e23, 1.2345e22]  # exact, from the settings
    lo, hi = chinchilla.optimum_at(5.76e23).interval("n_params")
    assert lo < chinchilla.optimum_at(5.76e23).n_params < hi
    approach2 = load_result(get_fit(store, 3))
    assert len(approach2.diagnostics.profiles) == 5 and approach2.optima[2].budget == 5.76e23
    assert get_fit(store, 4)["diagnostics"] == eval_diag
    store.close()
    Store(f"duckdb:///{path}").close()  # opening again changes nothing
