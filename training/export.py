"""Trained curator weights -> a GGUF file that the server's curator (llama.cpp) loads.

How: the transformers model is written once as an F32 GGUF with `gguf` (gguf-py) the way
llama.cpp's `convert_hf_to_gguf.py` writes a Llama or a Qwen3 (hyperparameters, tensor names from
gguf-py's map, for Llama the Q/K rows permuted for llama.cpp's rope, a gpt2-style BPE vocabulary,
the chat template, the model's name and base models), then llama.cpp itself converts it to the
chosen type (`llama_model_quantize`): one writer, and every quantization is llama.cpp's own. Two
architectures are handled: Llama (SmolLM2, the tiny smoke model) and Qwen3 (Memalpha-4B and its
family, with per-head Q/K norms, tied or untied embeddings, Qwen2's byte-level BPE); others are
refused by name.

Before quantizing, the F32 file's vocabulary is loaded by llama.cpp and must tokenize a probe text
exactly as the checkpoint's tokenizer does, so a wrong pre-tokenizer or special token cannot ship.

torch, transformers and llama_cpp are imported inside functions (the `train` extra).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Any

from mcp_memalpha.policy.formats import make_format
from mcp_memalpha.policy.model import TRAINED_ON_KEY, WIRE_FORMAT_KEY

# --quant name -> llama.cpp file type (names of llama_cpp constants, resolved when quantizing)
QUANT_TYPES = {
    "f32": "LLAMA_FTYPE_ALL_F32",
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
}
# Hugging Face model_type -> (gguf-py MODEL_ARCH member, whether Q/K rows are permuted for llama.cpp's
# rope): llama.cpp runs Llama with adjacent-pair rope, Qwen3 with NeoX rope (transformers' layout).
ARCHITECTURES = {"llama": ("LLAMA", True), "qwen3": ("QWEN3", False)}
# Qwen2's split regex (Qwen2/2.5/3 tokenizer.json), which llama.cpp implements as pre-tokenizer "qwen2"
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# llama.cpp pre-tokenizer names for the Hugging Face pre-tokenizer pipelines we can recognize
PRE_TOKENIZERS = {
    ("bytelevel",): "gpt-2",
    ("digits", "bytelevel"): "smollm",
    (f"split:{QWEN2_PATTERN}", "bytelevel-no-regex"): "qwen2",
}
# what the tokenizer check encodes: chat markup, digits, punctuation, non-ASCII, odd whitespace, ✿ calls
PROBE_MESSAGES = [
    {"role": "system", "content": "You curate memory. Use the tools."},
    {
        "role": "user",
        "content": "[Dialogue at 8 May 2023]\nCaroline: I'm moving to Zürich on 12/06, 3 kids!\n\n  ok?\n"
        '✿FUNCTION✿: new_memory_insert\n✿ARGS✿: {"memory_type": "episodic_memory", "content": "At 8 May"}',
    },
]


class ExportError(ValueError):
    """The checkpoint cannot be exported (architecture, tokenizer, quantization)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    quant: str
    bytes: int
    seconds: float


@dataclass(frozen=True)
class Identity:
    """Who the model is, written into the GGUF's `general.*` keys (the server reads them to choose the
    wire format: a name or base model naming Memalpha gets the format Memalpha-4B was trained in)."""

    name: str = "curator"
    base_models: tuple[str, ...] = ()

    @classmethod
    def of_checkpoint(cls, folder: Path, name: str | None = None, base_models: Sequence[str] = ()) -> Identity:
        """By default the checkpoint's own name (its folder, or the repository of a Hugging Face cache
        snapshot, as llama.cpp's converter names it) and, for a model trained here, the model its
        training started from."""
        from mcp_memalpha.training.generation import read_info

        start = read_info(folder).get("start_model")
        bases = tuple(base_models) or ((Path(start).name,) if start else ())
        return cls(name=name or checkpoint_name(folder), base_models=bases)


def checkpoint_name(folder: Path) -> str:
    parts = Path(folder).resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3].split("--")[-1]  # ~/.cache/huggingface/hub/models--ORG--NAME/snapshots/SHA
    return parts[-1]


