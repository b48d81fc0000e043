"""Generation tests on tiny random models: batch-independent seeding, greedy batched == unbatched,
stopping, the resumable batch cache, the consistency run, and the sample stage end to end."""

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from hneurons.backends import TransformersBackend
from hneurons.consistency import RunConfig, run_consistency
from hneurons.errors import HNeuronsError
from hneurons.generate import (
    DecodingSettings,
    batch_cache_key,
    chat_prompt_ids,
    generate,
    generate_cached,
    sample_next,
    sample_seed,
    stop_token_ids,
)
from hneurons.judge import RuleJudge
from pipeline_utils import sharpen as _sharpen

QUESTIONS = ["What is the capital of France?", "Where in England was Dame Judi Dench born?",
             "Who won the Nobel Prize for Literature in 1930?", "Which year?"]


@pytest.fixture(scope="module")
def tok():
    from tiny import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    from tiny import make_model

    return _sharpen(make_model("llama", vocab_size=len(tok)))


@pytest.fixture(scope="module")
def prompts(tok):
    return [chat_prompt_ids(tok, q) for q in QUESTIONS]


def test_chat_prompt_uses_template_and_generation_prompt(tok):
    ids = chat_prompt_ids(tok, "Hi?")
    text = tok.decode(ids)
    assert text == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"


def test_sample_seed_is_stable_and_distinct():
    assert sample_seed(1, "tc_1", 0) == sample_seed(1, "tc_1", 0)
    seeds = {sample_seed(b, e, i) for b in (1, 2) for e in ("tc_1", "tc_2") for i in range(5)}
    assert len(seeds) == 20
    assert all(0 <= s < 2 ** 63 for s in seeds)


@pytest.mark.parametrize("arch,std", [("llama", 0.3), ("gemma3_text", 0.02), ("gpt2", 0.3)])
def test_greedy_batched_equals_unbatched(tok, prompts, arch, std):
    from tiny import make_model

    net = _sharpen(make_model(arch, vocab_size=len(tok)), std=std)
    settings = DecodingSettings(temperature=0, max_new_tokens=10)
    batched = generate(net, tok, prompts, settings, None, batch_size=len(prompts))
    single = [generate(net, tok, [p], settings, None, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert len({tuple(r) for r in batched}) > 1  # the test is not vacuous


def test_greedy_matches_transformers_generate(model, tok, prompts):
    settings = DecodingSettings(temperature=0, max_new_tokens=8)
    ours = generate(model, tok, prompts[:1], settings, None, batch_size=1)[0]
    ref = model.generate(torch.tensor([prompts[0]]), max_new_tokens=8, do_sample=False,
                         eos_token_id=stop_token_ids(model, tok), pad_token_id=tok.pad_token_id)
    ref = ref[0, len(prompts[0]):].tolist()
    stops = set(stop_token_ids(model, tok))
    ref = ref[:next((i for i, t in enumerate(ref) if t in stops), len(ref))]
    assert ours == ref


def test_same_question_in_two_batches_gives_identical_ids(model, tok, prompts):
    settings = DecodingSettings(temperature=1.0, max_new_tokens=12)
    seeds = [sample_seed(7, "q1", i) for i in range(3)]
    alone = generate(model, tok, [prompts[1]] * 3, settings, seeds, batch_size=3)
    # the same three rows, now mixed with other questions and split over other batches
    rows = [prompts[0], prompts[1], prompts[2], prompts[1], prompts[3], prompts[1]]
    row_seeds = [sample_seed(7, "q0", 0), seeds[0], sample_seed(7, "q2", 0), seeds[1],
                 sample_seed(7, "q3", 0), seeds[2]]
    mixed = generate(model, tok, rows, settings, row_seeds, batch_size=4)
    assert [mixed[1], mixed[3], mixed[5]] == alone
    assert len({tuple(r) for r in alone}) == 3  # different seeds, different samples


def test_sampling_respects_top_k_and_top_p():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]] * 2000)
    uniforms = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tokens = sample_next(logits, uniforms, DecodingSettings(temperature=1.0, top_k=3, top_p=1.0))
    assert set(tokens.tolist()) == {0, 1, 2}
    probs = torch.softmax(logits[0], -1)  # 0.64, 0.24, 0.09, ...: top_p 0.8 keeps tokens 0 and 1
    tokens = sample_next(logits, uniforms, DecodingSettings(temperature=1.0, top_k=0, top_p=0.8))
    assert set(tokens.tolist()) == {0, 1}
    share = (tokens == 0).double().mean().item()
    assert abs(share - probs[0] / (probs[0] + probs[1])) < 0.04
    assert sample_next(logits[:3], uniforms[:3], DecodingSettings(temperature=0)).tolist() == [0, 0, 0]


