"""Which wire format a GGUF is prompted in, from its metadata (mcp_memalpha.policy.model.detect_format): a model
whose name, base model or source names Memalpha gets Memalpha-4B's format even though its Qwen3
template knows <tool_call>; the export-gguf key wins over names; the setting overrides everything.
Spawned servers serving real exported files are in test_training_export_qwen3.py."""

from __future__ import annotations

import pytest
from mcp_memalpha.policy.model import WIRE_FORMAT_KEY, FormatChoice, ModelInfo, detect_format, resolve_format

QWEN3_TEMPLATE = "{%- if tools %}...<tool_call>\\n{...}\\n</tool_call>...{%- endif %}"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("general.name", "Memalpha 4B"),
        ("general.basename", "memalpha"),
        ("general.finetune", "Mem-alpha-rl"),
        ("general.base_model.0.name", "Memalpha 4B"),
        ("general.base_model.1.repo_url", "https://huggingface.co/YuWangX/Memalpha-4B"),
        ("general.source.url", "https://github.com/wangyu-ustc/Mem-alpha"),
        ("general.source.huggingface.repository", "YuWangX/Memalpha-4B"),
        ("general.name", "Mem-α curator"),
    ],
)
def test_a_qwen3_named_memalpha_anywhere_in_its_identity_gets_the_memalpha_format(key: str, value: str) -> None:
    choice = detect_format({"general.name": "Qwen3 4B", key: value, "tokenizer.chat_template": QWEN3_TEMPLATE})
    assert choice.name == "memalpha"
    assert key in choice.reason and value in choice.reason


def test_a_plain_qwen3_gets_tool_call_and_other_keys_naming_memalpha_do_not_count() -> None:
    meta = {
        "general.name": "Qwen3 4B",
        "general.base_model.0.name": "Qwen3 4B Base",
        "general.description": "not a memalpha model",  # free text, not an identity
        "tokenizer.chat_template": QWEN3_TEMPLATE,
    }
    assert detect_format(meta) == FormatChoice(
        "tool_call", "its chat template knows <tool_call> and no name in it says Memalpha"
    )


def test_the_export_key_wins_then_the_template_markup_then_json() -> None:
    named = {"general.name": "Memalpha-tiny", WIRE_FORMAT_KEY: "tool_call", "tokenizer.chat_template": QWEN3_TEMPLATE}
    assert detect_format(named).name == "tool_call" and WIRE_FORMAT_KEY in detect_format(named).reason
    assert detect_format({"tokenizer.chat_template": "{{ '✿FUNCTION✿' }}"}).name == "memalpha"
    assert detect_format({"general.name": "SmolLM2 135M", "tokenizer.chat_template": "<|im_start|>"}).name == "json"
    assert detect_format({}).name == "json"


def test_the_setting_overrides_and_says_what_the_metadata_said() -> None:
    info = ModelInfo("Memalpha tiny", "", "", "", detected=detect_format({"general.name": "Memalpha tiny"}))
    assert resolve_format(info) == info.detected
    forced = resolve_format(info, "json")
    assert forced.name == "json"
    assert "policy_format" in forced.reason and "memalpha" in forced.reason