def export_gguf(
    checkpoint: Path,
    output: Path,
    *,
    quant: str = "q8_0",
    wire_format: str | None = None,
    name: str | None = None,
    base_models: Sequence[str] = (),
    threads: int | None = None,
) -> ExportResult:
    """Export a checkpoint folder (from `mcp-memalpha train`, or any Llama/Qwen3 model folder; a LoRA
    adapter is merged into its base) to `output`, quantized to `quant` (see QUANT_TYPES)."""
    from mcp_memalpha.training.generation import read_info

    started = time.perf_counter()
    check_quant(quant)
    model, tokenizer = load_checkpoint(checkpoint)
    wire_format = wire_format or read_info(checkpoint).get("wire_format")
    identity = Identity.of_checkpoint(checkpoint, name, base_models)
    write_and_quantize(
        model, tokenizer, output, quant=quant, wire_format=wire_format, identity=identity, threads=threads
    )
    return ExportResult(output, quant, output.stat().st_size, time.perf_counter() - started)


def export_adapter(
    folder: Path, output: Path, *, wire_format: str | None = None, name: str | None = None
) -> ExportResult:
    """A peft LoRA adapter folder (`<run>/final-adapter`) -> a GGUF LoRA adapter that llama.cpp applies
    over the base GGUF it was trained from (`serve --policy OUT.gguf`), in F16: a few MB, and the
    base stays the very file whose dequantized weights the adapters were trained on."""
    import gguf
    from mcp_memalpha.training.evaluate import trained_conversations
    from transformers import AutoConfig

    started = time.perf_counter()
    spec = adapter_spec(folder)
    try:
        config = AutoConfig.from_pretrained(spec["base_model_name_or_path"])
    except (OSError, ValueError) as exc:
        raise ExportError(
            f"{folder}: the adapter's base model {spec['base_model_name_or_path']!r} cannot be read ({exc})"
        ) from None
    arch = architecture(config, "adapter")
    writer = gguf.GGUFWriter(str(output), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(spec["lora_alpha"]))
    writer.add_name(name or checkpoint_name(folder))
    if wire_format:
        writer.add_string(WIRE_FORMAT_KEY, wire_format)
    trained_on = trained_conversations(Path(folder))
    if trained_on:
        writer.add_string(TRAINED_ON_KEY, ",".join(sorted(trained_on)))
    for tensor_name, array in adapter_tensors(folder, config, arch):
        writer.add_tensor(tensor_name, array.astype("float16"))
    output.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return ExportResult(output, "f16", output.stat().st_size, time.perf_counter() - started)


def adapter_spec(folder: Path) -> dict[str, Any]:
    """The adapter's peft config, refusing what llama.cpp's LoRA cannot express."""
    path = Path(folder) / "adapter_config.json"
    if not path.is_file():
        raise ExportError(f"{folder} is not a LoRA adapter folder (no adapter_config.json)")
    spec: dict[str, Any] = json.loads(path.read_text())
    if spec.get("peft_type", "LORA") != "LORA" or spec.get("use_dora") or spec.get("modules_to_save"):
        raise ExportError(f"{folder}: only plain LoRA adapters export (no DoRA, no modules_to_save)")
    if spec.get("bias", "none") != "none":
        raise ExportError(f"{folder}: adapters that train biases do not export (bias={spec['bias']!r})")
    if spec.get("rank_pattern") or spec.get("alpha_pattern"):
        raise ExportError(f"{folder}: per-module ranks or alphas do not export (llama.cpp takes one alpha)")
    return spec


def adapter_tensors(folder: Path, config: Any, arch: Any) -> Iterator[tuple[str, Any]]:
    """(GGUF name, float32 array) per LoRA matrix: `<base tensor>.lora_a` is A (rank x in) and
    `.lora_b` is B (out x rank), B's rows permuted like the base Q/K rows (llama.cpp's rope)."""
    import gguf
    from safetensors.numpy import load_file

    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    permute = ARCHITECTURES[config.model_type][1]
    for key, array in sorted(load_file(str(Path(folder) / "adapter_model.safetensors")).items()):
        module, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is None or part not in ("A.weight", "B.weight"):
            raise ExportError(f"no GGUF name for adapter tensor {key!r}")
        array = array.astype("float32")
        if part == "B.weight" and permute and module.endswith(("q_proj", "k_proj")):
            heads = config.num_attention_heads if module.endswith("q_proj") else config.num_key_value_heads
            array = permute_rope(array, heads)
        yield name + (".lora_a" if part == "A.weight" else ".lora_b"), array


