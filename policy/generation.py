"""Token generation with llama.cpp: free or grammar-constrained, with repetition control.

Why our own loop instead of `Llama.create_completion(grammar=...)`: llama-cpp-python runs the
grammar over the whole vocabulary (49k tokens for SmolLM2) before every token, which cost a third
of the speed. Here the grammar only judges the top-k candidates of each step (one call into
llama.cpp on k tokens), and the whole vocabulary only when none of them fits: the output is the
same as the grammar allows, at nearly the unconstrained speed (benchmarks/curator.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from llama_cpp import Llama

TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen. Temperature 0 is greedy (deterministic: the server's default)."""

    temperature: float = 0.0
    top_k: int = 40
    repeat_penalty: float = 1.1  # llama.cpp's rule: positive logits divided, negative multiplied
    repeat_last_n: int = 64
    seed: int = 0


@dataclass(frozen=True)
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # the whole call
    generation_seconds: float  # after the prompt was evaluated: completion_tokens / this = tokens/s
    stop_reason: str  # "end", "stop", "length" or "degenerate"
    forced_tokens: int = 0  # of completion_tokens, those fed from a continuation rather than decoded
    prompt_sha256: str = ""  # ids_digest of the prompt token ids llama.cpp evaluated

    @property
    def degenerate(self) -> bool:
        return self.stop_reason == "degenerate"

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.generation_seconds if self.generation_seconds > 0 else 0.0