def test_stop_token_ends_response_and_is_dropped(model, tok, prompts):
    settings = DecodingSettings(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=40)
    seeds = [sample_seed(3, "s", i) for i in range(16)]
    stops = set(stop_token_ids(model, tok))
    out = generate(model, tok, [prompts[0]] * 16, settings, seeds, batch_size=16)
    assert all(not stops & set(r) for r in out)
    assert any(len(r) < 40 for r in out)  # some rows stopped early (finished)


def test_bad_decoding_settings_are_one_line_errors(model, tok, prompts):
    with pytest.raises(HNeuronsError, match=r"^sample\.n_samples=0"):
        DecodingSettings(n_samples=0).validate("sample")
    with pytest.raises(HNeuronsError, match=r"^sample\.temperature=-0\.5"):
        DecodingSettings(temperature=-0.5).validate("sample")
    with pytest.raises(HNeuronsError, match="seed"):
        generate(model, tok, prompts, DecodingSettings(), None, batch_size=2)


def test_generate_cached_resumes_with_identical_results(model, tok, prompts, tmp_path):
    settings = DecodingSettings(temperature=1.0, max_new_tokens=10)
    rows = [p for p in prompts for _ in range(3)]
    seeds = [sample_seed(5, str(i), 0) for i in range(len(rows))]
    reference = generate(model, tok, rows, settings, seeds, batch_size=4)
    cache = tmp_path / "cache"
    backend = TransformersBackend(model, tok)
    # an "interrupted" run that completed the first two batches only
    partial = generate_cached(backend, rows[:8], settings, seeds[:8], 4, cache, salt="m")
    written = sorted(cache.iterdir())
    assert len(written) == 2 and partial == reference[:8]
    # the transformers backend keeps the keys of the pre-backend cache (existing batches still hit)
    assert {p.stem for p in written} == {batch_cache_key(rows[i:i + 4], seeds[i:i + 4], settings, "m")
                                         for i in (0, 4)}
    stamps = {p: p.stat().st_mtime_ns for p in written}
    resumed = generate_cached(backend, rows, settings, seeds, 4, cache, salt="m")
    assert resumed == reference
    assert len(list(cache.iterdir())) == 3
    assert all(p.stat().st_mtime_ns == stamps[p] for p in written)  # completed batches were reused
    other = generate_cached(backend, rows[:4], settings, seeds[:4], 4, cache, salt="other model")
    assert other == reference[:4] and len(list(cache.iterdir())) == 4  # the salt is part of the key


