"""GGUF export of trained curator weights: a checkpoint from a real GRPO step goes through
`mcp-memalpha export-gguf` to F16, Q8_0 and 4-bit files that llama.cpp loads, generates with, the
server's curator prompts and runs, and a spawned `serve --policy PATH` uses for `memorize`; a tiny
Llama with sharp attention proves the numerics (logits and greedy tokens match transformers).

Needs the `train` and `policy` extras (the `test` extra installs both).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from mcp_memalpha.policy import Limits, ToolDef, load_curator
from mcp_memalpha.policy.model import WIRE_FORMAT_KEY, load_llama
from mcp_memalpha.training import export
from mcp_memalpha.training.export import ExportError, export_gguf, write_and_quantize

from mcp_memalpha import CallContext, Memory, Settings
from mcp_memalpha.cli import main
from mcp_memalpha.curation import make_execute
from mcp_memalpha.tools import TOOLS_BY_NAME
from tests.conftest import call, connect, policy_params, shared_data_missing

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"
SMOKE = Path(__file__).resolve().parents[1] / "training" / "configs" / "smoke.toml"
QUANTS = ("f16", "q8_0", "q4_0", "q4_k_m")
TOOLS = [ToolDef(t.name, t.description, t.input_schema()) for t in TOOLS_BY_NAME.values()]
CHUNK = "Maya: I started a new job as a data engineer on Monday.\nLeo: Are you still living in Porto?"
needs_locomo = pytest.mark.skipif(shared_data_missing(LOCOMO), reason="training needs the LoCoMo dev data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `final/` folder of one real GRPO step of the smoke configuration (tiny Llama)."""
    from mcp_memalpha.training.grpo import TrainConfig, train

    run = tmp_path_factory.mktemp("run")
    config = TrainConfig.from_toml(
        SMOKE, output_dir=str(run), steps=1, max_new_tokens=8, chunks_per_instance=1, max_instances=1
    )
    return train(config, log=lambda line: None)


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trained checkpoint through the server's CLI (which forwards to mcp_memalpha.training.cli), per type."""
    out = tmp_path_factory.mktemp("gguf")
    files = {}
    for quant in QUANTS:
        path = out / f"curator-{quant}.gguf"
        result = CliRunner().invoke(main, ["export-gguf", str(trained), "-o", str(path), "--quant", quant])
        assert result.exit_code == 0, result.output
        files[quant] = path
    return files


def tensor_types(path: Path) -> dict[str, str]:
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


@needs_locomo
def test_each_quant_type_is_a_llama_gguf_with_the_checkpoints_metadata(
    trained: Path, exported: dict[str, Path]
) -> None:
    import llama_cpp
    from transformers import AutoTokenizer

    template = AutoTokenizer.from_pretrained(trained).chat_template
    for quant, path in exported.items():
        llm = load_llama(path, n_ctx=512, threads=2)
        meta = llm.metadata
        assert meta["general.architecture"] == "llama"
        assert meta["llama.context_length"] == "8192" and meta["llama.block_count"] == "2"
        assert meta["tokenizer.chat_template"] == template
        assert meta[WIRE_FORMAT_KEY] == "memalpha"  # from the checkpoint's memalpha_training.json
        assert meta["general.file_type"] == str(getattr(llama_cpp, export.QUANT_TYPES[quant]))
        llm.close()
    types = {quant: tensor_types(path) for quant, path in exported.items()}
    assert types["f16"]["blk.0.attn_q.weight"] == "F16"
    assert types["q8_0"]["blk.0.attn_q.weight"] == "Q8_0"
    assert types["q4_0"]["blk.0.attn_q.weight"] == "Q4_0"
    # k-quants need rows of 256: llama.cpp falls back on this 64-wide model, still below 8 bits
    assert types["q4_k_m"]["blk.0.attn_q.weight"] in ("Q4_K", "Q5_0")
    assert all(types[q]["blk.0.attn_norm.weight"] == "F32" for q in QUANTS)
    assert "output.weight" not in types["f16"]  # tied embeddings: llama.cpp reuses token_embd
    sizes = {quant: path.stat().st_size for quant, path in exported.items()}
    assert sizes["q4_0"] < sizes["q8_0"] < sizes["f16"] and sizes["q4_k_m"] < sizes["q8_0"]


