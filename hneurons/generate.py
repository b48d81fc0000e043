"""Batched, seeded sampling with a chat template, left padding and a KV cache.

One decoding loop serves greedy and stochastic decoding. Each row (one response)
draws its randomness from its own ``torch.Generator`` seeded by
:func:`sample_seed` (base seed, example id, sample index), so the random stream of a
sample never depends on which batch or shard it falls in. Sampling uses the
inverse CDF of the temperature / top-k / top-p filtered distribution with one
pre-drawn uniform per step, which is vectorised over the batch yet per-row seeded.

Batch invariance, precisely: the random numbers are batch-independent; the logits
are equal up to float rounding of different matmul shapes (left padding, batch
size). On the tiny float32 test models the ids are identical; on a real model a
near-tie between two tokens can in rare cases resolve differently in another
batch. Same inputs and same ``batch_size`` always give the same ids.

Speed-ups that do not change the sampled distribution: the chat template's common
head (system line, user header) is prefilled once per batch, rows with the same
prompt inside a batch share one prefill (the KV cache is expanded afterwards), the
prefill computes logits for the last position only, and rows that have stopped
are dropped from the batch.

Generated ids are returned without padding and without the trailing stop token
(EOS / end-of-turn). A response shorter than ``max_new_tokens`` therefore stopped
on a stop token; one of exactly ``max_new_tokens`` ids was cut off.

:func:`generate` is the ``transformers`` backend of :mod:`hneurons.backends`;
:func:`generate_cached` and :func:`hneurons.consistency.run_consistency` take any backend.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from hneurons.errors import HNeuronsError
from hneurons.io import read_json, sha256_bytes, write_json
from hneurons.models import input_device

# End-of-turn markers of common chat templates; used as stop tokens when the tokenizer has them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass(frozen=True)
class DecodingSettings:
    """Decoding parameters; ``temperature == 0`` means greedy (top_k/top_p unused).

    Paper defaults ([C] collect_responses.py): 10 samples, T=1.0, top-k 50,
    top-p 0.9, 50 new tokens. ``top_k = 0`` and ``top_p = 1`` disable the filters.
    """

    n_samples: int = 10
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.9
    max_new_tokens: int = 50

    def validate(self, where: str = "decoding") -> "DecodingSettings":
        """Return self, or raise a one-line HNeuronsError naming ``<where>.<field>``."""
        checks = [
            ("n_samples", isinstance(self.n_samples, int) and self.n_samples >= 1, "an integer >= 1"),
            ("temperature", isinstance(self.temperature, (int, float)) and self.temperature >= 0, ">= 0"),
            ("top_k", isinstance(self.top_k, int) and self.top_k >= 0, "an integer >= 0 (0 = off)"),
            ("top_p", isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1, "in (0, 1]"),
            ("max_new_tokens", isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1,
             "an integer >= 1"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise HNeuronsError(f"{where}.{name}={getattr(self, name)!r}: expected {expected}")
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def fill_question(template: str, question: str) -> str:
    """``template`` with ``{question}`` replaced; any other braces are kept literally."""
    return template.replace("{question}", question)


def chat_prompt_ids(tokenizer, user_text: str) -> list[int]:
    """Token ids of one user turn under the tokenizer's chat template, ready for the assistant.

    No system message is added here; a template that inserts its own default system
    line (SmolLM2, Qwen2) keeps it.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise HNeuronsError("tokenizer has no chat template; sampling needs an instruct model's template")
    encoded = tokenizer.apply_chat_template([{"role": "user", "content": user_text}],
                                            add_generation_prompt=True, tokenize=True, return_dict=True)
    return [int(i) for i in encoded["input_ids"]]


def sample_seed(base_seed: int, example_id: str, sample_index: int) -> int:
    """A 63-bit generator seed for (example, sample), independent of batching and sharding."""
    text = f"{int(base_seed)}\x1f{example_id}\x1f{int(sample_index)}"
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def stop_token_ids(model, tokenizer) -> list[int]:
    """Sorted ids that end a response: the model's EOS ids plus known end-of-turn tokens."""
    ids: set[int] = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (eos if isinstance(eos, (list, tuple)) else [eos]):
        if value is not None:
            ids.add(int(value))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in vocab and token in tokenizer.all_special_tokens:
            ids.add(int(vocab[token]))
    if not ids:
        raise HNeuronsError("tokenizer and model define no EOS / end-of-turn token; cannot stop generation")
    return sorted(ids)


