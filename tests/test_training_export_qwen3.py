"""GGUF export of a Qwen3 (Memalpha-4B's family): a tiny Qwen3 built from a config (per-head Q/K
norms, heads wider than hidden / heads, tied or untied embeddings, a Qwen2-style tokenizer trained
here, the Qwen3 chat template) goes through `mcp-memalpha export-gguf`; llama.cpp computes the
logits transformers computes, tokenizes Mem-α's golden prompts as transformers does, renders them
from their messages byte for byte, and a spawned `serve --policy` picks the wire format from the
file's name: `memalpha` when it names Memalpha, `tool_call` for a plain Qwen3.

Needs the `train` and `policy` extras (the `test` extra installs both).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from mcp_memalpha.policy import Limits, ToolDef, load_curator
from mcp_memalpha.policy.model import ModelInfo, render_chat
from mcp_memalpha.training import export
from mcp_memalpha.training.export import ExportError, write_and_quantize

from mcp_memalpha.cli import main
from mcp_memalpha.tools import TOOLS_BY_NAME
from tests.conftest import call, connect, policy_params, shared_data_missing
from tests.test_training_export import assert_greedy_choices_match, llama_run, sharpened, transformers_run
from tests.test_training_export import prompt_ids as shared_prompt_ids

MEMALPHA_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "memalpha"
GOLDEN = sorted((MEMALPHA_DATA / "golden").glob("*.json"))
needs_golden = pytest.mark.skipif(
    shared_data_missing(MEMALPHA_DATA / "golden"), reason="needs the Mem-α reference data (shared/data/memalpha)"
)
TOOLS = [ToolDef(t.name, t.description, t.input_schema()) for t in TOOLS_BY_NAME.values()]
CHUNK = "[Dialogue at timestamp 2023/05/25 (Thu) 17:08]\n<User>I adopted a cat named Miso today.\n<Assistant>Lovely!"


@pytest.fixture(scope="module")
def qwen3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mcp_memalpha.training.tiny import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("qwen3") / "tiny-qwen3")


def export_cli(folder: Path, output: Path, *options: str) -> Path:
    result = CliRunner().invoke(main, ["export-gguf", str(folder), "-o", str(output), "--quant", "f16", *options])
    assert result.exit_code == 0, result.output
    return output


@pytest.fixture(scope="module")
def memalpha_gguf(qwen3_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "memalpha-tiny.gguf"
    return export_cli(qwen3_folder, out, "--name", "Memalpha-tiny", "--base-model", "Qwen3-4B")


@pytest.fixture(scope="module")
def plain_gguf(qwen3_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_cli(qwen3_folder, tmp_path_factory.mktemp("gguf") / "qwen3-tiny.gguf")  # default name


def vocab(path: Path) -> Any:
    from llama_cpp import Llama

    return Llama(str(path), vocab_only=True, verbose=False)


# ---- the file -----------------------------------------------------------------------------------


def test_the_export_is_a_qwen3_gguf_with_its_names_template_and_norms(
    qwen3_folder: Path, memalpha_gguf: Path, plain_gguf: Path
) -> None:
    import gguf
    from transformers import AutoTokenizer

    llm = vocab(memalpha_gguf)
    meta = llm.metadata
    llm.close()
    assert meta["general.architecture"] == "qwen3"
    assert meta["general.name"] == "Memalpha-tiny" and meta["general.base_model.0.name"] == "Qwen3-4B"
    assert meta["qwen3.attention.key_length"] == "32"  # head_dim, not hidden / heads = 16
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.chat_template"] == AutoTokenizer.from_pretrained(qwen3_folder).chat_template
    tensors = {t.name: t.tensor_type.name for t in gguf.GGUFReader(memalpha_gguf).tensors}
    assert tensors["blk.1.attn_q_norm.weight"] == "F32" and tensors["blk.1.attn_k_norm.weight"] == "F32"
    assert tensors["blk.1.attn_q.weight"] == "F16"
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    plain = vocab(plain_gguf)
    assert plain.metadata["general.name"] == "tiny-qwen3"  # the checkpoint folder's name
    plain.close()


@needs_golden
def test_the_tiny_models_template_is_the_one_the_golden_prompts_were_rendered_with(qwen3_folder: Path) -> None:
    from mcp_memalpha.training.tiny import qwen3_chat_template

    reference = json.loads((MEMALPHA_DATA / "reference.json").read_text())
    assert qwen3_chat_template() == reference["chat_template"]["template"]


# ---- numerics: the exported file computes what the transformers model computes -----------------


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def sharp_qwen3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """A tiny Qwen3 with weights scaled x10 (norms aside), so attention is sharp and the greedy
    continuation varied: a wrong rope layout, norm or head size then shows in the logits."""
    from mcp_memalpha.training.tiny import build_tiny_qwen3

    return sharpened(build_tiny_qwen3(tmp_path_factory.mktemp("sharp") / "qwen3", tied=request.param))


def prompt_ids(tokenizer: Any) -> list[int]:
    return shared_prompt_ids(tokenizer, enable_thinking=False)


def test_f16_logits_and_greedy_tokens_match_transformers(sharp_qwen3: tuple[Any, Any], tmp_path: Path) -> None:
    import gguf

    model, tokenizer = sharp_qwen3
    ids = prompt_ids(tokenizer)
    expected_logits, expected_tokens = transformers_run(model, ids, 16)
    assert len(set(expected_tokens)) > 4  # a varied continuation, not one repeated token
    write_and_quantize(model, tokenizer, tmp_path / "sharp.gguf", quant="f16")
    names = {t.name for t in gguf.GGUFReader(tmp_path / "sharp.gguf").tensors}
    assert ("output.weight" in names) == (not model.config.tie_word_embeddings)
    logits, tokens = llama_run(tmp_path / "sharp.gguf", ids, 16)
    assert np.abs(logits - expected_logits).max() < 0.1  # F16 rounding only
    assert (logits.argmax(-1) == expected_logits.argmax(-1)).all()
    assert_greedy_choices_match(model, ids, tokens)


def test_with_llamas_rope_permutation_the_same_check_fails(
    sharp_qwen3: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above is sensitive: Qwen3 runs NeoX rope in llama.cpp, so permuting its Q/K rows as
    for a Llama breaks it."""
    model, tokenizer = sharp_qwen3
    ids = prompt_ids(tokenizer)
    expected_logits, _ = transformers_run(model, ids, 1)
    monkeypatch.setitem(export.ARCHITECTURES, "qwen3", ("QWEN3", True))
    write_and_quantize(model, tokenizer, tmp_path / "sharp.gguf", quant="f16")
    logits, _ = llama_run(tmp_path / "sharp.gguf", ids, 1)
    assert np.abs(logits - expected_logits).max() > 1.0