@needs_locomo
def test_llama_cpp_generates_from_every_exported_file(exported: dict[str, Path]) -> None:
    for path in exported.values():
        llm = load_llama(path, n_ctx=512, threads=2)
        output = llm.create_chat_completion(
            [{"role": "user", "content": "Remember: Tom is a nurse."}], max_tokens=8, temperature=0.0
        )
        assert output["choices"][0]["message"]["content"] is not None  # type: ignore[index]
        assert output["usage"]["completion_tokens"] >= 1  # type: ignore[index]
        llm.close()


@needs_locomo
def test_the_servers_curator_loads_prompts_and_runs_the_exported_model(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    curator = load_curator(str(exported["q4_0"]), tools=TOOLS, limits=Limits(max_new_tokens=48), threads=2)
    assert curator.format_name == "memalpha"  # the wire format it was trained in, from the file
    with Memory(Settings(data_dir=tmp_path / "data")) as memory:
        execute = make_execute(memory, CallContext(source="policy", job_id="j-export"), allowed=tuple(TOOLS_BY_NAME))
        result = curator.curate(CHUNK, timestamp="8 May 2023", execute=execute)
    # a barely trained tiny model rarely makes a valid call; it must prompt, generate and parse
    assert result.steps >= 1 and result.prompt_tokens > 100 and result.completion_tokens >= 1
    assert len(result.outputs) == result.steps
    assert result.executed == sum(record.ok for record in result.calls)


@needs_locomo
@pytest.mark.anyio
async def test_a_spawned_server_serves_the_exported_file_as_its_policy(
    exported: dict[str, Path], tmp_path: Path
) -> None:
    async with connect(policy_params(tmp_path / "data", str(exported["q8_0"]))) as client:
        job = await call(client, "memorize", chunk=CHUNK, timestamp="8 May 2023")
        status = await call(client, "memorize_status", job_id=job["job_id"], wait_seconds=120)
        assert status["state"] == "done", status
        assert status["attempts"] == 1


# ---- numerics: the exported file computes what the transformers model computes -----------------


@pytest.fixture(scope="module")
def sharp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """A tiny Llama whose weights are scaled x10: at the default init its attention is nearly
    uniform and its greedy output one repeated token, which would hide a wrong rope layout."""
    from mcp_memalpha.training.tiny import build_tiny_model

    return sharpened(build_tiny_model(tmp_path_factory.mktemp("sharp") / "tiny"))


def sharpened(folder: Path) -> tuple[Any, Any]:
    """The checkpoint in `folder` with every weight but the norms scaled x10, and its tokenizer."""
    import torch

    model, tokenizer = export.load_checkpoint(folder)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.mul_(10)
    return model, tokenizer


def prompt_ids(tokenizer: Any, **template: Any) -> list[int]:
    messages = [{"role": "user", "content": "Caroline: I moved to Zurich on 12 May 2023. Melanie likes painting."}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **template)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def transformers_run(model: Any, ids: list[int], new_tokens: int) -> tuple[np.ndarray, list[int]]:
    """Prompt logits and the greedy continuation."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].numpy()
        output = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False)
    return logits, output[0, len(ids) :].tolist()


def assert_greedy_choices_match(model: Any, ids: list[int], tokens: list[int], tolerance: float = 0.2) -> None:
    """Every token of llama.cpp's greedy continuation `tokens` is transformers' own greedy choice
    at that step (teacher-forced on llama.cpp's path), or within `tolerance` of it: a near tie that
    rounding may flip (two logits each off by under 0.1). Checked at every step, also after a flip,
    so where a tie falls (it moves with the llama.cpp build) does not matter."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids + tokens[:-1]])).logits[0, len(ids) - 1 :].numpy()
    gaps = [float(step.max() - step[token]) for step, token in zip(logits, tokens, strict=True)]
    assert max(gaps) < tolerance, gaps
    assert sum(gap == 0.0 for gap in gaps) >= len(tokens) - 2, gaps  # ties are rare, not the rule


def llama_run(path: Path, ids: list[int], new_tokens: int, adapter: Path | None = None) -> tuple[np.ndarray, list[int]]:
    """Prompt logits and the greedy continuation in llama.cpp (with a LoRA adapter over the model)."""
    from llama_cpp import Llama

    lora = str(adapter) if adapter else None
    llm = Llama(str(path), n_ctx=512, n_threads=2, logits_all=True, lora_path=lora, verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)])
    llm.reset()
    tokens = []
    for token in llm.generate(ids, temp=0.0, top_k=1):
        tokens.append(token)
        if len(tokens) == new_tokens:
            break
    llm.close()
    return logits, tokens


