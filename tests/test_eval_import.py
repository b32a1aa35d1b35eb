"""Eval import: lm-evaluation-harness results files, long/wide CSVs, folders, zips, the public
reference tables, and bad input (importers/evals.py)."""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest

from core.errors import InputError
from importers.evals import (
    EVAL_COLUMNS, MODEL_COLUMNS, ParsedEvals, is_accuracy_like, parse_eval_file, parse_eval_upload,
    parse_harness_results, step_from_text,
)

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "reference"  # in the repo (assets/reference/README.md)


def _reference(name: str) -> Path:
    return REFERENCE / name


def harness_v04_doc() -> dict:
    """A results file with the keys lm-evaluation-harness 0.4 writes (results_<date>.json)."""
    return {
        "results": {
            "arc_easy": {"alias": "arc_easy", "acc,none": 0.4364, "acc_stderr,none": 0.01018,
                         "acc_norm,none": 0.4015, "acc_norm_stderr,none": 0.01006},
            "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.0152,
                      "exact_match_stderr,strict-match": 0.0034,
                      "exact_match,flexible-extract": 0.0227, "exact_match_stderr,flexible-extract": 0.0041},
            "lambada_openai": {"alias": "lambada_openai", "perplexity,none": 38.1,
                               "perplexity_stderr,none": 1.42, "acc,none": 0.3283, "acc_stderr,none": 0.0065},
            "mmlu": {"alias": "mmlu", "acc,none": 0.2519, "acc_stderr,none": "N/A"},
        },
        "groups": {"mmlu": {"alias": "mmlu", "acc,none": 0.2519, "acc_stderr,none": "N/A"}},
        "group_subtasks": {"mmlu": ["mmlu_humanities"], "arc_easy": [], "gsm8k": [], "lambada_openai": []},
        "configs": {"arc_easy": {"task": "arc_easy", "num_fewshot": 0, "metadata": {"version": 1.0}}},
        "versions": {"arc_easy": 1.0, "gsm8k": 3.0, "lambada_openai": 1.0, "mmlu": 1},
        "n-shot": {"arc_easy": 0, "gsm8k": 5, "lambada_openai": 0, "mmlu": 0},
        "higher_is_better": {"arc_easy": {"acc": True, "acc_norm": True}},
        "n-samples": {"arc_easy": {"original": 2376, "effective": 2376}},
        "config": {"model": "hf", "model_args": "pretrained=EleutherAI/pythia-160m,revision=step100000,dtype=float",
                   "batch_size": "16", "device": "cuda:0", "limit": None, "bootstrap_iters": 100000},
        "git_hash": "4600d6bf",
        "date": 1718000000.0,
        "model_num_parameters": 162322944,
        "model_dtype": "torch.float32",
        "model_revision": "step100000",
        "model_name": "EleutherAI/pythia-160m",
    }


def harness_v03_doc() -> dict:
    """The older layout (harness 0.3, as in the Pythia repository's eval files)."""
    return {
        "results": {"piqa": {"acc": 0.6208, "acc_stderr": 0.0113, "acc_norm": 0.6148, "acc_norm_stderr": 0.0114},
                    "wikitext": {"word_perplexity": 37.4, "byte_perplexity": 1.9, "bits_per_byte": 0.93}},
        "versions": {"piqa": 0, "wikitext": 1},
        "config": {"model": "gpt2", "model_args": "pretrained=/ckpts/my-run/global_step2000", "num_fewshot": 0,
                   "batch_size": 32, "device": "cuda", "no_cache": True, "limit": None},
    }


def _write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _row(parsed: ParsedEvals, task: str, metric: str):
    rows = parsed.evals[(parsed.evals["task"] == task) & (parsed.evals["metric"] == metric)]
    assert len(rows) == 1, f"expected one {task}/{metric} row, got {len(rows)}"
    return rows.iloc[0]


