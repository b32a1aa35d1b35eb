"""Tags after import: retag runs (service, `cli.py runs tag`, the Runs table's tags column), on both
engines; a bad input is one line and leaves the store as it was."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import InputError
from core.runs import ParsedRun
from services import runs as runs_service
from services.runs import Store, retag_runs, set_run_tags, tags_from_text

HOSTILE_TAG = "**b** [x](http://127.0.0.9/) <img src=x> _i_"


@pytest.fixture
def db_url(any_db_url):
    """Each test here runs on both engines: a DuckDB file and a PostgreSQL database (tests/conftest.py)."""
    return any_db_url


def _ingest(url: str, runs: dict) -> None:
    """Store runs ``name -> tags`` (one metric row each) in the store at ``url``."""
    import pandas as pd

    store = Store(url)
    store.ingest([ParsedRun(name=name, source_format="csv_long", tags=list(tags),
                            metrics=pd.DataFrame({"name": ["loss"], "step": [1.0], "tokens": [None], "flops": [None],
                                                  "wall_time": [None], "value": [3.0]}))
                  for name, tags in runs.items()])
    store.close()


@pytest.fixture
def tagged(db_url):
    _ingest(db_url, {"a": ["sweep-1"], "b": ["sweep-1"], "c": ["other"]})
    return db_url


def _tags(url: str) -> dict:
    """name -> tags, as the store holds them."""
    store = Store(url)
    try:
        frame = runs_service.list_runs(store)
        return dict(zip(frame["name"], frame["tags"].map(runs_service.run_tags)))
    finally:
        store.close()


def _contents(url: str) -> list:
    """Every stored run row (all columns) and metric row: what 'the store unchanged' compares."""
    store = Store(url)
    try:
        runs = runs_service.list_runs(store).drop(columns=["created_at"]).to_dict("records")
        return [runs, runs_service.metrics(store, [r["name"] for r in runs]).to_dict("records")]
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------- service

def test_add_remove_and_set_in_one_call(tagged):
    store = Store(tagged)
    try:
        out = retag_runs(store, ["a", "b"], add=["sweep-2", " sweep-2 "], remove=["sweep-1"])
        assert out == [{"name": "a", "before": ["sweep-1"], "after": ["sweep-2"], "changed": True},
                       {"name": "b", "before": ["sweep-1"], "after": ["sweep-2"], "changed": True}]
        assert retag_runs(store, ["a"], add=["sweep-2"]) == [
            {"name": "a", "before": ["sweep-2"], "after": ["sweep-2"], "changed": False}]  # already there
        assert retag_runs(store, ["c"], set_to=["x", "y"], add=["z"], remove=["y"])[0]["after"] == ["x", "z"]
        assert retag_runs(store, ["c"], remove=["x", "z"])[0]["after"] == []  # a run may end with no tag
    finally:
        store.close()
    assert _tags(tagged) == {"a": ["sweep-2"], "b": ["sweep-2"], "c": []}


def test_markdown_in_a_tag_is_stored_as_typed(tagged):
    store = Store(tagged)
    try:
        assert retag_runs(store, ["a"], add=[HOSTILE_TAG])[0]["after"] == ["sweep-1", HOSTILE_TAG]
    finally:
        store.close()
    assert _tags(tagged)["a"] == ["sweep-1", HOSTILE_TAG]


@pytest.mark.parametrize("kwargs, message", [
    (dict(names=["a", "nope", "ghost"], add=["x"]), "No runs named 'nope', 'ghost' in the store; no tag was changed"),
    (dict(names=["a"], add=[""]), "A tag is empty"),
    (dict(names=["a"], add=["   "]), "A tag is empty"),
    (dict(names=["a"], add=["x" * 101]), "The tag is 101 characters long; keep it to 100."),
    (dict(names=["a"], add=["red\x1b[31m"]), "The tag holds a control character"),
    (dict(names=["a"], set_to=["ok", "two\nlines"]), "The tag holds a control character"),
    (dict(names=["a"], remove=["\t"]), "A tag is empty"),
    (dict(names=["a"], add=["x"], remove=["x"]), "The tag 'x' is both added and removed"),
    (dict(names=["a"]), "Nothing to change"),
    (dict(names=[], add=["x"]), "No run given"),
    (dict(names=["a"], add=["lr=1e-3, bs=64"]), "holds a comma, which separates tags in the Runs table"),
], ids=["unknown-runs", "empty", "blank", "too-long", "ansi", "newline", "tab-only", "add-and-remove", "nothing",
        "no-names", "comma"])
def test_bad_input_is_one_line_and_changes_nothing(tagged, kwargs, message):
    before = _contents(tagged)
    store = Store(tagged)
    try:
        with pytest.raises(InputError) as err:
            retag_runs(store, **kwargs)
    finally:
        store.close()
    assert message in str(err.value) and "\n" not in str(err.value)
    assert _contents(tagged) == before


def test_set_run_tags_lands_whole_or_not_at_all(tagged):
    before = _contents(tagged)
    store = Store(tagged)
    try:
        with pytest.raises(InputError, match="No run named 'zz'"):
            set_run_tags(store, {"a": ["new"], "zz": ["new"]})  # "a" comes first: rolled back with the rest
        assert _contents(tagged) == before
        out = set_run_tags(store, {"a": ["p", "q"], "c": []})
    finally:
        store.close()
    assert [(r["name"], r["after"], r["changed"]) for r in out] == [("a", ["p", "q"], True), ("c", [], True)]
    assert _tags(tagged) == {"a": ["p", "q"], "b": ["sweep-1"], "c": []}


def test_concurrent_retags_keep_each_others_tags(tagged):
    """Each edit reads and writes a run's tags in one transaction holding the run's name (PostgreSQL:
    an advisory lock; DuckDB: the file's write lock), so edits made at once never drop each other's."""
    from concurrent.futures import ThreadPoolExecutor

    store = Store(tagged)
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: retag_runs(store, ["a", "b"], add=[f"t{i}"]), range(16)))
    finally:
        store.close()
    tags = _tags(tagged)
    assert sorted(tags["a"]) == sorted(tags["b"]) == sorted(["sweep-1"] + [f"t{i}" for i in range(16)])


def test_tags_from_text():
    assert tags_from_text(" sweep-1 ,  size=125M, sweep-1") == ["sweep-1", "size=125M"]
    assert tags_from_text("") == [] and tags_from_text(None) == [] and tags_from_text("  ") == []
    for bad in ("a,,b", "a,", ",a", "a, ,b"):
        with pytest.raises(InputError, match="empty"):
            tags_from_text(bad)
    with pytest.raises(InputError, match="control character"):
        tags_from_text("a, b\x07")


# ---------------------------------------------------------------------------------------------- CLI

def _cli(argv, capsys) -> tuple[int, str, str]:
    from cli import main

    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_runs_tag(tagged, capsys):
    code, out, err = _cli(["runs", "tag", "a", "b", "--add", "sweep-2", "--remove", "sweep-1", "--db", tagged,
                           "--json"], capsys)
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["changed"] == 2
    assert doc["runs"] == [{"name": "a", "before": ["sweep-1"], "after": ["sweep-2"], "changed": True},
                           {"name": "b", "before": ["sweep-1"], "after": ["sweep-2"], "changed": True}]
    # --db and --json before the action name count too; text output names every run
    code, out, _ = _cli(["runs", "--db", tagged, "tag", "a", "c", "--add", "sweep-2"], capsys)
    assert code == 0
    assert out.splitlines() == ["a: unchanged ([sweep-2])", "c: [other] -> [other, sweep-2]", "retagged 1 of 2 run(s)"]
    code, out, _ = _cli(["runs", "tag", "c", "--set", "x", "--set", "y", "--db", tagged], capsys)
    assert out.splitlines()[0] == "c: [other, sweep-2] -> [x, y]"
    assert _tags(tagged) == {"a": ["sweep-2"], "b": ["sweep-2"], "c": ["x", "y"]}
    # `cli.py runs` lists the tags
    code, out, _ = _cli(["runs", "--db", tagged, "--json"], capsys)
    assert {r["name"]: r["tags"] for r in json.loads(out)["runs"]} == _tags(tagged)


@pytest.mark.parametrize("argv, message", [
    (["a", "ghost", "--add", "x"], "error: No run named 'ghost' in the store; no tag was changed."),
    (["a", "--add", ""], "error: A tag is empty"),
    (["a", "--add", "evil\x1b[2Jx"], "error: The tag holds a control character"),
    (["a", "--add", "x", "--remove", "x"], "error: The tag 'x' is both added and removed"),
    (["a"], "error: Nothing to change"),
    (["a", "--add", "x,y"], "error: The tag 'x,y' holds a comma"),
], ids=["unknown-run", "empty", "ansi", "add-and-remove", "nothing", "comma"])
def test_cli_bad_input_exits_2_store_unchanged(tagged, capsys, argv, message):
    before = _contents(tagged)
    code, out, err = _cli(["runs", "tag", *argv, "--db", tagged], capsys)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1 and "\x1b" not in err, err
    assert _contents(tagged) == before


def test_cli_prints_names_and_tags_literally(db_url, capsys):
    """A name stored before the rules (written past the importers) and a Markdown tag: printed as they
    are, control characters escaped (never sent to the terminal)."""
    _ingest(db_url, {"evil\x1b[31mred": ["t"]})
    code, out, _ = _cli(["runs", "tag", "evil\x1b[31mred", "--add", HOSTILE_TAG, "--db", db_url], capsys)
    assert code == 0 and "\x1b" not in out
    assert out.splitlines()[0] == f"evil\\x1b[31mred: [t] -> [t, {HOSTILE_TAG}]"
    code, out, _ = _cli(["runs", "--db", db_url], capsys)
    assert "\x1b" not in out and f"[t, {HOSTILE_TAG}]" in out


# ---------------------------------------------------------------------------------------------- page

def _page(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("SCALESCOPE_DB_URL", url)
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _edit(at: AppTest, edits: dict, key: str = "runs_table") -> AppTest:
    """Type ``edits`` (row -> {column: value}) into the runs table, then press Save edits."""
    at.session_state[key] = {"edited_rows": edits, "added_rows": [], "deleted_rows": []}
    at.run()
    assert [b.label for b in at.button if b.key == "save_edits"] == ["Save edits"]
    return at.button(key="save_edits").click().run()


def test_page_edits_tags_in_the_runs_table(tagged, monkeypatch):
    from pages.common import literal

    at = _page(tagged, monkeypatch)
    table = at.dataframe(key="runs_table")
    assert table.value[["name", "tags"]].values.tolist() == [["a", "sweep-1"], ["b", "sweep-1"], ["c", "other"]]
    columns = json.loads(table.proto.columns)
    assert columns["name"]["disabled"] and not columns["tags"].get("disabled")  # tags editable, as text
    assert columns["tags"]["type_config"]["type"] == "text"
    _edit(at, {0: {"tags": f"sweep-1, {HOSTILE_TAG}"}, 2: {"tags": "sweep-1", "n_params": 1.2e8}})
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == [
        "Retagged 2 run(s): a, c. Saved sizes of 1 run(s); tokens and FLOPs re-derived where possible."]
    assert _tags(tagged) == {"a": ["sweep-1", HOSTILE_TAG], "b": ["sweep-1"], "c": ["sweep-1"]}
    # a fresh editor shows the saved table, without a save button left over
    assert at.dataframe(key="runs_table_1").value["tags"].tolist() == [f"sweep-1, {HOSTILE_TAG}", "sweep-1", "sweep-1"]
    assert not [b for b in at.button if b.key == "save_edits"]
    # the new tag is a dataset to select, and is shown literally where Markdown is rendered
    at.selectbox(key="runs_dataset").set_value(HOSTILE_TAG).run()
    caption = next(c.value for c in at.caption if "runs tagged" in c.value)
    assert caption == f"1 of 3 runs tagged {literal(HOSTILE_TAG)}."
    assert "<a " not in _rendered(caption) and "<img" not in _rendered(caption) and "<strong" not in _rendered(caption)


@pytest.mark.parametrize("cell, message", [
    ("sweep-1,,x", "A tag in the list is empty (two commas in a row, or one at an end): separate tags with single commas."),
    ("ok, bell\x07", "The tag holds a control character (a newline, a tab, ...): type it on one line."),
    ("x" * 101, "The tag is 101 characters long; keep it to 100."),
], ids=["empty-item", "control-char", "too-long"])
def test_page_refuses_a_bad_tag_with_one_line_and_saves_nothing(tagged, monkeypatch, cell, message):
    from pages.common import literal

    before = _contents(tagged)
    at = _page(tagged, monkeypatch)
    _edit(at, {0: {"tags": "fine"}, 1: {"tags": cell, "n_params": 5e7}})
    assert not at.exception and not at.success
    assert [e.value for e in at.error] == [literal(message)]
    assert _contents(tagged) == before  # not the good row's tags either, nor the sizes


def _rendered(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def test_an_import_tag_follows_the_same_comma_rule():
    """One rule for every path: an import's tag may not hold a comma either (the Runs table splits
    tags on commas); a file name with one gives a default tag without it."""
    from services.ingest import check_tag, default_tag

    with pytest.raises(InputError, match="holds a comma"):
        check_tag("sweep-1,sweep-2", ["logs.csv"])
    assert default_tag(["runs,v2.csv"]) == "runs v2" and check_tag("", ["runs,v2.csv"]) == "runs v2"
