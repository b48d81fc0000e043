"""Judge tests: normalization, whole-word alias spans, refusals, the LLM judge (fake local server),
and question-level labels, representatives, balanced selection and splits."""

import json
from pathlib import Path

import pytest

from fake_openai import FakeEndpoint
from hneurons import data
from hneurons.errors import HNeuronsError
from hneurons.judge import (FAITHFUL, HALLUCINATED, UNLABELLED, LLMJudge, RuleJudge, assign_splits,
                            check_min_agreement, consistency_label, find_alias, is_refusal, normalize,
                            parse_verdict, representative_index, select_balanced, still_labelable)

CASES = [json.loads(line) for line in
         (Path(__file__).parent / "fixtures" / "judge_cases.jsonl").read_text().splitlines() if line.strip()]


def test_normalize_rules():
    assert normalize("The  Spirit_of-Ecstasy!") == "spirit of ecstasy"
    assert normalize("A cat, an owl & THE dog.") == "cat owl dog"
    assert normalize("") == ""
    assert data.normalize_answer is normalize  # one implementation


@pytest.mark.parametrize("case", CASES, ids=[c["response"][:30] for c in CASES])
def test_rule_judge_cases(case):
    verdict = RuleJudge().judge("q?", case["response"], case["aliases"])
    assert verdict.correct == case["correct"]
    assert verdict.refusal == case["refusal"]
    span = find_alias(case["response"], case["aliases"])
    assert (None if span is None else case["response"][span[0]:span[1]]) == case["span"]
    assert verdict.judge == "rule"


def test_find_alias_prefers_earliest_then_longest():
    text = "Paris Hilton lives in Paris, France."
    assert find_alias(text, ["France", "Paris"]) == (0, 5)
    assert find_alias(text, ["Paris", "Paris Hilton"]) == (0, 12)
    assert find_alias(text, ["Paris France"]) == (22, 35)  # punctuation between words is skipped
    assert find_alias(text, ["the", ""]) is None            # aliases normalizing to nothing never match


def test_aliases_in_the_question_do_not_count():
    aliases = ["Freetown", "capital of Sierra Leone"]
    question = "What is the capital of Sierra Leone?"
    judge = RuleJudge()
    assert not judge.judge(question, "The capital of Sierra Leone is Kisena.", aliases).correct
    right = judge.judge(question, "The capital of Sierra Leone is Freetown.", aliases)
    assert right.correct and right.span == (31, 39)
    assert find_alias("The capital of Sierra Leone is Freetown.", aliases) == (4, 27)  # without the question
    # either/or questions name their answer: aliases are kept
    assert judge.judge("Which is further north, Corsica or Sardinia?", "Corsica.", ["Corsica"]).correct
    # every alias in the question: all kept
    assert judge.judge("Is it Paris?", "Paris", ["Paris"]).correct


def test_refusal_detector():
    assert is_refusal("I do not know the answer.")
    assert is_refusal("I'm not sure.")
    assert is_refusal("")
    assert not is_refusal("The Unknown Soldier")
    assert not is_refusal("Canterbury")  # 'can' inside a word is not "can't"
    assert not is_refusal('The song "Can\'t Fight This Feeling" by REO Speedwagon.')
    assert is_refusal("I can't answer that.")
    assert is_refusal("The answer is not provided.")


def test_parse_verdict():
    assert parse_verdict("t") is True and parse_verdict(" True.") is True
    assert parse_verdict("f") is False and parse_verdict("Incorrect") is False
    assert parse_verdict("maybe") is None and parse_verdict("") is None


def _alias_verdict(prompt: str) -> str:
    """'t' when a correct answer occurs in the judged response (the issue-3 correctness prompt)."""
    if "Response: " not in prompt:
        return "t"
    response = prompt.split("Response: ")[1].split("\n")[0]
    answers = json.loads(prompt.split("Correct Answers: ")[1].split("\n")[0].replace("'", '"'))
    return "t" if any(a.lower() in response.lower() for a in answers) else "f"


@pytest.fixture()
def fake_server():
    with FakeEndpoint(_alias_verdict) as endpoint:
        yield endpoint