def ids_digest(ids: list[int]) -> str:
    """sha256 of token ids written in decimal, comma-separated: what a test or a user compares with
    another tokenizer's ids for the same prompt, without shipping the ids themselves."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def is_degenerate(tokens: list[int]) -> bool:
    """True when the tail is one short pattern over and over ("jenis_jenis_jenis…"): a span of
    2-16 tokens repeated 3 times in a row, or a single token 8 times."""
    if len(tokens) >= 8 and len(set(tokens[-8:])) == 1:
        return True
    for width in range(2, 17):
        if len(tokens) < 3 * width:
            break
        tail = tokens[-width:]
        if tokens[-2 * width : -width] == tail and tokens[-3 * width : -2 * width] == tail:
            return True
    return False


class Generator:
    """Generates from one loaded model; reuses the evaluated prompt prefix between calls."""

    def __init__(self, llm: Llama) -> None:
        import llama_cpp

        self.llm = llm
        self._lib = llama_cpp
        self._vocab = llm._model.vocab
        self._n_vocab = llm.n_vocab()
        self._all_ids = np.arange(self._n_vocab, dtype=np.int32)

    def count_tokens(self, text: str) -> int:
        return len(self.tokens(text))

    def tokens(self, text: str) -> list[int]:
        """The ids of `text` as a part of a prompt (no BOS; control tokens read as in a prompt)."""
        return list(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def text_of(self, ids: Sequence[int]) -> str:
        """The text of `ids`; a character cut at either end is left out."""
        return self.llm.detokenize(list(ids), special=True).decode("utf-8", errors="ignore")

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens `generate` evaluates for `prompt` (BOS included)."""
        return len(self.llm.tokenize(prompt.encode(), add_bos=True, special=True))

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        grammar: str | None = None,
        stop: tuple[str, ...] = (),
        sampling: Sampling = Sampling(),
        continuation: Callable[[str], str] | None = None,
        cut_degenerate: bool = True,
    ) -> Generated:
        """`continuation(output so far)` returns text every valid output goes on with (or ""):
        it is evaluated in one batch, like a prompt, instead of decoded token by token.
        `cut_degenerate` stops at a repetitive tail (off: EOS and `max_tokens` are the only ends)."""
        started = time.perf_counter()
        prompt_ids = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
        room = self.llm.n_ctx() - len(prompt_ids)
        if room < 1:
            raise ValueError(f"prompt: {len(prompt_ids)} tokens leave no room in the {self.llm.n_ctx()}-token context")
        self._evaluate(prompt_ids)
        generation_start = time.perf_counter()
        checker = self._grammar(grammar) if grammar else None
        rng = np.random.default_rng(sampling.seed)
        out: list[int] = []
        pieces: list[bytes] = []
        reason = "length"
        limit = min(max_tokens, room)
        forced_count = 0
        while len(out) < limit:
            token = self._next_token(out, prompt_ids, checker, sampling, rng)
            if self._lib.llama_vocab_is_eog(self._vocab, token):
                reason = "end"
                break
            batch = [token]
            pieces.append(self.llm.detokenize([token], special=False))
            if stop and any(s.encode() in b"".join(pieces[-32:]) for s in stop):
                out.append(token)
                reason = "stop"
                break
            if cut_degenerate and is_degenerate([*out, token]):
                out.append(token)
                reason = "degenerate"
                break
            if continuation is not None:
                batch = self._with_forced(continuation, token, out, pieces, limit)
                forced_count += len(batch) - 1
            for chosen in batch:
                if checker is not None:
                    checker.accept(chosen)
            out += batch
            self.llm.eval(batch)
        text = b"".join(pieces).decode("utf-8", errors="replace")
        if reason == "stop":
            for s in stop:
                text = text.split(s)[0]
        now = time.perf_counter()
        return Generated(
            text,
            len(prompt_ids),
            len(out),
            now - started,
            now - generation_start,
            reason,
            forced_tokens=forced_count,
            prompt_sha256=ids_digest(prompt_ids),
        )

    def _with_forced(
        self, continuation: Callable[[str], str], token: int, out: list[int], pieces: list[bytes], limit: int
    ) -> list[int]:
        """The tokens to evaluate next: the chosen `token` (whose piece ends `pieces`) and those of
        the text every valid output goes on with, at most `limit` output tokens in all.

        The current line is tokenized as a whole, so the model reads the tokens it would have
        written itself (`{"name"` as one text, not `{` then `"name"`): when the line's earlier
        tokens agree with that tokenization, it replaces the chosen token. `pieces` is updated to
        the tokens returned."""
        forced = continuation(b"".join(pieces).decode("utf-8", errors="replace"))
        if not forced:
            return [token]
        start = len(out)
        while start > 0 and b"\n" not in pieces[start - 1]:
            start -= 1
        line = self.llm.tokenize(b"".join(pieces[start:]) + forced.encode(), add_bos=False, special=False)
        if line[: len(out) - start] == out[start:]:
            batch = list(line[len(out) - start :])
        else:
            batch = [token, *self.llm.tokenize(forced.encode(), add_bos=False, special=False)]
        batch = batch[: max(1, limit - len(out))]
        pieces[len(out) :] = [self.llm.detokenize([i], special=False) for i in batch]
        return batch

    # ---- internals ---------------------------------------------------------------------------

    def _evaluate(self, prompt_ids: list[int]) -> None:
        """Evaluate the prompt, keeping the longest prefix already in the KV cache."""
        cached = self.llm.input_ids[: self.llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, prompt_ids[:-1], strict=False):  # the last token is always re-evaluated
            if a != b:
                break
            keep += 1
        self.llm.n_tokens = keep
        self.llm.eval(prompt_ids[keep:])

    def _grammar(self, gbnf: str) -> Any:
        from llama_cpp._internals import LlamaSampler
        from llama_cpp.llama_grammar import LlamaGrammar

        sampler = LlamaSampler()
        sampler.add_grammar(self.llm._model, LlamaGrammar.from_string(gbnf, verbose=False))
        return sampler

    def _logits(self) -> np.ndarray:
        pointer = self._lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()

    def _next_token(
        self, out: list[int], prompt_ids: list[int], checker: Any, sampling: Sampling, rng: np.random.Generator
    ) -> int:
        logits = self._logits()
        self._penalize(logits, (prompt_ids + out)[-sampling.repeat_last_n :], sampling.repeat_penalty)
        k = min(sampling.top_k, self._n_vocab)
        ids = np.argpartition(-logits, k - 1)[:k].astype(np.int32)
        candidates = self._allowed(ids, logits, checker)
        if candidates is None:  # none of the top-k fits the grammar: judge the whole vocabulary
            candidates = self._allowed(self._all_ids, logits, checker)
        if candidates is None:
            raise RuntimeError("grammar allows no token; the grammar is inconsistent")
        ids, values = candidates
        if sampling.temperature <= 0:
            return int(ids[int(np.argmax(values))])
        top = np.argsort(-values)[: sampling.top_k]
        weights = np.exp((values[top] - values[top].max()) / sampling.temperature)
        return int(ids[top][rng.choice(len(top), p=weights / weights.sum())])

    def _allowed(self, ids: np.ndarray, logits: np.ndarray, checker: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The candidates among `ids` that the grammar accepts next (all of them without one)."""
        if checker is None:
            return ids, logits[ids]
        data = np.zeros(len(ids), dtype=TOKEN_DATA)
        data["id"] = ids
        data["logit"] = logits[ids]
        array = self._lib.llama_token_data_array(
            data=data.ctypes.data_as(self._lib.llama_token_data_p), size=len(ids), selected=-1, sorted=False
        )
        self._lib.llama_sampler_apply(checker.sampler, ctypes.byref(array))
        ok = np.isfinite(data["logit"])
        if not ok.any():
            return None
        return data["id"][ok], data["logit"][ok]

    @staticmethod
    def _penalize(logits: np.ndarray, recent: list[int], penalty: float) -> None:
        if penalty == 1.0 or not recent:
            return
        seen = np.unique(np.asarray(recent, dtype=np.int64))
        values = logits[seen]
        logits[seen] = np.where(values > 0, values / penalty, values * penalty)