def sample_next(logits: torch.Tensor, uniforms: torch.Tensor, settings: DecodingSettings) -> torch.Tensor:
    """Next token per row: int64[b] from logits float[b, vocab] and uniforms float64[b] in [0, 1).

    Temperature, then top-k, then top-p (nucleus: keep the most probable tokens until
    their mass reaches top_p, at least one), then inverse-CDF sampling with the
    row's uniform. Greedy (T=0) is the argmax and ignores ``uniforms``.
    """
    if settings.greedy:
        return logits.argmax(dim=-1)
    vocab = logits.shape[-1]
    k = vocab if settings.top_k <= 0 else min(settings.top_k, vocab)
    values, index = (logits.float() / settings.temperature).topk(k, dim=-1)
    probs = torch.softmax(values.double(), dim=-1)
    cumulative = probs.cumsum(dim=-1)
    keep = (cumulative - probs) < settings.top_p
    keep[:, 0] = True
    probs = probs * keep
    cdf = (probs / probs.sum(dim=-1, keepdim=True)).cumsum(dim=-1)
    choice = (cdf < uniforms[:, None]).sum(dim=-1)
    choice = torch.minimum(choice, keep.sum(dim=-1) - 1)
    return index.gather(-1, choice[:, None]).squeeze(-1)


def _row_uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """float64[len(seeds), steps]: each row's own uniform stream."""
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        rows.append(torch.rand(steps, generator=generator, dtype=torch.float64))
    return torch.stack(rows)


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids int64[n, L], mask int64[n, L]) with prompts right-aligned."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids, mask


