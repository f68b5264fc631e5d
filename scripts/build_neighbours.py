"""Build the near-synonym table that ships beside the static embedding model (run once, offline).

For every whole word of the model's vocabulary, its nearest other words in the model's own
token-embedding space (cosine), written to `mcp_memalpha/assets/minilm-static/neighbours.tsv`
as `word<TAB>other:sim other:sim ...`. Query expansion (`mcp_memalpha/expansion.py`) reads it,
so a search pays a dictionary look-up instead of a scan of the 21k-word table. Needs only the
server's own dependencies; rerun after rebuilding the model:

    python scripts/build_neighbours.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcp_memalpha.embedding import DEFAULT_MODEL_DIR, StaticModel
from mcp_memalpha.expansion import NEIGHBOURS_FILE, nearest_words, table_words

KEEP = 6  # more than the search uses (expansion.NEIGHBOURS), so that constant can be tuned
FLOOR = 0.5  # below expansion.MIN_SIMILARITY, for the same reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()
    model = StaticModel(args.model_dir)
    entries = [(w, i) for w, i in table_words(model.tokenizer.get_vocab()) if i < len(model.embedding)]
    words = [w for w, _ in entries]
    vectors = model.embedding[[i for _, i in entries]].astype("float32")
    lines = [
        word + "\t" + " ".join(f"{other}:{sim}" for other, sim in found)
        for word, found in zip(words, nearest_words(words, vectors, KEEP, FLOOR), strict=True)
    ]
    (args.model_dir / NEIGHBOURS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} words, {sum(bool(line.split(chr(9))[1]) for line in lines)} with neighbours")


if __name__ == "__main__":
    main()
