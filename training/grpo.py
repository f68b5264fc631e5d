"""GRPO training of the curator with TRL's `GRPOTrainer`, the Mem-α way.

How one optimization step goes (one instance per step by default):
- TRL's sampler repeats the instance's row `num_generations = G × T` times (G rollouts, T chunks);
- our `rollout_func` turns those rows into G sequential rollouts (`Episode`): for each chunk t the
  policy's prompt (memory state + chunk, `mcp_memalpha.policy.formats`) is tokenized with the model's chat
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

from mcp_memalpha.training.data import Instance, load_instances, training_set, truncate
from mcp_memalpha.training.rewards import RewardWeights

# Every reward term the rollout computes; TRL logs each one's mean and std per step and sums them
# with `weights` (0 switches a term off: the paper's reference configuration weights only the first four).
TERMS = tuple(f.name for f in dataclasses.fields(RewardWeights))
PAPER_TERMS = ("qa", "executed", "compression", "type_fit")
SCALE_REWARDS = ("group", "batch", "none")


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
    # cut each chunk to its first lines within this many tokens (shorter prompts, faster steps);
    # the questions kept are those whose answer the cut chunks still hold (answer-token recall >= 0.5)
    max_chunk_tokens: int | None = None
    # windows with fewer questions are dropped: one question makes r1 a coin flip for the group
    min_questions: int = 1
    # conversations (LoCoMo sample_id) kept out of training, to evaluate on unseen data
    holdout: list[str] = field(default_factory=list)
    # rollouts
    wire_format: str = "memalpha"
    rollouts: int = 4  # G
    # None: the format's decoding (memalpha: 2048, as Mem-α trained; others: the curator's limit)
    max_new_tokens: int | None = None
    temperature: float = 1.0  # Mem-α's training rollouts; evaluation is greedy
    max_calls: int = 12
    # reward
    weights: dict[str, float] = field(default_factory=lambda: dataclasses.asdict(RewardWeights()))
    reader_budget: int = 300
    reader_top_k: int = 20
    reader_search_method: str = "bm25"
    chunk_budget_tokens: int = 150  # the `budget` term: tokens a chunk may write at full credit
    # optimization (the paper: lr 1e-6, clip 0.2, KL 0.001, one PPO epoch)
    steps: int = 2
    instances_per_step: int = 1
    learning_rate: float = 1e-6
    beta: float = 0.001
    epsilon: float = 0.2
    # how a group's rewards become advantages (TRL): "group" divides by the group's std (the
    # paper's GRPO), so a spread of 0.01 from a small shaping term moves the policy as far as a
    # QA difference of 0.5; "none" keeps the raw differences (Dr. GRPO); "batch": the batch's std
    scale_rewards: str = "group"
    seed: int = 0
    gradient_checkpointing: bool = False
    bf16: bool = False
    save_steps: int = 0  # 0: save only at the end
    # LoRA adapters (peft) instead of full fine-tuning: rank 0 = full fine-tuning. With LoRA and
    # beta > 0 the KL reference is the same model with its adapters switched off (no second copy);
    # after a warm start, TRL's copy of the warm start's adapters (so beta keeps GRPO near it).
    lora_r: int = 0
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: str | list[str] = "all-linear"
    # supervised warm start before GRPO (`mcp_memalpha.training.warm_start`): epochs over the
    # training chunks with the statements their questions need as targets (0: none, the paper's way)
    warm_start_epochs: float = 0
    warm_start_capacity: int = 180  # tokens of statements the teacher keeps per chunk at most
    warm_start_learning_rate: float = 2e-4
    # the warm start's windows cut to this many tokens (None: GRPO's windows; 0: whole sessions, as
    # the curator is evaluated and served: the statements of a chunk's later half to learn from too)
    warm_start_chunk_tokens: int | None = None
    # instead of a warm start, GRPO goes on training a GGUF LoRA adapter ("default": the one the
    # server ships) over the model it was trained on (`mcp_memalpha.training.adapter_import`)
    start_adapter: str = ""

    def __post_init__(self) -> None:
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards = {self.scale_rewards!r}: it is one of {', '.join(SCALE_REWARDS)}")
        if self.start_adapter and self.warm_start_epochs:
            raise ValueError("start_adapter replaces the warm start: set warm_start_epochs = 0 or no start_adapter")
        if self.start_adapter and self.lora_r <= 0:
            raise ValueError("start_adapter goes on training LoRA adapters: set lora_r > 0")
        if self.start_adapter and not (self.model == "default" or self.model.endswith(".gguf")):
            raise ValueError(f"start_adapter needs the GGUF model it was trained over as model, not {self.model!r}")

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
        try:
            config = cls(**flat)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        unknown = sorted(set(config.weights) - set(TERMS))
        if unknown:
            raise ValueError(f"{path}: unknown reward weight(s) {', '.join(unknown)}; the terms are {', '.join(TERMS)}")
        config.weights = {**dataclasses.asdict(RewardWeights()), **config.weights}
        return config

    @property
    def num_generations(self) -> int:
        return self.rollouts * self.chunks_per_instance

    @property
    def limits(self) -> Any:
        """The curator limits of a rollout: one generation per chunk."""
        from mcp_memalpha.policy.curator import Limits

        return Limits(max_calls=self.max_calls, max_steps=1)

    @property
    def new_tokens(self) -> int:
        """New tokens per rollout generation: the option, else what the wire format decodes with."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        from mcp_memalpha.policy.formats import make_format
        from mcp_memalpha.policy.generation import Sampling

        return make_format(self.wire_format).decoding(self.limits, Sampling()).max_new_tokens


