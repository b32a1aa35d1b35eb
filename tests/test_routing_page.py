"""The Routing page, run headless with streamlit.testing.v1.AppTest on a temporary store holding the
bundled checkpoints' captures: every heatmap, the metrics table, the token view, saturation across
checkpoints and a side-by-side comparison show the stored numbers; captures and trace imports
started from the page land in the store; bad input shows one st.error line and stores nothing."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import torch
from streamlit.testing.v1 import AppTest

from core.routing import views
from services import routing
from services.routing_seed import bundled_checkpoints, seed_bundled_capture
from db.store import Store

torch.set_num_threads(1)
PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "routing.py")
TIMEOUT = 180  # a busy machine: the first run imports plotly, torch and transformers
SEED_TOKENS = 600



def chart(at: AppTest, key: str) -> dict:
    for element in at.get("plotly_chart"):
        if element.proto.id and element.proto.id.endswith(key):
            return json.loads(element.proto.spec)
    raise AssertionError(f"no plotly chart with key {key!r}")


def values(array) -> np.ndarray:
    """A Plotly spec array: a (nested) list, or Plotly 6+'s typed array {"dtype", "bdata", "shape"}."""
    if isinstance(array, dict) and "bdata" in array:
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"]))
        shape = array.get("shape")
        if isinstance(shape, str):
            shape = [int(s) for s in shape.split(",")]
        return flat.reshape(shape) if shape else flat
    return np.asarray(array)


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def n_captures(store: Store) -> tuple[int, int]:
    with store.read() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM routing_captures")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM routing_assignments")).scalar_one())


def test_seeded_captures_show_every_view_with_the_stored_numbers(page_store):
    ids = seed_bundled_capture(page_store, max_tokens=SEED_TOKENS)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="routing_shown").value == ids[-1]  # the newest capture is shown first
    capture = routing.get_capture(page_store, ids[-1])
    frame = routing.load_assignments(page_store, ids[-1])

    # layer × expert load: each layer's shares, from the stored rows
    load = chart(at, "routing_load_heatmap")["data"][0]
    layers, counts = views.load_matrix(frame, 8)
    assert list(load["y"]) == [f"layer {x}" for x in layers] == ["layer 0", "layer 1", "layer 2", "layer 3"]
    assert np.allclose(values(load["z"]), counts / counts.sum(axis=1, keepdims=True))
    assert (counts.sum(axis=1) == capture["n_tokens"] * 2).all()

    # the diverging scale is centred at balance, 1/E, with each cell's share and count in its hover
    assert load["zmid"] == pytest.approx(1 / 8) and load["zmin"] == 0 and load["zmax"] >= 2 / 8
    assert "%{z:.2%} of assignments (%{text} tokens; balanced 1/E = 12.50%)" in load["hovertemplate"]
    assert load["colorscale"][0][1] != load["colorscale"][-1][1]  # two-sided (RdBu), not a sequential scale
    # Plotly ignores zmid once zmin/zmax are set: the scale itself puts its pale middle at 1/E
    white = [stop for stop, colour in load["colorscale"] if colour == "rgb(247, 247, 247)"]
    assert white and white[0] * load["zmax"] == pytest.approx(1 / 8)

    table = frame_with(at, "max_vio")
    expected = views.layer_metrics(frame, 8, router_prob_mean=capture["info"]["router_prob_mean"])
    assert list(table.columns) == list(expected.columns)
    for col in expected.columns:  # one format (core/format.py): four significant digits, an em dash for none
        if expected[col].dtype.kind in "f":
            shown = table[col].map(lambda v: float("nan") if v == "—" else float(v)).to_numpy()
            assert np.allclose(shown, expected[col].to_numpy(), rtol=6e-4, atol=1e-6, equal_nan=True), col
    cells = table.astype(str).to_numpy().ravel()
    assert not {"None", "nan", "<NA>"} & set(cells) and not any("e+" in c for c in cells)
    assert (table["aux_loss_from"] == "router").all()  # the captured router probabilities, not the proxy

    # one layer (the middle one by default): similarity of experts, co-activation, domains
    layer = at.selectbox(key="routing_layer").value
    assert layer == 2
    similarity = values(chart(at, "routing_similarity_heatmap")["data"][0]["z"])
    assert similarity.shape == (8, 8) and np.allclose(np.diag(similarity), 1.0) and np.allclose(similarity, similarity.T)
    coactivation = values(chart(at, "routing_coactivation_heatmap")["data"][0]["z"])
    used = counts[layers.index(layer)] > 0
    assert np.allclose(coactivation.sum(axis=1)[used], 1.0)  # k − 1 = 1 for each used expert
    domains = chart(at, "routing_domain_heatmap")["data"][0]
    assert sorted(domains["y"]) == ["c", "csv", "json", "prose", "python"]
    assert np.allclose(values(domains["z"]).sum(axis=1), 2.0) and domains["zmid"] == 0.25  # rows sum to k; uniform k/E

    # the token view colours the first document's tokens by their top expert in that layer
    body = at.get("html")[0].proto.body
    arrays = views.layer_arrays(frame, layer)
    first_doc = arrays.doc_ids == arrays.doc_ids.min()
    assert body.count('class="ss-token"') == min(300, int(first_doc.sum()))
    assert f'data-expert="{arrays.expert_ids[0, 0]}"' in body and "layer 2 · experts" in body
    preferred = frame_with(at, "preferred tokens (share of their occurrences, count)")
    assert preferred["expert"].tolist() == list(range(8))

    # saturation across the bundled checkpoints: one line per layer, 1.0 at the final step
    saturation = chart(at, "routing_saturation_chart")["data"]
    steps = [routing.checkpoint_step_of(p) for p in bundled_checkpoints()]
    assert [t["name"] for t in saturation] == ["layer 0", "layer 1", "layer 2", "layer 3"]
    for trace in saturation:
        assert values(trace["x"]).tolist() == steps and values(trace["y"])[-1] == 1.0
        assert (values(trace["y"])[:-1] < 1.0).all()

    # compare with the first checkpoint: side-by-side loads, metric deltas, agreement on the same tokens
    at.selectbox(key="routing_compare").set_value(ids[0]).run()
    assert not at.exception and not at.error
    assert chart(at, "routing_compare_b")["layout"]["title"]["text"] == f"B: #{ids[0]}"
    comparison = frame_with(at, "Δ cv")
    first_table = views.layer_metrics(routing.load_assignments(page_store, ids[0]), 8,
                                      router_prob_mean=routing.get_capture(page_store, ids[0])["info"]["router_prob_mean"])
    assert np.allclose(comparison["Δ cv"].astype(float), first_table["cv"] - expected["cv"], rtol=6e-4, atol=1e-6)
    agreement = frame_with(at, "agreement_topk")
    assert (agreement["tokens"] == f"{capture['n_tokens']:,}").all()
    # agreement of the final checkpoint with the first = the first point of each layer's saturation line
    first_points = [values(t["y"])[0] for t in chart(at, "routing_saturation_chart")["data"]]
    assert np.allclose(agreement["agreement_topk"].astype(float), first_points, rtol=6e-4)


