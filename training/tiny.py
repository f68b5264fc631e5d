"""Tiny causal LMs built from a config, with tokenizers trained here: the starting point of the
CPU smoke training and of the CI tests (no model download is possible at run time).

Each tokenizer is a byte-level BPE trained on the curator's own prompt text, the tool schemas and a
little LoCoMo-like dialogue, so prompts tokenize to a sensible length. Two models, randomly
initialized:
- a Llama with ChatML special tokens and template (`build_tiny_model`, the smoke training's start);
- a Qwen3 shaped like Memalpha-4B's family (`build_tiny_qwen3`): per-head Q/K norms, heads wider
  than hidden / heads, tied or untied embeddings, and a tokenizer built like Qwen2's (NFC, Qwen2's
  split regex before a regex-free byte level, Qwen3's special and added tokens, no BOS) with the
  Qwen3 chat template that TRL ships, so it renders and tokenizes prompts as Memalpha-4B does.
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
# Qwen3's tokenizer: these three are special; its tool and thinking markers are added, not special
QWEN3_ADDED = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]


def _corpus() -> list[str]:
    """Text like what the model reads and writes: prompts in every wire format, calls, dialogue."""
    from mcp_memalpha.policy.formats import EXAMPLE_CALLS, EXAMPLE_CHUNK, make_format
    from mcp_memalpha.policy.prompt import ChunkContext
    from mcp_memalpha.training.sandbox import tool_defs

    context = ChunkContext.build(EXAMPLE_CHUNK, "8 May 2023", "Tom is a nurse.", ())
    texts = []
    for name in ("memalpha", "tool_call", "json"):
        texts += [m["content"] for m in make_format(name).messages(tool_defs(), context)]
    texts += [json.dumps(call) for call in EXAMPLE_CALLS]
    texts += [f"✿FUNCTION✿: {c['name']}\n✿ARGS✿: {json.dumps(c['arguments'])}" for c in EXAMPLE_CALLS]
    return texts * 4


def _train(core: Any, vocab_size: int) -> None:
    from tokenizers import decoders, pre_tokenizers, trainers

    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(_corpus(), trainer=trainer)


def build_tokenizer(vocab_size: int = 1024) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    _train(core, vocab_size)
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


def qwen3_chat_template() -> str:
    """The original Qwen3 chat template, as TRL ships it (the one Mem-α's golden prompts use)."""
    from importlib.resources import files

    return (files("trl") / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")


def build_qwen3_tokenizer(vocab_size: int = 1024) -> Any:
    from mcp_memalpha.training.export import QWEN2_PATTERN
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    _train(core, vocab_size)
    core.add_tokens([AddedToken(token, special=False, normalized=False) for token in QWEN3_ADDED])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = qwen3_chat_template()
    return tokenizer


def build_tiny_qwen3(
    folder: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    head_dim: int = 32,
    tied: bool = True,
    vocab_size: int = 1024,
    seed: int = 0,
) -> Path:
    """Write a tiny Qwen3 + its tokenizer to `folder` and return it. Its heads (`head_dim`) are wider
    than hidden / heads, as in Qwen3-4B, so an exporter that derives the head size gets it wrong."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_qwen3_tokenizer(vocab_size)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=8192,
        bos_token_id=endoftext,  # as Qwen3's config.json: <|endoftext|>, though the tokenizer has no BOS
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=endoftext,
        tie_word_embeddings=tied,
    )
    model = Qwen3ForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