def write_and_quantize(
    model: Any,
    tokenizer: Any,
    output: Path,
    *,
    quant: str,
    wire_format: str | None = None,
    identity: Identity | None = None,
    threads: int | None = None,
) -> Path:
    """F32 GGUF of `model` in a scratch file, checked, then converted by llama.cpp to `output`."""
    check_quant(quant)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".export-") as scratch:
        full = write_gguf(model, tokenizer, Path(scratch) / "f32.gguf", wire_format=wire_format, identity=identity)
        check_tokenizer(full, tokenizer)
        quantize(full, output, quant, threads=threads)
    return output


def check_quant(quant: str) -> None:
    if quant not in QUANT_TYPES:
        raise ExportError(f"unknown quantization {quant!r}; choose one of {', '.join(QUANT_TYPES)}")


def load_checkpoint(folder: Path) -> tuple[Any, Any]:
    """The model (LoRA adapters merged into their base) and tokenizer saved in `folder`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise ExportError(f"{folder} is not a transformers checkpoint (no config.json or adapter_config.json)")
    if (folder / "adapter_config.json").is_file():
        try:
            from peft import AutoPeftModelForCausalLM
        except ImportError:
            raise ExportError(f"{folder} holds a LoRA adapter; merging it needs peft (pip install peft)") from None
        model = AutoPeftModelForCausalLM.from_pretrained(folder).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(folder)
    return model, AutoTokenizer.from_pretrained(folder)


def write_gguf(
    model: Any, tokenizer: Any, path: Path, *, wire_format: str | None = None, identity: Identity | None = None
) -> Path:
    """An unquantized (F32) GGUF of a transformers Llama or Qwen3 model and its tokenizer."""
    import gguf

    config = model.config
    if wire_format:
        try:
            make_format(wire_format)
        except ValueError as exc:
            raise ExportError(f"wire format: {exc}") from None
    arch = architecture(config, type(model).__name__)
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    add_identity(writer, identity or Identity())
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    add_hyperparameters(writer, config)
    add_tokenizer(writer, tokenizer, config)
    if wire_format:
        writer.add_string(WIRE_FORMAT_KEY, wire_format)
    for tensor_name, array in gguf_tensors(model, arch):
        writer.add_tensor(tensor_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def architecture(config: Any, class_name: str) -> Any:
    """The gguf-py architecture for a transformers config, or a clear refusal."""
    import gguf

    if config.model_type not in ARCHITECTURES:
        raise ExportError(
            f"cannot export architecture {config.model_type!r} ({class_name}); supported: "
            f"{', '.join(ARCHITECTURES)} (SmolLM2 and the tiny smoke model are llama, Memalpha-4B is qwen3)"
        )
    if config.model_type == "qwen3" and getattr(config, "attention_bias", False):
        raise ExportError("qwen3 with attention_bias=True: llama.cpp's qwen3 has no attention biases")
    if getattr(config, "use_sliding_window", False):
        raise ExportError(f"{config.model_type} with use_sliding_window=True is not supported by this exporter")
    return getattr(gguf.MODEL_ARCH, ARCHITECTURES[config.model_type][0])


def add_identity(writer: Any, identity: Identity) -> None:
    writer.add_name(identity.name)
    if identity.base_models:
        writer.add_base_model_count(len(identity.base_models))
        for index, base in enumerate(identity.base_models):
            writer.add_base_model_name(index, base)


def add_hyperparameters(writer: Any, config: Any) -> None:
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ExportError(f"rope scaling {rope.get('rope_type')!r} is not supported by this exporter")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(head_dim)  # Qwen3's heads are wider than hidden / heads (128 vs 80 in the 4B)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)


def gguf_tensors(model: Any, arch: Any) -> Iterator[tuple[str, Any]]:
    """(GGUF name, float32 array) for every weight, in llama.cpp's layout."""
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    permute = ARCHITECTURES[config.model_type][1]
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"no GGUF name for tensor {hf_name!r}")
        array = tensor.detach().float().cpu().numpy()
        if permute and hf_name.endswith("q_proj.weight"):
            array = permute_rope(array, config.num_attention_heads)
        elif permute and hf_name.endswith("k_proj.weight"):
            array = permute_rope(array, config.num_key_value_heads)
        yield name, array


