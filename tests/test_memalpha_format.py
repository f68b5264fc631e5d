"""The `memalpha` format against the contract in ../shared/data/memalpha (made by running Mem-α's
own code): every golden prompt byte for byte through both renderers, with the reference texts
loaded through `--policy-prompt`'s file format, and every model output parsed and run to an
equivalent memory, on a real memory (SQLite ledger + LanceDB index) through the server's adapter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from mcp_memalpha.policy.curator import ChunkSession, Limits
from mcp_memalpha.policy.formats import JsonFormat, MemalphaFormat
from mcp_memalpha.policy.generation import Sampling
from mcp_memalpha.policy.memalpha import load_prompt_texts, parse
from mcp_memalpha.training.sandbox import Sandbox, tool_defs

from tests.conftest import shared_data_missing

pytest.importorskip("qwen_agent", reason="the memalpha format needs the memalpha extra (qwen-agent)")

CONTRACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "memalpha"
REFERENCE = json.loads((CONTRACT / "reference.json").read_text()) if CONTRACT.is_dir() else {}
GOLDEN = sorted(CONTRACT.glob("golden/*.json")) if CONTRACT.is_dir() else []
OUTPUTS = json.loads((CONTRACT / "outputs.json").read_text())["examples"] if CONTRACT.is_dir() else []
pytestmark = pytest.mark.skipif(shared_data_missing(CONTRACT), reason="the shared Mem-α contract data is not here")


def reference_file(folder: Path, *, including_core: bool = True) -> Path:
    """reference.json's texts written in the documented --policy-prompt file format."""
    system = REFERENCE["system_prompt_memorize"]
    lines = system["instruction_lines"]
    data = {
        "system_template": system["template"],
        "instruction_lines": {key: lines[key] for key in ("core", "semantic", "episodic", "none_enabled")},
        "unified_prompt": REFERENCE["user_message"]["unified_prompt"],
        "including_core": including_core,
        "items_shown": system["memory_view_rules"]["items_shown_per_type"],
        "response_limit": REFERENCE["user_message"]["format_args"]["max_new_tokens"],
    }
    path = folder / f"memalpha-paper{'' if including_core else '-nocore'}.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2))
    return path


class Memorized:
    """A real sandbox memory holding a golden case's state; `alias` shows our ids as the case's ids."""

    def __init__(self, folder: Path, state: dict[str, Any], core_capacity_tokens: int = 512) -> None:
        self.sandbox = Sandbox(root=folder, core_capacity_tokens=core_capacity_tokens)
        self.ids: dict[str, str] = {}  # our id -> the case's id
        if state.get("core"):
            self.sandbox.call("memory_update", {"memory_type": "core", "new_content": state["core"]})
        for kind in ("semantic", "episodic"):
            for item in state.get(kind, []):
                made = self.sandbox.call("new_memory_insert", {"memory_type": kind, "content": item["content"]})
                self.ids[made["memory_id"]] = item["id"]

    def alias(self, memory_id: str, taken: set[str]) -> str:
        return self.ids[memory_id]

    def state(self) -> dict[str, Any]:
        """The memory read back, with the case's ids (None for an item made since)."""
        core = self.sandbox.call("core_memory_read", {})["content"]
        lists = {}
        for kind in ("semantic", "episodic"):
            rows = self.sandbox.call("memory_list", {"memory_type": kind, "limit": 100})["memories"]
            lists[kind] = [(self.ids.get(row["memory_id"]), row["content"]) for row in rows]
        return {"core": core, **lists}


def chat_template() -> str:
    return str(REFERENCE["chat_template"]["template"])