def training_instances(config: TrainConfig, max_chunk_tokens: int | None = None) -> list[Instance]:
    """Instances with exactly T chunks (cut to T; shorter ones dropped) and at least
    `min_questions` questions (and one), each chunk cut to `max_chunk_tokens` (None: the config's;
    0: uncut)."""
    cut_to = config.max_chunk_tokens if max_chunk_tokens is None else max_chunk_tokens
    if config.data is None:
        found = training_set(sessions_per_instance=config.sessions_per_instance, max_questions=None)
    else:
        found = load_instances(config.data, sessions_per_instance=config.sessions_per_instance)
    kept = []
    for instance in found:
        if instance.metadata.get("sample_id") in config.holdout:
            continue
        if cut_to:
            instance = shorten(instance, cut_to)
        cut = truncate(instance, max_chunks=config.chunks_per_instance, max_questions=config.max_questions)
        if len(cut.chunks) == config.chunks_per_instance and len(cut.questions) >= max(1, config.min_questions):
            kept.append(cut)
    if not kept:
        raise ValueError(f"no instance has {config.chunks_per_instance} chunks and a question in {config.data}")
    return kept[: config.max_instances] if config.max_instances else kept


def warm_start_instances(config: TrainConfig, instances: list[Instance]) -> list[Instance]:
    """The windows the warm start learns from: GRPO's `instances`, or the same sessions cut to
    `warm_start_chunk_tokens`; none without a warm start. Their conversations count as trained on."""
    if not config.warm_start_epochs:
        return []
    if config.warm_start_chunk_tokens is None:
        return instances
    return training_instances(config, max_chunk_tokens=config.warm_start_chunk_tokens)


def shorten(instance: Instance, max_tokens: int) -> Instance:
    """Each chunk cut to its first lines within `max_tokens` (its header line kept), and only the
    questions whose gold answer the cut chunks still hold (answer-token recall >= 0.5)."""
    from mcp_memalpha.training.metrics import metric_for

    from mcp_memalpha.tokens import count_tokens

    chunks = []
    for chunk in instance.chunks:
        lines: list[str] = []
        used = 0
        for line in chunk.splitlines():
            used += count_tokens(line)
            if lines and used > max_tokens:
                break
            lines.append(line)
        chunks.append("\n".join(lines))
    metric = metric_for(instance.data_source, extractive=True)
    text = "\n".join(chunks)
    questions = [qa for qa in instance.questions if metric.score(text, qa) >= 0.5]
    return dataclasses.replace(instance, chunks=chunks, questions=questions)


