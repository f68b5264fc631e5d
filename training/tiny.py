"""A tiny causal LM built from a config, with a tokenizer trained here: the starting point of the
CPU smoke training and of the CI test (no model download is possible at run time).

The tokenizer is a byte-level BPE trained on the curator's own prompt text, the tool schemas and a
little LoCoMo-like dialogue, with ChatML special tokens and chat template, so prompts tokenize to
a sensible length. The model is a Llama architecture (what llama.cpp's converter and transformers'
GGUF loader both know), randomly initialized.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    """Text like what the model reads and writes: prompts in every wire format, calls, dialogue."""
    from policy.formats import EXAMPLE_CALLS, EXAMPLE_CHUNK, make_format
    from policy.prompt import ChunkContext
    from training.sandbox import tool_defs

    context = ChunkContext.build(EXAMPLE_CHUNK, "8 May 2023", "Tom is a nurse.", ())
    texts = []
    for name in ("memalpha", "tool_call", "json"):
        texts += [m["content"] for m in make_format(name).messages(tool_defs(), context)]
    texts += [json.dumps(call) for call in EXAMPLE_CALLS]
    texts += [f"✿FUNCTION✿: {c['name']}\n✿ARGS✿: {json.dumps(c['arguments'])}" for c in EXAMPLE_CALLS]
    return texts * 4


def build_tokenizer(vocab_size: int = 1024) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def build_tiny_model(folder: Path, *, hidden: int = 64, layers: int = 2, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a tiny Llama + its tokenizer to `folder` (about 0.2 M parameters) and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
