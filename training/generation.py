"""Text generation with a transformers model, for GRPO rollouts and for evaluating a checkpoint.

Imports torch/transformers lazily (the `train` extra). A checkpoint folder written by
`mcp-memalpha train` carries `memalpha_training.json` with the wire format it was trained in, so
evaluation and export prompt it the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAINING_INFO = "memalpha_training.json"


def read_info(folder: Path) -> dict[str, Any]:
    path = Path(folder) / TRAINING_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def write_info(folder: Path, **info: Any) -> None:
    (Path(folder) / TRAINING_INFO).write_text(json.dumps(info, indent=2) + "\n")


@dataclass
class Sample:
    """One generation: token ids of the prompt and of the completion, and the completion's text."""

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str


class TransformersGenerator:
    """`generator(messages) -> text` over a causal LM and its chat template."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        greedy: bool = False,
        wire_format: str = "memalpha",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.greedy = greedy
        self.wire_format = wire_format

    @classmethod
    def load(cls, folder: Path, **options: Any) -> TransformersGenerator:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        info = read_info(folder)
        options.setdefault("wire_format", info.get("wire_format", "memalpha"))
        return cls(AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), **options)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def sample(self, messages: list[dict[str, str]]) -> Sample:
        import torch

        prompt = self.prompt_ids(messages)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                output = self.model.generate(
                    torch.tensor([prompt], device=self.model.device),
                    attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=self.model.device),
                    max_new_tokens=self.max_new_tokens,
                    do_sample=not self.greedy,
                    temperature=None if self.greedy else self.temperature,
                    top_p=None if self.greedy else 1.0,
                    top_k=None if self.greedy else 0,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                )
        finally:
            self.model.train(was_training)
        completion = output[0, len(prompt) :].tolist()
        return Sample(prompt, completion, self.tokenizer.decode(completion, skip_special_tokens=True))

    def __call__(self, messages: list[dict[str, str]]) -> str:
        return self.sample(messages).text