def test_run_consistency_labels_and_outputs(model, tok):
    ids = [f"q{i}" for i in range(6)]
    questions = QUESTIONS + ["Who?", "Where?"]
    # the judge sees decoded text; every response of this random model is wrong for these aliases
    answers = [["zzzz unmatched"]] * 6
    config = RunConfig(settings=DecodingSettings(n_samples=3, max_new_tokens=6), seed=1, batch_size=5,
                       early_stop_after=(1,), split_fractions={"train": 0.5, "validation": 0.25, "test": 0.25})
    result = run_consistency(TransformersBackend(model, tok), tok, ids, questions, answers, config, RuleJudge())
    table = result.table.to_pydict()
    assert table["example_id"][:3] == ["q0"] * 3 and table["sample_index"][:3] == [0, 1, 2]
    assert not any(table["correct"])
    # no faithful question, so the balanced selection is empty
    assert result.counts["consistent"]["faithful"] == 0 and result.counts["selected_per_class"] == 0
    assert set(table["label"]) == {-1} and set(table["split"]) == {""} and not any(table["representative"])
    first_refused = {e for e, i, r in zip(table["example_id"], table["sample_index"], table["refusal"])
                     if i == 0 and r}
    for eid in ids:  # early stop after sample 0: a refusal there makes a label impossible
        assert table["example_id"].count(eid) == (1 if eid in first_refused else 3)
    assert result.metrics["samples_drawn"] == len(table["example_id"])
    with pytest.raises(HNeuronsError, match="empty"):
        run_consistency(TransformersBackend(model, tok), tok, [], [], [], config, RuleJudge())


def test_run_consistency_selects_balanced_disjoint_splits(model, tok):
    """Questions whose aliases are the model's own greedy answer are faithful; others hallucinated."""
    settings = DecodingSettings(n_samples=2, temperature=0, max_new_tokens=4)
    prompts = [chat_prompt_ids(tok, RunConfig().prompt_template.format(question=q)) for q in QUESTIONS * 2]
    greedy = generate(model, tok, prompts, settings, None, batch_size=8)
    texts = [tok.decode(g, skip_special_tokens=True) for g in greedy]
    ids = [f"q{i}" for i in range(8)]
    answers = [[texts[i]] if i % 2 == 0 else ["zzzz unmatched"] for i in range(8)]
    config = RunConfig(settings=settings, seed=3, batch_size=8,
                       split_fractions={"train": 0.5, "validation": 0.25, "test": 0.25})
    result = run_consistency(TransformersBackend(model, tok), tok, ids, QUESTIONS * 2, answers, config,
                             RuleJudge())
    table = result.table.to_pydict()
    reps = [i for i, r in enumerate(table["representative"]) if r]
    labelled = {table["example_id"][i]: table["label"][i] for i in reps}
    assert sorted(labelled.values()).count(0) == sorted(labelled.values()).count(1)
    splits = {table["example_id"][i]: table["split"][i] for i in reps}
    by_split = {s: {e for e, v in splits.items() if v == s} for s in ("train", "validation", "test")}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["validation"])
    assert all(table["response_ids"][i] for i in reps)