def test_capture_from_the_page_and_import_a_trace(page_store, tmp_path):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert [i.value for i in at.info][-1].startswith("No routing capture yet")
    checkpoints = bundled_checkpoints()
    assert at.selectbox(key="routing_model_choice").options[:-1] == [routing.display_path(p) for p in checkpoints]

    at.number_input(key="routing_max_tokens").set_value(200)
    at.checkbox(key="routing_every_checkpoint").check()
    at.button(key="routing_capture").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    ids = list(range(1, len(checkpoints) + 1))
    assert at.success[0].value == f"Stored capture(s) {', '.join(f'#{i}' for i in ids)}."
    stored = routing.list_captures(page_store)
    n_tokens = int(stored["n_tokens"].iloc[0])
    assert 190 <= n_tokens <= 200 and set(stored["n_tokens"]) == {n_tokens}  # the same sample for every checkpoint
    assert n_captures(page_store) == (len(checkpoints), len(checkpoints) * n_tokens * 4 * 2)
    assert stored["checkpoint_step"].tolist() == [routing.checkpoint_step_of(p) for p in checkpoints]
    assert set(stored["corpus"]) == {"bundled held-out sample, 40 tokens/domain"}
    assert at.selectbox(key="routing_shown").value == ids[-1]
    saturation = chart(at, "routing_saturation_chart")["data"]
    assert len(saturation) == 4 and all(values(t["y"])[-1] == 1.0 for t in saturation)

    # the capture's rows exported as a trace and imported back through the page: the same loads
    routing.load_assignments(page_store, ids[-1]).to_csv(tmp_path / "my_trace.csv", index=False)
    at.radio(key="routing_source").set_value("trace").run()
    at.file_uploader(key="routing_trace_file").set_value(
        ("my_trace.csv", (tmp_path / "my_trace.csv").read_bytes(), "text/csv"))
    at.text_input(key="routing_trace_model").input("elsewhere-moe").run()
    at.button(key="routing_import_trace").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    trace_id = ids[-1] + 1
    assert at.success[0].value == f"Stored trace my_trace.csv as capture #{trace_id}."
    assert at.selectbox(key="routing_shown").value == trace_id
    assert routing.get_capture(page_store, trace_id)["model_ref"] == "elsewhere-moe"
    _, original_counts = views.load_matrix(routing.load_assignments(page_store, ids[-1]), 8)
    assert np.allclose(values(chart(at, "routing_load_heatmap")["data"][0]["z"]),
                       original_counts / original_counts.sum(axis=1, keepdims=True))
    trace_load = routing.capture_layer_summaries(page_store, trace_id)
    assert trace_load == routing.capture_layer_summaries(page_store, ids[-1])
    assert "Weight similarity needs the checkpoint folder" in " ".join(i.value for i in at.info)
    assert frame_with(at, "max_vio")["aux_loss_from"].eq("top-k weights").all()  # no router probabilities in a trace