def permute_rope(weights: Any, heads: int) -> Any:
    """Transformers' Llama rotates the two halves of each head; llama.cpp's Llama rope rotates adjacent
    pairs. Interleave each head's rows accordingly (what convert_hf_to_gguf.py does for Llama)."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def add_tokenizer(writer: Any, tokenizer: Any, config: Any) -> None:
    """gpt2-style byte-level BPE vocabulary, merges, special ids and the chat template."""
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE":
        raise ExportError(f"tokenizer model {spec['model']['type']!r} is not supported (byte-level BPE only)")
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(config.vocab_size):
        if index not in by_id:  # the embedding matrix may be padded past the tokenizer
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(by_id[index])
        if index in added:
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    # Qwen's tokenizer has no BOS token; its config names <|endoftext|> (as llama.cpp's converter writes)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else getattr(config, "bos_token_id", None)
    for token_id, add in (
        (bos, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.unk_token_id, writer.add_unk_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
    ):
        if token_id is not None:
            add(token_id)
    # The prompt is the rendered chat template (which writes any BOS it wants itself), tokenized
    # without added specials in training (generation.py); llama.cpp must add nothing either.
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for the Hugging Face pre-tokenizer (it splits text before BPE)."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    shape = tuple(pre_tokenizer_step(step) for step in steps)
    if shape not in PRE_TOKENIZERS:
        raise ExportError(f"pre-tokenizer {json.dumps(pre)} has no known llama.cpp equivalent")
    return PRE_TOKENIZERS[shape]


def pre_tokenizer_step(step: dict[str, Any]) -> str:
    kind = str(step.get("type", "")).lower()
    if kind == "bytelevel" and step.get("use_regex") is False:
        return "bytelevel-no-regex"
    if kind == "split" and step.get("behavior") == "Isolated" and not step.get("invert"):
        return f"split:{(step.get('pattern') or {}).get('Regex')}"
    return kind if kind != "split" else "split-other"


def check_tokenizer(path: Path, tokenizer: Any) -> None:
    """llama.cpp, reading the file's vocabulary, must tokenize a chat prompt like the checkpoint's
    tokenizer (the prompt the curator renders goes through llama.cpp's tokenizer)."""
    from llama_cpp import Llama

    text = tokenizer.apply_chat_template(
        PROBE_MESSAGES, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    expected = list(tokenizer(text, add_special_tokens=False)["input_ids"])  # as training tokenizes
    vocab = Llama(str(path), vocab_only=True, verbose=False)
    try:
        got = vocab.tokenize(text.encode(), add_bos=True, special=True)  # as the curator tokenizes
    finally:
        vocab.close()
    if got != expected:
        same = sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], zip(got, expected, strict=False)))
        raise ExportError(
            "llama.cpp tokenizes the exported vocabulary differently from the checkpoint's tokenizer (first "
            f"difference at token {same}: {got[same : same + 5]} vs {expected[same : same + 5]})"
        )


def quantize(source: Path, output: Path, quant: str, *, threads: int | None = None) -> Path:
    """llama.cpp's own quantizer (what `llama-quantize` runs), through llama-cpp-python's C API."""
    import os

    import llama_cpp

    check_quant(quant)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = threads or max(1, min(os.cpu_count() or 1, 8))
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(output).encode(), params)
    if status != 0:
        raise ExportError(f"llama.cpp could not quantize {source} to {quant} (status {status})")
    return output