def _write_stage_workspace(root: Path, questions: list[dict], temperature: float = 0.0) -> None:
    import pyarrow as pa

    from hneurons.data import schema_for
    from hneurons.io import write_json, write_parquet
    from tiny import make_model, make_tokenizer

    tok = make_tokenizer()
    model_dir = root / "models/llm/tiny/instruct"
    _sharpen(make_model("llama", vocab_size=len(tok))).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    write_json(model_dir / "fingerprint.json", {"fingerprint": "tiny-test"})
    write_parquet(root / "data/prepared/triviaqa.parquet", pa.Table.from_pylist(questions, schema=schema_for("triviaqa")))
    params = {
        "base": {"seed": 11, "threads": 1, "cache_dir": ".cache/hneurons"},
        "compute": {"families": {}, "device": "cpu", "dtype": "float32"},
        "sample": {"families": {"tiny": {}}, "dataset": "triviaqa", "n_questions": None,
                   "prompt": "{question} Respond with the answer only, without any explanation.",
                   "n_samples": 3,
                   "decoding": {"temperature": temperature, "top_k": 50, "top_p": 0.9, "max_new_tokens": 5},
                   "early_stop_after": [1], "lazy_majority": True, "min_agreement": 1.0, "max_per_class": None,
                   "splits": {"train": 0.5, "validation": 0.25, "test": 0.25}, "batch_size": 4,
                   "judge": {"kind": "rule"}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _stage_questions(model, tok) -> list[dict]:
    """8 questions; the aliases of q0, q2, q4, q6 are the model's own greedy answer (faithful at T=0)."""
    questions = [f"{q} ({i})" for i, q in enumerate(QUESTIONS * 2)]
    prompts = [chat_prompt_ids(tok, RunConfig().prompt_template.format(question=q)) for q in questions]
    greedy = generate(model, tok, prompts, DecodingSettings(temperature=0, max_new_tokens=5), None, batch_size=8)
    return [{"example_id": f"tc_{i}", "question": q,
             "answers": [tok.decode(g, skip_special_tokens=True)] if i % 2 == 0 else ["zzzz unmatched"]}
            for i, (q, g) in enumerate(zip(questions, greedy))]


def _run_stage(root: Path, monkeypatch) -> None:
    from stages import sample as stage

    monkeypatch.chdir(root)
    stage.main(["tiny"])


def test_sample_stage_is_deterministic_and_resumes(model, tok, tmp_path, monkeypatch):
    questions = _stage_questions(model, tok)
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        _write_stage_workspace(root, questions)
    _run_stage(first, monkeypatch)
    out = Path("data/samples/tiny/triviaqa.parquet")
    metrics = Path("reports/sample/tiny/metrics.json")
    # simulate an interrupted run: only some batches reached the cache before the crash
    shutil.copytree(first / ".cache", second / ".cache")
    cached = sorted((second / ".cache/hneurons/sample/tiny").iterdir())
    assert len(cached) >= 2
    for path in cached[::2]:
        path.unlink()
    _run_stage(second, monkeypatch)
    assert (first / out).read_bytes() == (second / out).read_bytes()
    assert (first / metrics).read_bytes() == (second / metrics).read_bytes()
    table = pq.read_table(first / out)
    meta = yaml.safe_load(table.schema.metadata[b"hneurons"])
    assert meta["model_fingerprint"] == "tiny-test" and meta["judge"] == "rule"
    assert meta["decoding"]["n_samples"] == 3 and meta["counts"]["selected_per_class"] == 4
    assert str(tmp_path) not in (first / out).read_bytes().decode("latin-1")
    rows = table.to_pydict()
    reps = [i for i, r in enumerate(rows["representative"]) if r]
    assert sorted(rows["label"][i] for i in reps) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert all(rows["split"][i] in ("train", "validation", "test") for i in reps)


def test_sample_stage_bad_input(model, tok, tmp_path, monkeypatch):
    root = tmp_path / "w"
    _write_stage_workspace(root, [{"example_id": "x", "question": "Who?", "answers": []}])
    with pytest.raises(HNeuronsError, match="no question has answers"):
        _run_stage(root, monkeypatch)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for key, value in (("decoding.temperature", -1), ("n_samples", 0)):
        bad = yaml.safe_load(yaml.safe_dump(params))
        section, name = (bad["sample"]["decoding"], "temperature") if "." in key else (bad["sample"], key)
        section[name] = value
        (root / "params.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(HNeuronsError, match=rf"^sample\.{key}"):
            _run_stage(root, monkeypatch)
    # only hallucinated questions: no balanced set, a one-line error, the sampled batches stay cached
    _write_stage_workspace(root, [{"example_id": f"x{i}", "question": q, "answers": ["zzzz"]}
                                  for i, q in enumerate(QUESTIONS)])
    with pytest.raises(HNeuronsError, match="no balanced set"):
        _run_stage(root, monkeypatch)
    # an LLM judge whose endpoint is down: one line naming the param, before any sampling
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sample"]["judge"] = {"kind": "llm", "base_url": f"http://127.0.0.1:{port}/v1", "model": "m"}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(HNeuronsError, match=r"^sample\.judge\.base_url=.*unreachable"):
        _run_stage(root, monkeypatch)
    assert list((root / ".cache/hneurons/sample/tiny").iterdir())


def _two_faithful_six_hallucinated(model, tok):
    """8 questions, greedy 3-sample settings; aliases = the model's own answer for q1 and q4 only."""
    settings = DecodingSettings(n_samples=3, temperature=0, max_new_tokens=4)
    questions = [f"{q} ({i})" for i, q in enumerate(QUESTIONS * 2)]
    prompts = [chat_prompt_ids(tok, RunConfig().prompt_template.format(question=q)) for q in questions]
    texts = [tok.decode(g, skip_special_tokens=True) for g in
             generate(model, tok, prompts, settings, None, batch_size=8)]
    answers = [[texts[i]] if i in (1, 4) else ["zzzz unmatched"] for i in range(8)]
    return settings, [f"q{i}" for i in range(8)], questions, answers


def test_lazy_majority_completes_only_what_the_balance_needs(model, tok):
    settings, ids, questions, answers = _two_faithful_six_hallucinated(model, tok)
    full = run_consistency(TransformersBackend(model, tok), tok, ids, questions, answers,
                           RunConfig(settings=settings, seed=3, batch_size=2), RuleJudge())
    lazy = run_consistency(TransformersBackend(model, tok), tok, ids, questions, answers,
                           RunConfig(settings=settings, seed=3, batch_size=2, early_stop_after=(1,),
                                     lazy_majority=True), RuleJudge())
    full_table = full.table.to_pydict()
    pool = sum(1 for i, c, r in zip(full_table["sample_index"], full_table["correct"], full_table["refusal"])
               if i == 0 and not c and not r)  # first sample wrong without refusal: can only be hallucinated
    assert full.counts["consistent"]["faithful"] == 2 and full.counts["consistent"]["hallucinated"] >= 4
    assert lazy.counts["consistent"] == {"faithful": 2, "hallucinated": 2}
    info = lazy.metrics["lazy_majority"]
    assert info["class"] == "hallucinated" and info["pool"] == pool and 2 <= info["completed"] < pool
    assert lazy.counts["rows"] == 8 + 2 * (2 + info["completed"])  # first round for all, the rest for a few
    assert lazy.counts["selected_per_class"] == full.counts["selected_per_class"] == 2
    lazy_table = lazy.table.to_pydict()
    selected = {e for e, lab in zip(lazy_table["example_id"], lazy_table["label"]) if lab == 0}
    assert selected == {"q1", "q4"}


def test_lazy_pool_is_reread_at_later_checkpoints_when_one_sample_rules_nothing_out(model, tok):
    """min_agreement 2/3: a first wrong sample still allows 'faithful', so the pool fills after sample 2."""
    settings, ids, questions, answers = _two_faithful_six_hallucinated(model, tok)
    config = dict(settings=settings, seed=3, batch_size=2, min_agreement=0.6)
    full = run_consistency(TransformersBackend(model, tok), tok, ids, questions, answers, RunConfig(**config),
                           RuleJudge())
    lazy = run_consistency(TransformersBackend(model, tok), tok, ids, questions, answers,
                           RunConfig(**config, early_stop_after=(1, 2), lazy_majority=True), RuleJudge())
    assert full.counts["rows"] == 24
    assert lazy.counts["consistent"] == {"faithful": 2, "hallucinated": 2}
    info = lazy.metrics["lazy_majority"]
    full_table = full.table.to_pydict()
    pool = sum(1 for i, c, r in zip(full_table["sample_index"], full_table["correct"], full_table["refusal"])
               if i == 0 and not c and not r)  # greedy: every sample wrong without refusal -> joins after sample 2
    assert info["class"] == "hallucinated" and info["pool"] == pool >= 4 and info["completed"] == 2
    assert lazy.counts["rows"] == 8 + 8 + 2 + 2   # rounds 1-2 for all, round 3 for the 2 faithful + 2 from the pool
    for result in (full, lazy):
        table = result.table.to_pydict()
        assert {e for e, lab in zip(table["example_id"], table["label"]) if lab == 0} == {"q1", "q4"}
