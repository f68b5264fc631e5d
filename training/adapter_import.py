"""A GGUF LoRA adapter (what `export-gguf --adapter` writes, the shipped curator's included) -> a
peft adapter folder over the dequantized base, so GRPO can go on training the very adapter the
server serves instead of retraining its warm start (12-31 minutes on 2 cores, and not the same
weights byte for byte: other library versions give other rounding).

The inverse of `export.adapter_tensors`: GGUF tensor names back to the base's module names, and
for Llama B's Q/K rows put back from llama.cpp's rope layout. Weights come back as the F16 the
file holds, in float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp_memalpha.policy.model import WIRE_FORMAT_KEY, gguf_string, gguf_trained_on
from mcp_memalpha.training.export import ARCHITECTURES, ExportError, architecture

PEFT_PREFIX = "base_model.model."


def import_adapter(adapter: Path, base: Path, folder: Path) -> Path:
    """Write the GGUF LoRA adapter `adapter` as a peft adapter folder `folder` over the transformers
    checkpoint `base` (the run's `gguf-start`), with the training info a warm start leaves (its
    wire format and the conversations it was trained on). Refuses a file that is not a LoRA
    adapter, or one whose tensors do not fit the base's modules."""
    import gguf
    from mcp_memalpha.training.generation import write_info
    from peft import LoraConfig
    from safetensors.numpy import save_file
    from transformers import AutoConfig

    reader = gguf.GGUFReader(adapter)
    if gguf_string(adapter, "general.type") != "adapter" or gguf_string(adapter, gguf.Keys.Adapter.TYPE) != "lora":
        raise ExportError(f"{adapter} is not a GGUF LoRA adapter (general.type adapter, adapter.type lora)")
    alpha = float(reader.fields[gguf.Keys.Adapter.LORA_ALPHA].contents())
    if not alpha.is_integer():
        raise ExportError(f"{adapter}: LoRA alpha {alpha:g}; peft (and training configs) take a whole number")
    config = AutoConfig.from_pretrained(base)
    modules = base_modules(base)
    by_gguf_name = gguf_module_names(config, modules)
    tensors: dict[str, Any] = {}
    for tensor in reader.tensors:
        stem, _, part = tensor.name.rpartition(".lora_")
        module = by_gguf_name.get(stem)
        if module is None or part not in ("a", "b"):
            raise ExportError(f"{adapter}: tensor {tensor.name!r} names no module of the base {base}")
        tensors[f"{PEFT_PREFIX}{module}.lora_{part.upper()}.weight"] = tensor.data.astype("float32")
    rank = check_shapes(adapter, tensors, modules)
    if ARCHITECTURES[config.model_type][1]:  # Llama: B's Q/K rows back from llama.cpp's rope order
        for key in [k for k in tensors if k.endswith(("q_proj.lora_B.weight", "k_proj.lora_B.weight"))]:
            heads = config.num_attention_heads if "q_proj" in key else config.num_key_value_heads
            tensors[key] = unpermute_rope(tensors[key], heads)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    targets = sorted({key.removeprefix(PEFT_PREFIX).rsplit(".lora_", 1)[0].rsplit(".", 1)[-1] for key in tensors})
    spec = LoraConfig(r=rank, lora_alpha=int(alpha), target_modules=targets, task_type="CAUSAL_LM")
    spec.base_model_name_or_path = str(base)
    spec.save_pretrained(str(folder))
    write_info(
        folder,
        wire_format=gguf_string(adapter, WIRE_FORMAT_KEY),
        start_adapter=str(adapter),
        trained_on=sorted(gguf_trained_on(adapter)),
    )
    return folder


def base_modules(base: Path) -> dict[str, tuple[int, ...]]:
    """The base checkpoint's weight matrices: module name -> (out, in), from the safetensors headers."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(Path(base).glob("*.safetensors")):
        with safe_open(str(path), "np") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shape = tuple(handle.get_slice(key).get_shape())
                if key.endswith(".weight") and len(shape) == 2:
                    shapes[key.removesuffix(".weight")] = shape
    return shapes


def gguf_module_names(config: Any, modules: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """GGUF tensor name of each base weight (`blk.0.attn_q.weight`, as the adapter's names begin) -> its module name."""
    import gguf

    names = gguf.get_tensor_name_map(architecture(config, "adapter"), config.num_hidden_layers)
    found = {}
    for module in modules:
        name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if name is not None:
            found[name] = module
    return found


def check_shapes(adapter: Path, tensors: dict[str, Any], modules: dict[str, tuple[int, ...]]) -> int:
    """The adapter's one rank, after checking that every module has its A (rank x in) and B
    (out x rank) and that they fit the base's (out, in)."""
    ranks = set()
    for key, array in tensors.items():
        module, _, part = key.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        other = f"{PEFT_PREFIX}{module}.lora_{'B' if part.startswith('A') else 'A'}.weight"
        out, inp = modules[module]
        fits = array.shape[1] == inp if part.startswith("A") else array.shape[0] == out
        if other not in tensors or not fits:
            raise ExportError(f"{adapter}: the LoRA matrices of {module} do not fit the base's {out} x {inp} weight")
        ranks.add(array.shape[0] if part.startswith("A") else array.shape[1])
    if len(ranks) != 1:
        raise ExportError(f"{adapter}: ranks {sorted(ranks)}; one rank for every module is what imports")
    return ranks.pop()


def unpermute_rope(weights: Any, heads: int) -> Any:
    """The inverse of `export.permute_rope`: llama.cpp's adjacent rope pairs back to transformers' halves."""
    rows = weights.shape[0]
    return weights.reshape(heads, rows // heads // 2, 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)
