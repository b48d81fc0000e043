"""Tiny random models and a tiny byte-level BPE tokenizer, built in-process (no download).

``make_tokenizer()`` trains a byte-level BPE on a fixed corpus, with ChatML-style
special tokens and a chat template; ``make_model(arch)`` builds a random model of
one of the supported architectures; ``save_tiny_model(path, arch)`` writes both in
Hugging Face format.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Which American-born Sinclair won the Nobel Prize for Literature in 1930? Sinclair Lewis.",
    "Where in England was Dame Judi Dench born? York. The answer is Paris, London, Rome.",
    "Who manufactures the medicine? I don't know. It does not exist. I cannot answer that.",
    "What is the capital of France? Paris is the capital. Respond with the answer only.",
    "The quick brown fox jumps over the lazy dog 0123456789 1972 Chicago Bears Portugal Japan.",
    "I don't think that's right. Are you sure? Yes, I am sure. No, you are right, sorry.",
]


def make_tokenizer(vocab_size: int = 400):
    """A fast byte-level BPE tokenizer (offsets supported) with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=None, eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma2", "gemma3_text", "gpt2", "gpt_neox")


def make_config(arch: str, vocab_size: int, n_layers: int = 2, d_model: int = 32, d_ffn: int = 48):
    from transformers import (
        Gemma2Config,
        Gemma3TextConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
    )

    common = dict(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_ffn,
                  num_hidden_layers=n_layers, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, eos_token_id=2, pad_token_id=0, bos_token_id=None)
    if arch == "llama":
        return LlamaConfig(**common, tie_word_embeddings=True)
    if arch == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "gemma2":
        return Gemma2Config(**common, head_dim=8, query_pre_attn_scalar=8)
    if arch == "gemma3_text":
        return Gemma3TextConfig(**common, head_dim=8, query_pre_attn_scalar=8, sliding_window=64)
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=d_model, n_inner=d_ffn, n_layer=n_layers, n_head=4,
                          n_positions=256, eos_token_id=2, pad_token_id=0, bos_token_id=2)
    if arch == "gpt_neox":
        return GPTNeoXConfig(vocab_size=vocab_size, hidden_size=d_model, intermediate_size=d_ffn,
                             num_hidden_layers=n_layers, num_attention_heads=4, max_position_embeddings=256,
                             eos_token_id=2, pad_token_id=0, bos_token_id=2)
    raise ValueError(arch)


def make_model(arch: str = "llama", vocab_size: int = 400, seed: int = 0, **shape):
    """A random causal LM of ``arch`` in eval mode (float32)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(make_config(arch, vocab_size, **shape))
    return model.eval()


def save_tiny_model(path: str | Path, arch: str = "llama", seed: int = 0, **shape) -> Path:
    """Write a tiny random model + tokenizer to ``path`` (HF format) and return it."""
    path = Path(path)
    tokenizer = make_tokenizer()
    model = make_model(arch, vocab_size=len(tokenizer), seed=seed, **shape)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def perturbed_copy(model, scale: float, seed: int):
    """A copy with every FFN up row / down column / gate weight nudged by seeded noise of ``scale`` x its std."""
    import copy

    from hneurons.models import ffn_blocks

    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in ffn_blocks(twin):
            for weight in (block.up.weight, block.down.weight, block.gate.weight if block.gate is not None else None):
                if weight is not None:
                    weight.add_(scale * weight.std() * torch.randn(weight.shape, generator=gen))
    return twin