def test_a_qwen3_that_llama_cpp_cannot_run_is_refused(sharp_qwen3: tuple[Any, Any], tmp_path: Path) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    _, tokenizer = sharp_qwen3
    biased = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, attention_bias=True,
        )
    )  # fmt: skip
    with pytest.raises(ExportError, match="attention_bias"):
        write_and_quantize(biased, tokenizer, tmp_path / "x.gguf", quant="f16")
    assert not (tmp_path / "x.gguf").exists()


# ---- the golden prompts through llama.cpp -------------------------------------------------------


@needs_golden
def test_llama_cpp_tokenizes_every_golden_prompt_as_transformers(qwen3_folder: Path, memalpha_gguf: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen3_folder)
    markers = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<think>", "</think>")]
    llm = vocab(memalpha_gguf)
    try:
        for case in GOLDEN:
            prompt = json.loads(case.read_text())["prompt"]
            expected = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            got = llm.tokenize(prompt.encode(), add_bos=True, special=True)  # as the curator tokenizes
            assert got == expected, case.name
            # the chat markup is parsed into its single tokens, not spelt out
            assert [got.count(m) for m in markers] == [3, 2, 1, 1], case.name
    finally:
        llm.close()


@needs_golden
def test_the_gguf_template_renders_each_golden_prompt_from_its_messages(memalpha_gguf: Path) -> None:
    """The llama.cpp path (render_chat over the file's template, thinking off) gives the exact string
    transformers gave Mem-α, for the messages qwen-agent built."""
    llm = vocab(memalpha_gguf)
    info = ModelInfo.of(llm)
    llm.close()
    for case in GOLDEN:
        golden = json.loads(case.read_text())
        assert render_chat(info, golden["messages_after_qwen_agent"]) == golden["prompt"], case.name


# ---- the wire format, chosen from the file ------------------------------------------------------


async def served_format(gguf_path: Path, data_dir: Path) -> dict[str, Any]:
    async with connect(policy_params(data_dir, str(gguf_path))) as client:
        job = await call(client, "memorize", chunk=CHUNK, timestamp="25 May 2023")
        status = await call(client, "memorize_status", job_id=job["job_id"], wait_seconds=120)
    assert status["state"] == "done", status
    return status


@pytest.mark.anyio
async def test_a_spawned_server_serves_a_file_named_memalpha_in_the_memalpha_format(
    memalpha_gguf: Path, tmp_path: Path
) -> None:
    status = await served_format(memalpha_gguf, tmp_path / "data")
    assert status["wire_format"] == "memalpha"
    assert status["wire_format_reason"] == "general.name 'Memalpha-tiny' names Memalpha"


