"""Token counting for capacities and budgets.

We count with the bert-base-uncased WordPiece tokenizer that ships with our embedding model
(`assets/minilm-static/tokenizer.json`, run by HuggingFace `tokenizers`): one file serves both
embedding and counting, and it loads in ~0.1 s with no network. For English prose it counts
within a few percent of the Qwen/SmolLM BPE tokenizers the curator models use.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from mcp_memalpha.embedding import DEFAULT_MODEL_DIR

if TYPE_CHECKING:
    from tokenizers import Tokenizer

TOKENIZER_NAME = "bert-base-uncased WordPiece (from all-MiniLM-L6-v2)"
_lock = threading.Lock()


@functools.cache
def _tokenizer() -> Tokenizer:
    from tokenizers import Tokenizer

    with _lock:
        tokenizer = Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json"))
        tokenizer.no_truncation()
        tokenizer.no_padding()
    return tokenizer


def count_tokens(text: str) -> int:
    """Number of tokens in `text`, without special tokens."""
    if not text:
        return 0
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


def count_many(texts: list[str]) -> list[int]:
    encodings = _tokenizer().encode_batch(texts, add_special_tokens=False)
    return [len(e.ids) for e in encodings]


def head_tokens(text: str, budget: int) -> str:
    """The start of `text` up to `budget` tokens, cut back to a word boundary when that leaves
    something (a single over-long word is cut inside)."""
    offsets = _tokenizer().encode(text, add_special_tokens=False).offsets
    if len(offsets) <= budget:
        return text
    end = offsets[max(budget, 1) - 1][1]
    head = text[:end]
    if end < len(text) and not text[end].isspace():
        head = head.rsplit(None, 1)[0] if " " in head.strip() else head
    return head.rstrip()