# --------------------------------------------------------------------------------------------
# lm-evaluation-harness
# --------------------------------------------------------------------------------------------
def test_harness_v04_file_gives_scores_stderr_model_and_step(tmp_path):
    parsed = parse_eval_file(str(_write_json(tmp_path / "results_2024-06-10.json", harness_v04_doc())))
    assert parsed.source_format == "lm_eval_harness"
    assert list(parsed.evals.columns) == EVAL_COLUMNS and list(parsed.models.columns) == MODEL_COLUMNS
    assert set(parsed.evals["run"]) == {"EleutherAI/pythia-160m"}
    assert set(parsed.evals["step"]) == {100000.0}
    arc = _row(parsed, "arc_easy", "acc")
    assert arc["value"] == pytest.approx(0.4364) and arc["stderr"] == pytest.approx(0.01018)
    assert _row(parsed, "arc_easy", "acc_norm")["stderr"] == pytest.approx(0.01006)
    # a filter other than "none" stays in the metric name; both gsm8k filters are kept
    assert _row(parsed, "gsm8k", "exact_match,strict-match")["value"] == pytest.approx(0.0152)
    assert _row(parsed, "gsm8k", "exact_match,flexible-extract")["stderr"] == pytest.approx(0.0041)
    assert _row(parsed, "lambada_openai", "perplexity")["value"] == pytest.approx(38.1)
    mmlu = _row(parsed, "mmlu", "acc")  # in results and groups: one row, "N/A" stderr → NaN
    assert mmlu["value"] == pytest.approx(0.2519) and math.isnan(mmlu["stderr"])
    assert len(parsed.evals) == 7
    assert parsed.models.loc[0, "n_params"] == 162322944


def test_harness_v03_file_with_local_checkpoint_path(tmp_path):
    parsed = parse_eval_file(str(_write_json(tmp_path / "eval.json", harness_v03_doc())))
    assert set(parsed.evals["run"]) == {"my-run"}
    assert set(parsed.evals["step"]) == {2000.0}
    assert _row(parsed, "piqa", "acc_norm")["stderr"] == pytest.approx(0.0114)
    assert _row(parsed, "wikitext", "word_perplexity")["value"] == pytest.approx(37.4)
    assert math.isnan(_row(parsed, "wikitext", "bits_per_byte")["stderr"])


def test_harness_model_args_dict_and_overrides():
    doc = harness_v04_doc()
    doc["config"]["model_args"] = {"pretrained": "org/model-x", "revision": "checkpoint-750"}
    del doc["model_revision"]
    parsed = parse_harness_results(doc, "doc")
    assert set(parsed.evals["run"]) == {"org/model-x"} and set(parsed.evals["step"]) == {750.0}
    forced = parse_harness_results(doc, "doc", run="baseline", step=5)
    assert set(forced.evals["run"]) == {"baseline"} and set(forced.evals["step"]) == {5.0}


def test_step_from_text_forms():
    assert step_from_text("step1000") == 1000
    assert step_from_text("/ckpt/run/global_step200/") == 200
    assert step_from_text("checkpoint-1500") == 1500
    assert math.isnan(step_from_text("main"))
    assert math.isnan(step_from_text("EleutherAI/pythia-160m"))


def test_folder_and_zip_of_harness_outputs(tmp_path):
    folder = tmp_path / "evals"
    (folder / "pythia-160m").mkdir(parents=True)
    _write_json(folder / "pythia-160m" / "results_2024-06-10.json", harness_v04_doc())
    older = harness_v04_doc()
    older["config"]["model_args"] = "pretrained=EleutherAI/pythia-160m,revision=step50000"
    older["model_revision"] = "step50000"
    older["results"]["arc_easy"]["acc,none"] = 0.39
    _write_json(folder / "pythia-160m" / "results_2024-06-09.json", older)
    (folder / "pythia-160m" / "samples_arc_easy_2024-06-10.jsonl").write_text('{"doc_id": 0}\n')
    _write_json(folder / "pythia-160m" / "config.json", {"hidden_size": 768})
    parsed = parse_eval_file(str(folder))
    assert sorted(set(parsed.evals["step"])) == [50000.0, 100000.0]
    assert len(parsed.evals) == 14
    arc = parsed.evals[(parsed.evals["task"] == "arc_easy") & (parsed.evals["metric"] == "acc")]
    assert dict(zip(arc["step"], arc["value"])) == {50000.0: 0.39, 100000.0: 0.4364}
    assert any("samples_arc_easy" in w for w in parsed.warnings)
    assert any("config.json" in w for w in parsed.warnings)

    archive = tmp_path / "evals.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(tmp_path))
    zipped = parse_eval_file(str(archive))
    assert len(zipped.evals) == 14
    assert set(zipped.evals["run"]) == {"EleutherAI/pythia-160m"}
    upload = parse_eval_upload("evals.zip", archive.read_bytes())
    assert len(upload.evals) == 14


