"""Text generation with a transformers model, for GRPO rollouts and for evaluating a checkpoint.

Imports torch/transformers lazily (the `train` extra). A checkpoint folder written by
`mcp-memalpha train` carries `memalpha_training.json` with the wire format it was trained in, so
evaluation and export prompt it the same way.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_memalpha.policy.formats import Completions, shared_text

TRAINING_INFO = "memalpha_training.json"


def read_info(folder: Path) -> dict[str, Any]:
    path = Path(folder) / TRAINING_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def write_info(folder: Path, **info: Any) -> None:
    (Path(folder) / TRAINING_INFO).write_text(json.dumps(info, indent=2) + "\n")


@dataclass
class Sample:
    """One generation: token ids of the prompt and of the completion, and the completion's text.

    `chosen` marks the completion tokens the model picked (1) apart from those fed because the
    format allowed nothing else (0); None when it picked every one.

    `logprobs`: per completion token, its log-probability under the distribution it was sampled
    from (for a constrained pick: the model's distribution at `temperature` renormalized over the
    allowed candidates; 0.0 for a fed token, which had probability 1). `full_logprobs`: the same
    tokens under the model's whole distribution at `temperature`, which is what TRL's loss scores;
    exp(full - sampling) is the importance weight of each pick (1 when sampling was unconstrained)."""

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    chosen: list[int] | None = None
    logprobs: list[float] | None = None
    full_logprobs: list[float] | None = None

    def loss_mask(self) -> list[int]:
        """1 for each token the policy update should learn from: the model's own choices."""
        return self.chosen if self.chosen is not None else [1] * len(self.completion_ids)

    def importance_weights(self) -> list[float]:
        """Per completion token, P_full(token) / P_sampled(token) (1.0 where unknown or fed)."""
        if self.logprobs is None or self.full_logprobs is None:
            return [1.0] * len(self.completion_ids)
        return [math.exp(full - sampled) for full, sampled in zip(self.full_logprobs, self.logprobs, strict=True)]


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt for `messages` through the tokenizer's chat template, thinking off (Qwen3's
    template reads `enable_thinking`; others ignore it), exactly as the server's llama.cpp path
    renders it (`mcp_memalpha.policy.model.render_chat`)."""
    return str(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=False)
    )


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
        self._prefix: tuple[tuple[int, ...], Any] | None = None  # the last prompt and its model state
        self.prompt_passes = 0  # forward passes over a whole prompt (the shared ones are run once)

    @classmethod
    def load(cls, folder: Path, **options: Any) -> TransformersGenerator:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        info = read_info(folder)
        options.setdefault("wire_format", info.get("wire_format", "memalpha"))
        return cls(AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), **options)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return list(self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"])

    def sample(self, messages: list[dict[str, str]], completions: Completions | None = None) -> Sample:
        """One completion of `messages`; with `completions` (an extractive format's), constrained to
        them the way the server's curator is: see `sample_constrained`."""
        if completions is not None:
            return self.sample_constrained(messages, completions)
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
                    output_scores=True,
                    return_dict_in_generate=True,
                )
        finally:
            self.model.train(was_training)
        completion = output.sequences[0, len(prompt) :].tolist()
        # scores are the logits after temperature: the very distribution each token was drawn from
        logprobs = [
            float(torch.log_softmax(scores[0].float(), dim=-1)[token])
            for scores, token in zip(output.scores, completion, strict=True)
        ]
        text = self.tokenizer.decode(completion, skip_special_tokens=True)
        return Sample(prompt, completion, text, logprobs=logprobs, full_logprobs=list(logprobs))

    def __call__(self, messages: list[dict[str, str]]) -> str:
        return self.sample(messages).text

    def sample_constrained(self, messages: list[dict[str, str]], completions: Completions) -> Sample:
        """A completion that only takes what `completions` allows, as llama.cpp's grammar and fed
        spans do in the server: where every allowed rest shares text, that text is fed in one
        forward pass; where they differ, the model picks among their first tokens (and the end of
        the output, where allowed), sampled at `temperature` over those candidates alone."""
        import torch

        prompt = self.prompt_ids(messages)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                state = self._prompt_state(prompt)

                def pick(candidates: list[int], firsts: dict[int, str], text: str) -> tuple[int, float, float]:
                    return self._pick(state.logits[0, -1], candidates)

                def advance(ids: list[int]) -> None:
                    nonlocal state
                    state = self.model(
                        torch.tensor([ids], device=self.model.device),
                        past_key_values=state.past_key_values,
                        use_cache=True,
                    )

                return self._walk(prompt, completions, pick, advance, self.max_new_tokens)
        finally:
            self.model.train(was_training)

    def teacher_sample(self, messages: list[dict[str, str]], completions: Completions, target: str) -> Sample:
        """The tokens `sample_constrained` gives when its picks spell `target` (an output the
        completions allow), with the same mask of picked and fed tokens: a supervised target that
        is tokenized as a rollout is, and learned from at the choices only. No model is run."""

        def pick(candidates: list[int], firsts: dict[int, str], text: str) -> tuple[int, float, float]:
            rest = target[len(text) :]
            if not rest and self.tokenizer.eos_token_id in candidates:
                return self.tokenizer.eos_token_id, 0.0, 0.0
            spelled = []  # (length of what the token adds, token) for each token the target goes on with
            for token in (t for t in candidates if t in firsts):
                piece = self._piece(token)
                added = piece if firsts[token].startswith(piece) else firsts[token]  # a part of a character
                if rest.startswith(added):
                    spelled.append((len(added), token))
            if not spelled:
                raise ValueError(f"the format does not allow the target's continuation {rest[:60]!r}")
            return max(spelled)[1], 0.0, 0.0  # the longest, as the tokenizer would spell it

        return self._walk(self.prompt_ids(messages), completions, pick, lambda ids: None, 1 << 20)

    def _walk(
        self,
        prompt: list[int],
        completions: Completions,
        pick: Callable[[list[int], dict[int, str], str], tuple[int, float, float]],
        advance: Callable[[list[int]], None],
        limit: int,
    ) -> Sample:
        """The constrained output: fixed text fed, choices made by `pick(candidates, first token ->
        its rest, text so far)`; `advance(ids)` is told every span added, up to `limit` tokens."""
        completion: list[int] = []
        chosen: list[int] = []
        logprobs: list[float] = []
        full_logprobs: list[float] = []
        text = ""
        eos = self.tokenizer.eos_token_id
        while len(completion) < limit:
            room = limit - len(completion)
            rests, may_end = completions(text)
            fixed = shared_text(rests, may_end)
            if fixed:
                ids, piece = self._fitted(fixed, room)
                marks = [0] * len(ids)
                logprobs += [0.0] * len(ids)  # fed: probability 1 under the sampler
                full_logprobs += [0.0] * len(ids)  # not scored (masked out of the loss)
            else:
                firsts = {self._ids(rest)[0]: rest for rest in rests if rest}
                candidates = [*firsts, *([eos] if may_end or not firsts else [])]
                token, sampled, full = pick(candidates, firsts, text)
                logprobs.append(sampled)
                full_logprobs.append(full)
                if token == eos:
                    completion.append(token)
                    chosen.append(1)
                    break
                ids = [token]
                piece = self._piece(token)
                if not firsts[token].startswith(piece):  # part of a character: take the whole rest
                    ids, piece = self._fitted(firsts[token], room)
                marks = [1] + [0] * (len(ids) - 1)
                logprobs += [0.0] * (len(ids) - 1)
                full_logprobs += [0.0] * (len(ids) - 1)
            completion += ids
            chosen += marks
            text += piece
            advance(ids)
        return Sample(prompt, completion, text, chosen, logprobs, full_logprobs)

    def _piece(self, token: int) -> str:
        return str(self.tokenizer.decode([token], clean_up_tokenization_spaces=False))

    def _prompt_state(self, prompt: list[int]) -> Any:
        """The model's output (logits, KV cache) after `prompt`. The rollouts of one group start
        from the same prompt (every first chunk: empty memory), so the last one is kept and a copy
        of its cache handed out, instead of running the prompt's forward pass once per rollout;
        the copy keeps the kept one unchanged as the rollout extends its own."""
        import torch

        key = tuple(prompt)
        if self._prefix is None or self._prefix[0] != key:
            state = self.model(torch.tensor([prompt], device=self.model.device), use_cache=True)
            self._prefix = (key, state)
            self.prompt_passes += 1
        state = self._prefix[1]
        return type(state)(logits=state.logits, past_key_values=copy.deepcopy(state.past_key_values))

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _fitted(self, text: str, room: int) -> tuple[list[int], str]:
        """The tokens of `text`, at most `room`, and the text they make (cut with them)."""
        ids = self._ids(text)
        if len(ids) <= room:
            return ids, text
        return ids[:room], self.tokenizer.decode(ids[:room], clean_up_tokenization_spaces=False)

    def _pick(self, logits: Any, candidates: list[int]) -> tuple[int, float, float]:
        """Greedy or sampled at `temperature`, among `candidates` only; with the pick's log-prob
        under that renormalized distribution and under the model's full one (both at `temperature`)."""
        import torch

        scaled = logits.float() / (self.temperature if self.temperature > 0 else 1.0)
        values = scaled[candidates]
        if self.greedy or self.temperature <= 0:
            index = int(torch.argmax(values))
            return candidates[index], 0.0, float(torch.log_softmax(scaled, dim=0)[candidates[index]])
        local = torch.log_softmax(values, dim=0)
        index = int(torch.multinomial(local.exp(), 1))
        return candidates[index], float(local[index]), float(torch.log_softmax(scaled, dim=0)[candidates[index]])
