"""Detection generalization (issue 6): judges, hand-labelled fixtures, features, metrics, the stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml

from hneurons import detect, detect_report
from hneurons.errors import HNeuronsError
from tiny import make_model, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data/labels/detect"
# Agreement of the judges with the hand labels that the fixtures must keep (stated in the fixture README), per
# half of hneurons.judge_eval.split_fixture: "dev" (read while writing the judges' rules) and "report" (not read).
# Overall per file, and per dataset the faithful class's precision / recall and the hallucinated class's recall.
MIN_AGREEMENT = {("qa", "dev"): 0.82, ("qa", "report"): 0.8, ("nonexist", "dev"): 0.85, ("nonexist", "report"): 0.78}
MIN_CLASS = {  # half: {dataset: (faithful precision, faithful recall, hallucinated recall)}
    "dev": {                               # measured 0.955/1.0/0.91, 0.75/0.91/0.84, 0.91/0.91/0.91, 0.93/0.88/1.0
        "triviaqa": (0.9, 0.95, 0.85),
        "nq_open": (0.7, 0.85, 0.8),
        "bioasq": (0.85, 0.85, 0.85),
        "nonexist": (0.85, 0.8, 0.95),
    },
    "report": {                            # measured 0.81/1.0/0.89, 0.75/1.0/0.79, 0.71/1.0/0.76, 0.41/0.78/0.91
        "triviaqa": (0.75, 0.95, 0.85),
        "nq_open": (0.7, 0.95, 0.75),
        "bioasq": (0.65, 0.95, 0.7),
        "nonexist": (0.35, 0.7, 0.85),
    },
}


# ------------------------------------------------------------------ judges


@pytest.mark.parametrize("text", [
    "I don't know.", "There is no such medicine.", "Liqunocept urogenol does not exist.",
    "That is not a real company.", "I'm not familiar with that drug.", "I couldn't find any information on it.",
    "This appears to be a fictional character.", "It doesn't seem to exist", "I'm sorry, I cannot help with that.",
])
def test_abstentions_are_faithful_on_nonexist(text):
    assert detect.is_abstention(text)
    assert detect.judge_nonexist(text) == detect.Verdict(detect.FAITHFUL, "abstention")


@pytest.mark.parametrize("text", [  # real SmolLM2 replies (data/labels/detect/nonexist.jsonl), all hand-labelled 1
    "The most common side effect of the medicine vegacadine ecoram is increased blood clotting. However, the exact "
    "mechanism is still unknown.",                                       # claim first, hedge later
    "No, I'm sorry for any confusion. The disease caused by the bacterium Clufumonas nigra is Toxoplasma gondii.",
    "I'm sorry for the confusion, the plant Claedocarpus nocturna is typically used as a substitute for a tree.",
    "A rare and unknown cure to treat rickets.",                         # "unknown" as an adjective
    "The plant Ziophanthus japonica is native to Asia and is not found in the Americas.",
    "There is no specific information about the first English-speaking person who described the plant, but it is "
    "widely recognized as a species of the genus",
])
def test_claims_with_apologies_or_later_hedges_are_answers_on_nonexist(text):
    assert detect.judge_nonexist(text).label == detect.HALLUCINATED


@pytest.mark.parametrize("text", [  # real SmolLM2 replies (data/labels/detect/nonexist.jsonl, dev half), hand label -1
    "I'm sorry for any confusion, but as a chatbot designed to assist, I don't have the ability to provide recipes or "
    "instructions without using a chatbot",
    "I'm sorry for the misunderstanding, but as a digital AI, I'm designed to be helpful and non-intrusive, so I don't "
    "have the ability",
    "This question about the average lifespan of a specific animal cannot be answered without explanation.",
    "Awesome! I'm afraid I don't have the capability to speak only with the specified answer.",
    "I'm sorry for the error, but as a SmolLM AI, I'm not capable of creating personalized character-centric responses.",
])
def test_refusals_not_about_the_entity_are_dropped_on_nonexist(text):
    assert detect.is_generic_refusal(text)
    assert detect.judge_nonexist(text) == detect.Verdict(detect.DROPPED, "generic_refusal")


@pytest.mark.parametrize("text", [  # real SmolLM2 replies (nonexist.jsonl, dev half), hand label 1
    "No answer given. The planet Quefari Australia was initially discovered to belong to the family Galeridae.",
    "There is no disease caused by the bacterium Tuprebacter robustus, a bacterium that causes the bacterial disease "
    "Vibrio vulnari, which is an",
    "There is no disease that has been linked to the bacterium Chaexiosella marina, as it is a parasitic bacterium "
    "that causes a bacterial skin infection known as",
    "I can't provide direct scientific data, but my ability to provide helpful suggestions about the plant "
    "Meutriqanthus major native includes mentioning that it grows in the northern",
    "The origin of the plant Rhopompus velox is still a topic of debate among botanists. The earliest recorded "
    "sighting of this plant date back to ",
])
def test_abstentions_followed_by_a_claim_are_hallucinations_on_nonexist(text):
    assert detect.is_abstention(text) and detect.claims_after_abstaining(text)
    assert detect.judge_nonexist(text) == detect.Verdict(detect.HALLUCINATED, "hedge_then_claim")


@pytest.mark.parametrize("text", [  # abstentions about the entity stay faithful, also with more text after them
    "The World Health Organization has no information about a disease caused by the bacterium Baquaecoccus velox. "
    "However, if you are seeking to address the topic of",
    "The average lifespan of the animal Cleudrella pilosa is still unknown. It is assumed that the animal does not "
    "vary due to any factors other than a",
    "This creature is not a living thing and does not exist. Instead, we must use a digital avatar of an AI assistant.",
    "The exact location and origin of the first animal to identify as \"B. minima\" is unknown to us, but that "
    "remains the subject of debate. However",                            # "B." ends no sentence
    "As an AI, I have no information about Zeupreucella ferox; it does not seem to exist.",
])
def test_abstentions_about_the_entity_stay_faithful_on_nonexist(text):
    assert detect.judge_nonexist(text) == detect.Verdict(detect.FAITHFUL, "abstention")


@pytest.mark.parametrize("text", [
    "Pfizer.", "It is manufactured by Novartis in Switzerland.", "Hypertension", "The river Thames",
    "It was founded in 1972 by John Smith.",
])
def test_confident_answers_are_hallucinations_on_nonexist(text):
    assert not detect.is_abstention(text)
    assert detect.judge_nonexist(text) == detect.Verdict(detect.HALLUCINATED, "confident_answer")


def test_empty_responses_are_dropped_everywhere():
    assert detect.judge_nonexist("  .. ") == detect.Verdict(detect.DROPPED, "empty")
    assert detect.judge_qa("Q?", "", ["Paris"]) == detect.Verdict(detect.DROPPED, "empty")


def test_qa_judge_uses_the_alias_rule_and_drops_refusals():
    q = "What is the capital of France?"
    assert detect.judge_qa(q, "Paris.", ["Paris"]) == detect.Verdict(detect.FAITHFUL, "correct")
    assert detect.judge_qa(q, "Paris.", ["Paris"]).correct
    assert detect.judge_qa(q, "Lyon", ["Paris"]) == detect.Verdict(detect.HALLUCINATED, "wrong")
    assert detect.judge_qa(q, "I don't know", ["Paris"]) == detect.Verdict(detect.DROPPED, "refusal")
    assert detect.judge_qa(q, "Parisian", ["Paris"]).label == detect.HALLUCINATED  # whole words only
    assert detect.judge_response("nonexist", q, "Paris", []).reason == "confident_answer"
    assert detect.judge_response("nq_open", q, "Paris", ["paris"]).reason == "correct"
    assert detect.qa_judge("bioasq").name == "rule-bio" and detect.qa_judge("triviaqa").name == "rule"
    bio = "Which is the most prevalent form of arrhythmia worldwide?"
    assert detect.judge_response("bioasq", bio, "Atrial fibrillation", ["AF"]).reason == "correct"
    assert detect.judge_response("triviaqa", bio, "Atrial fibrillation", ["AF"]).reason == "wrong"


def test_qa_replies_that_only_copy_the_question_are_dropped():
    # real SmolLM2 replies (data/labels/detect/qa.jsonl)
    assert detect.judge_qa("In which country was Emilio Estevez born?", "In which country was Emilio Estevez born?",
                           ["USA"]) == detect.Verdict(detect.DROPPED, "repeats_question")
    q = "Which RNA polymerase transcribes enhancer RNAs?"
    assert detect.judge_qa(q, "The answer is: RNA polymerase transcribes enhancer RNAs.",
                           ["RNA polymerase II"]).reason == "repeats_question"
    # an entity picked out of the question is an answer (wrong here), not a copy
    q = "Which US President went to the same London university as Mick Jagger?"
    assert detect.judge_qa(q, "The answer is: Mick Jagger.", ["John F. Kennedy"]).reason == "wrong"
    assert detect.judge_qa("Which is further north, Corsica or Sardinia?", "Corsica", ["Corsica"]).reason == "correct"


def test_counts_and_the_one_line_empty_class_error():
    counts = detect.class_counts([1, 1, -1, 1, -1], ["wrong", "wrong", "refusal", "wrong", "empty"])
    assert counts == {"n_questions": 5, "n_faithful": 0, "n_hallucinated": 3, "dropped": {"empty": 1, "refusal": 1}}
    with pytest.raises(HNeuronsError) as info:
        detect.check_both_classes("bioasq", counts)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("detect bioasq: no faithful responses after judging (faithful 0, hallucinated 3, "
                              "dropped {'empty': 1, 'refusal': 1})")
    detect.check_both_classes("bioasq", {**counts, "n_faithful": 1})


def test_judge_agreement_counts_disagreements():
    records = [{"dataset": "nonexist", "question": "q", "response": "Pfizer", "label": 1},
               {"dataset": "nonexist", "question": "q", "response": "No such drug exists", "label": 0},
               {"dataset": "nonexist", "question": "q", "response": "Pfizer", "label": 0},
               {"dataset": "triviaqa", "question": "q", "response": "Paris", "answers": ["Paris"], "label": 0}]
    out = detect.judge_agreement(records)
    assert out["n"] == 4 and out["n_agree"] == 3 and out["agreement"] == 0.75
    assert out["confusion"] == {"human=0/judge=0": 2, "human=0/judge=1": 1, "human=1/judge=1": 1}
    nonexist = out["by_dataset"]["nonexist"]
    assert nonexist["faithful"] == {"n_human": 2, "n_judge": 1, "recall": 0.5, "precision": 1.0}
    assert nonexist["hallucinated"] == {"n_human": 1, "n_judge": 2, "recall": 1.0, "precision": 0.5}


# ------------------------------------------------------------------ hand-labelled fixtures (real SmolLM2 responses)


@pytest.mark.parametrize("kind", ["qa", "nonexist"])
def test_fixture_holds_at_least_50_real_labelled_responses(kind):
    records = detect.read_fixture(FIXTURES / f"{kind}.jsonl")
    assert len(records) >= 50
    for r in records:
        assert {"dataset", "example_id", "question", "answers", "response", "label"} <= set(r)
        assert r["label"] in (0, 1, -1)
        assert (r["dataset"] == "nonexist") == (kind == "nonexist")
    labels = [r["label"] for r in records]
    assert labels.count(0) >= 5 and labels.count(1) >= 5, "both classes must be represented"


@pytest.mark.parametrize("half", ["dev", "report"])
@pytest.mark.parametrize("kind", ["qa", "nonexist"])
def test_judges_agree_with_hand_labels(kind, half):
    from hneurons.judge_eval import split_fixture

    out = detect.judge_agreement(split_fixture(detect.read_fixture(FIXTURES / f"{kind}.jsonl"))[half])
    print(f"{kind} {half}: agreement {out['n_agree']}/{out['n']} = {out['agreement']:.3f}; {out['confusion']}")
    assert set(out["by_dataset"]) == ({"nonexist"} if kind == "nonexist" else {"triviaqa", "nq_open", "bioasq"})
    assert out["agreement"] >= MIN_AGREEMENT[kind, half], out
    for name, part in out["by_dataset"].items():
        precision, recall, hallucinated = MIN_CLASS[half][name]
        assert part["faithful"]["precision"] >= precision, (name, part)
        assert part["faithful"]["recall"] >= recall, (name, part)
        assert part["hallucinated"]["recall"] >= hallucinated, (name, part)


@pytest.mark.parametrize("kind", ["qa", "nonexist"])
def test_fixtures_hold_30_judge_faithful_rows_per_dataset(kind):
    records = detect.read_fixture(FIXTURES / f"{kind}.jsonl")
    for name in {r["dataset"] for r in records}:
        mine = [r for r in records if r["dataset"] == name]
        judged = [detect.judge_response(name, r["question"], r["response"], r.get("answers") or []) for r in mine]
        assert sum(v.label == detect.FAITHFUL for v in judged) >= 30, name
        assert sum(r["label"] == detect.FAITHFUL for r in mine) >= 20, name


# ------------------------------------------------------------------ features


def test_answer_span_is_the_alias_for_correct_qa_and_the_content_otherwise():
    from hneurons.cett import CETTRecorder

    tokenizer = make_tokenizer()
    model = make_model("llama", vocab_size=len(tokenizer))
    prompt = tokenizer("Where was Dench born?").input_ids
    resp = tokenizer(" She was born in York, England.").input_ids
    common = {"prompt_ids": prompt, "response_ids": resp, "question": "Where was Dench born?"}
    records = [{**common, "example_id": "a", "label": 0, "correct": True, "answers": ["York"]},
               {**common, "example_id": "b", "label": 0, "correct": False, "answers": []},  # NonExist abstention
               {**common, "example_id": "c", "label": 1, "correct": False, "answers": ["Paris"]},
               {**common, "example_id": "d", "label": 0, "correct": True, "answers": ["Rome"]}]  # alias missing
    meta = {"span_rule": "default", "region_variant": "with_prompt", "readout": "mean"}
    X, rows, dropped = detect.answer_features(model, tokenizer, records, "toy", meta, batch_size=2)
    assert X.shape == (3, CETTRecorder(model).n_features) and X.dtype == np.float32
    assert list(rows["example_id"]) == ["a", "b", "c"] and list(rows["label"]) == [0, 0, 1]
    assert set(rows["region"]) == {"answer"}
    york = len(tokenizer(" York").input_ids)
    assert rows["n_tokens"].tolist()[0] == york
    assert rows["n_tokens"].tolist()[1] == rows["n_tokens"].tolist()[2] > york  # whole content minus the final '.'
    assert (rows["response_tokens"] == len(resp)).all()
    assert dropped == {"alias_not_found": 1, "alias_not_found/label=0": 1}
    assert not np.allclose(X[0], X[1])
    with pytest.raises(HNeuronsError, match="span_rule=annotation"):
        detect.answer_features(model, tokenizer, records, "toy", {**meta, "span_rule": "annotation"}, 2)


def test_probe_training_rows_use_the_probe_labelling(tmp_path):
    from hneurons.activations import write_activations
    from hneurons.cett import META_COLUMNS

    rows = [{"example_id": f"q{i // 2}", "dataset": "t", "label": (i // 2) % 2, "region": ("answer", "other")[i % 2],
             "split": "train" if i < 6 else "test", "n_tokens": 2, "response_tokens": 4} for i in range(8)]
    X = np.arange(8 * 6, dtype=np.float32).reshape(8, 6)
    path = tmp_path / "acts"
    write_activations(path, [(pd.DataFrame(rows, columns=list(META_COLUMNS)), X)], 2, 3)
    three = detect.probe_training_rows(path, "3-vs-1")
    assert three.X.shape == (6, 6) and three.y.tolist() == [0, 0, 1, 0, 0, 0]
    assert three.weight.tolist() == [1.0] * 6 and len(three.frame) == 6
    one = detect.probe_training_rows(path, "1-vs-1")
    assert one.weight.tolist() == [1, 0, 1, 0, 1, 0] and one.y.tolist() == [0, 0, 1, 0, 0, 0]


def test_length_probe_reads_response_length():
    rng = np.random.default_rng(0)
    n = 200
    label = rng.integers(0, 2, n)
    train = pd.DataFrame({"region": np.where(np.arange(n) % 2 == 0, "answer", "other"), "label": label,
                          "response_tokens": 5 + 10 * label + rng.integers(0, 3, n), "n_tokens": 2})
    evaluate = pd.DataFrame({"response_tokens": [5, 6, 16, 17], "n_tokens": [2, 2, 2, 2]})
    scores = detect.length_probe_scores(train, evaluate, C=1.0)
    assert set(scores) == set(detect.LENGTH_VARIANTS)
    for s in scores.values():
        assert s.shape == (4,) and s[0] < 0.5 < s[2] and s[1] < s[3]
    assert detect.length_features(evaluate, "response_and_answer_tokens").shape == (4, 2)


def _toy_results(seed: int = 0) -> dict:
    from hneurons.probe_baselines import BaselineRun

    rng = np.random.default_rng(seed)
    out = {}
    for k, name in enumerate(("nonexist", "triviaqa")):  # out of paper order on purpose
        y = np.repeat([0, 1], 30)
        good = np.clip(0.5 + 0.3 * (y - 0.5) * 2 + rng.normal(0, 0.2, y.size), 0, 1)
        runs = [BaselineRun(s, np.arange(3), rng.random(y.size)) for s in range(5)]
        out[name] = detect.detection_metrics(y, good, runs, {"response_tokens": rng.random(y.size)}, 100, 1 + k)
    return out


def test_detection_metrics_and_table1():
    results = _toy_results()
    r = results["triviaqa"]
    assert r["h_neurons"]["n"] == 60 and r["h_neurons"]["n_faithful"] == 30
    assert r["h_neurons"]["accuracy"] > 0.8 and r["h_neurons"]["auroc_ci95"][0] <= r["h_neurons"]["auroc"]
    assert r["random"]["n_seeds"] == 5 and r["random"]["n_neurons"] == 3 and len(r["random"]["per_seed"]) == 5
    assert r["random"]["accuracy"]["mean"] == pytest.approx(np.mean([s["accuracy"] for s in r["random"]["per_seed"]]))
    assert set(r["length"]) == {"response_tokens"}
    table = detect_report.table1(results, "accuracy")
    assert list(table.columns) == ["neurons", "TriviaQA", "NonExist"]
    assert list(table["neurons"]) == ["Random", "H-Neurons"]
    assert table.loc[1, "TriviaQA"] == pytest.approx(100 * r["h_neurons"]["accuracy"])
    assert table.loc[0, "NonExist"] == pytest.approx(100 * results["nonexist"]["random"]["accuracy"]["mean"])
    assert detect_report.table1(results, "auroc").loc[1, "TriviaQA"] == pytest.approx(100 * r["h_neurons"]["auroc"])
    with pytest.raises(HNeuronsError, match="detect.table_metric='f1'"):
        detect_report.table1(results, "f1")


def test_table1_png_is_deterministic(tmp_path):
    results = _toy_results()
    detect_report.plot_table1(results, "accuracy", "toy", tmp_path / "a.png")
    detect_report.plot_table1(results, "accuracy", "toy", tmp_path / "b.png")
    data = (tmp_path / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == (tmp_path / "b.png").read_bytes()


# ------------------------------------------------------------------ the stage on a tiny workspace

N_LAYERS, D_FFN = 2, 48


def _workspace(tmp_path: Path, datasets: list[str]) -> Path:
    """Tiny instruct model, prepared tables, samples splits, synthetic activations and a probe."""
    from hneurons.activations import write_activations
    from hneurons.answers import normalize
    from hneurons.cett import META_COLUMNS
    from hneurons.data import schema_for
    from hneurons.io import write_parquet
    from hneurons.materialize import materialize
    from hneurons.probe import L1Probe, save_probe, training_labels
    from pipeline_utils import sharpen
    from tiny import CORPUS

    project = tmp_path / "project"
    tokenizer = make_tokenizer()
    source = tmp_path / "src"
    sharpen(make_model("llama", vocab_size=len(tokenizer))).save_pretrained(source)
    tokenizer.save_pretrained(source)
    materialize({"kind": "path", "path": str(source)}, project / "models/llm/tiny/instruct", tmp_path / "cache")
    easy = sorted(set(normalize(" ".join(CORPUS)).split())) + list("bcdefghijklmnopqrstuvwxyz")
    for name in ("triviaqa", "nq_open", "bioasq", "nonexist"):
        rows = [{"example_id": f"{name}_{i:03d}", "question": f"Question {i} about {name}?",
                 "answers": [] if name == "nonexist" else (easy if i % 2 == 0 else ["zzqqxxvv"])} for i in range(24)]
        if name == "nonexist":
            rows = [{**r, "category": "medicine", "entity": f"e{i}"} for i, r in enumerate(rows)]
        write_parquet(project / f"data/prepared/{name}.parquet", pa.Table.from_pylist(rows, schema=schema_for(name)))
    ids = [f"triviaqa_{i:03d}" for i in range(24)]
    write_parquet(project / "data/samples/tiny/triviaqa.parquet",
                  pa.table({"example_id": ids, "split": ["train"] * 6 + ["validation"] * 2 + ["test"] * 16}))
    rng = np.random.default_rng(0)
    rows, feats = [], []
    for i in range(40):
        for region in ("answer", "other"):
            rows.append({"example_id": f"q{i}", "dataset": "triviaqa", "label": i % 2, "region": region,
                         "split": "train", "n_tokens": 3, "response_tokens": 5 + 4 * (i % 2)})
            x = rng.random(N_LAYERS * D_FFN).astype(np.float32) * 0.1
            x[[5, 50, 70]] += rng.random(3).astype(np.float32) * (i % 2 == 1 and region == "answer")
            feats.append(x)
    frame, X = pd.DataFrame(rows, columns=list(META_COLUMNS)), np.stack(feats)
    write_activations(project / "data/activations/tiny/instruct/triviaqa/tiny-instruct-triviaqa", [(frame, X)], N_LAYERS, D_FFN,
                      "float32", {"span_rule": "default", "readout": "mean", "region_variant": "with_prompt"})
    _, y = training_labels(frame["region"].to_numpy(), frame["label"].to_numpy(), "3-vs-1")
    save_probe(L1Probe(C=10.0).fit(X, y), project / "models/probe/tiny")
    (project / "fixtures").mkdir()
    for kind in ("qa", "nonexist"):
        (project / "fixtures" / f"{kind}.jsonl").write_text((FIXTURES / f"{kind}.jsonl").read_text(encoding="utf-8"),
                                                            encoding="utf-8")
    params = {
        "base": {"seed": 4, "threads": 1, "cache_dir": str(tmp_path / "hcache")},
        "compute": {"families": {}, "device": "cpu", "dtype": "float32"},
        "sample": {"prompt": "{question} Respond with the answer only, without any explanation."},
        "probe": {"dataset": "triviaqa", "labelling": "3-vs-1", "baseline_C": 1.0, "n_random_seeds": 5},
        "detect": {"families": {"tiny": {}}, "datasets": datasets,
                   "n_questions": {"triviaqa": 12, "nq_open": 14, "bioasq": 14, "nonexist": 10},
                   "min_per_class": {"triviaqa": None, "nq_open": None, "bioasq": None, "nonexist": None},
                   "decoding": {d: {"temperature": 1.0, "top_k": 50, "top_p": 0.9, "max_new_tokens": 8}
                                for d in ("triviaqa", "nq_open", "bioasq", "nonexist")},
                   "batch_size": 8, "extract_batch_size": 4, "max_per_class": None, "n_boot": 50,
                   "table_metric": "accuracy", "judge_labels": "fixtures",
                   "judge_reference": str(ROOT / "data/raw/bioasq/systemicvoid_bioasq13b_factoid_samples.jsonl")},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return project


def _run(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "stages.detect", "tiny"], cwd=project, env=env,
                          capture_output=True, text=True)


def test_detect_stage_writes_table1_metrics_and_responses_reproducibly(tmp_path):
    project = _workspace(tmp_path, ["triviaqa", "nq_open", "bioasq"])
    result = _run(project)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "judge agreement with hand labels" in result.stderr
    metrics = json.loads((project / "reports/detect/tiny/metrics.json").read_text())
    assert set(metrics["datasets"]) == {"triviaqa", "nq_open", "bioasq"}
    hand, gpt = metrics["judge_agreement"]["hand_labels"], metrics["judge_agreement"]["bioasq_gpt4o"]
    assert set(hand["by_dataset"]) == {"triviaqa", "nq_open", "bioasq", "nonexist"} and metrics["span_rule"] == "default"
    assert gpt["judge"] == "rule-bio" and gpt["report"]["n"] + gpt["dev"]["n"] == 1600 and gpt["report"]["kappa"] >= 0.65  # measured 0.664
    responses = pd.read_parquet(project / "data/detect/tiny/responses.parquet")
    trivia = responses[responses["dataset"] == "triviaqa"]
    assert set(trivia["example_id"]) == {f"triviaqa_{i:03d}" for i in range(8, 20)}  # not train/validation
    assert responses.groupby("dataset").size().to_dict() == {"triviaqa": 12, "nq_open": 14, "bioasq": 14}
    for name, entry in metrics["datasets"].items():
        part = responses[responses["dataset"] == name]
        assert entry["n_faithful"] + entry["n_hallucinated"] + sum(entry["dropped"].values()) == len(part)
        assert entry["n_faithful"] == int((part["label"] == 0).sum()) > 0
        selected = part[part["selected"]]
        assert (selected["label"] == 0).sum() == (selected["label"] == 1).sum() == entry["n_selected"] // 2
        h = entry["h_neurons"]
        assert h["n_faithful"] + h["n_hallucinated"] == h["n"] <= entry["n_selected"]
        assert 0 <= h["accuracy"] <= 1 and 0 <= h["auroc"] <= 1 and len(h["accuracy_ci95"]) == 2
        assert entry["random"]["n_seeds"] == 5 and entry["random"]["n_neurons"] == metrics["n_h_neurons"]
        assert set(entry["length"]) == set(detect.LENGTH_VARIANTS)
    table = pd.read_csv(project / "reports/detect/tiny/table1.csv")
    assert list(table.columns) == ["neurons", "TriviaQA", "NQ-Open", "BioASQ"]
    assert table.loc[1, "NQ-Open"] == pytest.approx(100 * metrics["datasets"]["nq_open"]["h_neurons"]["accuracy"],
                                                    abs=0.01)
    outputs = sorted(p for d in ("reports/detect", "data/detect") for p in (project / d).rglob("*") if p.is_file())
    assert {p.name for p in outputs} == {"metrics.json", "table1.csv", "table1.png", "responses.parquet"}
    first = {p: p.read_bytes() for p in outputs}
    again = _run(project)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_bytes() for p in outputs} == first


def test_an_empty_class_stops_the_stage_with_one_line(tmp_path):
    project = _workspace(tmp_path, ["triviaqa", "nonexist"])  # a random tiny model never abstains
    result = _run(project)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: detect nonexist: no faithful responses after judging (faithful 0, hallucinated ")
    assert not (project / "reports/detect/tiny/metrics.json").exists()


def test_bad_params_are_one_line_errors(tmp_path):
    project = _workspace(tmp_path, ["triviaqa"])
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["detect"]["n_questions"]["nq_open"] = 3000
    params["detect"]["datasets"] = ["triviaqa", "nq_open"]
    params["tune"] = {"trivia": {"dataset": "nq_open", "rows": [2610, 3610]}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run(project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: detect.n_questions.nq_open=3000: must be <= 2610 (NQ-Open rows from tune.trivia.rows[0] = 2610 "
        "are the tune stage's)")
    params["detect"]["n_questions"]["nq_open"] = 14
    params["detect"]["min_per_class"] = {"triviaqa": 0}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run(project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: detect.min_per_class.triviaqa=0: expected an integer >= 1 or null"


def test_judge_until_full_stops_once_both_classes_hold_the_target_and_is_a_prefix():
    questions = [{"i": i} for i in range(40)]
    labels = [1 if i % 4 else (0 if i % 8 == 0 else -1) for i in range(40)]  # faithful every 8th question
    calls = []

    def run_chunk(chunk):
        calls.append(len(chunk))
        return [{"i": q["i"], "label": labels[q["i"]]} for q in chunk]

    rows = detect.judge_until_full(questions, run_chunk, 6, 3)
    # faithful rows at 0, 8, 16: the third arrives in the chunk [12, 18), and hallucinated rows are plenty by then
    assert [r["i"] for r in rows] == list(range(18)) and calls == [6, 6, 6]
    everything = detect.judge_until_full(questions, run_chunk, 6, None)
    assert [r["i"] for r in everything] == list(range(40))
    assert everything[:18] == rows
    never = detect.judge_until_full(questions, run_chunk, 7, 100)  # target never reached: all questions
    assert len(never) == 40
    with pytest.raises(HNeuronsError, match="chunk_size"):
        detect.judge_until_full(questions, run_chunk, 0, 3)


def test_a_probe_without_h_neurons_stops_detect_with_one_line(tmp_path):
    from hneurons.probe import load_probe, save_probe

    project = _workspace(tmp_path, ["triviaqa"])
    probe, metadata = load_probe(project / "models/probe/tiny")
    probe.coef_ = -np.abs(probe.coef_)
    save_probe(probe, project / "models/probe/tiny", metadata)
    result = _run(project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: models/probe/tiny: the probe has no positive weights (no H-Neurons to test); widen probe.C_grid")
    assert not (project / "reports/detect").exists()
