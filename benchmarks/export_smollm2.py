"""Round trip of the real SmolLM2-135M-Instruct through the exporter.

The embedded Q4_1 GGUF is dequantized into transformers (what `mcp-memalpha train --model default`
starts from), exported again with `mcp_memalpha.training.export` to F16 and Q8_0, and compared:
- F16 export vs the transformers model: logits on a curator prompt (the real-size proof of the rope
  permutation and the vocabulary);
- each export vs the original Q4_1 file, both through llama.cpp: greedy tokens on curator prompts
  (approximate by nature: the weights went Q4_1 -> F32 -> F16/Q8_0, the original is Q4_1 itself).

Usage: python benchmarks/export_smollm2.py [OUT_DIR]   (about 3 minutes and 1.2 GB on 2 cores)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from mcp_memalpha.policy.formats import EXAMPLE_CHUNK, make_format
from mcp_memalpha.policy.model import resolve_model
from mcp_memalpha.policy.prompt import ChunkContext
from mcp_memalpha.training.export import write_and_quantize
from mcp_memalpha.training.sandbox import tool_defs

NEW_TOKENS = 48


def prompts(tokenizer: Any) -> list[str]:
    """The curator's own prompts (json and memalpha wire formats) and a plain chat question."""
    context = ChunkContext.build(EXAMPLE_CHUNK, "8 May 2023", "", ())
    conversations = [make_format(name).messages(tool_defs(), context) for name in ("json", "memalpha")]
    conversations.append([{"role": "user", "content": "What is the capital of France? Answer in one sentence."}])
    return [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]


def greedy(path: Path, text: str) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=4096, n_threads=2, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=True, special=True)
    tokens = []
    for token in llm.generate(ids, temp=0.0, top_k=1):
        if token == llm.token_eos() or len(tokens) == NEW_TOKENS:
            break
        tokens.append(token)
    llm.close()
    return tokens


def last_logits(path: Path, ids: list[int]) -> np.ndarray:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=4096, n_threads=2, logits_all=True, verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)])
    llm.close()
    return logits


def agreement(a: list[int], b: list[int]) -> str:
    prefix = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    same = sum(x == y for x, y in zip(a, b, strict=False))
    return f"identical prefix {prefix}/{max(len(a), len(b))}, same position {same}/{max(len(a), len(b))}"


def main(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    original = resolve_model("default")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(original.parent, gguf_file=original.name)
    model = AutoModelForCausalLM.from_pretrained(original.parent, gguf_file=original.name)
    print(f"load Q4_1 GGUF into transformers: {time.perf_counter() - started:.1f} s")
    files = {}
    for quant in ("f16", "q8_0", "q4_k_m"):
        started = time.perf_counter()
        files[quant] = write_and_quantize(model, tokenizer, out / f"smollm2-{quant}.gguf", quant=quant)
        size = files[quant].stat().st_size / 1e6
        print(f"export {quant}: {time.perf_counter() - started:.1f} s, {size:.1f} MB")
    print(f"original Q4_1: {original.stat().st_size / 1e6:.1f} MB")

    texts = prompts(tokenizer)
    ids = list(tokenizer(texts[0], add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
    got = last_logits(files["f16"], ids)
    print(
        f"F16 vs transformers on a {len(ids)}-token curator prompt: max |logit diff| "
        f"{np.abs(got - expected).max():.3f} (logits span {expected.min():.1f}..{expected.max():.1f}), "
        f"argmax agreement {(got.argmax(-1) == expected.argmax(-1)).mean():.3f}"
    )
    for index, text in enumerate(texts):
        reference = greedy(original, text)
        print(f"prompt {index}: Q4_1 original says {tokenizer.decode(reference)[:120]!r}")
        for quant, path in files.items():
            tokens = greedy(path, text)
            print(f"  {quant}: {agreement(tokens, reference)}; {tokenizer.decode(tokens)[:80]!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            main(Path(scratch))
