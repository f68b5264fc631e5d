"""The server's static-model inference against model2vec's own, and what it keeps in memory."""

from __future__ import annotations

import json
import random

import numpy as np
from model2vec import StaticModel as Model2Vec
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from mcp_memalpha.embedding import DEFAULT_MODEL_DIR, Embedder


def model2vec_reference() -> Model2Vec:
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    return Model2Vec(
        vectors=load_file(str(DEFAULT_MODEL_DIR / "model.safetensors"))["embeddings"],
        tokenizer=Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json")),
        config=config,
        normalize=bool(config["normalize"]),
    )


def test_vectors_are_model2vecs_bit_for_bit() -> None:
    rng = random.Random(7)
    vocabulary = sorted(Tokenizer.from_file(str(DEFAULT_MODEL_DIR / "tokenizer.json")).get_vocab())
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 700))) for _ in range(200)]
    texts += [
        "",  # no token: the zero vector
        "☃ ☃",  # unknown tokens only
        "word " * 3000,  # past the character cut and the 512-token truncation
        "Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
        "What is my profession?",
    ]
    ours = Embedder().embed(texts)
    reference = np.asarray(model2vec_reference().encode(texts, show_progress_bar=False), dtype=np.float32)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 256)
    assert np.array_equal(ours, reference)


def test_the_table_is_mapped_from_the_file_not_read() -> None:
    """Only the rows an encode touches become resident, as pages shared by every server process."""
    embedder = Embedder()
    embedder.embed(["warm-up"])
    table = embedder._load().embedding
    assert isinstance(table, np.memmap) and not table.flags.writeable
    assert str(table.filename).endswith("model.safetensors")


def test_embeddings_and_token_counts_share_one_tokenizer() -> None:
    from mcp_memalpha.tokens import _tokenizer

    assert Embedder()._load().tokenizer is _tokenizer()
