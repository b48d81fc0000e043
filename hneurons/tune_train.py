"""Training a base model on the instruction set (:mod:`hneurons.tune`) into its instruct twin.

Full fine-tuning with the input embeddings and LM head frozen (gives
per-neuron, full-rank drift; LoRA would confine each layer's change to rank r),
loss on the response tokens only (everything after the chat template's
generation prompt, end-of-turn included), AdamW, linear warm-up then constant
learning rate, gradient clipping, a fixed number of steps over seeded epoch
permutations, right-padded batches.

The loss curve is summarized, written as CSV and plotted here too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from hneurons.errors import HNeuronsError
from hneurons.io import dumps_json, sha256_bytes, write_text
from hneurons.tune import Example

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

    def validate(self, where: str = "tune") -> TuneSettings:
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


def twin_source(family: str, base_fingerprint: str, train_set: Sequence[Example], settings: TuneSettings,
                max_length: int) -> dict:
    """The ``source`` of the twin's fingerprint: the base fingerprint, the sha256 of the training examples
    (canonical JSON of their fields; the check items are not included) and the settings."""
    return {"kind": "tune", "family": family, "base_fingerprint": base_fingerprint,
            "train_set_sha256": sha256_bytes(dumps_json([asdict(e) for e in train_set])),
            "settings": settings.__dict__ | {"max_length": max_length}}


# ------------------------------------------------------------------ loss curve

def loss_summary(curve: Sequence[dict]) -> dict[str, float]:
    """First and last step loss and the mean of the last 20 steps (nats / response token)."""
    tail = curve[-min(20, len(curve)):]
    return {"first": curve[0]["loss"], "last": curve[-1]["loss"],
            "mean_last_20": sum(c["loss"] for c in tail) / len(tail)}


def write_curve(path, curve: Sequence[dict]) -> None:
    """The loss curve as CSV: step, loss, lr, n_tokens (one row per step)."""
    lines = ["step,loss,lr,n_tokens"] + [f"{c['step']},{c['loss']:.6f},{c['lr']:.6g},{c['n_tokens']}" for c in curve]
    write_text(path, "\n".join(lines) + "\n")


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
