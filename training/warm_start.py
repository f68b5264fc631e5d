"""Supervised warm start: show the curator, before GRPO, which statements get asked about.

GRPO from SmolLM2-135M learned little in 100 steps on 2 cores (docs/training.md): a group of four
rollouts of one window says little about which of its twenty statements mattered. The training
windows' own questions say it directly. For each training chunk the teacher keeps, greedily, the
statements that add the most gold-answer score per token, then fills what is left of
`warm_start_capacity` tokens as the flat baseline does (the statements adding the most new content
words: questions on other conversations ask about other statements, and a curator that keeps
only three lines loses whatever it misjudged), writes them as the extractive json format's calls
(episodic when the type judge says the statement fits it, else semantic), and the model is
fine-tuned on those completions (TRL's `SFTTrainer`, loss on the model's choices only, the same
LoRA adapters GRPO then goes on training). The teacher reads answers, the student only the
chunk: what it can learn is the kind of statement questions are asked about, judged on
conversations it never saw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from mcp_memalpha.policy.curator import Limits
from mcp_memalpha.policy.formats import Completions, JsonFormat, extractive_call
from mcp_memalpha.training.baselines import greedy_choice, informative_choice
from mcp_memalpha.training.data import QA, Instance
from mcp_memalpha.training.environment import Episode, chunk_timestamp
from mcp_memalpha.training.metrics import metric_for
from mcp_memalpha.training.rewards import HeuristicTypeJudge, TypeJudge

from mcp_memalpha.tokens import count_tokens


@dataclass(frozen=True)
class WarmStart:
    """The warm start's options (`warm_start_*` in a training config)."""

    epochs: float
    capacity: int = 180  # tokens of statements the teacher keeps per chunk at most
    learning_rate: float = 2e-4
    wire_format: str = "json"
    limits: Limits = field(default_factory=lambda: Limits(max_steps=1))
    seed: int = 0


# (prompt messages, the format's completions, the teacher's output) -> one training row
Encode = Callable[[list[dict[str, str]], Completions, str], dict[str, Any]]


def answer_choice(
    lines: Sequence[str], questions: Sequence[QA], score: Callable[[str, QA], float], capacity: int
) -> list[int]:
    """Indices (in order) of the lines a reader of `questions` needs most: greedily the line that
    adds the most summed score per token, within `capacity` tokens, until none adds any."""
    sizes = [max(1, count_tokens(line)) for line in lines]

    @cache
    def total(picked: tuple[int, ...]) -> float:
        text = "\n".join(lines[i] for i in picked)
        return sum(score(text, qa) for qa in questions)

    return greedy_choice(sizes, capacity, lambda picked, i: (total((*picked, i)) - total(picked)) / sizes[i])


def kind_of(line: str, timestamp: str | None, judge: TypeJudge) -> str:
    """episodic when the statement fits it (an event with a time), else semantic."""
    return "episodic" if judge.fits("episodic", line, {"timestamp": timestamp}) else "semantic"


def teacher_completion(lines: Sequence[str], chosen: Sequence[int], timestamp: str | None, judge: TypeJudge) -> str:
    """The extractive json format's output that inserts `chosen` lines: what its grammar allows."""
    return "".join(extractive_call(lines[i], kind_of(lines[i], timestamp, judge)) for i in chosen)


def teacher_examples(instances: Sequence[Instance], options: WarmStart, encode: Encode) -> list[dict[str, Any]]:
    """One `encode(prompt messages, the format's completions, the teacher's output)` per training
    chunk; the teacher's calls run on the episode's memory as the curator's would, so a later
    chunk's prompt shows what the earlier ones stored."""
    if options.wire_format != "json":
        raise ValueError(
            f"warm_start_epochs: the warm start writes the extractive json format, not {options.wire_format!r}"
        )
    judge = HeuristicTypeJudge()
    examples = []
    for instance in instances:
        score = metric_for(instance.data_source, extractive=True).score
        with Episode(instance, wire_format=options.wire_format, limits=options.limits) as episode:
            while not episode.done:
                session = episode.session()
                assert isinstance(session.format, JsonFormat)
                chunk = instance.chunks[episode.chunk]
                asked = [
                    qa for qa in instance.questions if not qa.evidence_chunks or episode.chunk in qa.evidence_chunks
                ]
                lines = session.context.lines
                capacity = options.capacity
                chosen = informative_choice(lines, capacity, answer_choice(lines, asked, score, capacity))
                completion = teacher_completion(lines, chosen, chunk_timestamp(chunk), judge)
                completions = episode.completions()
                assert completions is not None
                examples.append(encode(episode.prompt(), completions, completion))
                episode.submit(completion)
    return examples


def warm_start(
    model: Any,
    tokenizer: Any,
    instances: Sequence[Instance],
    options: WarmStart,
    adapters: Any,
    output: Path,
    log: Callable[[str], None],
) -> Any:
    """Fine-tune `model` on the teacher's completions, with new `adapters` (a peft config; None:
    every weight); returns the model (its adapters still trainable) and saves it to `output`
    (the adapters alone with LoRA).

    Each completion is tokenized as a constrained rollout is (`TransformersGenerator.teacher_sample`)
    and learned from at the model's choices only (which statement next, its type, where to stop),
    as GRPO learns from them: the fed text (the call's fixed parts, the rest of a statement once
    it is chosen) is most of the tokens and only the prompt's copy, so a loss over all of them
    would be spent on copying."""
    from datasets import Dataset
    from mcp_memalpha.training.generation import TransformersGenerator
    from trl import SFTConfig, SFTTrainer

    generator = TransformersGenerator(model, tokenizer)

    def encode(messages: list[dict[str, str]], completions: Completions, target: str) -> dict[str, Any]:
        sample = generator.teacher_sample(messages, completions, target)
        mask = sample.loss_mask()
        return {
            "input_ids": sample.prompt_ids + sample.completion_ids,
            "completion_mask": [0] * len(sample.prompt_ids) + mask,
        }

    examples = teacher_examples(instances, options, encode)
    choices = sum(sum(e["completion_mask"]) for e in examples)
    log(f"warm start: {len(examples)} chunks, {choices} choice tokens to learn; {options.epochs} epochs")
    args = SFTConfig(
        output_dir=str(output),
        num_train_epochs=options.epochs,
        per_device_train_batch_size=1,
        learning_rate=options.learning_rate,
        lr_scheduler_type="constant",
        logging_steps=max(1, len(examples) // 4),
        save_strategy="no",
        report_to=[],
        seed=options.seed,
        max_length=None,
        completion_only_loss=True,
        use_cpu=not _cuda(),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=adapters,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    log(f"warm start: loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "warm start: no loss logged")
    trainer.save_model(str(output))
    tokenizer.save_pretrained(output)
    return trainer.model


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