@pytest.mark.anyio
async def test_a_spawned_server_serves_a_plain_qwen3_in_the_tool_call_format(plain_gguf: Path, tmp_path: Path) -> None:
    status = await served_format(plain_gguf, tmp_path / "data")
    assert status["wire_format"] == "tool_call"
    assert "<tool_call>" in status["wire_format_reason"]


def test_the_setting_overrides_the_detection_and_the_choice_is_logged(
    memalpha_gguf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mcp_memalpha.policy.curator"):
        detected = load_curator(str(memalpha_gguf), tools=TOOLS, limits=Limits(max_chunk_tokens=64), threads=1)
        forced = load_curator(
            str(memalpha_gguf), tools=TOOLS, wire_format="json", limits=Limits(max_chunk_tokens=64), threads=1
        )
    assert detected.format_name == "memalpha" and forced.format_name == "json"
    assert "policy_format" in forced.format_choice.reason
    assert "wire format memalpha (general.name 'Memalpha-tiny' names Memalpha)" in caplog.text
    assert "wire format json (set by policy_format" in caplog.text


# ---- what llama.cpp evaluates in a spawned server -----------------------------------------------

CORE = "User adopted a cat in May 2023."
FACT = "The user's cat is called Miso."


def expected_prompt(model: Path, sandbox_dir: Path, texts_file: Path, served_id: str) -> str:
    """Our memalpha format with the reference texts, for the served memory's state (the same core and
    fact in a fresh sandbox, the fact shown with the alias the server gives its own id) and CHUNK,
    through the transformers chat template with thinking off."""
    from mcp_memalpha.policy.curator import ChunkSession
    from mcp_memalpha.policy.formats import MemalphaFormat
    from mcp_memalpha.policy.memalpha import hex_alias, load_prompt_texts
    from mcp_memalpha.training.generation import render_prompt
    from mcp_memalpha.training.sandbox import Sandbox, tool_defs
    from transformers import AutoTokenizer

    with Sandbox(root=sandbox_dir) as sandbox:
        sandbox.call("memory_update", {"memory_type": "core", "new_content": CORE})
        ours = sandbox.call("new_memory_insert", {"memory_type": "semantic", "content": FACT})["memory_id"]
        aliases = {ours: served_id}

        def alias(memory_id: str, taken: set[str]) -> str:
            return hex_alias(aliases[memory_id], taken)

        session = ChunkSession(
            MemalphaFormat(load_prompt_texts(texts_file), alias=alias),
            tool_defs(),
            Limits(),
            CHUNK,
            "25 May 2023",
            sandbox.execute,
        )
        messages = session.messages
    return render_prompt(AutoTokenizer.from_pretrained(model), messages)


@needs_golden
@pytest.mark.anyio
async def test_a_spawned_server_evaluates_the_tokens_of_the_expected_memalpha_prompt(
    qwen3_folder: Path, memalpha_gguf: Path, tmp_path: Path
) -> None:
    """The whole served path for a Memalpha-named Qwen3 (export, detection, memory view, reference
    texts from --policy-prompt, the GGUF's template, llama.cpp's tokenizer) evaluates exactly the
    token ids transformers makes of the expected prompt: memorize_status reports their count and
    digest. (The F16 logits of the same export are checked in test_f16_logits_and_greedy_tokens_match_transformers.)"""
    from transformers import AutoTokenizer

    from tests.test_memalpha_format import reference_file

    texts_file = reference_file(tmp_path)
    async with connect(
        policy_params(tmp_path / "data", str(memalpha_gguf), "--policy-prompt", str(texts_file))
    ) as client:
        await call(client, "memory_update", memory_type="core", new_content=CORE)
        served = await call(client, "new_memory_insert", memory_type="semantic", content=FACT)
        job = await call(client, "memorize", chunk=CHUNK, timestamp="25 May 2023")
        for _ in range(10):  # up to 2048 greedy tokens on shared CPUs: wait in turns under the read timeout
            status = await call(client, "memorize_status", job_id=job["job_id"], wait_seconds=50)
            if status["state"] not in ("queued", "running"):
                break
    assert status["state"] == "done", status
    assert status["wire_format"] == "memalpha" and status["steps"] == 1

    prompt = expected_prompt(qwen3_folder, tmp_path, texts_file, served["memory_id"])
    assert CORE in prompt and f"] {FACT}" in prompt and "<new_chunk>" in prompt  # the state and chunk are in it
    ids = list(AutoTokenizer.from_pretrained(qwen3_folder)(prompt, add_special_tokens=False)["input_ids"])
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()  # as memorize_status documents
    assert status["prompts"] == [{"tokens": len(ids), "sha256": digest}]
