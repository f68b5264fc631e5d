"""Text embeddings from a static model shipped inside the package (see docs/embeddings.md).

A model2vec static model distilled from all-MiniLM-L6-v2: a token-embedding table plus mean
pooling, run here with `tokenizers` and numpy (model2vec itself builds the model, in
scripts/build_embedding_model.py). No torch and no network at run time; ~0.1 s to load, tens of
thousands of sentences per second on two cores, so indexing never waits on embeddings. Loaded
lazily on first use, never at import, so the MCP handshake does not pay for it.
"""

from __future__ import annotations

import functools
import json
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from tokenizers import Tokenizer

    from mcp_memalpha.expansion import Synonyms

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "minilm-static"
EMBEDDING_DIM = 256


def tokenizer(model_dir: Path = DEFAULT_MODEL_DIR) -> Tokenizer:
    """The model's WordPiece tokenizer, loaded once per process: the embeddings and the token
    counts (`tokens.py`) share it (8 MB each). No truncation, no padding, and never changed after
    loading, so threads may use it at once."""
    return _tokenizer_at(model_dir.resolve())


_tokenizer_lock = threading.Lock()


@functools.cache
def _tokenizer_at(model_dir: Path) -> Tokenizer:
    from tokenizers import Tokenizer

    with _tokenizer_lock:
        loaded = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        loaded.no_truncation()
        loaded.no_padding()
    return loaded


_SAFETENSORS_DTYPES = {"F16": "float16", "F32": "float32"}


def _mapped_table(path: Path, name: str = "embeddings") -> np.ndarray:
    """A safetensors tensor memory-mapped read-only, not read into memory.

    An encode reads only the rows of the tokens in its texts, so only those pages become
    resident, and they are file pages that every server process on the machine shares (one per
    client window): 15 MB of private memory saved per process. `safetensors.numpy.load_file`
    copies the whole table instead. Format: an 8-byte little-endian header length, a JSON
    header of dtype, shape and byte offsets, then the data.
    """
    import numpy as np

    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        entry = json.loads(handle.read(header_size))[name]
    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise ValueError(
            f"{path}: tensor {name!r} has dtype {entry['dtype']}; expected one of {sorted(_SAFETENSORS_DTYPES)}"
        )
    start, _ = entry["data_offsets"]
    return np.memmap(path, dtype=dtype, mode="r", offset=8 + header_size + start, shape=tuple(entry["shape"]))


class StaticModel:
    """The static model's inference: each text's token vectors from the table, averaged, unit length.

    Bit for bit what model2vec's `StaticModel.encode` computes for this model (no token weights,
    no vocabulary quantization: `tests/test_embedding.py` compares the two), without what a server
    does not need of it: model2vec's constructor copies the tokenizer and builds a tuple of the
    30k token strings (13 MB per process), and it imports joblib and tqdm.
    """

    def __init__(self, model_dir: Path) -> None:
        import numpy as np

        config = json.loads((model_dir / "config.json").read_text())
        self.embedding = _mapped_table(model_dir / "model.safetensors")
        self.tokenizer = tokenizer(model_dir)
        self.normalize = bool(config.get("normalize", True))
        # model2vec cuts each text to max_length x the median token length in characters before
        # tokenizing, then keeps the first max_length tokens (its tokenizer's truncation).
        self.max_tokens = int(config.get("max_length", 512))
        self.max_chars = self.max_tokens * int(np.median([len(token) for token in self.tokenizer.get_vocab()]))
        unknown = getattr(self.tokenizer.model, "unk_token", None)
        self.unknown_id = self.tokenizer.token_to_id(unknown) if unknown else None

    def encode(self, texts: list[str]) -> np.ndarray:
        """One float32 row per text; a text with no known token is the zero vector."""
        import numpy as np

        encodings = self.tokenizer.encode_batch_fast([t[: self.max_chars] for t in texts], add_special_tokens=False)
        ids = [[i for i in encoding.ids[: self.max_tokens] if i != self.unknown_id] for encoding in encodings]
        out = np.zeros((len(ids), self.embedding.shape[1]), dtype=self.embedding.dtype)
        by_length: dict[int, list[int]] = {}
        for row, token_ids in enumerate(ids):
            if token_ids:
                by_length.setdefault(len(token_ids), []).append(row)
        for rows in by_length.values():  # texts of one length: one gather and one mean
            out[rows] = self.embedding[np.array([ids[r] for r in rows], dtype=np.int64)].mean(axis=1)
        vectors = out.astype(np.float32)
        if self.normalize:  # in float32, rounded back to the table's dtype as model2vec does
            vectors = (vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-32)).astype(out.dtype)
        return vectors.astype(np.float32)


class Embedder:
    """Thread-safe, lazily loaded sentence embedder returning unit-length float32 vectors."""

    def __init__(self, model_dir: Path = DEFAULT_MODEL_DIR) -> None:
        self.model_dir = model_dir
        self._model: StaticModel | None = None
        self._synonyms: Synonyms | None = None
        self._lock = threading.Lock()

    def _load(self) -> StaticModel:
        with self._lock:
            if self._model is None:
                self._model = StaticModel(self.model_dir)
        return self._model

    def synonyms(self) -> Synonyms:
        """Each word of the model's vocabulary with its nearest words, for query expansion
        (precomputed beside the model; read once, on the first search)."""
        with self._lock:
            if self._synonyms is None:
                from mcp_memalpha.expansion import NEIGHBOURS_FILE, Synonyms

                self._synonyms = Synonyms.load(self.model_dir / NEIGHBOURS_FILE)
            return self._synonyms

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._load().encode(texts)
