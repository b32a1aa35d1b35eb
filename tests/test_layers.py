"""The layers of docs/ARCHITECTURE.md hold: import-linter checks the contracts in .importlinter, and
the source is read for what import-linter cannot see (SQL written as strings, imports hidden in functions)."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ("layers", "pure-core", "no-ui-below-services", "sql-in-db", "ui-through-services", "tools-stand-apart")
# Everything above or beside db/ that must hold no SQL of its own.
NO_SQL_PACKAGES = ("services", "importers", "pages", "commands")
SQL = (re.compile(r"\b(SELECT|INSERT|DELETE|UPDATE)\b.*\b(FROM|INTO|SET)\b", re.DOTALL),
       re.compile(r"\b(CREATE|DROP|ALTER)\s+(OR\s+REPLACE\s+)?(TEMP\s+|TEMPORARY\s+)?(TABLE|INDEX|VIEW|SEQUENCE)\b"))
# Modules a db/ function may import lazily (with a comment saying why): heavy and optional.
LAZY_OK = ("torch", "transformers", "psycopg")  # psycopg: the PostgreSQL driver, ~40 ms a DuckDB store never pays


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _string_literals(tree: ast.AST):
    """(line, text) of every string literal; an f-string is one text with {} for its fields."""
    in_fstring = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                in_fstring.add(id(value))
                parts.append(value.value if isinstance(value, ast.Constant) else "{}")
            yield node.lineno, "".join(parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstring:
            yield node.lineno, node.value


def _sql_in(source: str) -> list[tuple[int, str]]:
    return [(line, text) for line, text in _string_literals(ast.parse(source))
            if any(p.search(text) for p in SQL)]


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    out = subprocess.run([exe, "--no-cache", "--no-logo", str(ROOT / ".importlinter")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    summary = re.search(r"Contracts: (\d+) kept, (\d+) broken", out.stdout)
    assert summary, out.stdout + out.stderr
    assert out.returncode == 0 and summary.group(2) == "0", out.stdout[-4000:]
    assert int(summary.group(1)) == len(CONTRACTS), out.stdout[-4000:]


def test_every_contract_is_declared():
    text = (ROOT / ".importlinter").read_text()
    for name in CONTRACTS:
        assert f"[importlinter:contract:{name}]" in text
    sql_contract = text.split("[importlinter:contract:sql-in-db]")[1].split("[importlinter:")[0]
    for forbidden in ("sqlalchemy", "duckdb", "db.schema"):
        assert re.search(rf"^\s+{re.escape(forbidden)}\s*$", sql_contract, re.MULTILINE), forbidden


def test_no_sql_strings_outside_db():
    found = [f"{path.relative_to(ROOT)}:{line}: {text.strip()[:80]!r}"
             for path in _sources(*NO_SQL_PACKAGES) for line, text in _sql_in(path.read_text(encoding="utf-8"))]
    assert not found, "SQL belongs in a db/ repository:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    'q = "SELECT name FROM runs"',
    'q = f"DELETE FROM {table} WHERE id = 1"',
    'q = ("INSERT INTO metrics (run_id) "\n     "VALUES (1)")',
    'q = f"UPDATE runs SET tokens = {n}"',
    'conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE t AS SELECT 1")',
])
def test_the_sql_check_sees_sql(source):
    assert _sql_in(source)


def test_the_sql_check_leaves_prose_alone():
    assert not _sql_in('"""Select the runs from the table, then update the page."""\nx = "Delete runs"')


def test_db_imports_at_module_level():
    """A db/ module names what it needs at the top; only a heavy optional module (LAZY_OK) may be
    imported inside a function, with a comment on that line saying why."""
    hidden = []
    for path in _sources("db"):
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                heavy = all(n.split(".")[0] in LAZY_OK for n in names)
                if not (heavy and "#" in lines[node.lineno - 1]):
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not hidden, "move these imports to the top of the module:\n" + "\n".join(hidden)


PACKAGES = ("core", "db", "importers", "services", "pages", "commands", "tools")


def import_cycles(packages=PACKAGES) -> list[list[str]]:
    """Groups of modules that import each other round in a circle, deferred (in-function) imports
    included: the strongly connected components of grimp's import graph with more than one module."""
    import grimp
    import numpy as np
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*packages)
    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    edges = [(index[m], index[t]) for m in modules for t in graph.find_modules_directly_imported_by(m) if t in index]
    rows, cols = zip(*edges)
    adjacency = csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(modules), len(modules)))
    _, labels = connected_components(adjacency, directed=True, connection="strong")
    groups = [[modules[i] for i in np.nonzero(labels == label)[0]] for label in set(labels)]
    return sorted(group for group in groups if len(group) > 1)


def test_no_import_cycles_even_through_deferred_imports():
    """Issue 10: the layers have no cycles. A deferred import that only dodges an import-time cycle
    (core.fine_grained_moe ↔ core.planner ↔ core.registry was one) counts as a cycle here."""
    assert import_cycles() == []


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    package = tmp_path / "cyc"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from cyc import b\n")
    (package / "b.py").write_text("import cyc.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles(("cyc",)) == [["cyc.a", "cyc.b"]]