def load_start_model(config: TrainConfig, work: Path) -> tuple[Any, Any]:
    """The model and tokenizer training starts from. A start that must be written first (the tiny
    model, a GGUF's dequantized weights) is written by the main process alone; under `accelerate
    launch` the others wait and read the same folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.model == "tiny":
        from mcp_memalpha.training.tiny import build_tiny_model

        folder = written_once(
            work / "tiny-start", lambda f: build_tiny_model(f, hidden=config.tiny_hidden, layers=config.tiny_layers)
        )
    elif config.model == "default" or config.model.endswith(".gguf"):
        from mcp_memalpha.policy.model import resolve_model

        # dequantizing takes minutes on 2 cores: a run that resumes reuses the folder it wrote
        folder = written_once(
            work / "gguf-start", lambda f: checkpoint_from_gguf(resolve_model(config.model), f), reuse=True
        )
    else:
        folder = Path(config.model)
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def written_once(folder: Path, write: Callable[[Path], Path], *, reuse: bool = False) -> Path:
    """`write(folder)` on the main process only, the others waiting until it is done; with
    `reuse`, a folder that already holds a complete checkpoint is kept as it is."""
    from accelerate import PartialState

    state = PartialState()
    with state.main_process_first():
        complete = (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
        if state.is_main_process and not (reuse and complete):
            write(folder)
    return folder


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
    instance: Instance, generator: Any, config: TrainConfig, count: int, timing: dict[str, float] | None = None
) -> tuple[list[Any], list[dict[str, float]]]:
    """`count` rollouts of `instance`: the samples (one per chunk, rollout-major) and their terms;
    seconds by phase (generation, tools, scoring) are added to `timing` when given."""
    from mcp_memalpha.training.environment import Episode

    samples, terms = [], []
    weights = RewardWeights(**config.weights)
    for _ in range(count):
        with Episode(instance, wire_format=config.wire_format, limits=config.limits) as episode:
            while not episode.done:
                started = time.perf_counter()
                sample = generator.sample(episode.prompt(), episode.completions())
                generated = time.perf_counter()
                episode.submit(sample.text)
                samples.append(sample)
                if timing is not None:
                    timing["generation"] += generated - started
                    timing["tools"] += time.perf_counter() - generated
            started = time.perf_counter()
            score = episode.score(
                budget=config.reader_budget,
                top_k=config.reader_top_k,
                search_method=config.reader_search_method,
                weights=weights,
            )
            records = [episode.chunk_records(t) for t in range(len(instance.chunks))]
        if timing is not None:
            timing["scoring"] += time.perf_counter() - started
        for t, chunk_records in enumerate(records):
            terms.append(
                {
                    "qa": score.qa,
                    "executed": score.executed[t],
                    "compression": score.compression,
                    "type_fit": score.type_fit[t],
                    **chunk_terms(instance, t, chunk_records, config),
                    "calls": float(len(chunk_records)),
                    "memory_tokens": float(score.memory_tokens),
                }
            )
    return samples, terms


def chunk_terms(instance: Instance, chunk: int, records: list[Any], config: TrainConfig) -> dict[str, float]:
    """The terms beyond the paper's for chunk `chunk` (see `mcp_memalpha.training.rewards`): its filler share, its
    written tokens against the budget, and the questions its writes answer as they will be read
    (those whose evidence lies in this chunk, or all when evidence is unknown)."""
    from mcp_memalpha.training.metrics import metric_for
    from mcp_memalpha.training.rewards import answer_reward, budget_reward, filler_penalty, written_contents

    from mcp_memalpha.tokens import count_tokens

    written = sum(count_tokens(text) for text in written_contents(records))
    asked = [qa for qa in instance.questions if not qa.evidence_chunks or chunk in qa.evidence_chunks]
    metric = metric_for(instance.data_source, extractive=True)
    return {
        "filler": filler_penalty(records),
        "budget": budget_reward(written, config.chunk_budget_tokens),
        "answers": answer_reward(records, asked, metric.score),
    }


def make_rollout_func(
    instances: dict[str, Instance], tokenizer: Any, config: TrainConfig
) -> Callable[..., dict[str, Any]]:
    """TRL's `rollout_func(prompts, trainer)`: rows are instance ids, each repeated G × T times."""
    from mcp_memalpha.training.generation import TransformersGenerator

    per_rollout = config.chunks_per_instance

    def rollout(prompts: list[str], trainer: Any) -> dict[str, Any]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        generator = TransformersGenerator(
            model, tokenizer, max_new_tokens=config.new_tokens, temperature=config.temperature
        )
        # seconds of this step's rollouts by phase, logged by TRL as time/<phase> (the rest of
        # step_time is TRL's forward and backward passes and the optimizer)
        timing = dict.fromkeys(("generation", "tools", "scoring"), 0.0)
        # env_mask: TRL learns only from tokens marked 1, here the model's own choices; text the
        # format forced (fed spans of constrained rollouts) is context, as tool output would be.
        # logprobs: what each token was sampled with (TRL's rollout contract); importance_weights:
        # P_full / P_sampled per token, applied to the loss by `CuratorGRPOTrainer`.
        output: dict[str, Any] = {"prompt_ids": [], "completion_ids": [], "env_mask": [], "logprobs": []}
        output.update({key: [] for key in (*TERMS, "calls", "memory_tokens", IMPORTANCE)})
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
            samples, terms = run_rollouts(instances[instance_id], generator, config, run // per_rollout, timing)
            for sample, values in zip(samples, terms, strict=True):
                output["prompt_ids"].append(sample.prompt_ids)
                output["completion_ids"].append(sample.completion_ids)
                output["env_mask"].append(sample.loss_mask())
                output["logprobs"].append(sample.logprobs or [0.0] * len(sample.completion_ids))
                output[IMPORTANCE].append(sample.importance_weights())
                for key, value in values.items():
                    output[key].append(value)
            start += run
        metrics = getattr(trainer, "_metrics", None)
        if metrics is not None:
            for phase, seconds in timing.items():
                metrics["train"][f"time/{phase}"].append(seconds)
            metrics["train"]["time/prompt_passes"].append(float(generator.prompt_passes))
        return output

    return rollout


IMPORTANCE = "importance_weights"


def curator_trainer_class() -> type:
    """TRL's GRPOTrainer, with the importance correction of constrained rollouts.

    A constrained pick is drawn from the model's distribution renormalized over the allowed
    tokens, while TRL's loss scores it under the full vocabulary and, with num_iterations = 1,
    takes the samples as drawn from that: TRL 1.16 applies its truncated importance-sampling
    correction (exp(full - sampling), `vllm_importance_sampling_correction`) only to vLLM rollouts,
    and uses a `rollout_func`'s logprobs for nothing else by default. So this subclass applies the
    same per-token correction to our rollouts: each picked token's advantage is scaled by
    P_full(token) / P_sampled(token) = the mass the model put on the allowed tokens (<= 1; 1 for
    unconstrained sampling). That is TRL's own TIS form (the weight multiplies the clipped
    per-token loss), computed in the rollout from the logits it sampled with (no extra forward)."""
    import torch
    from torch.nn.utils.rnn import pad_sequence
    from trl import GRPOTrainer

    class CuratorGRPOTrainer(GRPOTrainer):
        def _generate(self, prompts: list[Any]) -> Any:
            result = super()._generate(prompts)
            self._importance = result[5].pop(IMPORTANCE, None)  # extra_fields: not a reward column
            return result

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            output: dict[str, Any] = super()._generate_and_score_completions(inputs)
            weights = getattr(self, "_importance", None)
            if weights is None:
                return output
            completion_ids = output["completion_ids"]
            rows = [torch.tensor(w, dtype=torch.float32) for w in weights]
            tensor = pad_sequence(rows, batch_first=True, padding_value=1.0)
            tensor = tensor[:, : completion_ids.size(1)].to(completion_ids.device)
            if tensor.size(1) < completion_ids.size(1):  # TRL padded to a multiple: pad the weights alike
                extra = torch.ones(tensor.size(0), completion_ids.size(1) - tensor.size(1), device=tensor.device)
                tensor = torch.cat([tensor, extra], dim=1)
            output["advantages"] = output["advantages"].reshape(-1, 1) * tensor
            picked = output["completion_mask"] * output.get("tool_mask", torch.ones_like(output["completion_mask"]))
            mode = "train" if getattr(self.model, "training", True) else "eval"
            mean = (tensor * picked).sum() / picked.sum().clamp(min=1)
            self._metrics[mode]["sampling/importance_weight/mean"].append(self.accelerator.gather(mean).mean().item())
            self._importance = None
            return output

    return CuratorGRPOTrainer


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
        scale_rewards=config.scale_rewards,
        reward_weights=[config.weights[name] for name in TERMS],
        max_completion_length=config.new_tokens,
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


def peft_config(config: TrainConfig) -> Any:
    """peft's LoRA config for TRL (None for full fine-tuning)."""
    if config.lora_r <= 0:
        return None
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise ImportError(f"lora_r = {config.lora_r} needs peft: pip install 'mcp-memalpha[train]' ({exc})") from None
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets,
        task_type="CAUSAL_LM",
    )


