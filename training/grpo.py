"""GRPO training of the curator with TRL's `GRPOTrainer`, the Mem-α way.

How one optimization step goes (one instance per step by default):
- TRL's sampler repeats the instance's row `num_generations = G × T` times (G rollouts, T chunks);
- our `rollout_func` turns those rows into G sequential rollouts (`Episode`): for each chunk t the
  policy's prompt (memory state + chunk, `policy.formats`) is tokenized with the model's chat
  template, one completion is sampled (temperature 1.0), its calls run through the real tools on
  the rollout's own fresh memory; after the last chunk the reader answers the questions;
- each (rollout, chunk) is one training sample, so the batch holds G × T samples for the instance,
  ordered rollout-major; their reward terms (r1 qa, r2_t executed, r3 compression, r4_t type fit)
  are handed to TRL as four reward functions weighted (1, 1, 0.05, 0.1);
- TRL normalizes advantages over groups of `num_generations` consecutive samples = exactly all
  chunk samples of the G rollouts of one instance: the paper's grouping, with TRL's own loss
  (clipped ratio, epsilon 0.2, KL beta), optimizer and distributed support.

Constraints that follow: every instance has the same number of chunks T (longer ones are cut,
shorter ones dropped), and under several processes each process must receive whole rollouts
(per-device batch a multiple of T). One generation per chunk, as in the paper (the writer does
not see tool results while training); multi-step curation is used at evaluation and serving.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.data import Instance, load_instances, training_set, truncate
from training.rewards import RewardWeights

TERMS = ("qa", "executed", "compression", "type_fit")


@dataclass
class TrainConfig:
    """Every option of `mcp-memalpha train`; a TOML file sets them (sections are for reading only:
    `[model]`, `[data]`, `[rollout]`, `[reward]`, `[optim]` keys all land here)."""

    output_dir: str = "runs/grpo"
    # model: "tiny" (built from a config, tokenizer trained here), "default" (SmolLM2-135M-Instruct
    # from the embedded GGUF, dequantized), or a transformers checkpoint folder
    model: str = "tiny"
    tiny_hidden: int = 64
    tiny_layers: int = 2
    # data: a LoCoMo JSON or Memalpha parquet/JSONL; None = the LoCoMo training set that ships
    data: str | None = None
    sessions_per_instance: int = 2
    chunks_per_instance: int = 2
    max_questions: int = 10
    max_instances: int | None = None
    # conversations (LoCoMo sample_id) kept out of training, to evaluate on unseen data
    holdout: list[str] = field(default_factory=list)
    # rollouts
    wire_format: str = "memalpha"
    rollouts: int = 4  # G
    max_new_tokens: int = 128
    temperature: float = 1.0
    max_calls: int = 12
    # reward
    weights: dict[str, float] = field(default_factory=lambda: dataclasses.asdict(RewardWeights()))
    reader_budget: int = 300
    reader_top_k: int = 20
    reader_search_method: str = "bm25"
    # optimization (the paper: lr 1e-6, clip 0.2, KL 0.001, one PPO epoch)
    steps: int = 2
    instances_per_step: int = 1
    learning_rate: float = 1e-6
    beta: float = 0.001
    epsilon: float = 0.2
    seed: int = 0
    gradient_checkpointing: bool = False
    bf16: bool = False
    save_steps: int = 0  # 0: save only at the end

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> TrainConfig:
        raw = tomllib.loads(Path(path).read_text())
        flat: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, dict) and key != "weights":
                flat.update(value)
            else:
                flat[key] = value
        flat.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ValueError(
                f"{path}: unknown option(s) {', '.join(unknown)}; the options are {', '.join(sorted(known))}"
            )
        config = cls(**flat)
        config.weights = {**dataclasses.asdict(RewardWeights()), **config.weights}
        return config

    @property
    def num_generations(self) -> int:
        return self.rollouts * self.chunks_per_instance


def training_instances(config: TrainConfig) -> list[Instance]:
    """Instances with exactly T chunks (cut to T; shorter ones dropped) and at least one question."""
    if config.data is None:
        found = training_set(sessions_per_instance=config.sessions_per_instance, max_questions=None)
    else:
        found = load_instances(config.data, sessions_per_instance=config.sessions_per_instance)
    kept = []
    for instance in found:
        if instance.metadata.get("sample_id") in config.holdout:
            continue
        cut = truncate(instance, max_chunks=config.chunks_per_instance, max_questions=config.max_questions)
        if len(cut.chunks) == config.chunks_per_instance and cut.questions:
            kept.append(cut)
    if not kept:
        raise ValueError(f"no instance has {config.chunks_per_instance} chunks and a question in {config.data}")
    return kept[: config.max_instances] if config.max_instances else kept


def load_start_model(config: TrainConfig, work: Path) -> tuple[Any, Any]:
    """The model and tokenizer training starts from."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.model == "tiny":
        from training.tiny import build_tiny_model

        folder = build_tiny_model(work / "tiny-start", hidden=config.tiny_hidden, layers=config.tiny_layers)
        return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if config.model == "default" or config.model.endswith(".gguf"):
        from policy.model import resolve_model

        folder = checkpoint_from_gguf(resolve_model(config.model), work / "gguf-start")
        return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(config.model), AutoTokenizer.from_pretrained(config.model)


