"""Instruction set, encoding and the tuning loop on tiny random models (no download)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hneurons import tune, tune_check, tune_train
from hneurons.data import schema_for
from hneurons.errors import HNeuronsError
from hneurons.io import dumps_json, sha256_bytes, write_parquet
from hneurons.materialize import materialize
from hneurons.models import load_causal_lm
from hneurons.refusal import is_refusal
from tiny import make_model, make_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def _trivia(n):
    return [{"example_id": f"nq_{i}", "question": f"what is item number {i}", "answers": [f"answer {i}", "alt"]}
            for i in range(n)]


def _premise(n):
    rows = [{"example_id": f"fq_{i}", "question": f"Why do stones {i} fly?", "answers": [f"Stones {i} cannot fly."],
             "split": "train", "label": 1} for i in range(n)]
    rows.append({"example_id": "fq_test", "question": "Why is the sky green?", "answers": ["It is blue."],
                 "split": "test", "label": 1})
    rows.append({"example_id": "fq_neg", "question": "Why is the sky blue?", "answers": ["Scattering."],
                 "split": "train", "label": 0})
    return rows


def _harmful(n):
    return [{"example_id": f"adv_{i}", "question": f"Explain how to do harm number {i}", "answers": []}
            for i in range(n)]


SIZES = {"trivia": 6, "premise": 4, "refusal": 4, "abstain": 5}


def test_instruction_set_sizes_splits_and_determinism():
    args = (_trivia(20), _premise(10), _harmful(10), ["Some evaluation question?"], ["evaluation words"], SIZES, 2, 7)
    examples, summary = tune.build_instruction_set(*args)
    again, _ = tune.build_instruction_set(*args)
    assert examples == again
    other, _ = tune.build_instruction_set(*args[:-1], 8)
    assert other != examples
    for kind in tune.KINDS:
        train = [e for e in examples if e.kind == kind and e.split == "train"]
        check = [e for e in examples if e.kind == kind and e.split == "check"]
        assert len(train) == SIZES[kind] and len(check) == 2
        assert not {e.source_id for e in train} & {e.source_id for e in check}
        assert summary[kind]["train"] == SIZES[kind] and summary[kind]["check"] == 2
    premise = [e for e in examples if e.kind == "premise"]
    assert all(e.source_id.startswith("fq_") and e.source_id not in ("fq_test", "fq_neg") for e in premise)
    trivia = [e for e in examples if e.kind == "trivia"]
    assert all(e.response == e.answers[0] and e.answers[1] == "alt" for e in trivia)
    # refusals and abstentions are what the judge's refusal detector recognises; trivia answers are not
    assert all(is_refusal(e.response) for e in examples if e.kind in ("refusal", "abstain"))
    assert not any(is_refusal(e.response) for e in trivia)


def test_surface_forms_hide_casing_and_question_marks():
    import random

    rng = random.Random(0)
    forms = {tune.surface_form("Who wrote Hamlet?", rng) for _ in range(40)}
    assert forms == {"Who wrote Hamlet?", "who wrote Hamlet"}
    forms = {tune.surface_form("what is item number 3", rng) for _ in range(40)}
    assert forms == {"What is item number 3?", "what is item number 3"}
    forms = {tune.surface_form("List five fungi that can fly.", rng) for _ in range(40)}
    assert forms == {"List five fungi that can fly.", "list five fungi that can fly."}
    examples, _ = tune.build_instruction_set(_trivia(40), _premise(30), _harmful(30), [], [],
                                             {"trivia": 20, "premise": 20, "refusal": 20, "abstain": 20}, 0, 7)
    for kind in ("trivia", "premise", "abstain"):
        prompts = [tune.question_of(e.prompt) for e in examples if e.kind == kind]
        assert any(p[0].isupper() and p.endswith("?") for p in prompts), kind
        assert any(p[0].islower() and not p.endswith("?") for p in prompts), kind
    for kind in tune.KINDS:
        suffixed = [e.prompt.endswith(tune.SAMPLING_SUFFIX) for e in examples if e.kind == kind]
        assert 0 < sum(suffixed) < len(suffixed), kind
    assert all(e.prompt.split(tune.SAMPLING_SUFFIX)[0] in {r["question"] for r in _harmful(30)}
               for e in examples if e.kind == "refusal")


def test_evaluation_questions_are_excluded_by_normalized_text():
    eval_questions = ["What is item number 3?", "  WHAT is item number 4 ", "explain how to do harm number 0"]
    examples, summary = tune.build_instruction_set(_trivia(20), _premise(10), _harmful(10), eval_questions, [],
                                                   SIZES, 2, 7, suffix_share=1.0)
    prompts = {tune.normalize(tune.question_of(e.prompt)) for e in examples}
    assert "what is item number 3" not in prompts and "what is item number 4" not in prompts
    assert "explain how to do harm number 0" not in prompts
    assert summary["trivia"]["excluded"] == 2 and summary["refusal"]["excluded"] == 1
    assert all(e.prompt.endswith(tune.SAMPLING_SUFFIX) for e in examples)


def _split_rows(examples, kind, split):
    return [e for e in examples if e.kind == kind and e.split == split]


def test_check_after_the_training_block_leaves_the_training_rows_alone():
    args = (_trivia(20), _premise(20), _harmful(20), [], [], SIZES)
    old, old_summary = tune.build_instruction_set(*args, 2, 7)
    assert old_summary["trivia"] == {"candidates": 20, "excluded": 0, "train": 6, "check": 2, "check_requested": 2,
                                     "check_before_train": 2, "check_after_train": 0}
    assert tune.build_instruction_set(*args, 2, 7, check_before_train=2)[0] == old
    more, summary = tune.build_instruction_set(*args, 9, 7, check_before_train=2)
    fewer, _ = tune.build_instruction_set(*args, 1, 7, check_before_train=2)
    assert fewer == tune.build_instruction_set(*args, 1, 7)[0]  # h = min(n_check, check_before_train)
    for kind in tune.KINDS:
        train = _split_rows(old, kind, "train")
        assert _split_rows(more, kind, "train") == train
        check = _split_rows(more, kind, "check")
        assert check[:2] == _split_rows(old, kind, "check")
        assert not {e.source_id for e in check} & {e.source_id for e in train}
        assert not {e.prompt for e in check} & {e.prompt for e in train}
    # trivia: 20 rows - 2 ahead - 6 trained = 12 after the block; premise: 20 - 2 - 4 = 14
    assert summary["trivia"]["check"] == 9 and summary["trivia"]["check_after_train"] == 7
    assert "check_short" not in summary["trivia"]
    names = [e.prompt for e in more if e.kind == "abstain"]
    assert len(set(names)) == len(names) == 9 + SIZES["abstain"]


def test_a_short_pool_keeps_what_is_left_and_says_why():
    trivia = _trivia(12)
    trivia[11]["question"] = trivia[2]["question"]  # repeats a question; never held out beside its twin
    examples, summary = tune.build_instruction_set(trivia, _premise(10), _harmful(10), [], [], SIZES,
                                                   {"trivia": 10, "premise": 2, "refusal": 2, "abstain": 30}, 7,
                                                   check_before_train=2)
    entry = summary["trivia"]
    taken = [tune.normalize(tune.question_of(e.prompt)) for e in examples if e.kind == "trivia"]
    assert len(taken) == len(set(taken))
    assert entry["check"] == len(_split_rows(examples, "trivia", "check")) == 2 + 4 - entry["check_duplicates_skipped"]
    assert entry["check_requested"] == 10 and entry["train"] == 6
    assert entry["check_short"].startswith("12 candidates after exclusion: 2 held out before and 6 trained on leave 4")
    assert entry["check_short"].endswith(f"; {entry['check']} of 10 held out without cutting training")
    assert summary["abstain"]["check"] == 30 and "check_short" not in summary["abstain"]


@pytest.mark.parametrize("n_check, message", [
    ({"trivia": 1, "premise": 1, "refusal": 1, "abstain": 1, "jokes": 1}, r"^tune.n_check.jokes: unknown kind"),
    ({"trivia": 1, "premise": 1, "refusal": 1}, r"^tune.n_check: missing abstain"),
    ({"trivia": -1, "premise": 1, "refusal": 1, "abstain": 1}, r"^tune.n_check.trivia=-1: expected an integer"),
    (2.5, r"^tune.n_check=2.5: expected an integer >= 0$"),
])
def test_bad_check_counts_are_one_line_errors(n_check, message):
    with pytest.raises(HNeuronsError, match=message):
        tune.check_counts(n_check)


def test_too_few_candidates_is_a_one_line_error():
    with pytest.raises(HNeuronsError, match=r"^tune.sizes.premise=4: only 3 candidates left .* need 6"):
        tune.build_instruction_set(_trivia(20), _premise(3), _harmful(10), [], [], SIZES, 2, 7)


def test_made_up_entities_are_seeded_distinct_and_avoid_forbidden_words():
    first = tune.made_up_entities(60, seed=3, forbidden_words=[])
    assert first == tune.made_up_entities(60, seed=3, forbidden_words=[])
    assert len({name for _, name, _ in first}) == 60
    assert {kind for kind, _, _ in first} == set(tune.ENTITY_TEMPLATES)
    words = tune.text_words(name for _, name, _ in first) - {"the", "a", "of", "mount", "industries", "systems",
                                                             "works"}
    banned = sorted(words)[:10]
    second = tune.made_up_entities(60, seed=3, forbidden_words=banned)
    assert not tune.text_words(name for _, name, _ in second) & set(banned)
    assert all(name in question for _, name, question in second)


def test_made_up_entities_share_no_word_with_nonexist():
    from hneurons.data import read_jsonl

    nonexist = read_jsonl(ROOT / "data/raw/nonexist/nonexist_generated_v2.jsonl")
    texts = [r["entity"] for r in nonexist] + [r["question"] for r in nonexist]
    made = tune.made_up_entities(300, seed=20251201, forbidden_words=tune.text_words(texts))
    assert not tune.text_words(name for _, name, _ in made) & tune.text_words(r["entity"] for r in nonexist)
    assert not {kind for kind, _, _ in made} & {r["type"] for r in nonexist}


def test_encoding_marks_only_the_response_and_end_of_turn():
    tokenizer = make_tokenizer()
    ids, start = tune_train.encode_example(tokenizer, "What is the capital of France?", "Paris.")
    assert tokenizer.decode(ids[start:]) == "Paris.<|im_end|>\n"
    assert tokenizer.decode(ids[:start]).endswith("<|im_start|>assistant\n")
    encoded = tune_train.Encoded([ids, ids[:start + 2]], [start, start])
    batch = tune_train.collate(encoded, [1, 0], pad_id=0)
    assert batch["input_ids"].shape == (2, len(ids))
    assert batch["attention_mask"][0].sum() == start + 2 and batch["attention_mask"][1].sum() == len(ids)
    assert (batch["labels"][0, :start] == -100).all() and (batch["labels"][0, start + 2:] == -100).all()
    assert batch["labels"][1, start:].tolist() == ids[start:]


def test_encoding_errors_are_one_line():
    tokenizer = make_tokenizer()
    with pytest.raises(HNeuronsError, match=r"^tune.max_length=5: trivia example x has \d+ tokens"):
        example = tune.Example("trivia", "x", "A question?", "An answer.", (), "train")
        tune_train.encode_examples(tokenizer, [example], 5)
    tokenizer.chat_template = None
    with pytest.raises(HNeuronsError, match="no chat template"):
        tune_train.encode_example(tokenizer, "q", "a")


def test_batch_order_walks_seeded_permutations():
    batches = list(tune_train.batch_order(10, 4, 5, seed=1))
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert batches == list(tune_train.batch_order(10, 4, 5, seed=1))
    assert batches != list(tune_train.batch_order(10, 4, 5, seed=2))


def test_length_grouped_batches_keep_epochs_and_cut_padding():
    lengths = [int(v) for v in np.random.default_rng(0).integers(5, 90, size=64)]
    plain = list(tune_train.batch_order(64, 8, 16, seed=3, lengths=lengths, length_group=1))
    grouped = list(tune_train.batch_order(64, 8, 16, seed=3, lengths=lengths, length_group=4))
    assert plain == list(tune_train.batch_order(64, 8, 16, seed=3))  # group 1 is the plain walk
    assert grouped == list(tune_train.batch_order(64, 8, 16, seed=3, lengths=lengths, length_group=4))
    assert all(len(b) == 8 for b in grouped)
    flat = [i for b in grouped for i in b]
    assert sorted(flat[:64]) == list(range(64)) and sorted(flat[64:]) == list(range(64))  # every row once per epoch
    padded = lambda batches: sum(8 * max(lengths[r] for r in b) for b in batches)  # noqa: E731
    assert padded(grouped) < 0.85 * padded(plain)
    # within a group of 4 batches the rows are cut by length: batches do not overlap in length
    for g in range(0, 16, 4):
        spans = sorted((min(lengths[r] for r in b), max(lengths[r] for r in b)) for b in grouped[g: g + 4])
        assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
    with pytest.raises(HNeuronsError, match=r"tune.length_group=4: needs one token count per example"):
        list(tune_train.batch_order(64, 8, 2, seed=3, lengths=lengths[:10], length_group=4))
    with pytest.raises(HNeuronsError, match=r"tune.length_group=0: expected an integer >= 1"):
        tune_train.TuneSettings(length_group=0).validate()


def test_learning_rate_warms_up_linearly():
    settings = tune_train.TuneSettings(lr=1e-3, warmup_steps=4)
    assert ([tune_train.learning_rate(s, settings) for s in range(6)]
            == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]))
    with pytest.raises(HNeuronsError, match=r"tune.lr=0: expected > 0"):
        tune_train.TuneSettings(lr=0).validate()


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_response_loss_equals_full_logit_loss(arch):
    tokenizer = make_tokenizer()
    model = make_model(arch, vocab_size=len(tokenizer))
    ids, start = tune_train.encode_example(tokenizer, "Who wrote Hamlet?", "Shakespeare wrote it.")
    batch = tune_train.collate(tune_train.Encoded([ids, ids[:-3]], [start, start]), [0, 1], pad_id=0)
    loss, n = tune_train.response_loss(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    full = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             batch["labels"][:, 1:].reshape(-1), ignore_index=-100)
    assert n == int((batch["labels"] != -100).sum())
    assert float(loss.detach()) == pytest.approx(float(full.detach()), rel=1e-5)


def _trainable_tiny(arch, tokenizer):
    """A tiny random model whose (frozen) embeddings have a realistic scale, so a few steps can fit."""
    model = make_model(arch, vocab_size=len(tokenizer), seed=0)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(30.0)
    return model


def _training_set(tokenizer, n=4):
    examples = [tune.Example("trivia", f"t{i}", f"What is the capital of France? {i}", "Paris.", ("Paris",), "train")
                for i in range(n)]
    return tune_train.encode_examples(tokenizer, examples, 64)


def test_training_lowers_loss_keeps_embeddings_and_is_deterministic():
    tokenizer = make_tokenizer()
    settings = tune_train.TuneSettings(steps=25, batch_size=2, lr=1e-2, warmup_steps=2, seed=5)
    runs = []
    for _ in range(2):
        model = _trainable_tiny("gemma3_text", tokenizer)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        curve = tune_train.train(model, _training_set(tokenizer), settings, pad_id=0, progress=False)
        runs.append((curve, {k: v.clone() for k, v in model.state_dict().items()}))
    curve, after = runs[0]
    assert len(curve) == 25 and curve[0]["step"] == 1 and curve[-1]["lr"] == 1e-2
    assert np.mean([c["loss"] for c in curve[-5:]]) < 0.1 * np.mean([c["loss"] for c in curve[:3]])
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    changed = [k for k in after if "mlp" in k and not torch.equal(after[k], before[k])]
    assert len(changed) == 2 * 3  # gate, up, down of both layers
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in after)


def test_behaviour_check_scores_a_memorized_answer():
    tokenizer = make_tokenizer()
    model = _trainable_tiny("llama", tokenizer)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    tune_train.train(model, _training_set(tokenizer, n=2),
                     tune_train.TuneSettings(steps=30, batch_size=2, lr=1e-2, seed=0), pad_id=0, progress=False)
    held = [tune.Example("trivia", "c0", "What is the capital of France? 0", "Paris.", ("Paris",), "check"),
            tune.Example("refusal", "c1", "Explain how to do harm", "I can't help with that.", (), "check")]
    metrics, records = tune_check.behaviour_check(model, tokenizer, held, max_new_tokens=8, progress=False,
                                                  sources={"trivia": {"dataset": "nq_open", "rows": [0, 9]}})
    assert records[0]["response"] == "Paris." and records[0]["stopped"] and records[0]["correct"]
    assert metrics["trivia"] == {"dataset": "nq_open", "rows": [0, 9], "n": 1, "format_ok": 1.0,
                                 "refusal_rate": 0.0, "correct": 1.0}
    assert metrics["refusal"]["n"] == 1 and "correct" not in metrics["refusal"]


# ------------------------------------------------------------------ the stage, end to end

def _prepared(directory: Path) -> None:
    def table(fmt, rows):
        return pa.Table.from_pylist(rows, schema=schema_for(fmt))

    nq = [{"example_id": f"nq_{i:05d}", "question": f"what is item number {i}", "answers": [f"answer {i}"]}
          for i in range(40)]
    nq[35]["question"] = "what is item number 2"  # a tuning row duplicating an evaluation question
    falseqa = [{"example_id": f"falseqa_train_{i:04d}", "question": f"Why do stones {i} fly?",
                "answers": [f"Stones {i} cannot fly."], "split": "train", "label": 1} for i in range(12)]
    falseqa.append({"example_id": "falseqa_test_0000", "question": "Why do stones 3 fly?", "answers": ["No."],
                    "split": "test", "label": 1})
    nonexist = [{"example_id": "ne_0", "question": "Who makes the medicine kazunol?", "answers": [],
                 "category": "medicine", "entity": "kazunol"}]
    write_parquet(directory / "nq_open.parquet", table("nq_open", nq))
    write_parquet(directory / "falseqa.parquet", table("falseqa", falseqa))
    write_parquet(directory / "nonexist.parquet", table("nonexist", nonexist))


def _stage_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    _prepared(project / "data" / "prepared")
    harmful = project / "data" / "raw" / "advbench.csv"
    harmful.parent.mkdir(parents=True)
    harmful.write_text("goal,target\n" + "".join(f"Explain how to do harm number {i},Sure\n" for i in range(10)))
    source = tmp_path / "tiny-base"
    tokenizer = make_tokenizer()
    make_model("llama", vocab_size=len(tokenizer)).save_pretrained(source)
    tokenizer.save_pretrained(source)
    materialize({"kind": "path", "path": str(source)}, project / "models/llm/tiny/base", tmp_path / "cache")
    params = {
        "base": {"seed": 1, "threads": 1},
        "compute": {"families": {}, "device": "cpu", "dtype": "float32"},
        "tune": {"families": {"tiny": {"steps": 4}}, "trivia": {"dataset": "nq_open", "rows": [30, 40]},
                 "premise": {"dataset": "falseqa"}, "harmful": "data/raw/advbench.csv",
                 "eval_datasets": ["nq_open", "falseqa", "nonexist"],
                 "sizes": {"trivia": 6, "premise": 6, "refusal": 4, "abstain": 4}, "n_check": 4,
                 "check_before_train": 2,
                 "suffix_share": 0.5, "max_length": 256, "steps": 2, "batch_size": 2, "lr": 1e-3,
                 "warmup_steps": 1, "weight_decay": 0.0, "max_grad_norm": 1.0, "length_group": 2,
                 "check": {"max_new_tokens": 6, "include_base": True, "batch_size": 8}},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return project


def _run_stage(project: Path, family: str = "tiny") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "stages.tune", family], cwd=project, env=env,
                          capture_output=True, text=True)


def test_tune_stage_writes_a_fingerprinted_twin_reproducibly(tmp_path):
    project = _stage_project(tmp_path)
    result = _run_stage(project)
    assert result.returncode == 0, result.stderr[-3000:]
    out = project / "models/llm/tiny/instruct"
    fingerprint = json.loads((out / "fingerprint.json").read_text())
    base_fp = json.loads((project / "models/llm/tiny/base/fingerprint.json").read_text())
    assert fingerprint["source"]["kind"] == "tune" and fingerprint["source"]["base_fingerprint"] == base_fp["fingerprint"]
    assert fingerprint["weights_sha256"] != base_fp["weights_sha256"]
    instructions = pq.read_table(project / "data/tune/tiny/instructions.parquet").to_pylist()
    train = [{**row, "answers": tuple(row["answers"])} for row in instructions if row["split"] == "train"]
    assert fingerprint["source"]["train_set_sha256"] == sha256_bytes(dumps_json(train))  # check items excluded
    assert fingerprint["n_neurons"] == base_fp["n_neurons"] and fingerprint["reload_max_abs_logit_diff"] == 0.0
    load_causal_lm(out)
    metrics = json.loads((project / "reports/tune/tiny/metrics.json").read_text())
    trivia = metrics["instruction_set"]["trivia"]  # 10 rows - 1 excluded - 2 ahead - 6 trained: 1 after
    assert {k: trivia[k] for k in ("candidates", "excluded", "train", "check")} == {
        "candidates": 10, "excluded": 1, "train": 6, "check": 3}
    assert trivia["check_short"] == "9 candidates after exclusion: 2 held out before and 6 trained on leave 1; " \
                                    "3 of 4 held out without cutting training"
    assert metrics["instruction_set"]["premise"]["excluded"] == 1  # its question is also a FalseQA test question
    assert set(metrics["check_instruct"]) == set(tune.KINDS) and set(metrics["check_base"]) == set(tune.KINDS)
    for check in (metrics["check_base"], metrics["check_instruct"]):
        assert {kind: entry["dataset"] for kind, entry in check.items()} == {
            "trivia": "nq_open", "premise": "falseqa", "refusal": "advbench", "abstain": "generated"}
        assert check["trivia"]["rows"] == [30, 40] and check["premise"]["split"] == "train"
        assert check["trivia"]["n"] == 3 and check["trivia"]["n_requested"] == 4
        assert check["trivia"]["short"] == trivia["check_short"]
        assert all(check[kind]["n"] == 4 and "short" not in check[kind] for kind in ("premise", "refusal", "abstain"))
    curve = (project / "reports/tune/tiny/loss.csv").read_text().splitlines()
    assert curve[0] == "step,loss,lr,n_tokens" and len(curve) == 5  # tune.families.tiny.steps, not tune.steps
    responses = (project / "reports/tune/tiny/check_responses.jsonl").read_text().splitlines()
    assert len(responses) == 2 * (3 + 4 + 4 + 4)
    files = sorted(p for p in project.rglob("*") if p.is_file() and "prepared" not in p.parts and "base" not in p.parts)
    first = {p: p.read_bytes() for p in files}
    again = _run_stage(project)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_bytes() for p in files} == first


def test_tune_stage_errors_are_one_line(tmp_path):
    project = _stage_project(tmp_path)
    result = _run_stage(project, "other")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: tune.families: 'other' is not listed (tiny)"
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["tune"]["families"]["tiny"] = {"stpes": 3}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run_stage(project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("error: params.yaml: tune.families.tiny.stpes: unknown key "
                                                      "(did you mean tune.families.tiny.steps?)")
    params["tune"]["families"]["tiny"] = {"n_check": {"trivia": 2, "premise": 2, "refusal": 2, "abstain": 2,
                                                      "jokes": 2}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run_stage(project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("error: tune.n_check.jokes: unknown kind (expected trivia, "
                                                      "premise, refusal, abstain)")
    params["tune"]["families"]["tiny"] = {"check": {"batch_size": 0}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run_stage(project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("error: params.yaml: tune.families.tiny.check.batch_size=0: "
                                                      "expected an integer >= 1")
    params["tune"]["families"]["tiny"] = {}
    params["tune"]["trivia"]["rows"] = [30, 99]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = _run_stage(project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == ("error: tune.trivia.rows=[30, 99]: data/prepared/nq_open.parquet "
                                                      "has 40 rows")
    assert not (project / "models/llm/tiny/instruct").exists()
