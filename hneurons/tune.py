"""Instruction-tune a base model into its instruct twin on CPU (paper §4 needs a
base/instruct pair; none with a matched base ships on PyPI, see tune-notes.md).

Instruction set (seeded, documented, disjoint from every evaluation question):

==========  ======================================================================
kind        source -> (user prompt, model response)
==========  ======================================================================
trivia      NQ-Open dev rows reserved for tuning (the caller passes them; params
            state the range) -> the question -> the first gold answer.
premise     FalseQA **train** rows with label 1 (false premise) -> the question ->
            the reference rebuttal.
refusal     AdvBench ``harmful_behaviors`` goals (not the 390 forbidden questions
            of the jailbreak evaluation) -> the goal -> one of REFUSALS.
abstain     Questions about made-up entities from :func:`made_up_entities` (a
            seeded pseudo-word generator of its own: different entity kinds,
            question templates and syllables from the NonExist set) -> one of
            ABSTENTIONS, each of which the refusal detector recognises.
==========  ======================================================================

Every prompt but a harmful request gets a seeded surface form (capitalized with
"?" or lower-case without; :func:`surface_form`), and any prompt, with seeded
probability ``suffix_share``, the paper's sampling suffix " Respond with the
answer only, without any explanation." (used by the sample stage), so neither
formatting nor the suffix tells the twin which behaviour is wanted.

Every candidate whose normalized question equals a question of an evaluation
set is dropped (``excluded``), and made-up names share no word with the
evaluation texts (NonExist entities included). Each kind is shuffled with the
seed; the first min(``n_check``, ``check_before_train``) items are held out for
the behaviour check, the next ``n_train`` are trained on, and the check takes the
rest of its ``n_check`` items from after the training block (see
:func:`build_instruction_set`).

Training: full fine-tuning with the input embeddings and LM head frozen (gives
per-neuron, full-rank drift; LoRA would confine each layer's change to rank r),
loss on the response tokens only (everything after the chat template's
generation prompt, end-of-turn included), AdamW, linear warm-up then constant
learning rate, gradient clipping, a fixed number of steps over seeded epoch
permutations, right-padded batches.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from hneurons.errors import HNeuronsError
from hneurons.judge import RuleJudge, is_refusal, normalize

KINDS = ("trivia", "premise", "refusal", "abstain")
SAMPLING_SUFFIX = " Respond with the answer only, without any explanation."
REFUSALS = (
    "I can't help with that.",
    "I can't help with that request, because it could cause real harm.",
    "Sorry, I cannot assist with this. It could hurt people.",
    "I won't help with that. I can't provide instructions that could be used to cause harm.",
)
ABSTENTIONS = (
    "I don't know of any {kind} called {name}; I have no information about it.",
    "I'm not aware of a {kind} named {name}, so I can't answer that.",
    "I have no record of a {kind} called {name}. It may not exist.",
    "I don't know. I have no information about a {kind} named {name}.",
)
# Made-up entity kinds and question templates (NonExist uses medicine/animal/plant/bacteria).
ENTITY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "novel": ("Who wrote the novel {name}?", "In which year was the novel {name} first published?",
              "What is the novel {name} about?"),
    "town": ("In which country is the town of {name}?", "What is the population of the town of {name}?",
             "Which river flows through the town of {name}?"),
    "composer": ("Which opera did the composer {name} write?", "Where was the composer {name} born?",
                 "When did the composer {name} die?"),
    "company": ("What does the company {name} manufacture?", "Where is the company {name} headquartered?",
                "Who founded the company {name}?"),
    "mountain": ("How high is the mountain {name}?", "Who first climbed the mountain {name}?",
                 "In which range is the mountain {name}?"),
    "painting": ("Who painted {name}?", "In which museum does the painting {name} hang?",
                 "When was the painting {name} completed?"),
}
_ONSETS = ("k", "v", "z", "m", "l", "r", "t", "sh", "kr", "vl", "zh", "n", "h", "j", "w", "y")
_NUCLEI = ("a", "e", "o", "u", "ei", "ou", "ay")
_CODAS = ("", "", "n", "k", "sh", "rd", "lt", "m")


@dataclass(frozen=True)
class Example:
    """One instruction pair: ``kind`` in KINDS, ``split`` 'train' or 'check'; ``answers`` are
    the gold aliases for trivia (empty otherwise)."""

    kind: str
    source_id: str
    prompt: str
    response: str
    answers: tuple[str, ...]
    split: str


# ------------------------------------------------------------------ instruction set

def pseudo_word(rng: random.Random, syllables: int) -> str:
    """A pronounceable made-up word of ``syllables`` onset+nucleus(+coda) syllables, capitalized."""
    parts = [rng.choice(_ONSETS) + rng.choice(_NUCLEI) + (rng.choice(_CODAS) if i == syllables - 1 else "")
             for i in range(syllables)]
    return "".join(parts).capitalize()


def _made_up_name(kind: str, rng: random.Random) -> str:
    if kind == "composer":
        return f"{pseudo_word(rng, 2)} {pseudo_word(rng, rng.choice((2, 3)))}"
    if kind in ("novel", "painting"):
        article = rng.choice(("The", "A"))
        return f"{article} {pseudo_word(rng, 2)} of {pseudo_word(rng, rng.choice((2, 3)))}"
    if kind == "mountain":
        return f"Mount {pseudo_word(rng, rng.choice((2, 3)))}"
    if kind == "company":
        return f"{pseudo_word(rng, rng.choice((2, 3)))} {rng.choice(('Industries', 'Systems', 'Works'))}"
    return pseudo_word(rng, rng.choice((2, 3)))


def made_up_entities(n: int, seed: int, forbidden_words: Iterable[str]) -> list[tuple[str, str, str]]:
    """``n`` distinct (kind, name, question) triples about entities made up here.

    No made-up word (lowercased) may be in ``forbidden_words`` (e.g. every word of
    the evaluation questions and NonExist entities); names are unique.
    """
    forbidden = {w.lower() for w in forbidden_words}
    fixed = {"the", "a", "of", "mount", "industries", "systems", "works"}
    rng = random.Random(seed)
    kinds = sorted(ENTITY_TEMPLATES)
    out, names = [], set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise HNeuronsError(f"could not make {n} distinct made-up entities")
        kind = kinds[len(out) % len(kinds)]
        name = _made_up_name(kind, rng)
        words = {w.lower() for w in name.split()} - fixed
        if name in names or words & forbidden:
            continue
        names.add(name)
        template = rng.choice(ENTITY_TEMPLATES[kind])
        out.append((kind, name, template.format(name=name)))
    return out


def text_words(texts: Iterable[str]) -> set[str]:
    """Lowercase alphabetic words of ``texts`` (for the made-up-name overlap check)."""
    words: set[str] = set()
    for text in texts:
        words.update(re.findall(r"[a-z]+", text.lower()))
    return words


def surface_form(text: str, rng: random.Random) -> str:
    """A seeded surface variant of a prompt, so casing and a final "?" carry no label.

    With probability 1/2: first letter upper-cased and, for a question without
    terminal punctuation, "?" appended (the FalseQA / made-up-entity style);
    otherwise: first letter lower-cased and a final "?" dropped (the NQ-Open
    style). Without this, a twin tuned on lower-case NQ trivia and well-formed
    abstention questions learned to abstain on every well-formed question.
    """
    core = text.strip()
    bare = core[:-1].rstrip() if core.endswith("?") else core
    if rng.random() < 0.5:
        return bare[:1].upper() + bare[1:] + ("" if bare[-1:] in ".!" else "?")
    return bare[:1].lower() + bare[1:]


def _candidates(trivia: Sequence[dict], premise: Sequence[dict], harmful: Sequence[dict],
                seed: int, suffix_share: float, n_abstain: int,
                forbidden_words: set[str]) -> dict[str, list[tuple[str, str, str, tuple[str, ...]]]]:
    """(source_id, prompt, response, answers) candidates per kind, before exclusion and selection.

    Every question prompt gets a :func:`surface_form` and, with probability
    ``suffix_share``, the sampling suffix (all kinds alike, so neither is a cue).
    """
    rng = random.Random(seed)

    def prompt_of(question: str, is_question: bool = True) -> str:
        form = surface_form(question, rng) if is_question else question
        return form + (SAMPLING_SUFFIX if rng.random() < suffix_share else "")

    out: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {}
    out["trivia"] = []
    for row in trivia:
        answers = tuple(a for a in row["answers"] if a and a.strip())
        if answers:
            out["trivia"].append((row["example_id"], prompt_of(row["question"]), answers[0].strip(), answers))
    out["premise"] = [(r["example_id"], prompt_of(r["question"]), r["answers"][0].strip(), ())
                      for r in premise if int(r.get("label", 1)) == 1 and r.get("split", "train") == "train"
                      and len(r["answers"]) and r["answers"][0].strip()]
    out["refusal"] = [(r["example_id"], prompt_of(r["question"], is_question=False), rng.choice(REFUSALS), ())
                      for r in harmful]
    out["abstain"] = []
    for index, (kind, name, question) in enumerate(made_up_entities(n_abstain, seed, forbidden_words)):
        response = rng.choice(ABSTENTIONS).format(kind=kind, name=name)
        out["abstain"].append((f"madeup_{index:04d}", prompt_of(question), response, ()))
    return out


def check_counts(n_check: int | dict[str, int], where: str = "tune.n_check") -> dict[str, int]:
    """Held-out check items per kind from one count or a mapping kind -> count (exactly the KINDS)."""
    if isinstance(n_check, dict):
        unknown = sorted(set(n_check) - set(KINDS))
        if unknown:
            raise HNeuronsError(f"{where}.{unknown[0]}: unknown kind (expected {', '.join(KINDS)})")
        missing = [kind for kind in KINDS if kind not in n_check]
        if missing:
            raise HNeuronsError(f"{where}: missing {', '.join(missing)} (expected keys {', '.join(KINDS)})")
        counts = dict(n_check)
    else:
        counts = {kind: n_check for kind in KINDS}
    for kind, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            suffix = f".{kind}" if isinstance(n_check, dict) else ""
            raise HNeuronsError(f"{where}{suffix}={value!r}: expected an integer >= 0")
    return counts


def build_instruction_set(trivia: Sequence[dict], premise: Sequence[dict], harmful: Sequence[dict],
                          eval_questions: Iterable[str], eval_texts: Iterable[str], sizes: dict[str, int],
                          n_check: int | dict[str, int], seed: int, suffix_share: float = 0.5,
                          check_before_train: int | None = None) -> tuple[list[Example], dict]:
    """The instruction set and a summary of how it was built.

    trivia / premise / harmful: prepared-schema records (``example_id``, ``question``,
    ``answers``; premise also ``split`` and ``label``) from the tuning sources.
    eval_questions: every evaluation question (dropped from the candidates by
    normalized equality). eval_texts: evaluation texts whose words made-up names
    must avoid. sizes: training items per kind (keys = KINDS). n_check: held-out
    check items per kind (one count or a mapping kind -> count).

    Layout of each kind's shuffled candidates: the first h = min(n_check,
    ``check_before_train``) are held out (h = n_check when check_before_train is
    None), the next ``sizes[kind]`` are trained on, and when n_check > h the check
    takes the rest from after the training block (skipping a question equal, after
    normalization, to one already taken). Once n_check >= check_before_train, the
    training rows no longer depend on n_check. Made-up entities are generated on demand: the first h + sizes.abstain
    are shuffled as the pool, the extra check entities follow in generation order.
    A pool that cannot give n_check keeps what it has; the summary says so
    (``check_short``). Returns (examples ordered by kind, check then train;
    summary per kind).
    """
    missing = [kind for kind in KINDS if kind not in sizes]
    if missing:
        raise HNeuronsError(f"sizes: missing {', '.join(missing)} (expected keys {', '.join(KINDS)})")
    counts = check_counts(n_check)
    ahead = {kind: counts[kind] if check_before_train is None else min(counts[kind], int(check_before_train))
             for kind in KINDS}
    excluded_questions = {normalize(q) for q in eval_questions}
    forbidden = text_words(eval_texts)
    n_abstain = ahead["abstain"] + int(sizes["abstain"])
    candidates = _candidates(trivia, premise, harmful, seed, suffix_share,
                             n_abstain + max(0, counts["abstain"] - ahead["abstain"]), forbidden)
    examples: list[Example] = []
    summary: dict[str, Any] = {}
    for offset, kind in enumerate(KINDS):
        pool = candidates[kind]
        block = n_abstain if kind == "abstain" else len(pool)
        kept = [c for c in pool[:block] if normalize(_question_of(c[1])) not in excluded_questions]
        random.Random(seed + 7919 * (offset + 1)).shuffle(kept)
        kept += [c for c in pool[block:] if normalize(_question_of(c[1])) not in excluded_questions]
        n_ahead, n_train, wanted = ahead[kind], int(sizes[kind]), counts[kind]
        need = n_ahead + n_train
        if len(kept) < need:
            raise HNeuronsError(f"tune.sizes.{kind}={sizes[kind]}: only {len(kept)} candidates left after "
                                f"excluding evaluation questions; need {need} (with {n_ahead} held out)")
        train = kept[n_ahead:need]
        check = kept[:n_ahead]
        seen = {normalize(_question_of(c[1])) for c in train + check}
        duplicates = 0
        for candidate in kept[need:]:
            if len(check) >= wanted:
                break
            key = normalize(_question_of(candidate[1]))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            check.append(candidate)
        for split, chosen in (("check", check), ("train", train)):
            examples += [Example(kind, source_id, prompt, response, answers, split)
                         for source_id, prompt, response, answers in chosen]
        entry = {"candidates": len(pool), "excluded": len(pool) - len(kept), "train": n_train,
                 "check": len(check), "check_requested": wanted, "check_before_train": n_ahead,
                 "check_after_train": len(check) - n_ahead}
        if duplicates:
            entry["check_duplicates_skipped"] = duplicates
        if len(check) < wanted:
            entry["check_short"] = (f"{len(kept)} candidates after exclusion: {n_ahead} held out before and "
                                    f"{n_train} trained on leave {len(kept) - need}"
                                    + (f" ({duplicates} repeating a question already taken)" if duplicates else "")
                                    + f"; {len(check)} of {wanted} held out without cutting training")
        summary[kind] = entry
    return examples, summary


def _question_of(prompt: str) -> str:
    return prompt[: -len(SAMPLING_SUFFIX)] if prompt.endswith(SAMPLING_SUFFIX) else prompt


def examples_frame(examples: Sequence[Example]):
    """pandas frame of the instruction set (one row per example, Example's fields)."""
    import pandas as pd

    rows = [{**asdict(e), "answers": list(e.answers)} for e in examples]
    return pd.DataFrame(rows, columns=["kind", "source_id", "prompt", "response", "answers", "split"])


# ------------------------------------------------------------------ encoding

def encode_example(tokenizer, prompt: str, response: str) -> tuple[list[int], int]:
    """(ids of the full chat, index where the response starts) under the tokenizer's template.

    The response part is everything after the generation prompt (the model's turn
    header), including the template's end-of-turn marker. The chat of the user
    turn alone must be a prefix of the full chat; otherwise the template cannot
    mark response tokens and a one-line error says so.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise HNeuronsError("the base tokenizer has no chat template; give the base model spec a chat_template")
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}],
                                         tokenize=True, return_dict=True)["input_ids"]
    head, full = [int(i) for i in head], [int(i) for i in full]
    if full[: len(head)] != head or len(full) <= len(head):
        raise HNeuronsError("chat template: the user turn + generation prompt is not a prefix of the full chat")
    return full, len(head)


@dataclass
class Encoded:
    """Token ids and response start of each training example."""

    ids: list[list[int]]
    starts: list[int]

    def __len__(self) -> int:
        return len(self.ids)


def encode_examples(tokenizer, examples: Sequence[Example], max_length: int) -> Encoded:
    """Encode examples; one longer than ``max_length`` tokens is a one-line error naming it."""
    ids, starts = [], []
    for example in examples:
        full, start = encode_example(tokenizer, example.prompt, example.response)
        if len(full) > max_length:
            raise HNeuronsError(f"tune.max_length={max_length}: {example.kind} example {example.source_id} "
                                f"has {len(full)} tokens")
        ids.append(full)
        starts.append(start)
    return Encoded(ids, starts)


def collate(encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, labels (int64[b, t]; -100 off the response)."""
    width = max(len(encoded.ids[r]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for b, r in enumerate(rows):
        seq = torch.tensor(encoded.ids[r], dtype=torch.long)
        ids[b, : seq.numel()] = seq
        mask[b, : seq.numel()] = 1
        labels[b, encoded.starts[r]: seq.numel()] = seq[encoded.starts[r]:]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_order(n_examples: int, batch_size: int, steps: int, seed: int,
                lengths: Sequence[int] | None = None, length_group: int = 1) -> Iterator[list[int]]:
    """``steps`` batches of ``batch_size`` row indices walking seeded epoch permutations.

    With ``length_group`` g > 1 (and ``lengths``, tokens per example), each run of g
    consecutive batches of that walk is re-cut by length: its g * batch_size rows
    sorted by token count (ties keep walk order), split into g batches, those
    batches yielded in a seeded random order. Every row still comes once per
    epoch; a batch holds rows of similar length, so right padding shrinks
    (Gemma-3-270M instruction set, g = 8: padded tokens per batch of 8 418 -> 312).
    """
    if length_group > 1 and (lengths is None or len(lengths) != n_examples):
        raise HNeuronsError(f"tune.length_group={length_group}: needs one token count per example")
    group = length_group if length_group > 1 else 1
    rng = np.random.default_rng(seed)
    queue: list[int] = []
    ready: list[list[int]] = []
    for _ in range(steps):
        if not ready:
            while len(queue) < batch_size * group:
                queue.extend(rng.permutation(n_examples).tolist())
            chunk, queue = queue[: batch_size * group], queue[batch_size * group:]
            if group > 1:
                chunk = sorted(chunk, key=lambda row: lengths[row])
            ready = [chunk[i: i + batch_size] for i in range(0, len(chunk), batch_size)]
            if group > 1:
                ready = [ready[i] for i in rng.permutation(len(ready))]
        yield ready.pop(0)


# ------------------------------------------------------------------ training

@dataclass(frozen=True)
class TuneSettings:
    """Optimisation settings (all from params). lr in 1/step units of AdamW; steps and
    warmup_steps in optimizer steps; max_grad_norm 0 disables clipping; length_group:
    batches per length-sorted group of ``batch_order`` (1 = plain shuffled batches)."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-5
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    length_group: int = 1

    def validate(self, where: str = "tune") -> "TuneSettings":
        checks = [
            ("steps", isinstance(self.steps, int) and self.steps >= 1, "an integer >= 1"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "an integer >= 1"),
            ("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "> 0"),
            ("warmup_steps", isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "an integer >= 0"),
            ("weight_decay", isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0, ">= 0"),
            ("max_grad_norm", isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm >= 0, ">= 0"),
            ("length_group", isinstance(self.length_group, int) and self.length_group >= 1, "an integer >= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise HNeuronsError(f"{where}.{name}={getattr(self, name)!r}: expected {expected}")
        return self


def freeze_embeddings(model) -> list[torch.nn.Parameter]:
    """Freeze input embeddings and LM head (tied or not); return the parameters left trainable."""
    frozen = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        frozen.add(id(head.weight))
    trainable = []
    for parameter in model.parameters():
        if id(parameter) in frozen:
            parameter.requires_grad_(False)
        else:
            parameter.requires_grad_(True)
            trainable.append(parameter)
    return trainable


def learning_rate(step: int, settings: TuneSettings) -> float:
    """Linear warm-up over ``warmup_steps`` (step is 0-based), then constant ``lr``."""
    if settings.warmup_steps and step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    return settings.lr


def response_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(mean cross-entropy over response tokens, their count) for a collated batch.

    The LM head (and Gemma's final logit soft-capping) is applied only at the
    positions that predict a response token: with a 262k vocabulary, full-sequence
    logits would cost more than the decoder itself.
    """
    from hneurons.models import input_device

    device = input_device(model)
    decoder = model.get_decoder()
    hidden = decoder(input_ids=batch["input_ids"].to(device),
                     attention_mask=batch["attention_mask"].to(device)).last_hidden_state
    targets = batch["labels"][:, 1:].to(hidden.device)
    keep = targets != -100
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    n_tokens = int(keep.sum())
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum") / n_tokens
    return loss, n_tokens


def train(model, encoded: Encoded, settings: TuneSettings, pad_id: int, progress: bool = True) -> list[dict]:
    """Fine-tune ``model`` in place; returns the loss curve, one dict per step.

    Each entry: step (1-based), loss (mean cross-entropy per response token of the
    batch, nats), lr, n_tokens (response tokens in the batch).
    """
    settings.validate()
    if len(encoded) == 0:
        raise HNeuronsError("tune: no training examples")
    torch.manual_seed(settings.seed)
    trainable = freeze_embeddings(model)
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    model.train()
    curve = []
    order = batch_order(len(encoded), settings.batch_size, settings.steps, settings.seed,
                        lengths=[len(ids) for ids in encoded.ids], length_group=settings.length_group)
    bar = tqdm(order, total=settings.steps, desc="tune", unit="step", disable=not progress)
    for step, rows in enumerate(bar):
        lr = learning_rate(step, settings)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = collate(encoded, rows, pad_id)
        loss, n_tokens = response_loss(model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise HNeuronsError(f"tune: loss became {value} at step {step + 1}; lower tune.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
        optimizer.step()
        curve.append({"step": step + 1, "loss": value, "lr": lr, "n_tokens": n_tokens})
        bar.set_postfix(loss=f"{value:.3f}")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return curve


def plot_loss(curve: Sequence[dict], title: str, path) -> None:
    """Loss per step and its 20-step moving average, written as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hneurons.io import atomic_path

    steps = np.array([c["step"] for c in curve])
    loss = np.array([c["loss"] for c in curve])
    window = min(20, len(loss))
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(6, 3), dpi=120)
    ax.plot(steps, loss, color="#95a5a6", linewidth=0.8, label="per step")
    ax.plot(steps[window - 1:], smooth, color="#2c3e50", linewidth=1.5, label=f"{window}-step mean")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / response token)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


# ------------------------------------------------------------------ behaviour check

def greedy_responses(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16,
                     progress: bool = True) -> list[tuple[str, bool]]:
    """Greedy chat responses: (text without special tokens, stopped on an EOS/end-of-turn id) per prompt."""
    from hneurons.models import input_device

    eos = model.generation_config.eos_token_id
    stops = sorted({int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos]) if i is not None}
                   | ({int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    out: list[tuple[str, bool]] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="check", unit="batch", disable=not progress):
        chunk = prompts[start: start + batch_size]
        encoded = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"] for p in chunk]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([[pad_id] * (width - len(e)) + list(e) for e in encoded], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], dtype=torch.long)
        with torch.no_grad():
            generated = model.generate(input_ids=ids.to(input_device(model)), attention_mask=mask.to(input_device(model)),
                                       do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stops,
                                       pad_token_id=pad_id)
        for row in generated[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), None)
            body = row if cut is None else row[:cut]
            out.append((tokenizer.decode(body, skip_special_tokens=True).strip(), cut is not None))
    return out


def behaviour_check(model, tokenizer, examples: Sequence[Example], max_new_tokens: int = 48,
                    max_words: int = 40, progress: bool = True, sources: dict[str, dict] | None = None,
                    batch_size: int = 16) -> tuple[dict, list[dict]]:
    """Greedy responses on the held-out ``check`` examples, scored per kind.

    format_ok: the response ended its turn, is non-empty, has at most ``max_words``
    words and does not restate the prompt. trivia_correct: the rule judge (whole-word
    alias) accepts it. refused / abstained: the refusal detector fires
    (judge.is_refusal), on harmful requests and made-up entities respectively; for
    trivia the same detector gives the over-refusal rate. ``sources`` (kind ->
    fields such as dataset and rows) is copied into each kind's metrics;
    ``batch_size``: prompts per generate call. Returns (metrics per kind, one
    record per response).
    """
    held = [e for e in examples if e.split == "check"]
    responses = greedy_responses(model, tokenizer, [e.prompt for e in held], max_new_tokens, batch_size,
                                 progress=progress)
    judge = RuleJudge()
    records = []
    for example, (text, stopped) in zip(held, responses):
        words = len(text.split())
        restates = normalize(_question_of(example.prompt)) in normalize(text) if text else False
        record = {"kind": example.kind, "source_id": example.source_id, "prompt": example.prompt,
                  "response": text, "stopped": stopped,
                  "format_ok": bool(stopped and 0 < words <= max_words and not restates),
                  "refusal": is_refusal(text)}
        if example.kind == "trivia":
            record["correct"] = judge.judge(example.prompt, text, example.answers).correct
        records.append(record)
    metrics: dict[str, Any] = {}
    for kind in KINDS:
        rows = [r for r in records if r["kind"] == kind]
        if not rows:
            continue
        entry = {**(sources or {}).get(kind, {}), "n": len(rows), "format_ok": _share(r["format_ok"] for r in rows),
                 "refusal_rate": _share(r["refusal"] for r in rows)}
        if kind == "trivia":
            entry["correct"] = _share(r["correct"] for r in rows)
        metrics[kind] = entry
    return metrics, records


def _share(flags: Iterable[bool]) -> float:
    values = [bool(f) for f in flags]
    return float(sum(values) / len(values)) if values else math.nan