def test_zip_with_path_outside_the_archive_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.json", json.dumps(harness_v04_doc()))
    with pytest.raises(InputError, match="outside the archive"):
        parse_eval_file(str(archive))


# --------------------------------------------------------------------------------------------
# CSV tables
# --------------------------------------------------------------------------------------------
def test_long_csv_with_stderr_and_model_columns(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "model,step,task,metric,value,stderr,family,params\n"
        "tiny-a,1000,arc_easy,acc,0.31,0.01,tiny,1.2e7\n"
        "tiny-a,2000,arc_easy,acc,0.35,0.01,tiny,1.2e7\n"
        "tiny-a,2000,wmt14,bleu,12.5,,tiny,1.2e7\n"
        "tiny-b,,arc_easy,acc,0.42,,tiny,5e7\n")
    parsed = parse_eval_file(str(path))
    assert parsed.source_format == "csv_long"
    assert len(parsed.evals) == 4
    assert math.isnan(parsed.evals.loc[3, "step"]) and math.isnan(parsed.evals.loc[2, "stderr"])
    assert _row(parsed, "wmt14", "bleu")["value"] == 12.5  # BLEU is not held to [0, 1]
    models = parsed.models.set_index("run")
    assert models.loc["tiny-b", "n_params"] == 5e7 and models.loc["tiny-a", "family"] == "tiny"


def test_wide_csv_with_units_and_stderr_columns(tmp_path):
    path = tmp_path / "wide.csv"
    path.write_text(
        "Model,Model Family,Model Size (B),Pretraining Data Size (T),FLOPs (1E21),MMLU,MMLU_stderr,ARC-C,comment\n"
        "m-7b,M,7,2,84,0.44,0.004,0.53,base\n"
        "m-13b,M,13,2,156,0.54,0.004,,base\n")
    parsed = parse_eval_file(str(path))
    assert parsed.source_format == "csv_wide"
    assert len(parsed.evals) == 3  # the empty ARC-C cell is a missing score, not a row
    assert _row(parsed, "ARC-C", "score")["value"] == 0.53
    mmlu = parsed.evals[parsed.evals["task"] == "MMLU"].set_index("run")
    assert mmlu.loc["m-13b", "stderr"] == pytest.approx(0.004)
    m = parsed.models.set_index("run")
    assert m.loc["m-7b", "n_params"] == pytest.approx(7e9)
    assert m.loc["m-7b", "tokens"] == pytest.approx(2e12)
    assert m.loc["m-13b", "flops"] == pytest.approx(1.56e23)
    assert any("comment" in w for w in parsed.warnings)


def test_reference_obsscaling_base_table():
    parsed = parse_eval_file(str(_reference("obsscaling_base_llm_benchmark_eval.csv")))
    assert len(parsed.models) == 148
    assert set(parsed.evals["task"]) == {"MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "GSM8K",
                                         "XWinograd", "HumanEval"}
    # 148 models × 8 benchmarks less the 40 empty cells of the published table
    assert len(parsed.evals) == 148 * 8 - 40
    llama = parsed.models.set_index("run").loc["meta-llama/Llama-2-7b-hf"]
    assert llama["family"] == "Llama-2"
    assert llama["n_params"] == pytest.approx(7e9) and llama["tokens"] == pytest.approx(2e12)
    assert llama["flops"] == pytest.approx(6 * 7e9 * 2e12)  # the table's FLOPs are 6ND
    assert parsed.models["flops"].isna().sum() == 25


