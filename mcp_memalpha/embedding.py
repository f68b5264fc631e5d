"""Text embeddings from a static model shipped inside the package (see docs/embeddings.md).

model2vec runs a distilled all-MiniLM-L6-v2: a token-embedding table plus mean pooling. No
torch and no network at run time; ~0.35 s to load, tens of thousands of sentences per second on
two cores, so indexing never waits on embeddings. Loaded lazily on first use, never at import,
so the MCP handshake does not pay for it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from mcp_memalpha.expansion import Synonyms

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "minilm-static"
EMBEDDING_DIM = 256


def _static_model(model_dir: Path) -> Any:
    """model2vec's StaticModel built from the folder's files directly.

    `StaticModel.from_pretrained` also parses the model card and consults the hub machinery:
    0.29 s against 0.07 s here, on the path of the first search after a cold start.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never reach for a hub
    from model2vec import StaticModel
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    config = json.loads((model_dir / "config.json").read_text())
    return StaticModel(
        vectors=load_file(str(model_dir / "model.safetensors"))["embeddings"],
        tokenizer=Tokenizer.from_file(str(model_dir / "tokenizer.json")),
        config=config,
        normalize=bool(config.get("normalize", True)),
    )


class Embedder:
    """Thread-safe, lazily loaded sentence embedder returning unit-length float32 vectors."""

    def __init__(self, model_dir: Path = DEFAULT_MODEL_DIR) -> None:
        self.model_dir = model_dir
        self._model: Any = None
        self._synonyms: Synonyms | None = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _static_model(self.model_dir)
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
        vectors = self._load().encode(texts, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