def test_f16_logits_and_greedy_tokens_match_transformers(sharp: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = sharp
    ids = prompt_ids(tokenizer)
    expected_logits, expected_tokens = transformers_run(model, ids, 16)
    assert len(set(expected_tokens)) > 4  # a varied continuation, not one repeated token
    write_and_quantize(model, tokenizer, tmp_path / "sharp.gguf", quant="f16")
    logits, tokens = llama_run(tmp_path / "sharp.gguf", ids, 16)
    assert np.abs(logits - expected_logits).max() < 0.1  # logits span about +-7; F16 rounding only
    assert (logits.argmax(-1) == expected_logits.argmax(-1)).all()
    assert_greedy_choices_match(model, ids, tokens)


def test_without_the_rope_permutation_the_same_check_fails(
    sharp: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above is sensitive: exporting Q/K in transformers' layout breaks it."""
    model, tokenizer = sharp
    ids = prompt_ids(tokenizer)
    expected_logits, expected_tokens = transformers_run(model, ids, 16)
    monkeypatch.setattr(export, "permute_rope", lambda weights, heads: weights)
    write_and_quantize(model, tokenizer, tmp_path / "sharp.gguf", quant="f16")
    logits, tokens = llama_run(tmp_path / "sharp.gguf", ids, 16)
    assert np.abs(logits - expected_logits).max() > 1.0
    assert tokens != expected_tokens
    with pytest.raises(AssertionError):
        assert_greedy_choices_match(model, ids, tokens)


def test_q8_0_stays_close_to_transformers(sharp: tuple[Any, Any], tmp_path: Path) -> None:
    model, tokenizer = sharp
    ids = prompt_ids(tokenizer)
    expected_logits, _ = transformers_run(model, ids, 1)
    write_and_quantize(model, tokenizer, tmp_path / "sharp.gguf", quant="q8_0")
    logits, _ = llama_run(tmp_path / "sharp.gguf", ids, 1)
    assert np.corrcoef(logits.ravel(), expected_logits.ravel())[0, 1] > 0.99
    assert (logits.argmax(-1) == expected_logits.argmax(-1)).mean() > 0.8


# ---- refusals ---------------------------------------------------------------------------------


def test_other_architectures_unknown_types_and_formats_are_refused(tmp_path: Path, sharp: tuple[Any, Any]) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    model, tokenizer = sharp
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer)))
    with pytest.raises(ExportError, match="'gpt2'"):
        write_and_quantize(gpt2, tokenizer, tmp_path / "x.gguf", quant="f16")
    with pytest.raises(ExportError, match="q3_x"):
        write_and_quantize(model, tokenizer, tmp_path / "x.gguf", quant="q3_x")
    with pytest.raises(ExportError, match="wire format"):
        write_and_quantize(model, tokenizer, tmp_path / "x.gguf", quant="f16", wire_format="xml")
    with pytest.raises(ExportError, match="not a transformers checkpoint"):
        export_gguf(tmp_path, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_the_cli_reports_export_errors_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export-gguf", str(tmp_path), "-o", str(tmp_path / "x.gguf")])
    assert result.exit_code == 1 and "not a transformers checkpoint" in result.output
    result = CliRunner().invoke(main, ["export-gguf", str(tmp_path), "-o", "x.gguf", "--quant", "q3_x"])
    assert result.exit_code == 2 and "q3_x" in result.output


# ---- LoRA adapters --------------------------------------------------------------------------


def lora_over(model: Any, folder: Path, tokenizer: Any) -> Any:
    """`model` saved to `folder` as a base, with a rank-4 LoRA on every linear layer whose B is
    random and large (peft starts B at 0, which would make any export look right)."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # a copy: get_peft_model wraps the module in place, and `sharp` is shared by the module's tests
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return peft_model


def test_a_lora_adapter_exports_to_a_gguf_adapter_llama_cpp_applies_like_peft(
    sharp: tuple[Any, Any], tmp_path: Path
) -> None:
    """Base GGUF + exported adapter in llama.cpp = the peft model in transformers (logits and
    greedy tokens), and the adapter matters: the base alone answers differently."""
    from mcp_memalpha.policy.model import PolicyFiles, default_model_path, is_adapter, resolve_policy

    model, tokenizer = sharp
    ids = prompt_ids(tokenizer)
    base_logits, base_tokens = transformers_run(model, ids, 16)
    write_and_quantize(model, tokenizer, tmp_path / "base.gguf", quant="f32")
    peft_model = lora_over(model, tmp_path / "base", tokenizer)
    expected_logits, expected_tokens = transformers_run(peft_model, ids, 16)
    assert np.abs(expected_logits - base_logits).max() > 1.0 and expected_tokens != base_tokens
    peft_model.save_pretrained(tmp_path / "adapter")

    result = export.export_adapter(tmp_path / "adapter", tmp_path / "adapter.gguf", wire_format="json")
    assert result.bytes < (tmp_path / "base.gguf").stat().st_size / 5
    assert is_adapter(tmp_path / "adapter.gguf") and not is_adapter(tmp_path / "base.gguf")
    logits, tokens = llama_run(tmp_path / "base.gguf", ids, 16, adapter=tmp_path / "adapter.gguf")
    assert np.abs(logits - expected_logits).max() < 0.1  # F16 adapter rounding only
    assert (logits.argmax(-1) == expected_logits.argmax(-1)).all()
    assert_greedy_choices_match(peft_model, ids, tokens)
    served = load_llama(PolicyFiles(tmp_path / "base.gguf", tmp_path / "adapter.gguf"), n_ctx=512, threads=2)
    assert [t for t, _ in zip(served.generate(ids, temp=0.0, top_k=1), range(16), strict=False)] == tokens
    served.close()
    # `--policy FILE`: an adapter goes over the embedded base, a model file alone
    assert resolve_policy(tmp_path / "adapter.gguf") == PolicyFiles(default_model_path(), tmp_path / "adapter.gguf")
    assert resolve_policy(tmp_path / "base.gguf") == PolicyFiles(tmp_path / "base.gguf")
    assert resolve_policy("untrained") == PolicyFiles(default_model_path())


def test_adapters_llama_cpp_cannot_express_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "dora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "use_dora": true}')
    with pytest.raises(ExportError, match="only plain LoRA"):
        export.export_adapter(folder, tmp_path / "out.gguf")
    with pytest.raises(ExportError, match="not a LoRA adapter folder"):
        export.export_adapter(tmp_path, tmp_path / "out.gguf")


def test_a_gguf_adapter_imports_back_to_the_peft_adapter_it_came_from(sharp: tuple[Any, Any], tmp_path: Path) -> None:
    """export -> import gives the peft model back (logits within F16 rounding), the training info
    comes along, and putting llama.cpp's Q/K row order back is what makes it right."""
    from mcp_memalpha.training import adapter_import
    from mcp_memalpha.training.generation import read_info, write_info
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tokenizer = sharp
    ids = prompt_ids(tokenizer)
    peft_model = lora_over(model, tmp_path / "base", tokenizer)
    expected, _ = transformers_run(peft_model, ids, 1)
    peft_model.save_pretrained(tmp_path / "adapter")
    write_info(tmp_path / "adapter", trained_on=["conv-99"])
    export.export_adapter(tmp_path / "adapter", tmp_path / "adapter.gguf", wire_format="json")

    folder = adapter_import.import_adapter(tmp_path / "adapter.gguf", tmp_path / "base", tmp_path / "imported")
    assert read_info(folder) == {
        "wire_format": "json",
        "start_adapter": str(tmp_path / "adapter.gguf"),
        "trained_on": ["conv-99"],
    }
    imported = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), str(folder))
    logits, _ = transformers_run(imported, ids, 1)
    assert np.abs(logits - expected).max() < 0.1  # F16 rounding of the file only
    assert (logits.argmax(-1) == expected.argmax(-1)).all()

    unpermute = adapter_import.unpermute_rope
    adapter_import.unpermute_rope = lambda weights, heads: weights
    try:
        wrong = adapter_import.import_adapter(tmp_path / "adapter.gguf", tmp_path / "base", tmp_path / "wrong")
    finally:
        adapter_import.unpermute_rope = unpermute
    unpermuted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), str(wrong))
    assert np.abs(transformers_run(unpermuted, ids, 1)[0] - expected).max() > 1.0


