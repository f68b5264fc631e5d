"""The supervised warm start: the teacher's choices, its completions in the served grammar, and a
real TRL fine-tuning of a tiny model whose adapters GRPO then goes on training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp_memalpha.training.data import QA
from mcp_memalpha.training.grpo import TrainConfig, training_instances
from mcp_memalpha.training.metrics import RECALL
from mcp_memalpha.training.rewards import HeuristicTypeJudge
from mcp_memalpha.training.warm_start import WarmStart, answer_choice, teacher_completion, teacher_examples

from tests.conftest import shared_data_missing

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"
needs_locomo = pytest.mark.skipif(
    shared_data_missing(LOCOMO), reason="needs the LoCoMo dev data in ../shared/data/locomo"
)
SMOKE = Path(__file__).resolve().parents[1] / "training" / "configs" / "smoke.toml"

LINES = [
    "Ana: Hi Tom, how are you?",
    "Tom: I adopted a puppy named Biscuit last week.",
    "Ana: That's great!",
    "Tom: I work as a nurse at the city hospital.",
    "Ana: I moved to Lisbon in May.",
]


def test_answer_choice_keeps_what_the_questions_need_in_order_and_stops_when_nothing_adds() -> None:
    questions = [QA("What is Tom's puppy called?", "Biscuit"), QA("Where did Ana move?", "Lisbon")]
    assert answer_choice(LINES, questions, RECALL.score, capacity=200) == [1, 4]
    # only room for the shorter of the two: the one with more answer per token
    assert answer_choice(LINES, questions, RECALL.score, capacity=12) == [4]
    assert answer_choice(LINES, [QA("What colour is the sky?", "blue")], RECALL.score, capacity=200) == []


def test_the_teacher_writes_calls_the_served_grammar_allows_typed_by_the_judge() -> None:
    from mcp_memalpha.policy.formats import JsonFormat
    from mcp_memalpha.policy.prompt import ChunkContext

    format = JsonFormat()
    context = ChunkContext.build("\n".join(LINES), "2 March 2023", "", ())
    completions = format.completions([_insert_tool()], context)
    assert completions is not None
    text = teacher_completion(context.lines, [1, 3], "2 March 2023", HeuristicTypeJudge())
    done = ""
    for line in text.splitlines(keepends=True):  # each line is one of the rests offered there
        rests, _ = completions(done)
        assert line in rests
        done += line
    assert completions(done)[1]  # and the output may end after it
    calls = format.parse(text)
    assert [c.arguments["memory_type"] for c in calls] == ["episodic", "semantic"]
    assert [c.arguments["content"] for c in calls] == [LINES[1], LINES[3]]


def _insert_tool() -> object:
    from mcp_memalpha.training.sandbox import tool_defs

    return next(t for t in tool_defs() if t.name == "new_memory_insert")


def test_grpo_after_the_warm_start_keeps_near_the_warm_start_not_the_base(tmp_path: Path) -> None:
    """With beta > 0, GRPO that goes on training the warm start's adapters takes them as its KL
    reference (TRL copies them into a "ref" adapter), not the base model with adapters off: its
    first step is at KL 0, where the base would be far (the warm start moved every B from 0)."""
    from mcp_memalpha.training.grpo import train

    values = {
        "wire_format": "json",
        "chunks_per_instance": 1,
        "rollouts": 4,
        "max_instances": 2,
        "max_new_tokens": 200,
        "beta": 0.1,
        "learning_rate": 1e-2,
        "lora_r": 4,
        "warm_start_epochs": 4,
        "warm_start_learning_rate": 5e-3,
        "steps": 1,
    }
    train(TrainConfig.from_toml(SMOKE, output_dir=str(tmp_path), **values), log=lambda _: None)
    first = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert first["kl"] == pytest.approx(0.0, abs=1e-9), first


@needs_locomo
def test_teacher_examples_keep_answers_first_and_fill_the_capacity() -> None:
    from mcp_memalpha.policy.prompt import statements

    config = TrainConfig(wire_format="json", chunks_per_instance=1, max_questions=30, max_chunk_tokens=450)
    instances = training_instances(config)[:3]
    examples = teacher_examples(
        instances,
        WarmStart(1),
        lambda messages, completions, target: {"prompt": messages[-1]["content"], "completion": target},
    )
    assert len(examples) == 3
    for instance, example in zip(instances, examples, strict=True):
        assert instance.chunks[0].splitlines()[-1].strip() in example["prompt"]  # the chunk is in the prompt
        kept = example["completion"].count("\n")
        assert 3 <= kept < len(statements(instance.chunks[0]))  # more than the answers, not everything
    with pytest.raises(ValueError, match="extractive json"):
        teacher_examples(instances, WarmStart(1, wire_format="memalpha"), lambda *_: {})


@needs_locomo
def test_warm_start_trains_the_adapters_grpo_then_goes_on_training(tmp_path: Path) -> None:
    """`--steps 0`: the warm start alone moves the LoRA adapters (B starts at 0) and lowers its loss;
    then one GRPO step continues from those adapters, not from fresh ones (resumed or in one run)."""
    from mcp_memalpha.training.grpo import train
    from safetensors.torch import load_file

    logged: list[str] = []
    values = {
        "wire_format": "json",
        "chunks_per_instance": 1,
        "rollouts": 4,
        "max_instances": 2,
        "max_new_tokens": 200,
        "beta": 0.0,
        "learning_rate": 1e-2,
        "lora_r": 4,
        "warm_start_epochs": 4,
        "warm_start_learning_rate": 5e-3,
        "weights": {"answers": 0.5, "budget": 0.2},
    }
    alone = train(
        TrainConfig.from_toml(SMOKE, output_dir=str(tmp_path / "alone"), steps=0, **values), log=logged.append
    )
    assert alone == tmp_path / "alone" / "warm-start"
    adapters = load_file(str(alone / "adapter_model.safetensors"))
    assert any(float(v.abs().sum()) > 0 for k, v in adapters.items() if "lora_B" in k)
    losses = [float(line.split("loss ")[1].split(" -> ")[i]) for line in logged if "loss" in line for i in (0, 1)]
    assert losses[1] < losses[0], logged
    assert not (tmp_path / "alone" / "final").exists()  # no GRPO step ran

    # `--resume` of a run stopped after its warm start: GRPO goes on from the saved adapters
    resumed = TrainConfig.from_toml(SMOKE, output_dir=str(tmp_path / "alone"), steps=1, **values)
    train(resumed, resume=True, log=logged.append)
    assert any("reusing" in line for line in logged), logged
    after = load_file(str(tmp_path / "alone" / "final-adapter" / "adapter_model.safetensors"))
    assert (
        set(after) == set(adapters)
        and 0 < max(float((after[k] - adapters[k]).abs().max()) for k in adapters) <= 1e-2 * 1.01
    )

    train(TrainConfig.from_toml(SMOKE, output_dir=str(tmp_path / "both"), steps=1, **values), log=lambda line: None)
    warm = load_file(str(tmp_path / "both" / "warm-start" / "adapter_model.safetensors"))
    final = load_file(str(tmp_path / "both" / "final-adapter" / "adapter_model.safetensors"))
    assert set(warm) == set(final)
    # GRPO went on from the warm start's adapters: Adam's first step moves each value by at most
    # the learning rate, while fresh adapters would differ from them by far more (A is random, B 0)
    assert max(float((final[k] - warm[k]).abs().max()) for k in warm) <= 1e-2 * 1.01
    assert max(float(warm[k].abs().max()) for k in warm if "lora_B" in k) > 2e-2


@needs_locomo
def test_a_teacher_target_is_tokenized_as_a_rollout_and_learned_at_its_choices(tmp_path: Path) -> None:
    from mcp_memalpha.policy.prompt import statements
    from mcp_memalpha.training.environment import Episode
    from mcp_memalpha.training.generation import TransformersGenerator
    from mcp_memalpha.training.tiny import build_tiny_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "tiny"))
    generator = TransformersGenerator(None, tokenizer)
    instance = training_instances(TrainConfig(chunks_per_instance=1, max_questions=2))[0]
    lines = statements(instance.chunks[0])
    target = teacher_completion(lines, [0, 2, len(lines) - 1], None, HeuristicTypeJudge())
    with Episode(instance, wire_format="json") as episode:
        completions = episode.completions()
        assert completions is not None
        sample = generator.teacher_sample(episode.prompt(), completions, target)
        with pytest.raises(ValueError, match="does not allow"):
            generator.teacher_sample(episode.prompt(), completions, target.replace(lines[2], "Invented: words"))
    assert sample.text == target and sample.completion_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(sample.completion_ids[:-1]) == target
    mask = sample.loss_mask()
    assert mask[-1] == 1 and 3 * 2 < sum(mask) < len(mask) / 3  # each call's choices, not its copied text
