"""Detection generalization (paper §5, Table 1): judge one sampled response per question,
balance, read out answer-span CETT and score it with an unchanged probe and its baselines.

Labels: 1 = hallucinated, 0 = faithful, -1 = dropped (``reason`` says why).

- QA sets (TriviaQA, NQ-Open, BioASQ): the rule judge (:class:`hneurons.judge.RuleJudge`,
  whole-word alias match, aliases inside the question ignored; BioASQ:
  :class:`hneurons.bio_judge.BioRuleJudge`). Correct -> faithful, wrong -> hallucinated;
  refusals, empty responses and wrong replies that only repeat the question are dropped (the
  probe was trained without refusals, paper §2).
- NonExist (fabricated entities, no reference answer): :func:`is_abstention` -> faithful
  (an "I don't know", "does not exist", "not a real ...", "no information" reply),
  any other non-empty reply -> hallucinated (a confident answer about something that
  does not exist), as is an abstention followed by a claim about the entity
  (``hedge_then_claim``). Refusals about the assistant or the answer format, not the
  entity ("as a chatbot, I don't have the ability"), are dropped (``generic_refusal``), like
  the QA sets' refusals; so are empty responses. The paper does not define the faithful
  class of NonExist (paper.md §9 #12); this follows its suggested default.

Answer span (paper: GPT-4o span; here the probe's own span rule, read from the training
activations' metadata): QA faithful rows use the matched alias, every other row
(hallucinated QA rows, both NonExist classes) its whole content, so a NonExist
abstention's "answer tokens" are the abstention itself (paper.md §9 #12).

Scores: the H-Neuron probe's probability (accuracy at 0.5, as the authors'
``model.predict``; AUROC threshold-free), random-neuron probes (:func:`hneurons.probe_baselines.random_baselines`,
trained on the probe's own training rows) and the length-only probe (:func:`length_probe_scores`).
The shared pieces used by the origin stage too are :func:`answer_features` and
:func:`probe_training_rows`. The stage's steps per dataset are in :mod:`hneurons.detect_run`, Table 1
and the output files in :mod:`hneurons.detect_report`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons.bio_judge import BioRuleJudge
from hneurons.errors import HNeuronsError
from hneurons.judge import Judge, RuleJudge
from hneurons.refusal import _REFUSAL_RE as _REFUSAL_SEARCH
from hneurons.refusal import is_refusal

DATASETS = ("triviaqa", "nq_open", "bioasq", "nonexist")
QA_DATASETS = ("triviaqa", "nq_open", "bioasq")
FAITHFUL, HALLUCINATED, DROPPED = 0, 1, -1
CLASS_NAMES = {FAITHFUL: "faithful", HALLUCINATED: "hallucinated"}
TABLE_METRICS = ("accuracy", "auroc")

# ---------------------------------------------------------------- judging

# Abstention phrases beyond refusal.is_refusal: the entity is said not to exist / not to be known.
_ABSTAIN_PATTERNS = [
    r"\b(?:does|do|did) ?n[o']t (?:seem to |appear to )?exist\b", r"\bnon-?existent\b", r"\bno longer exists?\b",
    r"\bnot (?:a )?(?:real|known|recogni[sz]ed|registered|an? (?:actual|existing|real))\b",
    r"\bisn'?t (?:a )?(?:real|known|recogni[sz]ed)\b", r"\bfictional\b", r"\bfictitious\b", r"\bmade[- ]up\b(?! of)",
    r"\bno (?:such|record|records|information|data|evidence|mention)\b", r"\bnot familiar\b",
    r"\bnot (?:able|aware)\b", r"\bunfamiliar\b", r"\bcan ?not (?:find|locate|identify)\b",
    r"\bcould ?n[o']t (?:find|locate|identify)\b", r"\bnot (?:been )?documented\b",
    # "... unknown" as a predicate, not "an unknown cure"
    r"\b(?:is|are|was|were|remains?|still|currently|largely|as yet) unknown\b", r"\bunknown to\b",
    r"\bhypothetical\b", r"\bimaginary\b", r"\bthere (?:is|are) no\b",
]
_ABSTAIN_RE = re.compile("|".join(_ABSTAIN_PATTERNS))
# A hedge that goes on to answer anyway ("not known for sure, but it was approved in 2017") is an answer.
_HEDGE_THEN_ANSWER_RE = re.compile(
    r"\b(?:not (?:known|sure|certain)|(?:currently |still )?unknown|uncertain|unsure|"
    r"no (?:specific |available |definitive )?(?:information|data|details))\b[^.;]*?\b(?:but|however|other than)\b")
_WORD_RE = re.compile(r"[^\W_]+")


# "I'm sorry for the confusion", "I apologize for any misunderstanding": filler, not a refusal.
_APOLOGY_RE = re.compile(r"\b(?:i'?m|i am) (?:so |very )?sorry (?:for|about)\b[^.,;!?]*"
                         r"|\bi apologi[sz]e (?:for|about)\b[^.,;!?]*")
_SENTENCE_RE = re.compile(r"(?<=[.!?])(?<!\b[^\W\d_]\.)\s+|\n+")  # not after an initial ("B. minima")


# Leading sentences that are only an interjection ("Awesome!", "No, no.") are skipped.
_INTERJECTIONS = frozenset(("no", "yes", "sure", "ok", "okay", "oh", "hmm", "well", "awesome", "great", "hi", "hello",
                            "certainly", "absolutely", "sorry", "oops"))


def _first_sentence(response: str) -> str:
    """The reply's first sentence with words (lowercase, apostrophes plain, apologies for confusion skipped,
    a leading interjection-only sentence skipped)."""
    text = _APOLOGY_RE.sub(" ", response.lower().replace("\u2019", "'").replace("\u2018", "'"))
    sentences = [part for part in _SENTENCE_RE.split(text.strip()) if _WORD_RE.search(part)]
    while len(sentences) > 1 and set(_WORD_RE.findall(sentences[0])) <= _INTERJECTIONS:
        sentences.pop(0)
    return sentences[0] if sentences else ""


def _abstains(text: str) -> bool:
    hedged = _HEDGE_THEN_ANSWER_RE.search(text)
    if hedged:
        text = text[:hedged.start()] + text[hedged.end():]
    return is_refusal(text) or bool(_ABSTAIN_RE.search(text))


def is_abstention(response: str) -> bool:
    """True if a reply about a (fabricated) entity declines to answer or says it does not exist.

    Covers :func:`hneurons.refusal.is_refusal` (refusals, "I don't know", hedges) plus
    "does not exist", "not a real ...", "fictional", "no information/record", "not familiar",
    in the reply's **first sentence** (with words; a leading "Awesome!" / "No, no." is skipped):
    a reply that opens with a claim and hedges later ("The most common side effect is bleeding.
    However, the mechanism is unknown.") answers.
    Apologies for confusion or misunderstanding are filler and are skipped. A hedge followed in
    the same sentence by "but"/"however" ("not known for certain, but it is believed to ...") is
    not an abstention: it answers anyway. An empty reply counts as an abstention here;
    :func:`judge_nonexist` drops it first. :func:`judge_nonexist` further tells abstentions
    about the entity from generic refusals (:func:`is_generic_refusal`) and from abstentions
    followed by a claim (:func:`claims_after_abstaining`).
    """
    return _abstains(_first_sentence(response))


# A refusal about the assistant or the answer format, not about the entity ("as a chatbot, I don't have the
# ability", "cannot be answered without explanation", "I'm not capable of creating ...").
_GENERIC_REFUSAL_RE = re.compile(
    r"\bas an? (?:[\w-]+ ){0,3}(?:ai|chatbot|assistant|language model|bot)\b|"
    r"\b(?:i'?m|i am) (?:not |just )?(?:an? )?(?:[\w-]+ ){0,2}(?:ai|chatbot|language model)\b|"
    r"\b(?:don'?t|do not|doesn'?t|does not) have (?:the )?(?:ability|capability|capacity|capabilities)\b|"
    r"\bnot (?:equipped|capable|designed|programmed) to\b|\b(?:i'?m|i am) designed to\b|"
    r"\bwithout (?:any |an |further |more |an additional )?explanations?\b")
# What a reply that does not know about the entity never goes on to say: what the entity is, belongs to,
# causes or where it grows ("There is no disease caused by X, a bacterium that causes ...", "No answer
# given. X was initially discovered to belong to the family Galeridae.").
_CLAIM_RE = re.compile(
    r"\b(?:it|they|this \w+) (?:is|was|are|were) (?:an?|the) (?!\w+ (?:that|which) (?:does|do) not)|"
    r"\b(?:that|which|it|they) (?:causes?|belongs? to|grows?|lives?|is native|are native|is found|are found)\b|"
    r"\bbelongs? to (?:the )?(?:family|genus|order|class)\b|\bnative to\b|\bgrows? (?:in|on)\b|"
    r"\b(?:was|were) (?:first |initially |originally )?(?:discovered|described|found|approved|manufactured|"
    r"developed|identified|isolated)\b|\bdates? back to\b|\bdate back to\b|\brecorded sightings?\b|"
    r"\b(?:can|may|should) (?:be )?(?:treated|used) (?:with|for|to)\b|\bincludes? mentioning\b")


def is_generic_refusal(response: str) -> bool:
    """True when the reply's first sentence (as :func:`is_abstention` reads it) refuses about the assistant or
    the answer format (:data:`_GENERIC_REFUSAL_RE`: "as a chatbot", "I don't have the ability", "without
    explanation") and says nothing about the entity (no "does not exist", "no information", "unknown", ...)."""
    first = _first_sentence(response)
    return bool(_GENERIC_REFUSAL_RE.search(first)) and not _ABSTAIN_RE.search(first)


def claims_after_abstaining(response: str) -> bool:
    """True when an abstaining reply goes on to claim something about the entity (:data:`_CLAIM_RE`: what it
    is, belongs to, causes, where it grows or when it was discovered) after the first sentence's abstention,
    in a clause that does not itself abstain ("There is no disease caused by X, a bacterium that causes ...";
    "I can't provide direct scientific data, but ... it grows in the northern ...")."""
    text = _APOLOGY_RE.sub(" ", response.lower().replace("\u2019", "'").replace("\u2018", "'"))
    first = _first_sentence(response)
    at = text.find(first)
    start = at if at >= 0 else 0
    cue = _ABSTAIN_RE.search(first) or _REFUSAL_SEARCH.search(first)
    if cue is not None:
        start += cue.end()
    for clause in re.split(r"[.;!?]\s|\n", text[start:]):
        if _CLAIM_RE.search(clause) and not _abstains(clause):
            return True
    return False


@dataclass(frozen=True)
class Verdict:
    """One response's detection label (1 / 0 / -1) and why: correct, wrong, refusal, empty, repeats_question,
    abstention, hedge_then_claim, generic_refusal, confident_answer."""

    label: int
    reason: str

    @property
    def correct(self) -> bool:
        """True when the span rule should look for the credited alias (QA faithful rows only)."""
        return self.reason == "correct"


def _empty(response: str) -> bool:
    return not _WORD_RE.search(response)


def qa_judge(dataset: str) -> Judge:
    """The alias judge of a QA dataset: :class:`hneurons.bio_judge.BioRuleJudge` for ``bioasq``
    (abbreviations, word order, spelling variants, lists with wrong items), else
    :class:`hneurons.judge.RuleJudge`."""
    return BioRuleJudge() if dataset == "bioasq" else RuleJudge()


def judge_qa(question: str, response: str, aliases: Sequence[str], judge: Judge | None = None) -> Verdict:
    """Alias judge for TriviaQA / NQ-Open / BioASQ (default RuleJudge): correct -> 0, wrong -> 1,
    refusal / empty / a wrong reply made only of the question's words (:func:`repeats_question`) -> dropped."""
    if _empty(response):
        return Verdict(DROPPED, "empty")
    verdict = (judge or RuleJudge()).judge(question, response, list(aliases))
    if verdict.refusal:
        return Verdict(DROPPED, "refusal")
    if verdict.correct:
        return Verdict(FAITHFUL, "correct")
    if repeats_question(question, response):
        return Verdict(DROPPED, "repeats_question")
    return Verdict(HALLUCINATED, "wrong")


# Words that add nothing to a copy of the question ("The answer is: <question>").
_FILLER = frozenset(("answer", "is", "are", "was", "were", "it", "this", "that", "question", "the", "an", "of", "in",
                     "to", "and", "s"))


def repeats_question(question: str, response: str) -> bool:
    """True when the response copies the question and adds nothing: every word of it (but filler
    such as "the answer is") is a word of the question, and it holds more than half of the
    question's words ("In which country was Emilio Estevez born?"). Picking an entity out of the
    question ("Mick Jagger") is an answer, not a copy."""
    asked = {w.lower() for w in _WORD_RE.findall(question)} - _FILLER
    said = {w.lower() for w in _WORD_RE.findall(response)} - _FILLER
    return bool(said) and said <= asked and len(said) > len(asked) / 2


def judge_nonexist(response: str) -> Verdict:
    """NonExist judge: abstention about the entity -> 0 (faithful, "abstention"); an abstention followed by a
    claim about the entity -> 1 ("hedge_then_claim", :func:`claims_after_abstaining`); a refusal about the
    assistant or the answer format, not the entity -> dropped ("generic_refusal", :func:`is_generic_refusal`,
    like the QA sets' refusals); any other reply -> 1 ("confident_answer"); empty -> dropped."""
    if _empty(response):
        return Verdict(DROPPED, "empty")
    if is_abstention(response):
        if claims_after_abstaining(response):
            return Verdict(HALLUCINATED, "hedge_then_claim")
        if is_generic_refusal(response):
            return Verdict(DROPPED, "generic_refusal")
        return Verdict(FAITHFUL, "abstention")
    if is_generic_refusal(response):
        return Verdict(DROPPED, "generic_refusal")
    return Verdict(HALLUCINATED, "confident_answer")


def judge_response(dataset: str, question: str, response: str, aliases: Sequence[str]) -> Verdict:
    """:func:`judge_nonexist` for ``nonexist``, else :func:`judge_qa` with :func:`qa_judge`
    (BioRuleJudge for bioasq)."""
    if dataset == "nonexist":
        return judge_nonexist(response)
    return judge_qa(question, response, aliases, qa_judge(dataset))


def class_counts(labels: Sequence[int], reasons: Sequence[str]) -> dict[str, Any]:
    """n per class and dropped examples by reason."""
    labels = np.asarray(labels)
    dropped: dict[str, int] = {}
    for label, reason in zip(labels, reasons):
        if label == DROPPED:
            dropped[reason] = dropped.get(reason, 0) + 1
    return {"n_questions": int(labels.size), "n_faithful": int(np.sum(labels == FAITHFUL)),
            "n_hallucinated": int(np.sum(labels == HALLUCINATED)), "dropped": dict(sorted(dropped.items()))}


def check_both_classes(dataset: str, counts: Mapping[str, Any], stage: str = "after judging") -> None:
    """One-line HNeuronsError naming the dataset, the empty class and the counts."""
    for label, name in CLASS_NAMES.items():
        if counts[f"n_{name}"] == 0:
            raise HNeuronsError(
                f"detect {dataset}: no {name} responses {stage} (faithful {counts['n_faithful']}, hallucinated "
                f"{counts['n_hallucinated']}, dropped {counts.get('dropped') or {}}); ask more questions "
                f"(detect.n_questions.{dataset}) or drop {dataset} from detect.datasets")


def _class_agreement(pairs: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """n, agreement and per-class figures of (human, judge) label pairs."""
    n = len(pairs)
    out: dict[str, Any] = {"n": n, "n_agree": sum(h == j for h, j in pairs),
                           "agreement": sum(h == j for h, j in pairs) / n if n else float("nan")}
    for label, name in CLASS_NAMES.items():
        human = [j for h, j in pairs if h == label]
        judged = [h for h, j in pairs if j == label]
        out[name] = {"n_human": len(human), "n_judge": len(judged),
                     "recall": sum(j == label for j in human) / len(human) if human else float("nan"),
                     "precision": sum(h == label for h in judged) / len(judged) if judged else float("nan")}
    return out


def judge_agreement(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Agreement of :func:`judge_response` with hand labels.

    records: dicts with dataset, question, answers, response and ``label`` (the human
    label: 0 faithful, 1 hallucinated, -1 dropped). Returns n, n_agree, agreement (share),
    a confusion count keyed ``human=<l>/judge=<l>``, per class ``faithful`` / ``hallucinated``:
    n_human, n_judge, recall (share of the human class the judge gives that label) and
    precision (share of the judge's label the human agrees with), and the same per dataset
    under ``by_dataset``.
    """
    confusion: dict[str, int] = {}
    pairs: dict[str, list[tuple[int, int]]] = {}
    for record in records:
        got = judge_response(record["dataset"], record["question"], record["response"], record.get("answers") or [])
        human = int(record["label"])
        key = f"human={human}/judge={got.label}"
        confusion[key] = confusion.get(key, 0) + 1
        pairs.setdefault(record["dataset"], []).append((human, got.label))
    out = _class_agreement([p for group in pairs.values() for p in group])
    out["confusion"] = dict(sorted(confusion.items()))
    out["by_dataset"] = {name: _class_agreement(group) for name, group in sorted(pairs.items())}
    return out


def read_fixture(path: str | Path) -> list[dict[str, Any]]:
    """Hand-labelled responses from a JSONL file (one object per line)."""
    import json

    path = Path(path)
    if not path.is_file():
        raise HNeuronsError(f"{path}: judge fixture not found")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# ---------------------------------------------------------------- features (shared with origin)


@dataclass
class TrainingRows:
    """The probe's training rows: X float32[n, D] as a lazy column reader (``X[:, cols]`` decodes the
    training parts and keeps those columns; hneurons.activation_rows.ActivationColumns), y int8[n] (probe
    labels), weight float64[n] (1 where the labelling uses the row) and the activation frame (region,
    label, n_tokens, ...)."""

    X: Any
    y: np.ndarray
    weight: np.ndarray
    frame: pd.DataFrame


def probe_training_rows(acts: str | Path, labelling: str) -> TrainingRows:
    """Training-split rows of an activation set with the probe's labelling (3-vs-1 / 1-vs-1); no cett is
    decoded until columns are asked for."""
    from hneurons.activation_rows import ActivationColumns
    from hneurons.activations import read_activation_frame
    from hneurons.probe import training_labels

    frame = read_activation_frame(acts, {"split": "train"})
    keep, y = training_labels(frame["region"].to_numpy(), frame["label"].to_numpy(), labelling)
    X = ActivationColumns(acts, {"split": "train"}, n_rows=len(frame))
    return TrainingRows(X, y, keep.astype(np.float64), frame.reset_index(drop=True))


def answer_features(model, tokenizer, records: Sequence[Mapping[str, Any]], dataset: str, meta: Mapping[str, Any],
                    batch_size: int) -> tuple[np.ndarray, pd.DataFrame, dict[str, int]]:
    """Answer-span CETT of judged responses with the probe's span rule, region variant and readout.

    records: dicts with example_id, label, prompt_ids, response_ids, correct, answers
    (and question). meta: the training activations' metadata (span_rule, region_variant,
    readout). Returns (X float32[n, D], frame of the answer rows: example_id, label,
    n_tokens, response_tokens, ...; span drop counts by reason).
    """
    from hneurons import cett, spans

    if meta.get("span_rule") == "annotation":
        raise HNeuronsError("extract.span_rule=annotation: new responses have no annotations; "
                            "the detect/origin stages need span_rule default or content")
    examples, dropped = spans.align_answer_spans(list(records), tokenizer, meta["span_rule"])
    plan = cett.plan_rows(examples, meta["region_variant"])
    if not examples:
        empty = pd.DataFrame(columns=list(cett.META_COLUMNS))
        return np.zeros((0, 0), dtype=np.float32), empty, dict(sorted(dropped.items()))
    blocks = cett.extract_activations(model, plan, dataset=dataset, readout=meta["readout"],
                                      batch_size=batch_size, pad_id=tokenizer.pad_token_id or 0)
    X = None
    frames, row = [], 0
    for rows, features in blocks:
        if X is None:  # answer rows: one per example with a non-empty answer region
            X = np.empty((int((plan.n_tokens[:, 0] > 0).sum()), features.shape[1]), dtype=np.float32)
        answer = rows["region"].to_numpy() == "answer"
        n = int(answer.sum())
        X[row:row + n] = features[answer]
        row += n
        frames.append(rows[answer])
    frame = pd.concat(frames, ignore_index=True)
    return X[:row], frame, dict(sorted(dropped.items()))


# ---------------------------------------------------------------- baselines and metrics

LENGTH_VARIANTS = {"response_tokens": ("response_tokens",),
                   "response_and_answer_tokens": ("response_tokens", "n_tokens")}


def length_features(frame: pd.DataFrame, variant: str) -> np.ndarray:
    """log(1 + token counts) of a length-only probe: float64[n, k] (``LENGTH_VARIANTS``).

    ``response_tokens``: the response length; ``response_and_answer_tokens``: also the
    answer span's length (``n_tokens`` of an answer row). Same features as the probe stage's
    length baseline.
    """
    return np.log1p(frame[list(LENGTH_VARIANTS[variant])].to_numpy(dtype=np.float64))


def length_probe_scores(train: pd.DataFrame, evaluate: pd.DataFrame, C: float) -> dict[str, np.ndarray]:
    """P(hallucinated) from length-only probes, one per variant: {variant: float64[n_eval]}.

    Trained 1-vs-1 on the training frame's answer rows (label = response label), like the
    probe stage's length baseline; evaluated on ``evaluate`` (answer rows).
    """
    from hneurons.probe_baselines import dense_probe_scores

    weight = (train["region"].to_numpy() == "answer").astype(np.float64)
    labels = train["label"].to_numpy()
    return {variant: dense_probe_scores(length_features(train, variant), labels, length_features(evaluate, variant),
                                        C, weight)
            for variant in LENGTH_VARIANTS}


def detection_metrics(y: np.ndarray, probe_scores: np.ndarray, random_runs, length_scores: Mapping[str, np.ndarray],
                      n_boot: int, seed: int) -> dict[str, Any]:
    """Per-dataset metrics: H-Neuron probe (accuracy, AUROC, bootstrap 95% CIs), random-neuron
    probes (mean +/- sd over seeds, per seed) and length-only probes.

    y: int[n] (1 = hallucinated); probe_scores: P(y=1) float[n]; random_runs: list of
    hneurons.probe_baselines.BaselineRun; length_scores: {variant: float[n]}.
    """
    from hneurons.stats import detection_summary, mean_sd

    summary = lambda scores: detection_summary(y, scores, n_boot, seed)  # noqa: E731
    per_seed = [{"seed": run.seed, **summary(run.scores)} for run in random_runs]
    n_neurons = int(random_runs[0].neurons.size) if random_runs else 0
    return {
        "h_neurons": summary(probe_scores),
        "random": {"n_seeds": len(per_seed), "n_neurons": n_neurons,
                   "accuracy": mean_sd([s["accuracy"] for s in per_seed]),
                   "auroc": mean_sd([s["auroc"] for s in per_seed]),
                   "per_seed": [{k: s[k] for k in ("seed", "accuracy", "auroc")} for s in per_seed]},
        "length": {variant: summary(scores) for variant, scores in length_scores.items()},
    }


# ---------------------------------------------------------------- adaptive stopping


def enough_per_class(labels: Sequence[int], target: int | None) -> bool:
    """Whether both classes hold at least ``target`` rows (never, when ``target`` is None)."""
    if target is None:
        return False
    labels = np.asarray(labels)
    return bool(np.sum(labels == FAITHFUL) >= target and np.sum(labels == HALLUCINATED) >= target)


def judge_until_full(questions: Sequence[Mapping[str, Any]], run_chunk, chunk_size: int, target: int | None,
                     desc: str = "detect") -> list[dict[str, Any]]:
    """Judged rows of the first questions, asked in order in chunks of ``chunk_size`` until both
    classes hold ``target`` rows (all questions when ``target`` is None or never reached).

    run_chunk(list of questions) -> list of row dicts with a ``label`` (1 / 0 / -1). Rows depend
    only on their question (per-question seeds), so the result is a prefix of asking everything.
    """
    from tqdm import tqdm

    if chunk_size < 1:
        raise HNeuronsError(f"judge_until_full: chunk_size must be >= 1 (got {chunk_size})")
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(questions), desc=desc, unit="q")
    for start in range(0, len(questions), chunk_size):
        rows.extend(run_chunk(list(questions[start:start + chunk_size])))
        labels = [r["label"] for r in rows]
        bar.update(min(chunk_size, len(questions) - start))
        bar.set_postfix(faithful=labels.count(FAITHFUL), hallucinated=labels.count(HALLUCINATED))
        if enough_per_class(labels, target):
            break
    bar.close()
    return rows