def checkpoint_from_gguf(path: Path, folder: Path) -> Path:
    """A GGUF's weights, dequantized, saved as a plain transformers checkpoint in `folder`.

    Two reasons not to train the GGUF-loaded model directly: transformers marks it as quantized and
    its Trainer refuses to fine-tune it, and TRL builds the KL reference model from the model's
    folder, which must be a checkpoint. So the weights go into a fresh model built from the same
    config (without the quantization config), saved with the tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(folder)
    return folder


def run_rollouts(
    instance: Instance, generator: Any, config: TrainConfig, count: int
) -> tuple[list[Any], list[dict[str, float]]]:
    """`count` rollouts of `instance`: the samples (one per chunk, rollout-major) and their terms."""
    from policy.curator import Limits
    from training.environment import Episode

    samples, terms = [], []
    weights = RewardWeights(**config.weights)
    for _ in range(count):
        with Episode(
            instance, wire_format=config.wire_format, limits=Limits(max_calls=config.max_calls, max_steps=1)
        ) as episode:
            while not episode.done:
                sample = generator.sample(episode.prompt(), episode.completions())
                episode.submit(sample.text)
                samples.append(sample)
            score = episode.score(
                budget=config.reader_budget,
                top_k=config.reader_top_k,
                search_method=config.reader_search_method,
                weights=weights,
            )
            calls = [len(episode.chunk_records(t)) for t in range(len(instance.chunks))]
        for t in range(len(instance.chunks)):
            terms.append(
                {
                    "qa": score.qa,
                    "executed": score.executed[t],
                    "compression": score.compression,
                    "type_fit": score.type_fit[t],
                    "calls": float(calls[t]),
                    "memory_tokens": float(score.memory_tokens),
                }
            )
    return samples, terms


def make_rollout_func(
    instances: dict[str, Instance], tokenizer: Any, config: TrainConfig
) -> Callable[..., dict[str, Any]]:
    """TRL's `rollout_func(prompts, trainer)`: rows are instance ids, each repeated G × T times."""
    from training.generation import TransformersGenerator

    per_rollout = config.chunks_per_instance

    def rollout(prompts: list[str], trainer: Any) -> dict[str, Any]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        generator = TransformersGenerator(
            model, tokenizer, max_new_tokens=config.max_new_tokens, temperature=config.temperature
        )
        # env_mask: TRL learns only from tokens marked 1, here the model's own choices; text the
        # format forced (fed spans of constrained rollouts) is context, as tool output would be.
        output: dict[str, Any] = {"prompt_ids": [], "completion_ids": [], "env_mask": [], "logprobs": None}
        output.update({key: [] for key in (*TERMS, "calls", "memory_tokens")})
        start = 0
        while start < len(prompts):
            instance_id = prompts[start]
            run = 1
            while start + run < len(prompts) and prompts[start + run] == instance_id:
                run += 1
            if run % per_rollout:
                raise ValueError(
                    f"rollout_func got {run} copies of {instance_id}; need whole rollouts of {per_rollout} chunks "
                    "(make the per-device batch a multiple of chunks_per_instance)"
                )
            samples, terms = run_rollouts(instances[instance_id], generator, config, run // per_rollout)
            for sample, values in zip(samples, terms, strict=True):
                output["prompt_ids"].append(sample.prompt_ids)
                output["completion_ids"].append(sample.completion_ids)
                output["env_mask"].append(sample.loss_mask())
                for key, value in values.items():
                    output[key].append(value)
            start += run
        return output

    return rollout


def reward_functions() -> list[Callable[..., list[float | None]]]:
    """One TRL reward function per term, reading the value the rollout computed for each sample
    (TRL logs each under rewards/<name>/mean and sums them with the configured weights)."""

    def term(name: str) -> Callable[..., list[float | None]]:
        def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
            return [float(v) for v in columns[name]]

        reward.__name__ = name
        return reward

    return [term(name) for name in TERMS]


def grpo_args(config: TrainConfig) -> Any:
    import torch
    from trl import GRPOConfig

    batch = config.num_generations * config.instances_per_step
    return GRPOConfig(
        output_dir=config.output_dir,
        max_steps=config.steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_generations=config.num_generations,
        learning_rate=config.learning_rate,
        beta=config.beta,
        epsilon=config.epsilon,
        num_iterations=1,
        scale_rewards="group",
        reward_weights=[config.weights[name] for name in TERMS],
        max_completion_length=config.max_new_tokens,
        temperature=config.temperature,
        logging_steps=1,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        report_to=[],
        seed=config.seed,
        bf16=config.bf16,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=config.gradient_checkpointing,
        remove_unused_columns=False,
        shuffle_dataset=True,
    )


def train(config: TrainConfig, *, log: Callable[[str], None] = print) -> Path:
    """Run GRPO; returns the folder of the final model (with its tokenizer and training info)."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    # Everything is local: no hub lookups, no telemetry thread (there is no network at run time).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from datasets import Dataset
    from trl import GRPOTrainer

    from training.generation import write_info

    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    instances = training_instances(config)
    log(
        f"{len(instances)} training instances of {config.chunks_per_instance} chunks; "
        f"{config.rollouts} rollouts each -> {config.num_generations} samples per instance and step"
    )
    started = time.perf_counter()
    model, tokenizer = load_start_model(config, output)
    log(
        f"start model {config.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters "
        f"({time.perf_counter() - started:.1f} s)"
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    by_id = {i.instance_id: i for i in instances}
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=list[Any](reward_functions()),
        args=grpo_args(config),
        train_dataset=Dataset.from_list([{"prompt": i.instance_id} for i in instances]),
        processing_class=tokenizer,
        rollout_func=make_rollout_func(by_id, tokenizer, config),
    )
    trainer.train()
    final = output / "final"
    trainer.save_model(str(final))
    tokenizer.save_pretrained(final)
    write_info(final, wire_format=config.wire_format, start_model=config.model, steps=config.steps)
    history = [entry for entry in trainer.state.log_history if "reward" in entry]
    with (output / "log.jsonl").open("w") as handle:
        for entry in history:
            handle.write(json.dumps(entry) + "\n")
    plot_rewards(history, output / "rewards.png")
    log(
        f"trained {config.steps} steps in {time.perf_counter() - started:.0f} s; model in {final}, "
        f"reward curve in {output / 'rewards.png'}"
    )
    return final


def plot_rewards(history: list[dict[str, Any]], path: Path) -> Path:
    """Per step: the total reward (with a running mean over 5 steps: each step is another instance,
    so single steps are noisy), each term's mean, and how far the policy moved (KL to the start
    model) with the reward spread inside the step's group (what GRPO learns from)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [entry.get("step", i + 1) for i, entry in enumerate(history)]
    rewards = [entry["reward"] for entry in history]
    running = [sum(rewards[max(0, i - 4) : i + 1]) / len(rewards[max(0, i - 4) : i + 1]) for i in range(len(rewards))]
    figure, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    axes[0].plot(steps, rewards, marker="o", alpha=0.5, label="reward (weighted sum)")
    axes[0].plot(steps, running, label="running mean, 5 steps")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("mean reward")
    axes[0].legend(fontsize=8)
    for name in TERMS:
        values = [entry.get(f"rewards/{name}/mean", math.nan) for entry in history]
        axes[1].plot(steps, values, marker=".", label=name)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("term mean (unweighted)")
    axes[1].legend(fontsize=8)
    for key, label in (("kl", "KL to the start model"), ("reward_std", "reward std in the group")):
        axes[2].plot(steps, [entry.get(key, math.nan) for entry in history], marker=".", label=label)
    axes[2].set_xlabel("step")
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