def test_llm_judge_against_fake_server(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-secret")
    judge = LLMJudge(fake_server.url, "fake-4o", api_key_env="FAKE_JUDGE_KEY")
    assert judge.name == "llm:fake-4o"
    right = judge.judge("Capital of France?", "It is Paris.", ["Paris"])
    wrong = judge.judge("Capital of France?", "Lyon", ["Paris"])
    again = judge.judge("Capital of France?", "It is Paris.", ["Paris"])  # memoized: no new request
    refused = judge.judge("Capital of France?", "I don't know", ["Paris"])  # pre-filter: no request
    assert (right.correct, wrong.correct, again.correct, refused.correct) == (True, False, True, False)
    assert refused.refusal and not right.refusal
    assert right.span == (6, 11) and right.judge == "llm:fake-4o"
    assert len(fake_server.seen) == 2
    judge.check()
    request = fake_server.seen[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-secret"
    assert request["body"]["temperature"] == 0 and request["body"]["model"] == "fake-4o"
    assert "Respond" not in request["body"]["messages"][0]["content"]
    assert "sk-secret" not in repr(vars(right))


def test_llm_judge_unreachable_endpoint_is_one_line_error():
    import socket

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    judge = LLMJudge(f"http://127.0.0.1:{port}/v1", "m", api_key="", retries=2, backoff=0.01,
                     timeout=2, where="sample.judge")
    with pytest.raises(HNeuronsError, match=r"^sample\.judge\.base_url=.*unreachable") as info:
        judge.judge("q?", "Paris", ["Paris"])
    assert "\n" not in str(info.value)
    with pytest.raises(HNeuronsError, match="unreachable"):
        judge.check()


def test_llm_judge_requires_endpoint_and_model():
    with pytest.raises(HNeuronsError, match="sample.judge.base_url"):
        LLMJudge("", "m", where="sample.judge")
    with pytest.raises(HNeuronsError, match="sample.judge.model"):
        LLMJudge("http://127.0.0.1:1/v1", "", where="sample.judge")


def test_consistency_labels_paper_rule_and_relaxed():
    all_right, all_wrong = [True] * 10, [False] * 10
    no_refusal = [False] * 10
    assert consistency_label(all_right, no_refusal) == FAITHFUL
    assert consistency_label(all_wrong, no_refusal) == HALLUCINATED
    assert consistency_label(all_wrong, [True] + [False] * 9) == UNLABELLED  # a refusal blocks "hallucinated"
    nine_right = [False] + [True] * 9
    assert consistency_label(nine_right, no_refusal) == UNLABELLED
    assert consistency_label(nine_right, no_refusal, 0.9) == FAITHFUL
    assert consistency_label([True] * 2 + [False] * 8, no_refusal, 0.8) == HALLUCINATED
    assert consistency_label([True] * 3 + [False] * 7, no_refusal, 0.8) == UNLABELLED
    assert consistency_label([], []) == UNLABELLED
    with pytest.raises(HNeuronsError, match="sample.min_agreement"):
        check_min_agreement(0.5, "sample.min_agreement")


def test_still_labelable_matches_full_label():
    import itertools

    for n, agreement in ((4, 1.0), (5, 0.8)):
        for correct in itertools.product([False, True], repeat=n):
            for refusal_at in [None] + list(range(n)):
                refusal = [i == refusal_at and not correct[i] for i in range(n)]
                full = consistency_label(correct, refusal, agreement)
                for k in range(n + 1):
                    if not still_labelable(correct[:k], refusal[:k], n, agreement):
                        assert full == UNLABELLED


def test_representative_is_most_frequent_normalized_answer():
    responses = ["Paris.", "Lyon", "paris", "The Paris", "Lyon"]
    assert representative_index(responses, [True] * 5, FAITHFUL) == 0
    assert representative_index(["Lyon", "Nice", "Nice."], [False] * 3, HALLUCINATED) == 1
    # relaxed agreement: only samples that agree with the label are candidates
    assert representative_index(["Lyon", "Lyon", "Paris"], [False, False, True], FAITHFUL) == 2
    assert representative_index(responses, [True] * 5, UNLABELLED) is None


def test_balanced_selection_and_disjoint_stratified_splits():
    labels = [FAITHFUL] * 30 + [HALLUCINATED] * 50 + [UNLABELLED] * 20
    ids = [f"q{i}" for i in range(len(labels))]
    mask = select_balanced(labels, None, seed=7)
    assert mask == select_balanced(labels, None, seed=7)
    assert sum(m for m, lab in zip(mask, labels) if lab == FAITHFUL) == 30
    assert sum(m for m, lab in zip(mask, labels) if lab == HALLUCINATED) == 30
    assert not any(m for m, lab in zip(mask, labels) if lab == UNLABELLED)
    assert sum(select_balanced(labels, 10, seed=7)) == 20
    splits = assign_splits(ids, labels, mask, {"train": 0.6, "validation": 0.2, "test": 0.2}, seed=7)
    for split, expected in (("train", 18), ("validation", 6), ("test", 6)):
        for cls in (FAITHFUL, HALLUCINATED):
            assert sum(s == split and lab == cls for s, lab in zip(splits, labels)) == expected
    assert all((s == "") == (not m) for s, m in zip(splits, mask))
    with pytest.raises(HNeuronsError, match="fractions"):
        assign_splits(ids, labels, mask, {"train": 0.7, "validation": 0.2, "test": 0.2}, seed=7)