def last_checkpoint(output: Path) -> Path | None:
    """The newest `checkpoint-N` folder of a run (None when it has none)."""
    found = [p for p in output.glob("checkpoint-*") if p.is_dir() and p.name.removeprefix("checkpoint-").isdigit()]
    return max(found, key=lambda p: int(p.name.removeprefix("checkpoint-")), default=None)


def train(config: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = print) -> Path:
    """Run GRPO; returns the folder of the final model (with its tokenizer and training info).

    `resume`: continue from the run's newest `checkpoint-N` (weights or adapters, optimizer,
    scheduler, RNG and step count: TRL/transformers' own resume), so a run may span sittings; a
    run that has saved only its warm start starts GRPO from it."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    # Everything is local: no hub lookups, no telemetry thread (there is no network at run time).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    from accelerate import PartialState
    from datasets import Dataset
    from mcp_memalpha.training.evaluate import conversation_of
    from mcp_memalpha.training.generation import write_info

    output = Path(config.output_dir)
    checkpoint = last_checkpoint(output) if resume else None
    warmed = None  # a run stopped after its warm start: GRPO goes on from the saved one
    if resume and checkpoint is None:
        if not (config.warm_start_epochs and finished_warm_start(output)) and not config.start_adapter:
            raise ValueError(
                f"--resume: {output} has no checkpoint-N folder (set save_steps to write them) "
                "nor a finished warm start"
            )
        warmed = output / "warm-start"
    output.mkdir(parents=True, exist_ok=True)
    instances = training_instances(config)
    taught = warm_start_instances(config, instances)
    started_from = start_adapter_trained_on(config)
    trained_on = sorted({conversation_of(i) for i in [*instances, *taught]} | started_from)
    if PartialState().is_main_process:
        record = {**dataclasses.asdict(config), "trained_on": trained_on}
        (output / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    log(
        f"{len(instances)} training instances of {config.chunks_per_instance} chunks; "
        f"{config.rollouts} rollouts each -> {config.num_generations} samples per instance and step"
    )
    started = time.perf_counter()
    model, tokenizer = load_start_model(config, output)
    log(
        f"start model {config.model}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters "
        f"({time.perf_counter() - started:.1f} s)"
        + (f"; LoRA rank {config.lora_r}" if config.lora_r else "; full fine-tuning")
        + (f"; resuming from {checkpoint.name}" if checkpoint else "")
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    by_id = {i.instance_id: i for i in instances}
    info = {"wire_format": config.wire_format, "start_model": config.model, "trained_on": trained_on}
    adapters = peft_config(config)
    if config.start_adapter and checkpoint is None:
        warmed = imported_start(config, output, log)
    if (config.warm_start_epochs or config.start_adapter) and checkpoint is None:  # else the checkpoint holds it
        from mcp_memalpha.training.warm_start import WarmStart, warm_start

        options = WarmStart(
            config.warm_start_epochs,
            config.warm_start_capacity,
            config.warm_start_learning_rate,
            config.wire_format,
            config.limits,
            config.seed,
        )
        if warmed is not None:
            model = load_warm_start(model, warmed)
            log(f"warm start: reusing {warmed}")
        else:
            model = warm_start(model, tokenizer, taught, options, adapters, output / "warm-start", log)
            write_info(output / "warm-start", **info, steps=0)
        if config.steps == 0:  # the warm start alone (to evaluate it apart from GRPO)
            return output / "warm-start"
        adapters = None  # GRPO goes on training the warm start's adapters
    trainer = curator_trainer_class()(
        model=model,
        reward_funcs=list[Any](reward_functions()),
        args=grpo_args(config),
        train_dataset=Dataset.from_list([{"prompt": i.instance_id} for i in instances]),
        processing_class=tokenizer,
        rollout_func=make_rollout_func(by_id, tokenizer, config),
        peft_config=adapters,
        callbacks=[progress_callback(log), info_callback(info)],
    )
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    final = save_final(trainer, tokenizer, output, config)
    if not trainer.accelerator.is_main_process:  # under several processes, one writes the results
        return final
    write_info(final, **info, steps=config.steps)
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


def start_adapter_path(config: TrainConfig) -> Path:
    """The GGUF file `start_adapter` names ("default": the adapter the server ships)."""
    from mcp_memalpha.policy.model import is_adapter, resolve_policy

    if config.start_adapter == "default":
        shipped = resolve_policy("default").adapter
        if shipped is None:
            raise ValueError("start_adapter = 'default': this install ships no trained adapter")
        return shipped
    path = Path(config.start_adapter)
    if not path.is_file() or not is_adapter(path):
        raise ValueError(f"start_adapter = {config.start_adapter!r}: not a GGUF LoRA adapter file")
    return path


def start_adapter_trained_on(config: TrainConfig) -> set[str]:
    """The conversations the start adapter was trained on: the run counts them as its own."""
    if not config.start_adapter:
        return set()
    from mcp_memalpha.policy.model import gguf_trained_on

    return gguf_trained_on(start_adapter_path(config))


def imported_start(config: TrainConfig, output: Path, log: Callable[[str], None]) -> Path:
    """`warm-start/`: the start adapter as a peft folder over the run's `gguf-start` (written by the
    main process once; a resumed run reuses it)."""
    from mcp_memalpha.training.adapter_import import import_adapter

    folder = output / "warm-start"
    path = start_adapter_path(config)
    if not finished_warm_start(output):
        written_once(folder, lambda f: import_adapter(path, output / "gguf-start", f))
    spec = json.loads((folder / "adapter_config.json").read_text())
    # a resumed run rebuilds the adapters from lora_r and lora_alpha before loading its checkpoint
    if (spec["r"], float(spec["lora_alpha"])) != (config.lora_r, float(config.lora_alpha)):
        raise ValueError(
            f"start_adapter {path} has rank {spec['r']} and alpha {spec['lora_alpha']:g}: set lora_r and "
            "lora_alpha to those"
        )
    log(f"start adapter {path}: rank {spec['r']}, alpha {spec['lora_alpha']:g}, in {folder}")
    return folder


def finished_warm_start(output: Path) -> bool:
    """Whether the run in `output` saved its warm start (its training info is written last)."""
    return (output / "warm-start" / "memalpha_training.json").is_file()


def load_warm_start(model: Any, folder: Path) -> Any:
    """The saved warm start over `model`, trainable: its LoRA adapters (or, without LoRA, its weights)."""
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(folder), is_trainable=True)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def save_final(trainer: Any, tokenizer: Any, output: Path, config: TrainConfig) -> Path:
    """`final/`: a plain checkpoint whatever the training (LoRA adapters merged into the weights),
    so eval, export and serving read one kind of folder; with LoRA the adapters alone go to
    `final-adapter/` too (a few MB)."""
    final = output / "final"
    main = trainer.accelerator.is_main_process
    if config.lora_r:
        trainer.save_model(str(output / "final-adapter"))
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        if main:
            tokenizer.save_pretrained(output / "final-adapter")
            merged.save_pretrained(final)
    else:
        trainer.save_model(str(final))
    if main:
        tokenizer.save_pretrained(final)
    trainer.accelerator.wait_for_everyone()
    return final


def progress_callback(log: Callable[[str], None]) -> Any:
    """One line per step (reward, its spread in the group, grad norm, seconds), for long runs."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.last = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
            if not logs or "reward" not in logs or not state.is_world_process_zero:
                return
            now = time.perf_counter()
            log(
                f"step {state.global_step}/{state.max_steps}: reward {logs['reward']:.3f} "
                f"(group std {logs.get('reward_std', math.nan):.3f}), grad_norm {logs.get('grad_norm', math.nan):.4f}, "
                f"{now - self.last:.0f} s"
            )
            self.last = now

    return Progress()


def info_callback(info: dict[str, Any]) -> Any:
    """Writes `memalpha_training.json` (wire format, trained conversations) into every saved
    checkpoint, so a checkpoint exported or evaluated mid-run is prompted and checked the same way."""
    from mcp_memalpha.training.generation import write_info
    from transformers import TrainerCallback

    class Info(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir() and state.is_world_process_zero:
                write_info(folder, **info, steps=state.global_step)

    return Info()


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