def test_what_is_not_a_fitting_lora_adapter_is_refused_on_import(sharp: tuple[Any, Any], tmp_path: Path) -> None:
    from mcp_memalpha.training.adapter_import import import_adapter
    from mcp_memalpha.training.tiny import build_tiny_model

    model, tokenizer = sharp
    lora_over(model, tmp_path / "base", tokenizer).save_pretrained(tmp_path / "adapter")
    export.export_adapter(tmp_path / "adapter", tmp_path / "adapter.gguf")
    write_and_quantize(model, tokenizer, tmp_path / "model.gguf", quant="f32")
    with pytest.raises(ExportError, match="not a GGUF LoRA adapter"):
        import_adapter(tmp_path / "model.gguf", tmp_path / "base", tmp_path / "out")
    other = build_tiny_model(tmp_path / "wider", hidden=96)
    with pytest.raises(ExportError, match="do not fit the base"):
        import_adapter(tmp_path / "adapter.gguf", other, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


@needs_locomo
def test_grpo_goes_on_training_a_gguf_adapter_over_its_gguf_model(tmp_path: Path) -> None:
    """`start_adapter`: the run starts from the adapter's weights (not peft's zero B), counts the
    adapter's conversations as trained on, and its step (rollouts that differ) moves them."""
    from mcp_memalpha.training.generation import write_info
    from mcp_memalpha.training.grpo import TrainConfig, train
    from mcp_memalpha.training.tiny import build_tiny_model
    from safetensors.numpy import load_file

    model, tokenizer = export.load_checkpoint(build_tiny_model(tmp_path / "tiny"))
    write_and_quantize(model, tokenizer, tmp_path / "model.gguf", quant="f32")
    lora_over(model, tmp_path / "base", tokenizer).save_pretrained(tmp_path / "adapter")
    write_info(tmp_path / "adapter", trained_on=["conv-99"])
    export.export_adapter(tmp_path / "adapter", tmp_path / "adapter.gguf", wire_format="json")
    config = TrainConfig.from_toml(
        SMOKE,
        output_dir=str(tmp_path / "run"),
        model=str(tmp_path / "model.gguf"),
        start_adapter=str(tmp_path / "adapter.gguf"),
        lora_r=4,
        lora_alpha=8,
        wire_format="json",
        steps=1,
        rollouts=4,
        max_new_tokens=200,
        chunks_per_instance=1,
        max_instances=1,
        beta=0.0,
        learning_rate=1e-2,
        weights={"answers": 0.5, "budget": 0.2},
    )
    train(config, log=lambda line: None)

    history = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert history[0]["reward_std"] > 0
    start = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    imported = load_file(str(tmp_path / "run" / "warm-start" / "adapter_model.safetensors"))
    final = load_file(str(tmp_path / "run" / "final-adapter" / "adapter_model.safetensors"))
    assert set(imported) == set(start) == set(final)
    assert all(np.allclose(imported[k], start[k], rtol=1e-3, atol=1e-3) for k in start)
    assert sum(not np.array_equal(final[k], imported[k]) for k in start) > len(start) // 2  # the step trained them
    b = [k for k in start if "lora_B" in k]  # and from the imported weights, which a fresh peft B (0) is far from
    assert all(np.abs(final[k] - start[k]).max() < 0.5 * np.abs(start[k]).max() for k in b)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "conv-99" in record["trained_on"]


def test_start_adapter_options_that_cannot_work_are_refused() -> None:
    from mcp_memalpha.training.grpo import TrainConfig

    with pytest.raises(ValueError, match="replaces the warm start"):
        TrainConfig(model="default", start_adapter="default", lora_r=16, warm_start_epochs=1)
    with pytest.raises(ValueError, match="lora_r > 0"):
        TrainConfig(model="default", start_adapter="default")
    with pytest.raises(ValueError, match="GGUF model it was trained over"):
        TrainConfig(model="tiny", start_adapter="default", lora_r=4)
