"""Token counting for capacities and budgets.

We count with the bert-base-uncased WordPiece tokenizer that ships with our embedding model
(`assets/minilm-static/tokenizer.json`, run by HuggingFace `tokenizers`): one file serves both
embedding and counting, and it loads in ~0.1 s with no network. For English prose it counts
within a few percent of the Qwen/SmolLM BPE tokenizers the curator models use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_memalpha.embedding import tokenizer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_NAME = "bert-base-uncased WordPiece (from all-MiniLM-L6-v2)"


def _tokenizer() -> Tokenizer:
    return tokenizer()  # the embedding model's own, loaded once for both


def count_tokens(text: str) -> int:
    """Number of tokens in `text`, without special tokens."""
    if not text:
        return 0
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


def count_many(texts: list[str]) -> list[int]:
    encodings = _tokenizer().encode_batch(texts, add_special_tokens=False)
    return [len(e.ids) for e in encodings]


def token_spans_many(texts: list[str]) -> list[list[tuple[int, int]]]:
    """For each text, the (start, end) character span of each of its tokens: one tokenizer pass
    gives both a text's size and where any count of tokens ends."""
    return [list(e.offsets) for e in _tokenizer().encode_batch(texts, add_special_tokens=False)]