def local_tokenizer() -> Any:
    """A transformers tokenizer built here (no hub) carrying the Qwen3 chat template."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(WordLevel({"<unk>": 0, "<|im_end|>": 1, "<|endoftext|>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=chat_template()
    )


def render_llama_cpp(messages: list[dict[str, str]]) -> str:
    from mcp_memalpha.policy.model import ModelInfo, render_chat

    info = ModelInfo(name="Memalpha 4B", chat_template=chat_template(), bos_token="", eos_token="<|im_end|>")
    return render_chat(info, messages)


def golden_messages(case: dict[str, Any], folder: Path) -> list[dict[str, str]]:
    """The prompt messages our format builds for a golden case, read from a real memory."""
    texts = load_prompt_texts(reference_file(folder, including_core=case["including_core"]))
    memory = Memorized(folder, case["memory_state"])
    try:
        session = ChunkSession(
            MemalphaFormat(texts, alias=memory.alias),
            tool_defs(),
            Limits(),
            case["chunk"],
            None,
            memory.sandbox.execute,
        )
        return session.messages
    finally:
        memory.sandbox.close()


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_prompt_messages_match_mem_alpha(path: Path, tmp_path: Path) -> None:
    case = json.loads(path.read_text())
    assert golden_messages(case, tmp_path) == case["messages_after_qwen_agent"]


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_prompt_byte_for_byte_through_transformers(path: Path, tmp_path: Path) -> None:
    from mcp_memalpha.training.generation import render_prompt

    case = json.loads(path.read_text())
    prompt = render_prompt(local_tokenizer(), golden_messages(case, tmp_path))
    assert prompt == case["prompt"]
    assert hashlib.sha256(prompt.encode()).hexdigest() == case["prompt_sha256"]


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_prompt_byte_for_byte_through_llama_cpp(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the llama.cpp renderer needs the policy extra")
    case = json.loads(path.read_text())
    prompt = render_llama_cpp(golden_messages(case, tmp_path))
    assert prompt == case["prompt"]
    assert hashlib.sha256(prompt.encode()).hexdigest() == case["prompt_sha256"]


def test_the_default_texts_have_the_trained_structure_in_our_words(tmp_path: Path) -> None:
    case = json.loads(GOLDEN[1].read_text())
    memory = Memorized(tmp_path, case["memory_state"])
    with memory.sandbox:
        session = ChunkSession(MemalphaFormat(), tool_defs(), Limits(), case["chunk"], None, memory.sandbox.execute)
    system, user = (m["content"] for m in session.messages)
    paper = case["messages_after_qwen_agent"]
    assert system != paper[0]["content"] and user != paper[1]["content"]  # our words, not the paper's
    view = paper[0]["content"].split("CURRENT MEMORY STATE:\n")[1].split("\n\nFocus on")[0]
    shown = {memory.ids[real]: alias for alias, real in session.context.state.view.aliases.items()}
    for golden_id, alias in shown.items():  # the same view, with our own 4-hex aliases
        view = view.replace(f"[{golden_id}]", f"[{alias}]")
    assert view in system
    tools = paper[0]["content"].split("\n\n# Tools\n\n")[1]
    assert system.endswith("\n\n# Tools\n\n" + tools)  # qwen-agent's block, the trained schemas
    assert f"<new_chunk>\n{case['chunk']}\n</new_chunk>" in user and "1638 tokens" in user


def test_a_prompt_file_with_a_bad_placeholder_names_the_field(tmp_path: Path) -> None:
    path = reference_file(tmp_path)
    data = json.loads(path.read_text())
    data["unified_prompt"] = data["unified_prompt"].replace("{context}", "{chunk}")
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unified_prompt: has placeholders"):
        load_prompt_texts(path)
    data.pop("unified_prompt")
    data["chunk_prompt"] = "x"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="unknown key 'chunk_prompt'"):
        load_prompt_texts(path)


# ---- outputs: parsed and run as Mem-α does -----------------------------------------------------


def _case(name: str) -> dict[str, Any]:
    return json.loads(next(p for p in GOLDEN if p.stem == name).read_text())


def run_output(raw: str, case: dict[str, Any], folder: Path, **limits: Any) -> tuple[Memorized, list[Any]]:
    memory = Memorized(folder, case["memory_state"])
    texts = load_prompt_texts(reference_file(folder, including_core=case["including_core"]))
    session = ChunkSession(
        MemalphaFormat(texts, alias=memory.alias),
        tool_defs(),
        Limits(**limits),
        case["chunk"],
        None,
        memory.sandbox.execute,
    )
    session.submit(raw)
    assert session.done  # one generation per chunk, results never shown back
    return memory, session.result.calls


@pytest.mark.parametrize("example", OUTPUTS, ids=[e["name"] for e in OUTPUTS])
def test_outputs_parse_to_mem_alphas_calls(example: dict[str, Any]) -> None:
    calls = [c for c in parse(example["raw_output"]) if c.error is None]
    expected = example["parse_function_calls_from_text"]["function_calls"]
    assert [(c.name, c.raw) for c in calls] == [(e["name"], e["arguments"]) for e in expected]
    assert [c.arguments for c in calls] == [e["arguments"] for e in example["executed_calls"]]


@pytest.mark.parametrize("example", OUTPUTS, ids=[e["name"] for e in OUTPUTS])
def test_outputs_leave_an_equivalent_memory(example: dict[str, Any], tmp_path: Path) -> None:
    memory, records = run_output(example["raw_output"], _case(example["context_case"]), tmp_path)
    with memory.sandbox:
        after = memory.state()
    expected = example["memory_after"]
    assert after["core"] == expected["core"]
    for kind in ("semantic", "episodic"):
        known = set(memory.ids.values())
        assert after[kind] == [(i["id"] if i["id"] in known else None, i["content"]) for i in expected[kind]]
    ran = [r for r in records if r.name]  # a call Mem-α's regex skips is shown, with a name of ""
    assert [r.ok for r in ran] == ["executed successfully" in c["tool_result"] for c in example["executed_calls"]]
    skipped = [c["tool_result"] for c in example["executed_calls"] if "'skipped'" in c["tool_result"]]
    assert [r.output["status"] for r in ran if r.ok and r.output.get("status") == "skipped"] == ["skipped"] * len(
        skipped
    )


def test_a_call_mem_alpha_drops_for_a_flower_is_visible(tmp_path: Path) -> None:
    example = next(e for e in OUTPUTS if e["name"] == "flower_inside_content")
    memory, records = run_output(example["raw_output"], _case(example["context_case"]), tmp_path)
    memory.sandbox.close()
    assert [r.ok for r in records] == [False, True]
    assert "not a call Mem-α's parser reads" in (records[0].error or "")


def test_extra_keys_are_ignored_and_said(tmp_path: Path) -> None:
    example = next(e for e in OUTPUTS if e["name"] == "broken_json_extra_keys_after_object")
    memory, records = run_output(example["raw_output"], _case(example["context_case"]), tmp_path)
    memory.sandbox.close()
    assert records[0].ok and records[0].output["ignored_arguments"] == ["context", "place", "timestamp"]
    assert records[0].arguments == {
        "memory_type": "episodic",
        "content": example["executed_calls"][0]["arguments"]["content"],
    }


def test_ids_are_per_prompt_aliases_and_an_unshown_one_is_unknown(tmp_path: Path) -> None:
    case = _case("case_03_truncation_over_5")  # 8 semantic items: 1a2b is stored but not shown
    calls = [
        ("memory_update", {"memory_type": "semantic_memory", "new_content": "x", "memory_id": "1a2b"}),
        ("memory_delete", {"memory_type": "semantic_memory", "memory_id": "1a2b"}),
        ("memory_delete", {"memory_type": "semantic_memory", "memory_id": "c6d7"}),
        ("memory_delete", {"memory_type": "semantic_memory", "memory_id": "c6d7"}),
    ]
    raw = "\n".join(f"✿FUNCTION✿: {name}\n✿ARGS✿: {json.dumps(args)}" for name, args in calls)
    memory, records = run_output(raw, case, tmp_path)
    with memory.sandbox:
        after = memory.state()
    assert not records[0].ok and "'1a2b' is not an id this prompt showed" in (records[0].error or "")
    assert records[1].ok and records[1].output["deleted"] is False  # Mem-α: ok, nothing deleted
    assert records[2].ok and records[2].output["deleted"] is True
    assert records[3].ok and records[3].output == {
        "status": "ok",
        "deleted": False,
        "reason": "already deleted by this reply",
    }
    assert ("1a2b", "The Danube flows through ten countries.") in after["semantic"]
    assert all(alias != "c6d7" for alias, _ in after["semantic"])


def test_an_over_capacity_core_is_cut_at_a_word_and_marked(tmp_path: Path) -> None:
    case = _case("case_01_empty_memory")
    words = " ".join(f"fact{i} about the user." for i in range(200))
    raw = f'✿FUNCTION✿: memory_update\n✿ARGS✿: {{"memory_type": "core_memory", "new_content": "{words}"}}'
    memory, records = run_output(raw, case, tmp_path)
    with memory.sandbox:
        core = memory.sandbox.call("core_memory_read", {})
    (record,) = records
    assert record.ok and record.output["truncated"] is True and record.output["words_given"] == 800
    assert core["content"].endswith(" [content exceeds 512 tokens, truncated]")
    assert core["tokens"] <= 512 and words.startswith(core["content"].split(" [content exceeds")[0])
    assert record.arguments["new_content"] == core["content"]  # what was stored, in the job's calls
    assert core["version"] == 1  # one write: the tries that did not fit wrote nothing


def test_no_call_of_a_long_output_is_lost_to_the_call_cap(tmp_path: Path) -> None:
    case = _case("case_01_empty_memory")
    raw = "\n".join(
        f'✿FUNCTION✿: new_memory_insert\n✿ARGS✿: {{"memory_type": "semantic_memory", "content": "Fact number {i}."}}'
        for i in range(15)
    )
    memory, records = run_output(raw, case, tmp_path, max_calls=12)
    with memory.sandbox:
        after = memory.state()
    assert len(records) == 15 and all(r.ok for r in records)
    assert len(after["semantic"]) == 15


def test_other_formats_record_calls_over_the_cap_instead_of_dropping_them(tmp_path: Path) -> None:
    from mcp_memalpha.policy.formats import ToolCallFormat

    calls = [
        {"name": "new_memory_insert", "arguments": {"memory_type": "semantic", "content": f"Fact {i}."}}
        for i in range(4)
    ]
    lines = [f"<tool_call>{json.dumps(call)}</tool_call>" for call in calls]
    with Sandbox(root=tmp_path) as sandbox:
        session = ChunkSession(
            ToolCallFormat(), tool_defs(), Limits(max_calls=3, max_steps=1), "A: hi", None, sandbox.execute
        )
        records = session.submit("\n".join(lines))
    assert [r.ok for r in records] == [True, True, True, False]
    assert "over the limit of 3 calls per chunk; not run" in (records[3].error or "")


def test_the_memalpha_format_decodes_as_trained() -> None:
    decoding = MemalphaFormat().decoding(Limits(), Sampling())
    assert (decoding.max_new_tokens, decoding.max_calls, decoding.cut_degenerate) == (2048, None, False)
    assert (decoding.sampling.temperature, decoding.sampling.repeat_penalty) == (0.0, 1.0)
    assert MemalphaFormat().stop() == () and MemalphaFormat.multi_step is False


# ---- issue 16, finding 10: the extractive curator never writes freely -----------------------------


def test_an_extractive_chunk_without_statements_is_a_job_with_nothing_to_do(tmp_path: Path) -> None:
    chunk = "[Dialogue at 1:56 pm on 8 May, 2023]\n[Caroline moved to Paris]\n[Melanie: adopted a cat]"
    with Sandbox(root=tmp_path) as sandbox:
        session = ChunkSession(JsonFormat(), tool_defs(), Limits(), chunk, None, sandbox.execute)
        assert session.done and session.result.calls == [] and session.result.steps == 0
        with pytest.raises(ValueError, match="extractive json format copies statements"):
            JsonFormat().grammar([t for t in tool_defs() if t.name != "new_memory_insert"], session.context, 4)


def test_serve_refuses_a_bad_policy_prompt_file_naming_the_option(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mcp_memalpha.cli import main

    bad = tmp_path / "texts.json"
    bad.write_text('{"unified_prompt": "{context} {max_new_tokens}"}')
    result = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "data"), "--policy-prompt", str(bad)])
    assert result.exit_code == 2 and "--policy-prompt" in result.output and "system_template" in result.output


def test_the_policy_prompt_setting_reaches_the_curator_texts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_memalpha.curation import read_policy_prompt
    from mcp_memalpha.settings import Settings

    path = reference_file(tmp_path)
    monkeypatch.setenv("MEMALPHA_POLICY_PROMPT", str(path))
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.policy_prompt == path
    texts = read_policy_prompt(settings.policy_prompt)
    assert texts.system_template == REFERENCE["system_prompt_memorize"]["template"]