def test_reference_pythia_checkpoints_table():
    parsed = parse_eval_file(str(_reference("pythia_v1_zero_shot_evals.csv")))
    assert len(parsed.models) == 16 and len(parsed.checkpoints) == 16 * 27
    assert len(parsed.evals) == 432 * 9
    big = parsed.models.set_index("run").loc["pythia-12b"]
    assert big["tokens"] == 143000 * 2_097_152  # the final checkpoint's tokens
    assert big["n_nonembedding_params"] > 0.9 * big["n_params"]
    ck = parsed.checkpoints[parsed.checkpoints["run"] == "pythia-70m"].set_index("step")
    assert ck.loc[1000.0, "tokens"] == 1000 * 2_097_152
    ppl = parsed.evals[parsed.evals["metric"] == "ppl"]
    assert set(ppl["task"]) == {"lambada_openai"} and ppl["value"].max() > 1e6  # not held to [0, 1]
    final = parsed.evals[(parsed.evals["run"] == "pythia-12b") & (parsed.evals["step"] == 143000)]
    assert final.set_index("task").loc["lambada_openai"].set_index("metric").loc["acc", "value"] > 0.6


def test_reference_emergent_table_splits_metric_suffixes():
    parsed = parse_eval_file(str(_reference("obsscaling_base_llm_emergent_capability_eval.csv")))
    pairs = set(zip(parsed.evals["task"], parsed.evals["metric"]))
    assert ("ipa_transliterate_2", "bleu") in pairs and ("ipa_transliterate_2", "exact_match") in pairs
    assert ("word_unscrambling_2", "exact_match") in pairs and ("arithmetic_2da_2", "acc") in pairs
    assert parsed.evals[parsed.evals["metric"] == "bleu"]["value"].max() > 1  # BLEU in 0-100


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_results_file_without_results_key(tmp_path):
    doc = harness_v04_doc()
    del doc["results"]
    with pytest.raises(InputError, match="no 'results' key") as exc:
        parse_eval_file(str(_write_json(tmp_path / "r.json", doc)))
    assert "lm-evaluation-harness" in _one_line(exc)


def test_accuracy_outside_unit_interval(tmp_path):
    doc = harness_v04_doc()
    doc["results"]["arc_easy"]["acc,none"] = 43.6
    with pytest.raises(InputError, match=r"outside \[0, 1\]") as exc:
        parse_eval_file(str(_write_json(tmp_path / "r.json", doc)))
    assert "divide percentages by 100" in _one_line(exc)
    wide = tmp_path / "pct.csv"
    wide.write_text("model,MMLU\nm1,63.4\n")
    with pytest.raises(InputError, match="MMLU score = 63.4"):
        parse_eval_file(str(wide))


def test_non_numeric_score_names_the_cell(tmp_path):
    wide = tmp_path / "bad.csv"
    wide.write_text("model,MMLU,ARC\nm1,0.5,0.4\nm2,oops,0.3\n")
    with pytest.raises(InputError, match="column 'MMLU' holds 'oops' at row 2"):
        parse_eval_file(str(wide))
    doc = harness_v04_doc()
    doc["results"]["arc_easy"]["acc,none"] = "high"
    with pytest.raises(InputError, match="not a number"):
        parse_harness_results(doc, "doc")


def test_empty_binary_unknown_and_broken_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        parse_eval_file(str(empty))
    binary = tmp_path / "weights.json"
    binary.write_bytes(b"\x00\x01\x02PK-not-text" * 10)
    with pytest.raises(InputError, match="binary"):
        parse_eval_file(str(binary))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="unknown eval layout"):
        parse_eval_file(str(unknown))
    broken = tmp_path / "cut.json"
    broken.write_text('{"results": {"arc_easy": {"acc,none": 0.4')
    with pytest.raises(InputError, match="not valid JSON"):
        parse_eval_file(str(broken))
    header_only = tmp_path / "header.csv"
    header_only.write_text("model,MMLU\n")
    with pytest.raises(InputError, match="no rows"):
        parse_eval_file(str(header_only))


def test_duplicate_scores_in_one_table_are_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("run,step,task,metric,value\nr,1,arc,acc,0.3\nr,1,arc,acc,0.4\n")
    with pytest.raises(InputError, match="more than once"):
        parse_eval_file(str(path))


def test_accuracy_like_metric_names():
    assert is_accuracy_like("acc") and is_accuracy_like("acc_norm") and is_accuracy_like("exact_match,strict-match")
    assert is_accuracy_like("pass@1") and is_accuracy_like("f1")
    assert not is_accuracy_like("bleu") and not is_accuracy_like("perplexity") and not is_accuracy_like("ppl")