def test_bad_input_shows_one_line_and_stores_nothing(page_store, tmp_path):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception

    def capture_error() -> str:
        at.button(key="routing_capture").click().run()
        assert not at.exception and len(at.error) == 1 and not at.success
        message = at.error[0].value
        assert "\n" not in message
        return message

    at.selectbox(key="routing_model_choice").set_value("local folder…").run()
    assert "give the local checkpoint folder" in capture_error()
    at.text_input(key="routing_model_path").input(str(tmp_path / "nowhere"))
    assert "does not exist" in capture_error()
    (tmp_path / "weights_only").mkdir()
    (tmp_path / "weights_only" / "pytorch_model.bin").write_bytes(b"x")
    at.text_input(key="routing_model_path").input(str(tmp_path / "weights_only"))
    assert "has no config.json" in capture_error()
    config = (bundled_checkpoints()[-1] / "config.json").read_text()
    (tmp_path / "weights_only" / "config.json").write_text(config)
    assert "holds only pickled weights (pytorch_model.bin)" in capture_error()
    (tmp_path / "dense").mkdir()
    (tmp_path / "dense" / "config.json").write_text(json.dumps({**json.loads(config), "model_type": "llama"}))
    (tmp_path / "dense" / "model.safetensors").write_bytes(b"")
    at.text_input(key="routing_model_path").input(str(tmp_path / "dense"))
    assert "model type 'llama' is not a supported mixture-of-experts family" in capture_error()

    at.selectbox(key="routing_model_choice").set_value(routing.display_path(bundled_checkpoints()[-1]))
    at.radio(key="routing_corpus").set_value("upload").run()
    assert "no text files uploaded" in capture_error()
    at.file_uploader(key="routing_text_files").set_value([("latin.txt", "crème brûlée".encode("latin-1"), "text/plain")])
    assert capture_error() == "latin.txt is not valid UTF-8 (byte 2); re-save it as UTF-8 text"
    at.file_uploader(key="routing_text_files").set_value([("blank.txt", b"   \n", "text/plain")])
    assert "blank.txt is empty" in capture_error()
    at.file_uploader(key="routing_text_files").set_value([("a.txt", b"some text", "text/plain"),
                                                         ("b.txt", b"more text", "text/plain")])
    at.text_input(key="routing_domains").input("prose")
    assert "give 2 non-empty domain name(s)" in capture_error()

    at.radio(key="routing_source").set_value("trace").run()
    at.file_uploader(key="routing_trace_file").set_value(("broken.csv", b"layer,expert\n0,1\n", "text/csv")).run()
    at.button(key="routing_import_trace").click().run()
    assert len(at.error) == 1 and "broken.csv lacks column(s)" in at.error[0].value
    assert n_captures(page_store) == (0, 0)

    # the upload path works once the input is right: two files, two domains
    at.radio(key="routing_source").set_value("model").run()
    at.text_input(key="routing_domains").input("letters, words")
    at.file_uploader(key="routing_text_files").set_value([("a.txt", b"a b c d e f g " * 20, "text/plain"),
                                                         ("b.txt", b"the quick brown fox " * 20, "text/plain")])
    at.button(key="routing_capture").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    capture = routing.get_capture(page_store, 1)
    assert capture["corpus"] == "uploaded: a.txt, b.txt" and capture["info"]["domains"] == ["letters", "words"]
    assert sorted(chart(at, "routing_domain_heatmap")["data"][0]["y"]) == ["letters", "words"]
