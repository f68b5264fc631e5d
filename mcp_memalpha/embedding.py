"""Text embeddings from a static model shipped inside the package (see docs/embeddings.md).

model2vec runs a distilled all-MiniLM-L6-v2: a token-embedding table plus mean pooling. No
torch and no network at run time; ~0.35 s to load, tens of thousands of sentences per second on
two cores, so indexing never waits on embeddings. Loaded lazily on first use, never at import,
so the MCP handshake does not pay for it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "minilm-static"
EMBEDDING_DIM = 256


class Embedder:
    """Thread-safe, lazily loaded sentence embedder returning unit-length float32 vectors."""

    def __init__(self, model_dir: Path = DEFAULT_MODEL_DIR) -> None:
        self.model_dir = model_dir
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                # The model is a local folder; make sure nothing ever reaches for a hub.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from model2vec import StaticModel

                self._model = StaticModel.from_pretrained(str(self.model_dir))
        return self._model

    @property
    def dim(self) -> int:
        return EMBEDDING_DIM

    def embed(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(texts, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