def template_prefix(tokenizer) -> list[int]:
    """Ids every chat prompt of this tokenizer starts with (system line, user header); [] without a template."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    first, second = chat_prompt_ids(tokenizer, "A"), chat_prompt_ids(tokenizer, "B")
    length = 0
    while length < min(len(first), len(second)) and first[length] == second[length]:
        length += 1
    return first[:length]


def _prefill(model, prompts: list[tuple[int, ...]], prefix: Sequence[int], pad_id: int):
    """Prefill unique prompts: (cache, last-position logits float[u, vocab], attention mask int64[u, L]).

    When every prompt extends ``prefix`` (the chat template's shared head), the prefix
    is run once and its KV expanded; the rest is left-padded after it ("middle
    padding", masked out), with position ids continuing from the prefix.
    """
    from transformers import DynamicCache

    device = input_device(model)
    cache = DynamicCache(config=model.config)
    shared = len(prefix) if prefix and all(len(p) > len(prefix) and list(p[:len(prefix)]) == list(prefix)
                                           for p in prompts) else 0
    if shared:
        model(input_ids=torch.tensor([list(prefix)], device=device),
              position_ids=torch.arange(shared, device=device)[None], cache=cache, use_cache=True,
              logits_to_keep=1)
        cache.batch_select_indices(torch.zeros(len(prompts), dtype=torch.long, device=device))
    ids, tail_mask = _left_pad([p[shared:] for p in prompts], pad_id)
    positions = shared + (tail_mask.cumsum(dim=-1) - 1).clamp(min=0)
    mask = torch.cat([torch.ones((len(prompts), shared), dtype=torch.long), tail_mask], dim=-1)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                cache=cache, use_cache=True, logits_to_keep=1)
    return cache, out.logits[:, -1, :], mask


@torch.inference_mode()
def _generate_batch(model, prompts: Sequence[Sequence[int]], uniforms: torch.Tensor,
                    settings: DecodingSettings, stops: torch.Tensor, pad_id: int,
                    prefix: Sequence[int] = ()) -> list[list[int]]:
    """Decode one batch; identical prompts share a prefill. Returns ids without the stop token."""
    device = input_device(model)
    unique: dict[tuple[int, ...], int] = {}
    inverse = torch.tensor([unique.setdefault(tuple(p), len(unique)) for p in prompts], dtype=torch.long)
    cache, logits, mask = _prefill(model, list(unique), prefix, pad_id)
    logits = logits[inverse.to(logits.device)]
    if len(unique) != len(prompts):
        cache.batch_select_indices(inverse.to(device))
    mask = mask[inverse]
    next_pos = mask.sum(dim=-1)
    alive = torch.arange(len(prompts))          # original row of each live batch row
    outputs: list[list[int]] = [[] for _ in prompts]
    stops_dev = stops.to(logits.device)
    for step in range(settings.max_new_tokens):
        tokens = sample_next(logits, uniforms[alive, step].to(logits.device), settings)
        stopped = torch.isin(tokens, stops_dev).cpu()
        for row, token, stop in zip(alive.tolist(), tokens.cpu().tolist(), stopped.tolist()):
            if not stop:
                outputs[row].append(token)
        if step == settings.max_new_tokens - 1 or bool(stopped.all()):
            break
        if bool(stopped.any()):
            keep = (~stopped).nonzero().squeeze(-1)
            alive, mask, next_pos, tokens = alive[keep], mask[keep], next_pos[keep], tokens[keep.to(tokens.device)]
            cache.batch_select_indices(keep.to(device))
        mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype)], dim=-1)
        out = model(input_ids=tokens[:, None].to(device), attention_mask=mask.to(device),
                    position_ids=next_pos[:, None].to(device), cache=cache, use_cache=True)
        logits = out.logits[:, -1, :]
        next_pos = next_pos + 1
    return outputs


def _check_inputs(prompts, settings: DecodingSettings, seeds, batch_size: int) -> None:
    settings.validate()
    if not isinstance(batch_size, int) or batch_size < 1:
        raise HNeuronsError(f"batch_size={batch_size!r}: expected an integer >= 1")
    if any(len(p) == 0 for p in prompts):
        raise HNeuronsError("generate: an empty prompt was given")
    if seeds is None and not settings.greedy:
        raise HNeuronsError("generate: sampling (temperature > 0) needs one seed per prompt")
    if seeds is not None and len(seeds) != len(prompts):
        raise HNeuronsError(f"generate: {len(seeds)} seeds for {len(prompts)} prompts")


def generate(model, tokenizer, prompts: Sequence[list[int]], settings: DecodingSettings,
             seeds: Sequence[int] | None, batch_size: int, progress: bool = False) -> list[list[int]]:
    """One response per prompt row, decoded in consecutive batches of ``batch_size`` rows.

    prompts: token ids (e.g. from :func:`chat_prompt_ids`); callers repeat a prompt
    once per sample with different seeds (keep the repeats adjacent so they share a
    prefill). seeds: one per row (e.g. :func:`sample_seed`); may be None for greedy.
    Returns generated ids per row without padding and without the trailing stop token.
    """
    _check_inputs(prompts, settings, seeds, batch_size)
    stops = torch.tensor(stop_token_ids(model, tokenizer), dtype=torch.long)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(stops[0])
    prefix = template_prefix(tokenizer)
    results: list[list[int]] = []
    bar = tqdm(total=len(prompts), desc="sampling", unit="resp", disable=not progress, leave=False)
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start:start + batch_size]
        batch_seeds = seeds[start:start + batch_size] if seeds is not None else [0] * len(batch)
        uniforms = _row_uniforms(batch_seeds, settings.max_new_tokens)
        results.extend(_generate_batch(model, batch, uniforms, settings, stops, pad_id, prefix))
        bar.update(len(batch))
    bar.close()
    return results


def _decoder_code_sha() -> str:
    """sha256 of the source of everything that decides a batch's ids (not the consistency logic)."""
    functions = (DecodingSettings, chat_prompt_ids, sample_seed, stop_token_ids, sample_next, _row_uniforms,
                 _left_pad, template_prefix, _prefill, _generate_batch, generate)
    return sha256_bytes("\n".join(inspect.getsource(f) for f in functions))


_CODE_SHA = _decoder_code_sha()


def batch_cache_key(prompts: Sequence[list[int]], seeds: Sequence[int] | None, settings: DecodingSettings,
                    salt: str) -> str:
    """Hex key of one batch's generation inputs (the decoding code's source included)."""
    payload = json.dumps({"code": _CODE_SHA, "salt": salt, "settings": settings.as_dict(),
                          "prompts": [list(map(int, p)) for p in prompts],
                          "seeds": None if seeds is None else [int(s) for s in seeds]}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def generate_cached(backend, prompts: Sequence[list[int]], settings: DecodingSettings,
                    seeds: Sequence[int] | None, batch_size: int, cache_dir: str | Path | None,
                    salt: str = "", progress: bool = False, desc: str = "sampling") -> list[list[int]]:
    """``backend.generate`` (see :mod:`hneurons.backends`) in batches of ``batch_size`` rows, resumable:
    each completed batch is kept in ``cache_dir``.

    A batch's file is named by :func:`batch_cache_key` (its prompts, seeds,
    settings, ``salt`` — e.g. the model fingerprint and dtype — plus the backend's
    ``cache_tag`` when it has one, and the decoding code's source), written atomically,
    so an interrupted run loses at most the batch in flight and a rerun returns exactly
    what an uninterrupted run returns. ``cache_dir=None`` disables the cache.
    """
    _check_inputs(prompts, settings, seeds, batch_size)
    key_salt = f"{salt}|{backend.cache_tag}" if backend.cache_tag else salt
    results: list[list[int]] = []
    bar = tqdm(total=len(prompts), desc=desc, unit="resp", disable=not progress)
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start:start + batch_size])
        batch_seeds = None if seeds is None else list(seeds[start:start + batch_size])
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"{batch_cache_key(batch, batch_seeds, settings, key_salt)}.json"
        cached = _read_batch(path, len(batch)) if path is not None else None
        if cached is None:
            cached = backend.generate(batch, settings, batch_seeds, batch_size)
            if path is not None:
                write_json(path, cached)
        results.extend(cached)
        bar.update(len(batch))
    bar.close()
    return results


def _read_batch(path: Path, n_rows: int) -> list[list[int]] | None:
    """A cached batch, or None when absent or unreadable (then it is regenerated)."""
    if not path.is_file():
        return None
    try:
        value = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(value, list) or len(value) != n_rows:
        return None
    return [[int(t) for t in row] for row in value]
